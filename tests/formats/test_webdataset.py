"""WebDataset tar shards: samples shuffled exactly and written back as tars, member for member."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from collections import Counter
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bigshuf
from bigshuf.core import plan
from bigshuf.errors import InputError, UsageError
from helpers import Member, compress, decompress, run_peak, tar_bytes, temp_leftovers
from test_memory import SLACK
from test_uniformity import assert_uniform



def make_tar(path: Path, samples: list[list[Member]], fmt: int = tarfile.GNU_FORMAT, extra: tuple[tarfile.TarInfo, ...] = ()) -> Path:
    """Write ``samples`` (lists of members) as one tar, with ``extra`` non-regular members first."""
    path.write_bytes(tar_bytes(samples, fmt, extra))
    return path


def make_samples(n: int, seed: int, *, size: int = 2000, prefix: str = "s", members: tuple[str, ...] = ("jpg", "json")) -> list[list[Member]]:
    """``n`` samples of random members (up to ``size`` bytes each) with varied metadata."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        sample = []
        for ext in members:
            data = rng.integers(0, 256, int(rng.integers(0, size)), dtype=np.uint8).tobytes()
            sample.append((
                f"{prefix}/{seed:02d}{i:05d}.{ext}", int(rng.choice([0o600, 0o644, 0o755])), 1_600_000_000 + int(rng.integers(0, 10**6)),
                int(rng.integers(0, 2000)), int(rng.integers(0, 2000)), f"user{i % 3}", "group", data,
            ))
        out.append(sample)
    return out


def read_samples(data: bytes) -> list[tuple[Member, ...]]:
    """A tar's members as tarfile reads them, grouped into samples by WebDataset's key."""
    samples: list[list[Member]] = []
    last = None
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for info in tar:
            assert info.isreg(), info.name
            f = tar.extractfile(info)
            assert f is not None
            member = (info.name, info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname, f.read())
            base = info.name.rsplit("/", 1)
            key = info.name[: len(info.name) - len(base[-1]) + base[-1].index(".")]
            if key != last:
                samples.append([])
                last = key
            samples[-1].append(member)
    return [tuple(s) for s in samples]


def as_set(samples: list[list[Member]]) -> Counter[tuple[Member, ...]]:
    """Samples as a multiset, for permutation checks."""
    return Counter(tuple(s) for s in samples)


def shards(tmp_path: Path, count: int = 3, per: int = 40, **kw: object) -> tuple[list[Path], list[list[Member]]]:
    """``count`` tar shards of ``per`` samples each, and all their samples in order."""
    paths, every = [], []
    for s in range(count):
        samples = make_samples(per, s, **kw)  # type: ignore[arg-type]
        paths.append(make_tar(tmp_path / f"in-{s:02d}.tar", samples, tarfile.PAX_FORMAT if s % 2 else tarfile.GNU_FORMAT))
        every += samples
    return paths, every


def run(args: list[str | Path], cwd: Path) -> tuple[int, bytes, bytes]:
    """Exit status, stdout and stderr of ``python -m bigshuf ARGS``."""
    proc = subprocess.run([sys.executable, "-m", "bigshuf", *map(str, args)], capture_output=True, timeout=60, cwd=cwd)
    return proc.returncode, proc.stdout, proc.stderr


# (label, memory, bucket cap, passes): the whole input (~480 KB) in memory; in buckets of a
# 64 KiB limit; and, with two buckets a level, scattered again until they fit.
PATHS = [
    ("in-memory", "64M", None, {1}), ("external", "64K", None, {2}), ("external, compressed buckets", "64K", None, {2}),
    ("recursive", "64K", 2, set(range(3, 12))), ("recursive, compressed buckets", "64K", 2, set(range(3, 12))),
]


@pytest.mark.parametrize("label,memory,cap,passes", PATHS)
def test_round_trip_is_a_permutation_of_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, memory: str, cap: int | None, passes: set[int]
) -> None:
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    paths, every = shards(tmp_path)
    (tmp_path / "t").mkdir()
    out = tmp_path / "out.tar"
    compress_temp = "compressed" in label
    stats = bigshuf.shuffle(paths, out, memory=memory, seed=7, tmp_dir=tmp_path / "t", sync=False, verify=True, compress_temp=compress_temp)
    got = read_samples(out.read_bytes())
    assert stats.passes in passes, (label, stats.passes)
    assert stats.records == len(got) == len(every) == 120
    assert as_set(got) == as_set(every)  # names, modes, mtimes, owners and bytes, each sample's members in order
    assert got != [tuple(s) for s in every]
    assert temp_leftovers(tmp_path / "t") == []
    # The same seed gives the same bytes.
    again = tmp_path / "again.tar"
    bigshuf.shuffle(paths, again, memory=memory, seed=7, tmp_dir=tmp_path / "t", sync=False)
    assert again.read_bytes() == out.read_bytes()  # compressed buckets or not


@pytest.mark.parametrize(
    "label,memory,cap", [("in-memory", "64M", None), ("external", "4K", None), ("external, buckets of two", "6K", 2), ("recursive", "4K", 2)]
)
def test_every_order_of_samples_equally_likely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, memory: str, cap: int | None
) -> None:
    # Three one-member samples of 1536 bytes of tar: 4 KiB holds 3 KiB of records, so they go to buckets.
    # At 4K pass 2 only ever permutes buckets of one sample; at 6K in 2 buckets, one holds two or three.
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    samples = [[(f"{i}.bin", 0o644, 0, 0, 0, "", "", bytes([i]) * 1000)] for i in range(3)]
    src = make_tar(tmp_path / "in.tar", samples)
    out = tmp_path / "out.tar"
    counts: Counter[tuple[int, ...]] = Counter()
    passes: Counter[int] = Counter()
    for seed in range(6 * 25):
        stats = bigshuf.shuffle(src, out, memory=memory, seed=seed, tmp_dir=tmp_path, sync=False, threads=2)
        counts[tuple(s[0][7][0] for s in read_samples(out.read_bytes()))] += 1
        passes[stats.passes] += 1
    assert_uniform(counts, list(permutations(range(3))), label)
    assert (set(passes) == {1}) if label == "in-memory" else (min(passes) >= 2)
    if label == "recursive":
        assert max(passes) > 2



def _three_samples(tmp_path: Path) -> Path:
    """A tar of three one-member samples of 1536 bytes of tar each. At -S 6K they do not fit in memory,
    a bucket of two does (at 4K none does: pass 2 would permute only buckets of one sample)."""
    return make_tar(tmp_path / "in.tar", [[(f"{i}.bin", 0o644, 0, 0, 0, "", "", bytes([i]) * 1000)] for i in range(3)])


@pytest.mark.parametrize("label,memory", [("in-memory", "64M"), ("external", "6K")])
def test_every_ordered_pick_of_samples_equally_likely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, memory: str) -> None:
    """``-n 2`` of three samples: each of the 6 ordered pairs equally often (20 runs a pair expected).
    Externally in 2 buckets: the count is often reached within a bucket of 2 (one of 3 is scattered again)."""
    monkeypatch.setattr(plan, "MAX_BUCKETS", 2)
    src = _three_samples(tmp_path)
    out = tmp_path / "out.tar"
    counts: Counter[tuple[int, ...]] = Counter()
    passes: Counter[int] = Counter()
    for seed in range(6 * 20):
        stats = bigshuf.shuffle(src, out, memory=memory, seed=seed, head_count=2, tmp_dir=tmp_path, sync=False, threads=2)
        got = read_samples(out.read_bytes())
        assert len(got) == len(set(got)) == 2 and set(got) <= set(read_samples(src.read_bytes()))
        counts[tuple(s[0][7][0] for s in got)] += 1
        passes[stats.passes] += 1
    assert_uniform(counts, list(permutations(range(3), 2)), f"-n 2, {label}")
    assert (set(passes) == {1}) if label == "in-memory" else (min(passes) >= 2), passes


def test_compressed_temp_buckets_draw_every_order_equally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--compress-temp`` on the external path: the sample buckets are written compressed (fewer bytes
    on disk than the samples' bytes) and every order of three samples is as likely (20 runs an order;
    2 buckets a level, so that pass 2 permutes buckets of 2)."""
    from bigshuf.formats.tar_buckets import SampleBuckets

    monkeypatch.setattr(plan, "MAX_BUCKETS", 2)

    made: list[SampleBuckets] = []
    init = SampleBuckets.__init__

    def kept(self: SampleBuckets, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(SampleBuckets, "__init__", kept)
    src = _three_samples(tmp_path)
    out = tmp_path / "out.tar"
    counts: Counter[tuple[int, ...]] = Counter()
    passes: Counter[int] = Counter()
    for seed in range(6 * 20):
        stats = bigshuf.shuffle(src, out, memory="6K", seed=seed, tmp_dir=tmp_path, sync=False, threads=2, compress_temp=True)
        got = read_samples(out.read_bytes())
        assert as_set([list(s) for s in got]) == as_set([list(s) for s in read_samples(src.read_bytes())])
        counts[tuple(s[0][7][0] for s in got)] += 1
        passes[stats.passes] += 1
    filled = [b.data for b in made if b.data.sizes.any()]  # the levels' buckets, as pass 1 left them
    assert filled and all(d.compress and sum(d.disk) < int(d.sizes.sum()) for d in filled)
    assert_uniform(counts, list(permutations(range(3))), "compressed temporary buckets")
    assert min(passes) >= 2, passes


def test_shards_each_a_complete_tar(tmp_path: Path) -> None:
    paths, every = shards(tmp_path, count=2, per=25)
    for flag, value, files in (("--shards", "4", 4), ("--shard-records", "15", 4), ("--shard-size", "40K", None)):
        out = tmp_path / flag.strip("-")
        code, _, err = run([*paths, "-S", "64K", "--seed", "3", flag, value, "-o", f"{out}/"], tmp_path)
        assert (code, err) == (0, b"")
        names = sorted(os.listdir(out))
        assert all(n.startswith("part-") and n.endswith(".tar") for n in names)
        if files is not None:
            assert len(names) == files
        got: list[tuple[Member, ...]] = []
        for name in names:
            data = (out / name).read_bytes()
            assert data.endswith(bytes(1024)) and len(data) % 512 == 0
            got += read_samples(data)
        assert as_set(got) == as_set(every)  # no sample cut between two shards, none lost
        if flag == "--shard-records":
            assert [len(read_samples((out / n).read_bytes())) for n in names] == [15, 15, 15, 5]


@pytest.mark.parametrize("codec,suffix", [("gzip", ".gz"), ("zstd", ".zst")])
def test_compressed_tars_in_and_out(tmp_path: Path, codec: str, suffix: str) -> None:
    paths, every = shards(tmp_path, count=2, per=20)
    named = []
    for p in paths:
        target = p.with_name(p.name + suffix)
        target.write_bytes(compress(codec, p.read_bytes()))
        p.unlink()
        named.append(target)
    # A compressed tar under a name that says nothing is found by its content.
    anonymous = named[1].with_name("shard-b" + suffix)
    named[1].rename(anonymous)
    code, _, err = run([named[0], anonymous, "--seed", "1", "-o", "out.tar" + suffix], tmp_path)
    assert (code, err) == (0, b"")
    blob = (tmp_path / ("out.tar" + suffix)).read_bytes()
    assert as_set(read_samples(decompress(codec, blob))) == as_set(every)


def compressed_copies(tar: Path) -> dict[str, Path]:
    """``tar`` compressed each way, beside it: gzip and zstd without their sizes (sampled), zstd with them and xz (recorded)."""
    import zstandard

    data = tar.read_bytes()
    blobs = {
        "gzip": compress("gzip", data), "zstd": compress("zstd", data), "xz": compress("xz", data),
        "zstd, no size": zstandard.ZstdCompressor(write_content_size=False).compress(data),
    }
    suffixes = {"gzip": ".gz", "zstd": ".zst", "xz": ".xz", "zstd, no size": ".streamed.zst"}
    out = {}
    for codec, blob in blobs.items():
        out[codec] = tar.with_name(tar.name + suffixes[codec])
        out[codec].write_bytes(blob)
    return out


def test_a_compressed_tar_is_planned_at_its_decoded_size(tmp_path: Path) -> None:
    """--dry-run gives a compressed tar's records, buckets and temporary space from its decoded size:
    the plain tar's, without ``~``, where zstd or xz records it; estimated (``~``) where sampled. It
    said the size, and the space, were unknown, and planned 1024 buckets."""
    tar = make_tar(tmp_path / "in.tar", make_samples(300, 1))
    plain = bigshuf.plan_shuffle(tar, memory="256K", tmp_dir=str(tmp_path))
    assert plain.nbytes is not None and plain.buckets is not None and plain.temp_needed == plain.nbytes
    for codec, path in compressed_copies(tar).items():
        planned = bigshuf.plan_shuffle(path, memory="256K", tmp_dir=str(tmp_path))
        space = next(value for name, value in planned.lines if name == "temporary space")
        if codec in ("zstd", "xz"):
            assert (planned.nbytes, planned.records, planned.buckets, planned.temp_needed) == (
                plain.nbytes, plain.records, plain.buckets, plain.temp_needed,
            ), codec
            assert space.startswith(f"needs {plan.format_size(plain.nbytes)} in"), (codec, space)
        else:
            assert planned.nbytes is not None and abs(planned.nbytes - plain.nbytes) < plain.nbytes * 0.1, codec
            assert planned.buckets is not None and abs(planned.buckets - plain.buckets) <= plain.buckets * 0.1, codec
            assert space.startswith("needs ~"), (codec, space)


def test_a_compressed_tar_makes_the_buckets_of_its_decoded_size(tmp_path: Path) -> None:
    """The run plans as --dry-run does: a tar whose size zstd or xz records gets the plain tar's
    buckets, so the same seed writes the same bytes; a sampled one about as many (all got 1024)."""
    tar = make_tar(tmp_path / "in.tar", make_samples(300, 2))
    plain = bigshuf.shuffle(tar, tmp_path / "plain.tar", memory="256K", seed=3, tmp_dir=tmp_path, sync=False)
    assert 1 < plain.buckets < 100
    for codec, path in compressed_copies(tar).items():
        stats = bigshuf.shuffle(path, tmp_path / "out.tar", memory="256K", seed=3, tmp_dir=tmp_path, sync=False)
        planned = bigshuf.plan_shuffle(path, memory="256K", tmp_dir=str(tmp_path))
        assert stats.buckets == planned.buckets, codec
        if codec in ("zstd", "xz"):
            assert stats.buckets == plain.buckets and (tmp_path / "out.tar").read_bytes() == (tmp_path / "plain.tar").read_bytes(), codec
        else:
            assert abs(stats.buckets - plain.buckets) <= plain.buckets * 0.1, (codec, stats.buckets, plain.buckets)


@pytest.mark.parametrize("compressed", [False, True])
def test_weighted_tar_sources_are_planned_as_the_run_weighs_them(tmp_path: Path, compressed: bool) -> None:
    """Without a counting pass (whole rates), the run weighs tar sources by their (decoded) sizes;
    --dry-run weighed them all alike (the mean rate): half the temporary space of a run keeping
    one source of two, whatever their sizes."""
    big = make_tar(tmp_path / "big.tar", make_samples(300, 3))
    small = make_tar(tmp_path / "small.tar", make_samples(60, 4))
    if compressed:
        big, small = compressed_copies(big)["xz"], compressed_copies(small)["xz"]
    args: dict[str, Any] = {"sources": {"big": str(big), "small": str(small)}, "rates": {"big": 1, "small": 0}, "memory": "256K"}
    planned = bigshuf.plan_shuffle(None, tmp_dir=str(tmp_path), **args)
    stats = bigshuf.shuffle(None, tmp_path / "out.tar", seed=1, tmp_dir=tmp_path, sync=False, **args)
    size = len(decompress("xz", big.read_bytes()) if compressed else big.read_bytes())
    assert planned.temp_needed == size
    assert planned.buckets == stats.buckets


def test_split_cuts_whole_tars(tmp_path: Path) -> None:
    paths, every = shards(tmp_path, count=2, per=20)
    code, _, err = run([*paths, "--seed", "6", "--split", "train=0.75,test=rest", "-o", "{split}.tar"], tmp_path)
    assert (code, err) == (0, b"")
    train, test = (read_samples((tmp_path / f"{name}.tar").read_bytes()) for name in ("train", "test"))
    assert (len(train), len(test)) == (30, 10)
    assert as_set(train + test) == as_set(every)


def test_head_count_and_share_and_standard_output(tmp_path: Path) -> None:
    paths, every = shards(tmp_path, count=2, per=20)
    for n, want in (("7", 7), ("25%", 10), ("0", 0)):
        code, out, err = run([*paths, "-n", n, "-S", "64K", "--seed", "2"], tmp_path)
        assert (code, err) == (0, b"")
        got = read_samples(out)
        assert len(got) == want and len(set(got)) == want and set(got) <= set(as_set(every))


def test_directories_skipped_and_long_names_kept(tmp_path: Path) -> None:
    folder = tarfile.TarInfo("deep")
    folder.type = tarfile.DIRTYPE
    long = "x" * 120
    samples = [[(f"deep/{long}/{i}.txt", 0o600, 5, 1, 2, "ü", "g", b"%d" % i), (f"deep/{long}/{i}.cls", 0o600, 5, 1, 2, "ü", "g", b"")]
               for i in range(30)]
    (tmp_path / "d").mkdir()
    make_tar(tmp_path / "d" / "a.tar", samples, tarfile.PAX_FORMAT, extra=(folder,))
    code, _, err = run(["d", "--seed", "4", "-o", "out.tar"], tmp_path)
    assert (code, err) == (0, b"")
    got = read_samples((tmp_path / "out.tar").read_bytes())
    assert as_set(got) == as_set(samples)


def test_posix_ustar_prefixes_are_joined_to_names(tmp_path: Path) -> None:
    """Found by attack: the ustar prefix field was never read (its magic compared to 8 bytes of 6),
    so a path longer than 100 bytes in a ustar tar (GNU ``tar --format=ustar``, tarfile's
    USTAR_FORMAT, bsdtar) lost its directory: a sample's members were keyed apart and scattered,
    and ``--verify`` passed. Every sample now comes out whole, as WebDataset groups them."""
    deep = "d" * 88
    samples = [[(f"{deep}/{i:06d}.cls", 0o644, 5, 1, 2, "u", "g", b"c%d" % i), (f"{deep}/{i:06d}.seg.png", 0o644, 5, 1, 2, "u", "g", b"p%d" % i)]
               for i in range(12)]
    make_tar(tmp_path / "in.tar", samples, tarfile.USTAR_FORMAT)
    second = (tmp_path / "in.tar").read_bytes()[1024:1536]  # the split name the test is about: directory in the prefix field
    assert second[:15] == b"000000.seg.png\0" and second[345:434] == deep.encode() + b"\0"
    for seed in range(4):
        code, _, err = run(["in.tar", "--seed", str(seed), "--verify", "-o", "out.tar"], tmp_path)
        assert (code, err) == (0, b"")
        got = read_samples((tmp_path / "out.tar").read_bytes())
        assert as_set(got) == as_set(samples), got


def test_a_directorys_data_is_read_as_members_as_tar_readers_read_it(tmp_path: Path) -> None:
    """Found by attack: a directory header claiming data had it skipped, and the member written
    there was lost with exit 0; GNU tar, tarfile and WebDataset all read it as the next header."""
    inner = tar_bytes([[("k9.jpg", 0o644, 5, 1, 2, "u", "g", b"HIDDEN")]], tarfile.USTAR_FORMAT)
    folder = tarfile.TarInfo("dir")
    folder.type, folder.size = tarfile.DIRTYPE, 1024
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("k0.jpg", b"K0"), ("dir", inner[:1024]), ("k2.jpg", b"J2")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if name == "dir":
                info.type = tarfile.DIRTYPE
            tar.addfile(info, io.BytesIO(data))
    (tmp_path / "in.tar").write_bytes(buf.getvalue())
    code, _, err = run(["in.tar", "--seed", "1", "-o", "out.tar"], tmp_path)
    assert (code, err) == (0, b"")
    with tarfile.open(tmp_path / "out.tar") as tar:
        assert sorted((m.name, tar.extractfile(m).read()) for m in tar) == [  # type: ignore[union-attr]
            ("k0.jpg", b"K0"), ("k2.jpg", b"J2"), ("k9.jpg", b"HIDDEN")
        ]


@pytest.mark.parametrize("case", ["pax path ends in a slash", "own name ends in a slash", "GNU header with a prefix"])
def test_a_header_tar_readers_read_two_ways_is_refused(tmp_path: Path, case: str) -> None:
    """Found by attack: an old-style member (type NUL) whose pax path and own name disagree on a
    trailing slash is a directory to GNU tar and a file to tarfile (so WebDataset), or the other way
    round: one was lost with exit 0, the other copied where WebDataset stops reading. A header that
    is not POSIX ustar with bytes in the prefix field (GNU tar's times) is a path's start to tarfile.
    Each is refused in one line naming the tar, nothing written."""
    buf = io.BytesIO()
    fmt = tarfile.GNU_FORMAT if case.startswith("GNU") else tarfile.PAX_FORMAT
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, pax in (("k0.jpg", None), ("k1.jpg" if "pax" in case else "x/", {"path": "k1.jpg/" if "pax" in case else "k99.jpg"}),
                          ("k2.jpg", None)):
            info = tarfile.TarInfo(name)
            info.size = 5
            if pax is not None and not case.startswith("GNU"):
                info.type, info.pax_headers = tarfile.AREGTYPE, pax
            tar.addfile(info, io.BytesIO(b"HELLO"))
    data = bytearray(buf.getvalue())
    if case.startswith("GNU"):  # the second member's header: its atime where POSIX keeps the prefix, the checksum made again
        at = 1024
        assert data[at + 257:at + 265] == b"ustar  \0"
        data[at + 345:at + 357] = b"15304630210\0"
        data[at + 148:at + 156] = b"        "
        data[at + 148:at + 156] = b"%06o\0 " % sum(data[at:at + 512])
    (tmp_path / "in.tar").write_bytes(bytes(data))
    with tarfile.open(tmp_path / "in.tar") as tar:  # tarfile reads it, differently from GNU tar
        assert len(tar.getmembers()) >= 2
    code, out, err = run(["in.tar", "--seed", "1", "-o", "out.tar"], tmp_path)
    assert code == 1 and out == b"" and err.startswith(b"bigshuf: in.tar: member ") and err.count(b"\n") == 1, err
    assert b"tarfile (so WebDataset)" in err
    assert sorted(os.listdir(tmp_path)) == ["in.tar"]


def test_refused_options_say_so(tmp_path: Path) -> None:
    paths, _ = shards(tmp_path, count=1, per=3)
    for flag in ("-z", "--repeat", "--stratify"):
        code, out, err = run([paths[0], flag, "-o", "out.tar"], tmp_path)
        assert code == 1 and out == b"" and err.count(b"\n") == 1 and err.startswith(b"bigshuf: "), (flag, err)
    code, _, err = run([paths[0], "--repeat", "-o", "out.tar"], tmp_path)
    assert err == b"bigshuf: --repeat: not available for WebDataset tar shards (samples, not lines)\n"
    # Tars resume (tests/formats/test_tar_resume.py): --resume is checked as for lines.
    code, _, err = run([paths[0], "--resume", "-o", "out.tar"], tmp_path)
    assert code == 1 and err.startswith(b"bigshuf: --resume needs --seed"), err
    (tmp_path / "lines.txt").write_bytes(b"a\nb\n")
    code, _, err = run([paths[0], "lines.txt", "-o", "out.tar"], tmp_path)
    assert (code, err) == (1, f"bigshuf: {paths[0]} is a tar archive and lines.txt is not: shuffle WebDataset tars in a run of their own\n".encode())
    code, _, err = run(["https://example.com/shard-000.tar.gz?x=1", "lines.txt", "-o", "out.jsonl"], tmp_path)
    assert (code, err) == (1, b"bigshuf: https://example.com/shard-000.tar.gz?x=1 is a tar archive and lines.txt is not: shuffle WebDataset tars in a run of their own\n")
    code, _, err = run(["lines.txt", "-o", "out.tar"], tmp_path)
    assert (code, err) == (1, b"bigshuf: out.tar: tar output needs tar inputs (WebDataset shards)\n")
    assert not (tmp_path / "out.tar").exists()


def _hostile(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """Broken inputs, each with the arguments that read it and the one line it must fail with."""
    good = make_samples(6, 1)
    whole = make_tar(tmp_path / "good.tar", good).read_bytes()
    cases: dict[str, tuple[list[str], str]] = {}
    (tmp_path / "truncated.tar").write_bytes(whole[: len(whole) // 2 + 100])
    cases["truncated"] = (["truncated.tar"], "truncated.tar: truncated or corrupt tar: member s/0100003.json at byte 14336 claims 1400 bytes")
    make_tar(tmp_path / "first.tar", make_samples(30, 5))  # ~90 KB: scattered to buckets before the second fails
    cases["truncated, external"] = (["first.tar", "truncated.tar", "-S", "64K"], "truncated.tar: truncated or corrupt tar: member")
    with tarfile.open(tmp_path / "good.tar") as tar:
        third = tar.getmembers()[2].offset  # a header's start
    (tmp_path / "cut.tar").write_bytes(whole[: third + 100])
    cases["cut in a header"] = (["cut.tar"], f"cut.tar: truncated tar: ends inside a header at byte {third + 100}")
    corrupt = bytearray(whole)
    corrupt[third + 5] ^= 1  # a byte of its name
    (tmp_path / "corrupt.tar").write_bytes(bytes(corrupt))
    cases["checksum"] = (["corrupt.tar"], f"corrupt.tar: corrupt tar header at byte {third} (checksum mismatch)")
    make_tar(tmp_path / "one.tar", make_samples(3, 2) + [good[0][:1]])
    make_tar(tmp_path / "two.tar", [good[0][1:]] + make_samples(3, 3))
    cases["split sample"] = (["one.tar", "two.tar"], f"two.tar: sample s/0100000 continues from the end of one.tar; a sample must be within one tar")
    big = [[("b/1.bin", 0o644, 0, 0, 0, "", "", bytes(100_000))]]
    make_tar(tmp_path / "big.tar", make_samples(3, 4) + big)
    cases["member over -S"] = (["big.tar", "-S", "64K"], "big.tar: sample b/1 reaches 100864 bytes at member b/1.bin, more than the 32.0 KiB")
    link = tarfile.TarInfo("a/1.lnk")
    link.type, link.linkname = tarfile.SYMTYPE, "a/1.jpg"
    make_tar(tmp_path / "link.tar", good, extra=(link,))
    cases["symlink"] = (["link.tar"], "link.tar: member a/1.lnk is a symbolic link; only regular files and directories are shuffled")
    make_tar(tmp_path / "nokey.tar", [[("README", 0o644, 0, 0, 0, "", "", b"hi")]])
    cases["no key"] = (["nokey.tar"], "nokey.tar: member README has no key (its base name has no dot), so belongs to no sample")
    make_tar(tmp_path / "dotkey.tar", [[("d/.x.jpg", 0o644, 0, 0, 0, "", "", b"hi")]])
    cases["dot first"] = (["dotkey.tar"], "dotkey.tar: member d/.x.jpg has no key (its base name starts with a dot), so belongs to no sample")
    make_tar(tmp_path / "meta.tar", [[("__m__/a.jpg", 0o644, 0, 0, 0, "", "", b"hi")]])
    cases["metadata"] = (["meta.tar"], "meta.tar: member __m__/a.jpg is named as WebDataset metadata, so belongs to no sample")
    make_tar(tmp_path / "noname.tar", [[("", 0o644, 0, 0, 0, "", "", b"hi")]])
    cases["no name"] = (["noname.tar"], "noname.tar: a member has no name, so belongs to no sample")
    make_tar(tmp_path / "twice.tar", [[("a/1.jpg", 0o644, 0, 0, 0, "", "", b""), ("a/1.JPG", 0o644, 0, 0, 0, "", "", b"")]])
    cases["suffix twice"] = (["twice.tar"], "twice.tar: member a/1.JPG repeats suffix 'jpg' in sample a/1")
    with tarfile.open(tmp_path / "global.tar", "w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "x", "uname": "u"}) as tar:
        tar.addfile(tarfile.TarInfo("a/1.txt"), io.BytesIO(b""))
    cases["pax global"] = (["global.tar"], "global.tar: pax global header at byte 0")
    (tmp_path / "tail.tar").write_bytes(whole + whole)
    cases["concatenated"] = (["tail.tar"], "tail.tar: data after the end-of-archive marker")
    return cases


def test_hostile_inputs_fail_with_one_line_and_leave_nothing(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    for label, (args, message) in _hostile(tmp_path).items():
        code, out, err = run([*args, "-T", "t", "--seed", "1", "-o", "out.tar"], tmp_path)
        assert code == 1 and out == b"", (label, err)
        assert err.startswith(f"bigshuf: {message}".encode()) and err.count(b"\n") == 1, (label, err)
        assert not (tmp_path / "out.tar").exists(), label
        assert temp_leftovers(tmp_path / "t") == [], label


# webdataset leaves its shards' files to the garbage collector.
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_read_by_webdataset(tmp_path: Path) -> None:
    wds = pytest.importorskip("webdataset")
    paths, every = shards(tmp_path, count=2, per=15)
    code, _, err = run([*paths, "--seed", "5", "--shards", "2", "-o", "out/"], tmp_path)
    assert (code, err) == (0, b"")
    urls = [str(tmp_path / "out" / n) for n in sorted(os.listdir(tmp_path / "out"))]
    got = Counter()
    for sample in wds.WebDataset(urls, shardshuffle=False):
        got[(sample["__key__"], sample["jpg"], sample["json"])] += 1
    want = Counter((s[0][0].rsplit(".", 1)[0], s[0][7], s[1][7]) for s in every)
    assert got == want


def test_members_of_megabytes_stay_within_the_limit(tmp_path: Path) -> None:
    # Eight 10 MB members (80 MB) at -S 32M: external, each sample a piece of its own.
    rng = np.random.default_rng(1)
    samples = [[(f"{i}.jpg", 0o644, 0, 0, 0, "", "", rng.integers(0, 256, 10_000_000 + i, dtype=np.uint8).tobytes()),
                (f"{i}.json", 0o644, 0, 0, 0, "", "", b"{}")] for i in range(8)]
    make_tar(tmp_path / "big.tar", samples)
    make_tar(tmp_path / "small.tar", make_samples(5, 1))
    _, baseline = run_peak(["small.tar", "-o", "small-out.tar"], tmp_path)
    status, peak = run_peak(["big.tar", "-S", "32M", "-T", ".", "--seed", "1", "-o", "out.tar"], tmp_path)
    assert status == 0
    assert peak <= baseline + (32 << 20) + SLACK, f"peak {peak >> 20} MiB, baseline {baseline >> 20} MiB"
    assert as_set(read_samples((tmp_path / "out.tar").read_bytes())) == as_set(samples)


def test_dry_run_names_the_path_and_writes_nothing(tmp_path: Path) -> None:
    paths, _ = shards(tmp_path, count=2, per=20)
    for memory, path, records in (("64M", "path: in memory, 1 pass", "records: 40, "), ("64K", "path: external, 2 passes", "records: ~")):
        code, out, err = run([*paths, "--dry-run", "-S", memory, "-o", "out.tar"], tmp_path)
        assert (code, err) == (0, b"")
        assert path in out.decode() and records in out.decode(), out
        assert not (tmp_path / "out.tar").exists()


def test_tar_to_a_terminal_is_refused(tmp_path: Path) -> None:
    from test_ux import _run_on_pty

    paths, _ = shards(tmp_path, count=1, per=3)
    code, shown, err = _run_on_pty([str(paths[0])], tmp_path)
    assert (code, shown) == (1, b"")
    assert err == b"bigshuf: refusing to write tar data to a terminal; give -o a file name, or pipe the output\n"


def test_seeded_output_is_pinned(tmp_path: Path) -> None:
    # The bytes a seed gives on each path, whatever the threads (pinned with 1 and 3 each way): a
    # change to the draws or their order shows here.
    import hashlib

    paths, _ = shards(tmp_path, count=2, per=30)
    digests = {}
    for memory in ("64M", "64K"):
        out = tmp_path / f"out-{memory}.tar"
        bigshuf.shuffle(paths, out, memory=memory, seed=11, tmp_dir=tmp_path, sync=False, threads=3 if memory == "64K" else 1)
        digests[memory] = hashlib.sha256(out.read_bytes()).hexdigest()[:16]
    assert digests == {"64M": "2b08a35d8d783f53", "64K": "638175dc924578ba"}


def test_a_missing_input_beside_a_tar_is_said_missing(tmp_path: Path) -> None:
    """A mistyped name beside a tar was refused as "is not" a tar, which sent the user looking at
    the wrong problem; a name that is not there is said so, as of any input."""
    tar = make_tar(tmp_path / "a.tar", make_samples(2, seed=1))
    for order in ([tar, tmp_path / "missing.txt"], [tmp_path / "missing.txt", tar]):
        refused(tmp_path, order, f"{tmp_path}/missing.txt: No such file or directory")
    (tmp_path / "text.txt").write_bytes(b"a line\n")
    refused(tmp_path, [tar, tmp_path / "text.txt"], f"{tar} is a tar archive and {tmp_path}/text.txt is not", UsageError)


def test_a_tar_of_one_sample_given_twice_is_said_so(tmp_path: Path) -> None:
    """With one sample, the tar read again began with the sample it ended with, and was refused as
    a sample continuing from the end of itself; it is "given twice", as a longer tar is."""
    tar = make_tar(tmp_path / "one.tar", make_samples(1, seed=2))
    (tmp_path / "link.tar").symlink_to(tar)
    other = make_tar(tmp_path / "other.tar", make_samples(1, seed=2))
    for second in (tar, tmp_path / "link.tar"):
        refused(tmp_path, [tar, second], f"{second}: given twice (sample s/0200000 is in both)")
    quoted = make_tar(tmp_path / "a b.tar", make_samples(1, seed=2))  # a name shown quoted (found by review)
    refused(tmp_path, [quoted, quoted], f"'{quoted}': given twice (sample s/0200000 is in both)")
    refused(tmp_path, [tar, other], f"{other}: sample s/0200000 continues from the end of {tar}")


@pytest.mark.parametrize("suffix", ["__key__", "__URL__"])
def test_a_suffix_naming_a_field_webdataset_gives_every_sample_is_refused(tmp_path: Path, suffix: str) -> None:
    """WebDataset fails on a member ``a.__key__`` (a duplicate of the field it adds); bigshuf wrote it on."""
    tar = make_tar(tmp_path / "k.tar", [[("a.jpg", 0o644, 0, 0, 0, "", "", b"x"), (f"a.{suffix}", 0o644, 0, 0, 0, "", "", b"y")]])
    refused(tmp_path, [tar], f"{tar}: member a.{suffix} has suffix '{suffix.lower()}', a field WebDataset gives every sample itself")


def refused(tmp_path: Path, inputs: list[Path], message: str, error: type[Exception] = InputError, **kw: object) -> None:
    """A library shuffle of ``inputs`` fails with one line starting ``message``, writing nothing and leaving no temporary files."""
    (tmp_path / "t").mkdir(exist_ok=True)
    out = tmp_path / str(kw.pop("output", "out.tar"))
    with pytest.raises(error) as caught:
        bigshuf.shuffle(inputs, out, seed=1, tmp_dir=tmp_path / "t", sync=False, **kw)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value), str(caught.value)
    assert not out.exists()
    assert temp_leftovers(tmp_path / "t") == []


def raw_header(name: bytes, size: bytes, kind: bytes) -> bytes:
    """A ustar header block with a raw size field (octal or GNU base-256) and a valid checksum."""
    block = bytearray(512)
    block[: len(name)] = name
    block[100:148] = b"0000644\0" + b"0000000\0" * 2 + b"\0" * 12 + b"00000000000\0"
    block[124:136] = size
    block[156:157], block[257:265] = kind, b"ustar\x0000"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


@pytest.mark.parametrize("memory", ["64M", "64K"])
def test_a_key_used_twice_is_refused_naming_both_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory: str) -> None:
    # Two samples of one key that the shuffle puts side by side are read back by WebDataset as one:
    # refused, in two tars or out of order in one (GNU tar given *.jpg *.json, or bsdtar's order).
    one = make_samples(30, 1)
    make_tar(tmp_path / "one.tar", one)  # ~60 KB: at 64K scattered to buckets before the second is read
    make_tar(tmp_path / "two.tar", make_samples(3, 2) + [one[7]] + make_samples(3, 3))
    refused(
        tmp_path, [tmp_path / "one.tar", tmp_path / "two.tar"],
        f"{tmp_path / 'two.tar'}: sample s/0100007 (member s/0100007.jpg) is also in {tmp_path / 'one.tar'} (member s/0100007.jpg); "
        "WebDataset merges samples of one key", memory=memory,
    )
    samples = make_samples(4, 4)
    make_tar(tmp_path / "order.tar", [[s[0]] for s in samples] + [[s[1]] for s in samples])
    order = tmp_path / "order.tar"
    refused(
        tmp_path, [tmp_path / "one.tar", order],
        f"{order}: members of sample s/0400000 are not consecutive in {order} (s/0400000.jpg, then other samples' members, "
        "then s/0400000.json); WebDataset reads a sample's members only together: recreate the tar with its members in name order "
        "(tar --sort=name)", memory=memory,
    )
    # Keys are told apart exactly, not by their hashes: with every hash equal, distinct keys pass.
    from bigshuf.formats import tar_keys

    monkeypatch.setattr(tar_keys, "hash", lambda key: 7, raising=False)
    make_tar(tmp_path / "three.tar", make_samples(5, 5))
    bigshuf.shuffle([tmp_path / "one.tar", tmp_path / "three.tar"], tmp_path / "out.tar", seed=1, memory=memory, sync=False)
    assert as_set(read_samples((tmp_path / "out.tar").read_bytes())) == as_set(one + make_samples(5, 5))
    (tmp_path / "out.tar").unlink()
    refused(tmp_path, [tmp_path / "three.tar", tmp_path / "two.tar", tmp_path / "one.tar"], f"{tmp_path / 'one.tar'}: sample s/0100007 (member")


def test_sparse_members_are_refused_by_their_real_name(tmp_path: Path) -> None:
    # GNU tar --sparse --format=pax stores x.bin as ./GNUSparseFile.NNN/x.bin, its data a map of the holes.
    with tarfile.open(tmp_path / "sparse.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("./GNUSparseFile.12/x.bin")
        info.size = 3
        info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "x.bin", "GNU.sparse.realsize": "9"}
        tar.addfile(info, io.BytesIO(b"abc"))
    refused(
        tmp_path, [tmp_path / "sparse.tar"],
        f"{tmp_path / 'sparse.tar'}: member x.bin is a sparse file (GNU.sparse pax records, stored as ./GNUSparseFile.12/x.bin); "
        "only regular files and directories are shuffled",
    )


def test_oversized_claims_are_refused_without_allocating_them(tmp_path: Path) -> None:
    import gzip

    end = bytes(1024)
    # A 2 GiB pax header claimed by a gzip of a few hundred bytes: refused at the cap, nothing allocated.
    pax = raw_header(b"PaxHeaders/a.jpg", b"%011o\0" % (2 << 30), b"x")
    (tmp_path / "bomb.tar.gz").write_bytes(gzip.compress(pax + bytes(4096)))
    status, peak = run_peak(["bomb.tar.gz", "-o", "out.tar"], tmp_path)
    assert status == 1 and peak < 200 << 20, f"peak {peak >> 20} MiB"
    refused(tmp_path, [tmp_path / "bomb.tar.gz"], f"{tmp_path / 'bomb.tar.gz'}: corrupt tar: extension header at byte 0 claims 2147483648 bytes, more than the 1 MiB")
    # In a plain file every claim is checked against what is left of it (GNU base-256 sizes too).
    for name, size in (("huge.tar", 1 << 60), ("forty.tar", 40 << 30)):
        (tmp_path / name).write_bytes(raw_header(b"a.jpg", bytes([0x80]) + size.to_bytes(11, "big"), b"0") + b"x" * 512 + end)
        refused(tmp_path, [tmp_path / name], f"{tmp_path / name}: truncated or corrupt tar: member a.jpg at byte 0 claims {size} bytes of data, and the file has 1536 left")
    (tmp_path / "long.tar").write_bytes(raw_header(b"././@LongLink", b"%011o\0" % (2 << 30), b"L") + end)
    refused(tmp_path, [tmp_path / "long.tar"], f"{tmp_path / 'long.tar'}: truncated or corrupt tar: extension header at byte 0 claims 2147483648 bytes")
    # Compressed, a member's size is known only by reading: a short one is truncated, one over -S is said so.
    (tmp_path / "short.tar.gz").write_bytes(gzip.compress(raw_header(b"a.jpg", b"%011o\0" % 2000, b"0") + b"x" * 512))
    refused(tmp_path, [tmp_path / "short.tar.gz"], f"{tmp_path / 'short.tar.gz'}: truncated tar: ends inside a member's data at byte 1024")
    (tmp_path / "forty.tar.gz").write_bytes(gzip.compress((tmp_path / "forty.tar").read_bytes()))
    refused(tmp_path, [tmp_path / "forty.tar.gz"], f"{tmp_path / 'forty.tar.gz'}: sample a reaches {(40 << 30) + 512} bytes at member a.jpg, more than the")
    # A claim no -S on this machine could hold is a corrupt header, not a limit to raise (it said "raise -S").
    (tmp_path / "huge.tar.gz").write_bytes(gzip.compress((tmp_path / "huge.tar").read_bytes()))
    with pytest.raises(InputError, match=r"huge.tar.gz: sample a reaches \d+ bytes at member a.jpg, more than the .*; a corrupt header\?$"):
        bigshuf.shuffle(tmp_path / "huge.tar.gz", tmp_path / "out.tar", seed=1, sync=False)
    # A pax size is decimal digits only (Python's int() would take -5).
    with tarfile.open(tmp_path / "negative.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("a.jpg")
        info.pax_headers = {"size": "-5"}
        tar.addfile(info, io.BytesIO(b""))
    refused(tmp_path, [tmp_path / "negative.tar"], f"{tmp_path / 'negative.tar'}: corrupt pax header at byte 0")


@pytest.mark.parametrize("field,start,value", [
    ("mode", 100, b"00S0644\0"), ("uid", 108, b"0000\xe90\0"), ("mtime", 136, b"0000000001x\0"), ("devminor", 337, b"\x81" + bytes(7)),
])
def test_a_header_number_tarfile_cannot_read_is_refused(tmp_path: Path, field: str, start: int, value: bytes) -> None:
    """A numeric field Python's tarfile cannot parse (so WebDataset, reading through it, silently
    stops at that member) is refused, naming the field, rather than copied into the middle of an output."""
    path = make_tar(tmp_path / "in.tar", make_samples(4, 1), fmt=tarfile.USTAR_FORMAT)
    data = bytearray(path.read_bytes())
    with tarfile.open(path) as tar:
        at = tar.getmembers()[4].offset  # the third sample's first member
    block = data[at : at + 512]
    block[start : start + len(value)] = value
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    data[at : at + 512] = block
    path.write_bytes(bytes(data))
    with tarfile.open(path, "r|*") as tar:
        assert len([m for m in tar]) == 4  # tarfile ends the archive at the bad header
    refused(tmp_path, [path], f"{path}: corrupt tar header at byte {at} (bad {field} field)")


def test_a_suffix_twice_by_unicode_case_is_refused(tmp_path: Path) -> None:
    """WebDataset lower-cases suffixes as text (``JPÉ`` is ``jpé``): two such members of one sample
    are the same suffix, which it fails on, so they are refused, not copied."""
    path = make_tar(tmp_path / "in.tar", [[(f"a/1.{suffix}", 0o644, 0, 0, 0, "", "", b"x") for suffix in ("JPÉ", "jpé")]])
    refused(tmp_path, [path], f"{path}: member a/1.jpé repeats suffix 'jpé' in sample a/1")


def test_a_tar_given_twice_is_named_so(tmp_path: Path) -> None:
    """The same tar named twice (or by name and by its directory) is refused as given twice, not
    as a tar whose samples' members are out of order (which would send its owner to rebuild it)."""
    (tmp_path / "in").mkdir()
    path = make_tar(tmp_path / "in" / "a.tar", make_samples(3, 1))
    for inputs, unique in (([path, path], False), ([tmp_path / "in", path], True)):
        refused(tmp_path, inputs, f"{path}: given twice (sample s/0100000 is in both); each tar may be read once", unique=unique)


def test_short_compressed_tar_names_are_tars(tmp_path: Path) -> None:
    paths, every = shards(tmp_path, count=2, per=10)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.tgz").write_bytes(compress("gzip", paths[0].read_bytes()))
    (tmp_path / "d" / "b.tzst").write_bytes(compress("zstd", paths[1].read_bytes()))
    for name, codec in (("out.tgz", "gzip"), ("out.txz", "xz"), ("out.tbz2", "bzip2")):
        bigshuf.shuffle(tmp_path / "d", tmp_path / name, seed=1, sync=False)  # the directory lists both
        assert as_set(read_samples(decompress(codec, (tmp_path / name).read_bytes()))) == as_set(every), name
    # Tar data under another format's name, or a codec bigshuf does not write, is refused.
    for name in ("o.parquet", "o.jsonl", "o.txt", "o.tar.lz4"):
        refused(tmp_path, paths, f"{tmp_path / name}: tar samples are written as a tar; give output= a tar name", UsageError, output=name)


def test_a_tar_on_standard_input_is_refused(tmp_path: Path) -> None:
    paths, _ = shards(tmp_path, count=1, per=3)
    with open(paths[0], "rb") as f:  # bigshuf < in.tar
        proc = subprocess.run([sys.executable, "-m", "bigshuf"], stdin=f, capture_output=True, timeout=60, cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert proc.stderr == b"bigshuf: standard input holds a tar archive: name the file(s) (tars are read from files)\n"
    piped = subprocess.run(
        [sys.executable, "-m", "bigshuf", "-o", "out.tar"], input=paths[0].read_bytes(), capture_output=True, timeout=60, cwd=tmp_path
    )
    assert (piped.returncode, piped.stderr) == (1, b"bigshuf: standard input cannot be read as tar shards: name the tar file(s) (tars are read from files)\n")
    assert not (tmp_path / "out.tar").exists()


def test_member_names_are_escaped_in_messages(tmp_path: Path) -> None:
    link = tarfile.TarInfo("a/1\n\x1b[2J.lnk")
    link.type, link.linkname = tarfile.SYMTYPE, "x"
    make_tar(tmp_path / "link.tar", [], extra=(link,))
    refused(tmp_path, [tmp_path / "link.tar"], f"{tmp_path / 'link.tar'}: member a/1\\n\\x1b[2J.lnk is a symbolic link")
    odd = tarfile.TarInfo("a/1.jpg")
    odd.type = b"D"  # a GNU dump directory
    make_tar(tmp_path / "odd.tar", [], extra=(odd,))
    refused(tmp_path, [tmp_path / "odd.tar"], f"{tmp_path / 'odd.tar'}: member a/1.jpg has unknown type 'D'; only regular files")


def test_tars_gnu_tar_and_webdataset_read_are_accepted(tmp_path: Path) -> None:
    # No end-of-archive marker: GNU tar, tarfile and WebDataset read such a tar to its end.
    samples = make_samples(5, 1)
    whole = make_tar(tmp_path / "whole.tar", samples).read_bytes()
    with tarfile.open(tmp_path / "whole.tar") as tar:
        last = tar.getmembers()[-1]
    (tmp_path / "unended.tar").write_bytes(whole[: last.offset_data + -(-last.size // 512) * 512])
    bigshuf.shuffle(tmp_path / "unended.tar", tmp_path / "out.tar", seed=1, sync=False)
    assert as_set(read_samples((tmp_path / "out.tar").read_bytes())) == as_set(samples)
    # git archive's pax global header, a comment (the commit id) only: dropped, as it applies to nothing.
    with tarfile.open(tmp_path / "git.tar", "w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "f00d"}) as tar:
        for name, *_, data in (m for s in samples for m in s):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    bigshuf.shuffle(tmp_path / "git.tar", tmp_path / "git-out.tar", seed=1, sync=False)
    out = (tmp_path / "git-out.tar").read_bytes()
    assert b"f00d" not in out and [len(s) for s in read_samples(out)] == [2] * 5
    with tarfile.open(tmp_path / "git-out.tar") as tar:
        assert tar.pax_headers == {} and sorted(tar.getnames()) == sorted(m[0] for s in samples for m in s)


def _raw_member(name: bytes, data: bytes, kind: bytes = b"0") -> bytes:
    """A member's header and its data padded to whole blocks."""
    return raw_header(name, b"%011o\0" % len(data), kind) + data + bytes(-len(data) % 512)


def _pax(path: bytes, key: bytes = b"path") -> bytes:
    record = b" " + key + b"=" + path + b"\n"
    digits = len(b"%d" % (len(record) + 3))
    return _raw_member(b"PaxHeader", b"%d" % (len(record) + digits) + record, b"x")


@pytest.mark.parametrize("names", ["pax, then GNU long name", "GNU long name, then pax", "two pax headers"])
def test_a_member_named_by_two_extension_headers_takes_the_name_tarfile_gives(tmp_path: Path, names: str) -> None:
    """tarfile (so WebDataset) applies the outer extension header last, so the first name wins;
    bigshuf took the last, and a sample came out as two halves, each a broken sample."""
    first, second = {
        "pax, then GNU long name": (_pax(b"a.jpg"), _raw_member(b"././@LongLink", b"b.jpg\0", b"L")),
        "GNU long name, then pax": (_raw_member(b"././@LongLink", b"a.jpg\0", b"L"), _pax(b"b.jpg")),
        "two pax headers": (_pax(b"a.jpg"), _pax(b"b.jpg")),
    }[names]
    data = first + second + _raw_member(b"x.jpg", b"IMG") + _raw_member(b"a.cls", b"7")
    for i in range(5):
        data += _raw_member(b"k%d.jpg" % i, b"i%d" % i) + _raw_member(b"k%d.cls" % i, b"%d" % i)
    (tmp_path / "in.tar").write_bytes(data + bytes(1024))
    for seed in range(4):
        bigshuf.shuffle(tmp_path / "in.tar", tmp_path / "out.tar", seed=seed, sync=False)
        with tarfile.open(tmp_path / "out.tar") as tar:
            names_out = [m.name for m in tar.getmembers()]
        assert sorted(names_out) == sorted(["a.jpg", "a.cls"] + [f"k{i}.{e}" for i in range(5) for e in ("jpg", "cls")])
        at = names_out.index("a.jpg")
        assert names_out[at + 1] == "a.cls", names_out  # one sample, its members together


def test_a_member_sized_by_two_pax_headers_takes_the_first_size(tmp_path: Path) -> None:
    """As with names, tarfile takes the outer (first) pax size: bigshuf read the inner one's 600
    bytes, the next member's header with them."""
    data = _pax(b"3", b"size") + _pax(b"600", b"size") + raw_header(b"a.jpg", b"%011o\0" % 0, b"0") + b"IMG" + bytes(509)
    data += _raw_member(b"a.cls", b"7")
    for i in range(3):
        data += _raw_member(b"k%d.jpg" % i, b"i%d" % i) + _raw_member(b"k%d.cls" % i, b"%d" % i)
    (tmp_path / "in.tar").write_bytes(data + bytes(1024))
    with tarfile.open(tmp_path / "in.tar") as tar:
        assert [(m.name, m.size) for m in tar.getmembers()][:2] == [("a.jpg", 3), ("a.cls", 1)]
    bigshuf.shuffle(tmp_path / "in.tar", tmp_path / "out.tar", seed=1, sync=False)
    with tarfile.open(tmp_path / "out.tar") as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert got == {"a.jpg": b"IMG", "a.cls": b"7", **{f"k{i}.{e}": v for i in range(3) for e, v in (("jpg", b"i%d" % i), ("cls", b"%d" % i))}}
