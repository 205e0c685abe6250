"""Weighted sources (``--source``, ``--rate``, ``--mix``): exact counts per source, the multiset
shuffled, uniformity of the picks and of the copies' places, refusals, on every path.

Paths: in memory (64M), external (4K: blocks of a few records, so picks span blocks and blocks
span sources), recursive (1K with at most 2 buckets a level, 300-byte records overflow them).
Chi-square checks run a fixed list of seeds (see tests/test_uniformity.py for the threshold).
"""

from __future__ import annotations

import os
from collections import Counter
from fractions import Fraction
from itertools import combinations
from pathlib import Path

import pytest

import bigshuf
from bigshuf.core import parallel, plan, streams
from bigshuf.core.mix import Mixer, solve_mix
from bigshuf.errors import InputError, UsageError
from helpers import expected_passes, source_records, split_records, write_records
from test_uniformity import assert_uniform

#: (label, memory, bucket cap): the three paths of the line shuffle.
PATHS = [("in-memory", "64M", None), ("external", "4K", None), ("recursive", "2K", 2)]


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, list[bytes]]:
    """Three sources in four files: web (two files), code and wiki."""
    recs = {"web": source_records("web", 300), "code": source_records("code", 70), "wiki": source_records("wiki", 40)}
    write_records(tmp_path / "web-1.txt", recs["web"][:180])
    (tmp_path / "web").mkdir()
    write_records(tmp_path / "web" / "2.txt", recs["web"][180:])
    write_records(tmp_path / "code.txt", recs["code"])
    write_records(tmp_path / "wiki.txt", recs["wiki"])
    return recs


def sources_of(tmp_path: Path) -> dict[str, object]:
    """The corpus's sources as the library names them: a file and a directory, a pattern, a file."""
    return {"web": [tmp_path / "web-1.txt", tmp_path / "web"], "code": str(tmp_path / "cod*.txt"), "wiki": tmp_path / "wiki.txt"}


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory: str, cap: int | None, **kw: object) -> tuple[bigshuf.ShuffleStats, list[bytes]]:
    """Shuffle the corpus's sources with ``kw``; the stats and the output's records."""
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    out = tmp_path / "out.txt"
    kw.setdefault("sources", sources_of(tmp_path))
    stats = bigshuf.shuffle(output=out, memory=memory, tmp_dir=tmp_path, sync=False, **kw)  # type: ignore[arg-type]
    return stats, split_records(out.read_bytes())


@pytest.mark.parametrize("label,memory,cap", PATHS)
def test_integer_rates_give_the_exact_multiset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: dict[str, list[bytes]], label: str, memory: str, cap: int | None
) -> None:
    stats, got = run(tmp_path, monkeypatch, memory, cap, rates={"web": 0, "code": 3, "wiki": 2}, seed=4, verify=True)
    expected = Counter(corpus["code"] * 3 + corpus["wiki"] * 2)
    assert Counter(got) == expected
    assert stats.records == 70 * 3 + 40 * 2
    assert [(s.name, s.read, s.rate, s.written) for s in stats.sources] == [
        ("web", 300, 0.0, 0), ("code", 70, 3.0, 210), ("wiki", 40, 2.0, 80),
    ]
    expected_passes(label, stats.passes)


@pytest.mark.parametrize("label,memory,cap", PATHS)
def test_fractional_rates_copy_exactly_round_frac_n_once_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: dict[str, list[bytes]], label: str, memory: str, cap: int | None
) -> None:
    rates = {"web": 0.35, "code": 2.5, "wiki": 1.25}
    stats, got = run(tmp_path, monkeypatch, memory, cap, rates=rates, seed=9, verify=True)
    seen = Counter(got)
    for name, rate in rates.items():
        n = len(corpus[name])
        floor, extra = int(rate), round((rate - int(rate)) * n)
        times = Counter(seen.get(r, 0) for r in corpus[name])
        assert times == Counter({floor: n - extra, floor + 1: extra}), name
    assert set(seen) <= {r for recs in corpus.values() for r in recs}
    assert [s.written for s in stats.sources] == [105, 175, 50]
    assert stats.records == len(got) == 105 + 175 + 50
    expected_passes(label, stats.passes)


@pytest.mark.parametrize("label,memory,cap", PATHS)
def test_mix_of_records_gives_each_source_its_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: dict[str, list[bytes]], label: str, memory: str, cap: int | None
) -> None:
    stats, got = run(tmp_path, monkeypatch, memory, cap, mix={"web": 0.5, "code": 0.3, "wiki": 0.2}, total=401, seed=2)
    by_source = Counter(r.split(b"x")[0].rstrip(b"0123456789:") for r in got)
    # 200.5, 120.3, 80.2: the largest remainder takes the one record left.
    assert by_source == {b"web": 201, b"code": 120, b"wiki": 80}
    assert [round(s.rate, 9) for s in stats.sources] == [round(201 / 300, 9), round(120 / 70, 9), 2.0]
    expected_passes(label, stats.passes)


def test_mix_targets_sum_to_the_total() -> None:
    """Shares within the tolerance of 1 are made exact, and the largest remainders round up."""
    third = Fraction("0.3333333")
    rates = solve_mix(["a", "b", "c"], [third] * 3, [100, 100, 100], 100, "records")
    assert [r * 100 for r in rates] == [34, 33, 33]


def test_mix_without_total_repeats_no_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: dict[str, list[bytes]]) -> None:
    stats, got = run(tmp_path, monkeypatch, "64M", None, mix={"web": 0.6, "code": 0.2, "wiki": 0.2}, seed=1)
    # wiki's 40 records at 0.2 allow a total of 200: web 120, code 40, wiki 40, none twice.
    assert len(got) == len(set(got)) == 200
    assert [s.written for s in stats.sources] == [120, 40, 40]
    assert stats.sources[2].rate == 1.0


@pytest.mark.parametrize("label,memory,cap", PATHS)
def test_mix_of_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: dict[str, list[bytes]], label: str, memory: str, cap: int | None) -> None:
    # Every record is 61 bytes with its newline, so the shares in bytes are shares in records.
    stats, got = run(tmp_path, monkeypatch, memory, cap, mix={"web": 0.5, "code": 0.25, "wiki": 0.25}, total=61 * 200, by="bytes", seed=3)
    assert [s.written for s in stats.sources] == [100, 50, 50]
    assert sum(len(r) + 1 for r in got) == 61 * 200
    expected_passes(label, stats.passes)


@pytest.mark.parametrize("label,memory,cap", PATHS)
def test_rates_of_one_give_todays_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: dict[str, list[bytes]], label: str, memory: str, cap: int | None
) -> None:
    _stats, mixed = run(tmp_path, monkeypatch, memory, cap, rates={"web": 1, "code": 1}, seed=7)
    files = [tmp_path / "web-1.txt", tmp_path / "web" / "2.txt", tmp_path / "code.txt", tmp_path / "wiki.txt"]
    plain = tmp_path / "plain.txt"
    bigshuf.shuffle(files, plain, memory=memory, seed=7, tmp_dir=tmp_path, sync=False)
    assert mixed == split_records(plain.read_bytes())


@pytest.mark.parametrize("label,memory,cap", PATHS)
def test_threads_do_not_change_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: dict[str, list[bytes]], label: str, memory: str, cap: int | None
) -> None:
    monkeypatch.setattr(parallel, "INLINE_BELOW", 0)  # the workers run even these small blocks (several pieces each)
    outputs = [run(tmp_path, monkeypatch, memory, cap, rates={"web": 0.3, "code": 2.5}, seed=11, threads=j)[1] for j in (1, 2, 3)]
    assert outputs[0] == outputs[1] == outputs[2]
    assert len(outputs[0]) == 90 + 175 + 40


@pytest.mark.parametrize("label,memory,cap", PATHS)
def test_head_count_samples_the_multiset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: dict[str, list[bytes]], label: str, memory: str, cap: int | None
) -> None:
    stats, head = run(tmp_path, monkeypatch, memory, cap, rates={"web": 0, "code": 2, "wiki": 0}, seed=5, head_count=100)
    assert len(head) == stats.records == 100
    assert not Counter(head) - Counter(corpus["code"] * 2)  # copies of code only, none more than twice
    assert max(Counter(head).values()) == 2  # 100 of 140 copies of 70 records: some record twice


# ---------------------------------------------------------------- uniformity

#: Runs per end-to-end chi-square check: 20 expected in each of 10 cells.
RUNS = 200


def test_picks_spread_over_blocks_are_a_uniform_subset() -> None:
    """Sequential selection: rate 0.4 over 5 records met in blocks of 1, 2 and 2 keeps 2 of them,
    each of the 10 pairs equally often (3000 seeds; the draws alone, no shuffle around them)."""
    counts: Counter = Counter()  # type: ignore[type-arg]
    for seed in range(3000):
        mixer = Mixer(["pad", "keep"], [0, 1], [Fraction(1), Fraction(2, 5)], [3, 5])
        kept: list[int] = []
        for b, (first, size) in enumerate([(0, 1), (1, 2), (3, 2)]):
            (chosen,) = mixer.pick(seed, streams.selection(streams.scatter(streams.TOP, b)), [(1, size)])
            kept += (chosen + first).tolist()
        assert mixer.picks_left == [0, 0]
        counts[tuple(kept)] += 1
    assert_uniform(counts, list(combinations(range(5), 2)), "blocks of 1, 2, 2")


def test_fractional_rate_keeps_a_uniform_subset(tmp_path: Path) -> None:
    """The same end to end, in memory: rate 0.4 over 5 records behind another source's 3."""
    pad = source_records("pad", 3)
    keep = source_records("keep", 5)
    write_records(tmp_path / "pad.txt", pad)
    write_records(tmp_path / "keep.txt", keep)
    out = tmp_path / "out.txt"
    counts: Counter = Counter()  # type: ignore[type-arg]
    for seed in range(RUNS):
        bigshuf.shuffle(
            sources={"pad": tmp_path / "pad.txt", "keep": tmp_path / "keep.txt"}, rates={"keep": 0.4}, output=out,
            seed=seed, sync=False,
        )
        kept = tuple(sorted(keep.index(r) for r in split_records(out.read_bytes()) if r in keep))
        counts[kept] += 1
    assert_uniform(counts, list(combinations(range(5), 2)), "in memory")


@pytest.mark.parametrize("label,memory", [("in-memory", "64M"), ("external", "1K")])
def test_copies_land_independently(tmp_path: Path, label: str, memory: str) -> None:
    """One record at rate 2 among three others: its two copies take each of the 10 pairs of the
    5 places equally often (as in a uniform permutation of the multiset), not neighbouring places."""
    write_records(tmp_path / "one.txt", source_records("one", 1, 200))
    write_records(tmp_path / "rest.txt", source_records("rest", 3, 200))
    out = tmp_path / "out.txt"
    counts: Counter = Counter()  # type: ignore[type-arg]
    for seed in range(RUNS):
        stats = bigshuf.shuffle(
            sources={"one": tmp_path / "one.txt", "rest": tmp_path / "rest.txt"}, rates={"one": 2}, output=out,
            memory=memory, seed=seed, tmp_dir=tmp_path, sync=False,
        )
        got = split_records(out.read_bytes())
        counts[tuple(i for i, r in enumerate(got) if r.startswith(b"one"))] += 1
    assert (stats.passes == 1) == (label == "in-memory")
    assert_uniform(counts, list(combinations(range(5), 2)), label)


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "settings,message",
    [
        (dict(rates={"nope": 2}), "names 'nope', which is not a source"),
        (dict(rates={"code": 11}), "rates= 11 for source 'code' is above the maximum of 10; raise max_rate="),
        (dict(mix={"web": 0.5, "code": 0.3, "wiki": 0.1}), "shares sum to 0.9, not 1"),
        (dict(mix={"web": 0.5, "code": 0.5}), "gives no share to source 'wiki'"),
        (dict(mix={"web": 0.5, "code": 0.3, "wiki": 0.2}, rates={"web": 2}), "cannot be combined"),
        (dict(rates={"web": -1}), "must be at least 0"),
        (dict(total=5), "total= needs mix="),
        (dict(repeat=True), "cannot be combined with repeat=True"),
        (dict(sources=None, rates={"web": 2}), "rates= needs sources={NAME: PATH}"),
        (dict(sources={"a": "x", "a b": "y"}), "invalid source name in sources=: 'a b'"),
    ],
)
def test_refusals(tmp_path: Path, corpus: dict[str, list[bytes]], settings: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        given = {"sources": sources_of(tmp_path), **settings}
        bigshuf.shuffle(tmp_path / "wiki.txt" if given["sources"] is None else (), tmp_path / "out", **given)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "settings,message",
    [
        (dict(rates={"code": 10**400}), "rates= 1e+400 for source 'code' is above the maximum of 10; raise max_rate="),
        (dict(rates={"code": 10**20}, max_rate=10**20), "invalid max_rate= value: '100000000000000000000' (at most 4294967296)"),
        (dict(rates={"code": 2**63 - 1}, max_rate=2**63 - 1), "invalid max_rate= value: '9223372036854775807' (at most 4294967296)"),
        (dict(mix={"web": 10**400, "code": 1, "wiki": 1}), "mix= shares sum to 1e+400, not 1"),
        (dict(mix={"web": 0.5, "code": 0.25, "wiki": 0.25}, total=10**400), "mix= needs rate 1.66667e+397 for source 'web'"),
        (dict(sources=None, split="a=0.3333333333333333,b=0.6666666666666666"), "fractions add up to 0.9999999999999999, not 1"),
        (dict(sources=None, split="a=0.5,b=0.5000000000000001"), "fractions add up to 1.0000000000000001, more than 1"),
        (dict(sources=None, split="a=0.3333333333333333333333,b=0.6666666666666666666666"),
         "fractions add up to 0.9999999999999999999999, not 1"),
    ],
)
def test_huge_or_nearly_one_numbers_are_refused_in_words(
    tmp_path: Path, corpus: dict[str, list[bytes]], settings: dict[str, object], message: str,
) -> None:
    """A rate or total past a float's range was an internal OverflowError, a rate past 2**63 one
    in NumPy; sums just off 1 were said to add up to 1, "not 1"."""
    import re

    given = {"sources": sources_of(tmp_path), **settings}
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(UsageError, match=re.escape(message)):
        bigshuf.shuffle(tmp_path / "wiki.txt" if given["sources"] is None else (), tmp_path / "out{split}", **given)  # type: ignore[arg-type]
    assert sorted(os.listdir(tmp_path)) == before


def test_a_mix_needing_too_high_a_rate_is_refused_unless_allowed(tmp_path: Path, corpus: dict[str, list[bytes]]) -> None:
    shares = {"web": 0.1, "code": 0.1, "wiki": 0.8}
    with pytest.raises(UsageError, match=r"needs rate 12 for source 'wiki', above the maximum of 10; raise max_rate="):
        bigshuf.shuffle(sources=sources_of(tmp_path), mix=shares, total=600, output=tmp_path / "out")
    # Just above it too (a check off by one, > max_rate + 1, passed every test: mutation review).
    with pytest.raises(UsageError, match=r"needs rate 10.6 for source 'wiki', above the maximum of 10; raise max_rate="):
        bigshuf.shuffle(sources=sources_of(tmp_path), mix=shares, total=530, output=tmp_path / "out")
    stats = bigshuf.shuffle(sources=sources_of(tmp_path), mix=shares, total=600, max_rate=12, output=tmp_path / "out")
    assert [s.written for s in stats.sources] == [60, 60, 480]


def test_a_file_in_two_sources_is_refused(tmp_path: Path, corpus: dict[str, list[bytes]]) -> None:
    with pytest.raises(UsageError, match="named in source 'a' and in 'b'"):
        bigshuf.shuffle(sources={"a": tmp_path / "web", "b": str(tmp_path / "web" / "*.txt")}, output=tmp_path / "out")


@pytest.mark.parametrize("how", ["hard link", "symlink", "another spelling"])
def test_one_file_by_two_names_in_two_sources_is_refused(tmp_path: Path, how: str, run_cli) -> None:  # type: ignore[no-untyped-def]
    write_records(tmp_path / "a.txt", [b"a1", b"a2"])
    (tmp_path / "sub").mkdir()
    other = {"hard link": "b.txt", "symlink": "b.txt", "another spelling": "sub/../a.txt"}[how]
    if how == "hard link":
        os.link(tmp_path / "a.txt", tmp_path / "b.txt")
    elif how == "symlink":
        os.symlink("a.txt", tmp_path / "b.txt")
    code, out, err = run_cli(["--source", "a=a.txt", "--source", f"b={other}"], cwd=tmp_path)
    assert (code, out) == (1, b"")
    assert err == f"bigshuf: {other}: named in source 'a' and in 'b'; a file may be in one source, once\n".encode()


@pytest.mark.parametrize("flag,value", [("--rate", "1/2"), ("--mix", "1."), ("--max-rate", ".5")])
def test_numbers_are_spelt_one_way_in_every_option(tmp_path: Path, flag: str, value: str, run_cli) -> None:  # type: ignore[no-untyped-def]
    write_records(tmp_path / "a.txt", [b"a1", b"a2"])
    arg = value if flag == "--max-rate" else f"a={value}"
    code, out, err = run_cli(["--source", "a=a.txt", flag, arg], cwd=tmp_path)
    what = f"{flag} value" if flag == "--max-rate" else f"{flag} value for source 'a'"
    assert (code, out) == (1, b"")
    assert err == f"bigshuf: invalid {what}: '{value}' (a number is digits with digits after any dot, such as 0.5 or 2.5)\n".encode()
    for bad in ("1/2", "1.", ".5", "1e-1", "-1", "0x1", "nan", "1_0"):
        setting = {"--rate": {"rates": {"a": bad}}, "--mix": {"mix": {"a": bad}}, "--max-rate": {"max_rate": bad}}[flag]
        with pytest.raises(UsageError, match=r"\(a number is digits with digits after any dot"):
            bigshuf.shuffle(sources={"a": tmp_path / "a.txt"}, output=tmp_path / "o", **setting)  # type: ignore[arg-type]


def test_a_max_rate_below_1_is_refused_and_needs_sources(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """Below 1 it was not applied to the default rate 1 of a source without --rate: a cap on upsampling
    cannot be below keeping a source whole. Without --source it was ignored."""
    write_records(tmp_path / "a.txt", [b"a%d" % i for i in range(10)])
    code, out, err = run_cli(["--source", "a=a.txt", "--max-rate", "0.5"], cwd=tmp_path)
    assert (code, out) == (1, b"")
    assert err == b"bigshuf: invalid --max-rate value: '0.5' (at least 1: it caps upsampling; sample a source down with --rate NAME=R)\n"
    with pytest.raises(UsageError, match=r"^invalid max_rate= value: '0.99' \(at least 1: it caps upsampling; sample a source down with rates={NAME: R}\)$"):
        bigshuf.shuffle(sources={"a": tmp_path / "a.txt"}, rates={"a": 0.5}, max_rate=0.99, output=tmp_path / "o")
    assert bigshuf.shuffle(sources={"a": tmp_path / "a.txt"}, rates={"a": 0.5}, max_rate=1, output=tmp_path / "o").records == 5
    code, out, err = run_cli(["a.txt", "--max-rate", "5"], cwd=tmp_path)
    assert (code, out, err) == (1, b"", b"bigshuf: --max-rate needs --source NAME=PATH to name the sources it caps\n")


def test_library_rates_may_be_numbers_of_any_python_kind(tmp_path: Path) -> None:
    write_records(tmp_path / "a.txt", [b"a%d" % i for i in range(10)])
    for rate in (0.5, Fraction(1, 2), "0.5", "0.50"):
        assert bigshuf.shuffle(sources={"a": tmp_path / "a.txt"}, rates={"a": rate}, output=tmp_path / "o").records == 5
    assert bigshuf.shuffle(sources={"a": tmp_path / "a.txt"}, rates={"a": 1e-5}, output=tmp_path / "o").records == 0
    for bad in (-0.5, float("inf"), float("nan")):
        with pytest.raises(UsageError, match=r"invalid rates= value for source 'a'"):
            bigshuf.shuffle(sources={"a": tmp_path / "a.txt"}, rates={"a": bad}, output=tmp_path / "o")


def test_an_empty_source_cannot_have_a_share(tmp_path: Path, corpus: dict[str, list[bytes]]) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(InputError, match="source 'none' has no records"):
        bigshuf.shuffle(sources={"web": tmp_path / "web", "none": tmp_path / "empty.txt"}, mix={"web": 0.5, "none": 0.5})


@pytest.mark.parametrize("label,memory,cap", PATHS)
def test_every_rate_zero_gives_an_empty_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: dict[str, list[bytes]], label: str, memory: str, cap: int | None
) -> None:
    """Regression: with every rate 0 the pieces were divided by 0 copies (ZeroDivisionError) off the in-memory path."""
    stats, got = run(tmp_path, monkeypatch, memory, cap, rates={"web": 0, "code": 0, "wiki": 0}, seed=3)
    assert got == [] and stats.records == 0
    assert [s.written for s in stats.sources] == [0, 0, 0] and [s.read for s in stats.sources] == [300, 70, 40]


def test_records_not_as_counted_are_an_error() -> None:
    """A file that changed between the counting pass and pass 1 fails the run before any output."""
    mixer = Mixer(["a"], [0], [Fraction(1, 2)], [5])
    mixer.pick(1, streams.selection(streams.IN_MEMORY), [(0, 3)])
    with pytest.raises(InputError, match=r"source 'a': 5 records counted before the shuffle, 3 read by it"):
        mixer.check_complete()
    with pytest.raises(InputError, match="more records than were counted"):
        mixer.pick(1, streams.selection(streams.IN_MEMORY), [(0, 4)])


def test_cli_sources_rates_and_refusals(tmp_path: Path, corpus: dict[str, list[bytes]], run_cli) -> None:  # type: ignore[no-untyped-def]
    base = ["--source", "web=web-1.txt", "--source", "web=web", "--source", "code=cod*.txt", "--seed", "1"]
    code, out, err = run_cli([*base, "--rate", "web=0.5,code=2"], cwd=tmp_path)
    assert (code, err) == (0, b"")
    assert Counter(r[:3] for r in split_records(out)) == {b"web": 150, b"cod": 140}
    code, out, err = run_cli([*base, "--mix", "web=0.75,code=0.25", "--total", "40"], cwd=tmp_path)
    assert code == 0 and Counter(r[:3] for r in split_records(out)) == {b"web": 30, b"cod": 10}
    code, out, err = run_cli([*base, "--mix", "web=0.25,code=0.75", "--total", "61K", "--by", "bytes", "--max-rate", "15"], cwd=tmp_path)
    # 61 KiB: web 256 of its 300 records, code 768 (rate 10.97: ten copies and 68 more).
    assert code == 0 and Counter(r[:3] for r in split_records(out)) == {b"web": 256, b"cod": 768}
    for args, message in [
        ([*base, "wiki.txt"], b"bigshuf: extra operand 'wiki.txt': --source names every input, so put FILEs in a source\n"),
        ([*base, "--rate", "code=12"], b"bigshuf: --rate 12 for source 'code' is above the maximum of 10; raise --max-rate to allow it\n"),
        ([*base, "--source", "c2=code.txt"], b"bigshuf: code.txt: named in source 'code' and in 'c2'"),
        (["--rate", "web=2", "wiki.txt"], b"bigshuf: --rate needs --source NAME=PATH to name the sources it weighs\n"),
        (["--source", "in=-", "--rate", "in=0.5"], b"bigshuf: source 'in' reads standard input, but its records must be counted"),
        (["--source", "w=nothing-*.txt"], b"bigshuf: source 'w': no file matches 'nothing-*.txt'\n"),
        ([*base, "-i", "1-5"], b"bigshuf: --source cannot be combined with -i: name every input in a source (NAME=PATH)\n"),
        ([*base, "-e", "x"], b"bigshuf: --source cannot be combined with -e: name every input in a source (NAME=PATH)\n"),
    ]:
        code, out, err = run_cli(args, cwd=tmp_path)
        assert (code, out) == (1, b""), args
        assert err.startswith(message) and b"Traceback" not in err, (args, err)
        assert err.count(b"\n") == (2 if b"extra operand" in err else 1), err  # one line (a syntax error's second points to --help)


def test_a_source_that_is_a_pipe_is_refused_when_it_must_be_counted(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    # A FIFO read once to count and again to shuffle hung (the second open waited for a writer);
    # /dev/stdin on a pipe read 20 records to count and then none. Both are refused before reading.
    (tmp_path / "a.txt").write_bytes(b"".join(b"a%d\n" % i for i in range(10)))
    os.mkfifo(tmp_path / "fifo")
    for name in ("fifo", "/dev/stdin"):
        code, out, err = run_cli(["--source", "a=a.txt", "--source", f"b={name}", "--rate", "a=1,b=0.5"], cwd=tmp_path)
        assert (code, out) == (1, b"")
        assert err.startswith(f"bigshuf: source 'b': {name} is not a regular file, but its records must be counted".encode()), err
        assert err.count(b"\n") == 1
    # A whole rate needs no count: a pipe's records are read once, as any input's.
    code, out, err = run_cli(["--source", "a=a.txt", "--source", "b=/dev/stdin", "--rate", "a=1,b=2", "--seed", "1"],
                             cwd=tmp_path, input=b"b0\nb1\n")
    assert (code, err) == (0, b"")
    assert sorted(split_records(out)) == sorted([b"a%d" % i for i in range(10)] + [b"b0", b"b1"] * 2)


def test_the_librarys_mix_messages_name_its_arguments(tmp_path: Path) -> None:
    """Messages a library caller met spelt command-line syntax: ``--stratify``, ``NAME=PATH``, and a
    ``resume`` refusal naming ``repeat=True`` that was never passed (found by attack)."""
    a = write_records(tmp_path / "a.txt", [b"%d" % i for i in range(1000)])
    b = write_records(tmp_path / "b.txt", [b"b%d" % i for i in range(10)])
    with pytest.raises(InputError) as caught:
        bigshuf.shuffle(sources={"a": a, "b": b}, output=tmp_path / "{split}.txt", rates={"a": 1_000_000},
                        max_rate=10_000_000, split={"train": 0.5, "valid": "rest"}, stratify=True, seed=1)
    assert str(caught.value) == "source 'a' has 1000000000 records in the mix: stratify=True supports fewer than 10^9; split the source"
    with pytest.raises(UsageError) as refused:
        bigshuf.shuffle(sources={"a": a}, rates={"wbe": 2}, output=tmp_path / "o.txt")
    assert str(refused.value) == "rates= names 'wbe', which is not a source (sources={NAME: PATH})"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_globs_match_at_any_depth_for_operands_and_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli) -> None:  # type: ignore[no-untyped-def]
    """Found by new users: a quoted glob operand was a missing file on the local engine (the Dask
    engine expanded it), and ``**`` in a ``--source`` glob matched one level only (Hugging Face
    ``data_files``, bash's globstar and fsspec match any depth). Both now match every file, sorted;
    a file named as the pattern itself is still read as itself, and a glob matching nothing is refused."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gl" / "x" / "y").mkdir(parents=True)
    for name in ("gl/t.txt", "gl/x/m.txt", "gl/x/y/d.txt", "gl/a*b.txt"):
        write_records(tmp_path / name, [name.encode()])
    for args in (["gl/**/*.txt"], ["--source", "a=gl/**/*.txt"]):
        code, out, err = run_cli([*args, "--seed", "1"])
        assert (code, err) == (0, b"") and sorted(out.split()) == [b"gl/a*b.txt", b"gl/t.txt", b"gl/x/m.txt", b"gl/x/y/d.txt"], (args, out)
    assert run_cli(["gl/a*b.txt"])[:2] == (0, b"gl/a*b.txt\n")  # the file of that very name, not the pattern's matches
    assert run_cli(["gl/x/*.txt", "--seed", "1"])[:2] == (0, b"gl/x/m.txt\n")
    code, out, err = run_cli(["gl/none-*.txt"])
    assert (code, out, err) == (1, b"", b"bigshuf: 'gl/none-*.txt': No such file or directory\n")


def test_a_glob_matching_directories_and_their_files_reads_each_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli) -> None:  # type: ignore[no-untyped-def]
    """Found by review: ``'d/**'`` matches ``d/``, ``d/sub`` and the files under them, and each
    directory stood for its files again: every record read twice or three times, exit 0. A glob's
    matches are now each file once; an empty directory it matches adds nothing."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "empty").mkdir()
    write_records(tmp_path / "d" / "a.txt", [b"a1", b"a2"])
    write_records(tmp_path / "d" / "sub" / "b.txt", [b"b1"])
    for args in (["d/**"], ["d/**/*"], ["d/*"], ["--source", "x=d/**"]):
        code, out, err = run_cli([*args, "--seed", "1"])
        assert (code, err) == (0, b"") and sorted(out.split()) == [b"a1", b"a2", b"b1"], (args, out, err)


def test_names_a_list_gives_and_paths_are_not_patterns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli) -> None:  # type: ignore[no-untyped-def]
    """Found by review: a name ``--files-from`` lists (``x[1].txt``, gone) was read as a pattern and
    read ``x1.txt``, where GNU shuf says it is missing; the names a list gives are names, as is a
    ``pathlib.Path`` given to the library (a ``str`` may be a pattern)."""
    monkeypatch.chdir(tmp_path)
    write_records(tmp_path / "x1.txt", [b"x1"])
    (tmp_path / "list").write_bytes(b"x[1].txt\n")
    assert run_cli(["--files-from", "list"]) == (1, b"", b"bigshuf: 'x[1].txt': No such file or directory\n")
    (tmp_path / "list0").write_bytes(b"x[1].txt\0")
    assert run_cli(["--files0-from", "list0"]) == (1, b"", b"bigshuf: 'x[1].txt': No such file or directory\n")
    with pytest.raises(InputError, match="No such file or directory"):
        bigshuf.shuffle(Path("x[1].txt"), tmp_path / "o.txt")
    bigshuf.shuffle("x[1].txt", tmp_path / "o.txt")
    assert (tmp_path / "o.txt").read_bytes() == b"x1\n"
