"""Real-corpus options: many inputs and file lists, compressed input and output, shards, headers,
multi-line records and compressed temporary buckets; every path still yields a permutation."""

from __future__ import annotations

import gzip
import os
import resource
import shutil
import subprocess
import sys
from collections import Counter
from itertools import permutations
from pathlib import Path

import pytest

import bigshuf
from bigshuf.core import plan
from bigshuf.storage.sources import GeneratedSource

from helpers import assert_permutation, compress, decompress, make_records, split_records, temp_leftovers, write_records
from test_uniformity import assert_uniform, records_of

MEMORY = ["64M", "16K"]  # in memory, external


SUFFIX = {"gzip": ".gz", "zstd": ".zst", "bzip2": ".bz2", "xz": ".xz"}


@pytest.mark.parametrize("codec", list(SUFFIX))
@pytest.mark.parametrize("memory", MEMORY)
def test_compressed_inputs_are_detected_by_content(tmp_path: Path, codec: str, memory: str) -> None:
    records = make_records(2000, seed=1)
    data = b"\n".join(records) + b"\n"
    # Two members / frames back to back, under a name that hides the codec.
    half = data.index(b"\n", len(data) // 2) + 1
    src = tmp_path / "corpus.txt"
    src.write_bytes(compress(codec, data[:half]) + compress(codec, data[half:]))
    out = tmp_path / "out.txt"
    bigshuf.shuffle(src, out, memory=memory, seed=1, tmp_dir=tmp_path)
    assert_permutation(out.read_bytes(), records)


@pytest.mark.parametrize("codec", list(SUFFIX))
def test_output_compressed_by_suffix_or_option(tmp_path: Path, codec: str) -> None:
    records = make_records(1000, seed=2)
    src = write_records(tmp_path / "in.txt", records)
    out = tmp_path / f"out.txt{SUFFIX[codec]}"
    bigshuf.shuffle(src, out, memory="16K", seed=1, tmp_dir=tmp_path)
    assert_permutation(decompress(codec, out.read_bytes()), records)
    plain = tmp_path / "named.txt"
    bigshuf.shuffle(src, plain, seed=1, compress=codec)
    assert_permutation(decompress(codec, plain.read_bytes()), records)
    bigshuf.shuffle(src, out, seed=1, compress="none")
    assert_permutation(out.read_bytes(), records)


@pytest.mark.parametrize("codec", list(SUFFIX))
@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_damaged_compressed_input_is_an_error_naming_the_file(tmp_path: Path, codec: str, damage: str) -> None:
    data = compress(codec, b"\n".join(make_records(5000, seed=3)) + b"\n")
    if damage == "truncated":
        data = data[: len(data) * 2 // 3]
    else:
        mid = len(data) // 2
        data = data[:mid] + bytes(b ^ 0x5A for b in data[mid : mid + 64]) + data[mid + 64 :]
    src = tmp_path / "bad.dat"
    src.write_bytes(data)
    out = tmp_path / "out"
    t = tmp_path / "t"
    t.mkdir()
    with pytest.raises(bigshuf.InputError, match="bad.dat"):
        bigshuf.shuffle(src, out, memory="16K", tmp_dir=t)
    assert not out.exists()
    assert temp_leftovers(t) == []


@pytest.mark.parametrize("memory", MEMORY)
@pytest.mark.parametrize("shards,count", [(4, 1000), (3, 1001), (7, 5), (1, 10), (5, 0)])
def test_shards_split_one_permutation_evenly(tmp_path: Path, memory: str, shards: int, count: int) -> None:
    records = make_records(count, seed=4)
    src = write_records(tmp_path / "in.txt", records)
    outdir = tmp_path / "out"
    stats = bigshuf.shuffle(src, str(outdir) + "/", memory=memory, seed=2, shards=shards, tmp_dir=tmp_path)
    names = sorted(os.listdir(outdir))
    assert names == [f"part-{i:05d}.txt" for i in range(shards)]  # named after the input's kind
    parts = [split_records((outdir / n).read_bytes()) for n in names]
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert_permutation(b"".join((outdir / n).read_bytes() for n in names), records)
    assert stats.records == count


def test_shards_follow_a_pattern_and_compress(tmp_path: Path) -> None:
    records = make_records(3000, seed=5)
    src = write_records(tmp_path / "in.txt", records)
    pattern = str(tmp_path / "part-{:03d}.jsonl.zst")
    bigshuf.shuffle(src, pattern, memory="16K", seed=3, shards=3, head_count=2000, tmp_dir=tmp_path)
    outs = [tmp_path / f"part-{i:03d}.jsonl.zst" for i in range(3)]
    got = [split_records(decompress("zstd", p.read_bytes())) for p in outs]
    assert [len(g) for g in got] == [666, 667, 667]
    merged = [r for g in got for r in g]
    assert len(set(merged)) == 2000 and set(merged) <= set(records)


def test_shards_without_a_pattern_is_an_error(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in.txt", make_records(10, seed=6))
    with pytest.raises(bigshuf.UsageError, match="3 shards need output= to be a directory or a pattern"):
        bigshuf.shuffle(src, tmp_path / "out.txt", shards=3)
    with pytest.raises(bigshuf.UsageError, match="shards= needs output= naming a directory or a pattern"):
        bigshuf.shuffle(src, None, shards=3)
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]


def test_failed_sharded_run_leaves_no_shard(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in.txt", [b"short", b"x" * 100_000])
    outdir = tmp_path / "out"
    outdir.mkdir()
    with pytest.raises(bigshuf.InputError, match="memory="):
        bigshuf.shuffle(src, str(outdir), memory="16K", shards=4, tmp_dir=tmp_path)
    assert os.listdir(outdir) == []


def test_shards_concatenated_are_uniform(tmp_path: Path) -> None:
    # 4 records in 2 shards through the external path: all 24 orders equally likely.
    # False-failure odds per run of the fixed seed list: ALPHA = 1e-4 (see test_uniformity).
    records = records_of(4, 200)
    src = write_records(tmp_path / "in", records)
    outdir = tmp_path / "out"
    counts: Counter = Counter()
    for seed in range(24 * 40):
        bigshuf.shuffle(src, str(outdir) + "/", memory="1K", seed=seed, shards=2, tmp_dir=tmp_path, sync=False)
        data = (outdir / "part-00000").read_bytes() + (outdir / "part-00001").read_bytes()
        counts[tuple(records.index(r) for r in split_records(data))] += 1
    assert_uniform(counts, list(permutations(range(4))), "shards")


@pytest.mark.parametrize("memory", MEMORY)
def test_header_stays_on_top_and_repeats_are_dropped(tmp_path: Path, memory: str) -> None:
    a = make_records(800, seed=7)
    b = make_records(700, seed=8)
    pa_ = write_records(tmp_path / "a.csv", [b"id,text"] + a)
    pb = write_records(tmp_path / "b.csv", [b"id,text"] + b)
    out = tmp_path / "out.csv"
    bigshuf.shuffle([pa_, pb], out, memory=memory, seed=4, header=1, tmp_dir=tmp_path)
    got = split_records(out.read_bytes())
    assert got[0] == b"id,text"
    assert_permutation(b"\n".join(got[1:]) + b"\n", a + b)
    outdir = tmp_path / "shards"
    bigshuf.shuffle([pa_, pb], str(outdir) + "/", memory=memory, seed=4, header=1, shards=3, tmp_dir=tmp_path)
    bodies = []
    for name in sorted(os.listdir(outdir)):
        got = split_records((outdir / name).read_bytes())
        assert got[0] == b"id,text"
        bodies += got[1:]
    assert Counter(bodies) == Counter(a + b)


@pytest.mark.parametrize("memory", ["64M", "16K", "2K"])
def test_lines_per_record_keeps_groups_together(tmp_path: Path, memory: str) -> None:
    reads = [b"@r%d\nACGT%d\n+\nIIII%d" % (i, i, i) for i in range(600)]
    src = write_records(tmp_path / "reads.fastq", reads)
    out = tmp_path / "out.fastq"
    bigshuf.shuffle(src, out, memory=memory, seed=5, lines_per_record=4, tmp_dir=tmp_path)
    lines = split_records(out.read_bytes())
    groups = [b"\n".join(lines[i : i + 4]) for i in range(0, len(lines), 4)]
    assert Counter(groups) == Counter(reads)
    assert groups != reads


@pytest.mark.parametrize("memory", ["64M", "2K"])
def test_a_header_counts_lines_not_records_of_several_lines(tmp_path: Path, memory: str) -> None:
    """``--header=N`` keeps N lines, as its help says, whatever ``--lines-per-record``: a one-line
    title above two-line records was taken with the first record's first line (2 lines), and
    every later pair was cut across two records."""
    pairs = [b"name %d\nvalue %d" % (i, i) for i in range(300)]
    a = write_records(tmp_path / "a.txt", [b"# title"] + pairs[:200])
    b = write_records(tmp_path / "b.txt", [b"# title"] + pairs[200:])
    out = tmp_path / "out.txt"
    bigshuf.shuffle([a, b], out, memory=memory, seed=3, header=1, lines_per_record=2, tmp_dir=tmp_path)
    lines = split_records(out.read_bytes())
    assert lines[0] == b"# title"
    groups = [b"\n".join(lines[i : i + 2]) for i in range(1, len(lines), 2)]
    assert Counter(groups) == Counter(pairs) and groups != pairs
    before, after = bigshuf.check_permutation([a, b], out, header=1, lines_per_record=2)
    assert before == after


@pytest.mark.parametrize("unique", [False, True])
def test_a_pipe_gives_a_seed_the_same_output_whatever_the_free_temporary_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique: bool
) -> None:
    """A pipe's buckets (its size unknown) were as many as the free space under -T might need,
    so a seeded output changed with the disk it ran on (76 GiB free and a 200 MB tmpfs gave two
    outputs of one pipe at -S 8M). They are a fixed count now; so are ``--unique``'s hash
    buckets, whose count the output followed too (the unique records reach pass 1 bucket by bucket)."""
    records = make_records(4000 if unique else 8000, seed=12 if unique else 11)
    data = b"".join(r + b"\n" for r in records + (records[:1000] if unique else []))

    def run(name: str) -> bytes:
        piped = GeneratedSource("piped", lambda: (data[i : i + 4096] for i in range(0, len(data), 4096)))
        bigshuf.shuffle([piped], tmp_path / name, memory="128K", seed=6, unique=unique, tmp_dir=tmp_path, sync=False)
        return (tmp_path / name).read_bytes()

    roomy = run("roomy")
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=3 * len(data)))
    assert run("tight") == roomy
    assert_permutation(roomy, records)


def test_a_pipe_gives_a_seed_the_same_output_whatever_the_soft_limit_of_open_files(tmp_path: Path) -> None:
    """Many systems set ``ulimit -n`` to 1024 (soft) under a far higher hard limit; less the
    descriptors kept aside, that left a pipe 960 buckets where a roomier machine gave it 1024, and
    one seed two outputs. bigshuf raises its soft limit towards the hard one now."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1024 + plan.DESCRIPTOR_RESERVE:
        pytest.skip(f"the hard limit of open files ({hard}) is below what 1024 buckets need")
    records = make_records(20000, seed=13)
    data = b"".join(r + b"\n" for r in records)

    def run(soft: int) -> bytes:
        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

        done = subprocess.run(
            [sys.executable, "-m", "bigshuf", "-S", "128K", "--seed", "6", "-T", str(tmp_path)],
            input=data, capture_output=True, timeout=120, preexec_fn=limit,
        )
        assert done.returncode == 0 and done.stderr == b"", done.stderr
        return done.stdout

    usual = run(1024)
    assert run(8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)) == usual
    assert_permutation(usual, records)


def test_a_library_call_leaves_the_limit_on_open_files_as_it_found_it(tmp_path: Path) -> None:
    """The run raises its soft limit for itself; a library caller's process got it raised for good
    (found by attack), even by ``plan_shuffle``, which promises to change nothing."""
    script = f"""
import resource, bigshuf
seen = []
for call in (lambda: bigshuf.plan_shuffle({str(tmp_path / "in.txt")!r}, {str(tmp_path / "o.txt")!r}, memory="16K"),
             lambda: bigshuf.shuffle({str(tmp_path / "in.txt")!r}, {str(tmp_path / "o.txt")!r}, memory="16K", seed=1)):
    call()
    seen.append(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
print(seen)
"""
    write_records(tmp_path / "in.txt", make_records(5000, seed=2))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip("no room above a soft limit of 1024 to raise it to")
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard)),
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"[1024, 1024]\n", b"")


def _limit_script(tmp_path: Path, body: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``body`` (after ``import resource, signal, bigshuf`` and ``IN``/``OUT`` paths) in a Python
    whose soft limit on open files is 1024, under a hard one above it."""
    write_records(tmp_path / "in.txt", make_records(2000, seed=2))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip("no room above a soft limit of 1024 to raise it to")
    head = (
        "import resource, signal, bigshuf\n"
        f"IN, OUT = {str(tmp_path / 'in.txt')!r}, {str(tmp_path / 'o.txt')!r}\n"
    )
    return subprocess.run(
        [sys.executable, "-c", head + body], capture_output=True, timeout=60,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard)),
    )


def test_a_limit_the_caller_sets_during_a_call_is_kept(tmp_path: Path) -> None:
    """The call put back the limit it found on return, undoing the caller's own change made while it
    ran (here from the caller's own source's ``open``; found by review)."""
    done = _limit_script(tmp_path, """
class Source:
    name = IN
    def size(self): return None
    def open(self):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (2000, hard))
        return open(IN, "rb")
bigshuf.shuffle([Source()], OUT, memory="16K", seed=1)
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
""")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"2000\n", b"")


def test_a_handler_calling_bigshuf_while_the_limit_is_put_back_does_not_deadlock(tmp_path: Path) -> None:
    """The count of calls under way is kept under a lock; a signal handler that calls bigshuf, run
    while the main thread held it, waited for it for ever (found by review). The signal is raised
    from inside that lock here, as the limits are read."""
    done = _limit_script(tmp_path, """
import bigshuf.core.plan as plan
read, seen = plan._file_limits, []
def reading():
    if not seen:
        seen.append(1)
        signal.raise_signal(signal.SIGUSR1)
    return read()
plan._file_limits = reading
signal.signal(signal.SIGUSR1, lambda *_: seen.append(bigshuf.plan_shuffle(IN, OUT, memory="16K").records))
bigshuf.shuffle(IN, OUT, memory="16K", seed=1)
print(len(seen), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
""")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"2 1024\n", b"")


def test_a_handler_raising_as_a_call_ends_leaves_the_limit_put_back(tmp_path: Path) -> None:
    """A caller's timeout handler raising as the call counted itself out left the raised limit in
    place for good: the next call took it for the caller's (found by review)."""
    done = _limit_script(tmp_path, """
import bigshuf.core.plan as plan
import os
read, raised = plan._file_limits, []
def reading():
    if os.path.exists(OUT) and not raised:  # as the call ends, its output made
        raised.append(1)
        signal.raise_signal(signal.SIGALRM)
    return read()
plan._file_limits = reading
def timeout(*_):
    raise TimeoutError("late")
signal.signal(signal.SIGALRM, timeout)
try:
    bigshuf.shuffle(IN, OUT, memory="16K", seed=1)
except TimeoutError:
    print("timed out")
bigshuf.shuffle(IN, OUT, memory="16K", seed=1)
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
""")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"timed out\n1024\n", b"")


def test_lines_per_record_with_a_partial_group_is_an_error(tmp_path: Path) -> None:
    src = write_records(tmp_path / "reads.fastq", [b"@r1", b"AC", b"+", b"II", b"@r2", b"GT"])
    with pytest.raises(bigshuf.InputError, match="reads.fastq: ends with 2 lines left over"):
        bigshuf.shuffle(src, tmp_path / "out", lines_per_record=4)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("memory", ["16K", "2K"])
def test_compressed_temp_buckets(tmp_path: Path, memory: str) -> None:
    records = make_records(3000, seed=9)
    src = write_records(tmp_path / "in.txt", records)
    out = tmp_path / "out"
    t = tmp_path / "t"
    t.mkdir()
    stats = bigshuf.shuffle(src, out, memory=memory, seed=6, compress_temp=True, tmp_dir=t)
    assert stats.passes >= 2
    assert_permutation(out.read_bytes(), records)
    plain = tmp_path / "plain"
    bigshuf.shuffle(src, plain, memory=memory, seed=6, tmp_dir=t)
    assert plain.read_bytes() == out.read_bytes()  # same seed, same order: compression is invisible
    assert temp_leftovers(t) == []


def test_many_inputs(tmp_path: Path) -> None:
    shards = []
    everything: list[bytes] = []
    for i in range(60):
        records = make_records(30, seed=100 + i)
        everything += records
        data = b"\n".join(records) + b"\n"
        path = tmp_path / (f"shard-{i:03d}.jsonl" + (".gz" if i % 3 == 0 else ""))
        path.write_bytes(gzip.compress(data) if i % 3 == 0 else data)
        shards.append(path)
    out = tmp_path / "out"
    bigshuf.shuffle(shards, out, memory="16K", seed=7, tmp_dir=tmp_path)
    assert_permutation(out.read_bytes(), everything)


@pytest.mark.parametrize(
    "option", ["gzip-input", "header", "lines-per-record", "compress-temp", "zero-terminated", "two inputs", "shard-records"]
)
def test_options_keep_the_shuffle_uniform(tmp_path: Path, option: str) -> None:
    # 4 records through the external path (1 KiB limit): all 24 orders equally likely.
    # False-failure odds per run of the fixed seed list: ALPHA = 1e-4 (see test_uniformity).
    records = records_of(4, 200)
    kwargs: dict = {"memory": "1K", "tmp_dir": tmp_path}
    sep = b"\0" if option == "zero-terminated" else b"\n"
    if option == "lines-per-record":
        records = [r[:100] + b"\n" + r[100:] for r in records]
        kwargs["lines_per_record"] = 2
    if option == "zero-terminated":
        kwargs["zero_terminated"] = True
    data = sep.join(records) + sep
    if option == "header":
        data = b"a header line\n" + data
        kwargs["header"] = 1
    if option == "gzip-input":
        data = compress("gzip", data)
    if option == "compress-temp":
        kwargs["compress_temp"] = True
    src: Path | list[Path] = tmp_path / "in"
    if option == "two inputs":  # the first record in one file, the rest in another
        src = [tmp_path / "in-1", tmp_path / "in-2"]
        src[0].write_bytes(records[0] + sep)
        src[1].write_bytes(data[len(records[0]) + 1 :])
    else:
        src.write_bytes(data)
    out = tmp_path / "out"
    target = f"{tmp_path}/shards/" if option == "shard-records" else out
    if option == "shard-records":
        kwargs["shard_records"] = 3  # a shard of 3, then one of 1
    counts: Counter = Counter()
    for seed in range(24 * 25):  # 25 runs an order expected: the suite's time limit allows no more
        stats = bigshuf.shuffle(src, target, seed=seed, sync=False, **kwargs)
        assert stats.passes >= 2
        if option == "shard-records":
            shards = sorted((tmp_path / "shards").iterdir())
            assert len(shards) == 2
            got = b"".join(p.read_bytes() for p in shards)
        else:
            got = out.read_bytes()
        if option == "header":
            assert got.startswith(b"a header line\n")
            got = got[len(b"a header line\n") :]
        order = []
        for r in records:
            order.append(got.index(r + sep) // len(r + sep))
        counts[tuple(order)] += 1
    assert_uniform(counts, list(permutations(range(4))), option)
