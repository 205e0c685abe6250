"""``--unique`` on the command line: records on stdout only, the count dropped in the summary line,
refusals as one line on stderr with exit 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def bigshuf(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """``python -m bigshuf ARGS`` run to completion, its output captured."""
    return subprocess.run([sys.executable, "-m", "bigshuf", *args], input=stdin, capture_output=True, env=dict(os.environ, LC_ALL="C"))


def test_summary_says_how_many_were_dropped(tmp_path: Path) -> None:
    """The summary line (with --progress) ends with the count dropped; stdout holds only the records."""
    src = tmp_path / "in"
    src.write_bytes(b"b\na\nb\nc\na\nb")  # the last b, without its newline, is a copy too
    done = bigshuf("--unique", "--progress", str(src))
    assert done.returncode == 0 and sorted(done.stdout.splitlines()) == [b"a", b"b", b"c"]
    last = done.stderr.decode().splitlines()[-1]
    assert last.startswith("bigshuf: 3 records, 6 B in 1 pass") and last.endswith(", 3 duplicates dropped")


def test_echo_range_and_header(tmp_path: Path) -> None:
    """-e ARGS, -i LO-HI -n and --header go through the dedup like files."""
    echoed = bigshuf("--unique", "-e", "a", "b", "a", "b", "c")
    assert sorted(echoed.stdout.splitlines()) == [b"a", b"b", b"c"]
    ranged = bigshuf("--unique", "-i", "1-5", "-n", "3", "--seed", "1")
    assert len(set(ranged.stdout.splitlines())) == 3
    (tmp_path / "h1").write_bytes(b"h\nx\ny\nx\n")
    (tmp_path / "h2").write_bytes(b"h\ny\nz\n")
    headed = bigshuf("--unique", "--header=1", str(tmp_path / "h1"), str(tmp_path / "h2"))
    lines = headed.stdout.splitlines()
    assert lines[0] == b"h" and sorted(lines[1:]) == [b"x", b"y", b"z"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["-r"], "--unique cannot be used with --repeat"),
    ],
)
def test_refusals_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    src = tmp_path / "in"
    src.write_bytes(b"a\na\n")
    args = [a.replace("OUT", str(tmp_path / "out")) for a in args]
    refused = bigshuf("--unique", *args, str(src))
    assert refused.returncode == 1 and refused.stdout == b""
    assert refused.stderr.decode() == f"bigshuf: {message}\n"
    assert sorted(os.listdir(tmp_path)) == ["in"]


def test_help_names_the_option() -> None:
    assert "--unique              keep one copy of byte-identical lines (as sort -u)" in bigshuf("--help").stdout.decode()


def test_one_copy_dropped_is_counted_in_the_manifest(tmp_path: Path) -> None:
    """The boundary of the count: exactly one copy dropped is ``duplicates: 1`` in the manifest, as
    in the stats (every test had many)."""
    import json

    (tmp_path / "in.txt").write_bytes(b"a\nb\na\nc\n")
    done = subprocess.run(
        [sys.executable, "-m", "bigshuf", "--unique", "--seed", "1", "in.txt", "-o", "out.txt", "--manifest", "m.json"],
        capture_output=True, timeout=60, cwd=tmp_path,
    )
    assert (done.returncode, done.stderr) == (0, b"")
    doc = json.loads((tmp_path / "m.json").read_text())
    assert (doc["records_read"], doc["duplicates"], doc["records_shuffled"]) == (4, 1, 3)
    assert sorted((tmp_path / "out.txt").read_bytes().splitlines()) == [b"a", b"b", b"c"]


#: ``bigshuf ARGS[2:]`` under ``ulimit -n ARGS[0]`` with ``plan.DESCRIPTOR_RESERVE`` set to ARGS[1]:
#: the open-file budget scaled down, so that a few hundred KB fill what takes tens of MB at the real reserve.
_SCALED_LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[1])))
from bigshuf.core import plan
plan.DESCRIPTOR_RESERVE = int(sys.argv[2])
from bigshuf.command import main
sys.argv[1:] = sys.argv[3:]
sys.exit(main())
"""


def _dedup_inputs(tmp_path: Path, fmt: str) -> tuple[Path, list[bytes]]:
    """An input (``fmt``: lines, a Parquet file or a tar of one-member samples) of 65,000 records (a
    tar's 1 KB samples: 3,000) with about one in seven a copy; the unique records as bytes, for
    comparing with the output."""
    import random

    rng = random.Random(5)
    n = 3000 if fmt == "tar" else 65_000
    values = [rng.randrange(6 * n) for _ in range(n)]
    unique = sorted({b"%d" % v for v in values})
    if fmt == "lines":
        src = tmp_path / "in.txt"
        src.write_bytes(b"".join(b"r%d\n" % v for v in values))
        return src, sorted(b"r" + u for u in unique)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        src = tmp_path / "in.parquet"
        pq.write_table(pa.table({"v": values}), src)
        return src, unique
    import io
    import tarfile

    src = tmp_path / "in.tar"
    with tarfile.open(src, "w") as tf:
        for i, v in enumerate(values):
            data = b"%d" % v
            info = tarfile.TarInfo(f"{i:06d}.txt")  # a sample's identity is its members' suffixes and data, not its key
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return src, unique


@pytest.mark.parametrize("fmt", ["lines", "parquet", "tar"])
def test_a_dedup_level_split_during_pass_1_stays_within_the_open_file_limit(tmp_path: Path, fmt: str) -> None:
    """A hash bucket too big for memory is split one level deeper while pass 1's buckets are open:
    its new buckets (and their hash files) were planned as if they were alone, and the run failed
    with "Too many open files" where ``--dry-run`` said its descriptors were enough (review)."""
    src, unique = _dedup_inputs(tmp_path, fmt)
    out = tmp_path / f"out.{src.suffix}"
    args = ["--unique", "-S", "64K", "--seed", "1", str(src), "-o", str(out)]
    cmd = [sys.executable, "-c", _SCALED_LIMIT, "40", "16", *args]
    done = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert (done.returncode, done.stderr) == (0, b"")
    if fmt == "lines":
        written = sorted(out.read_bytes().splitlines())
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        written = sorted(b"%d" % v for v in pq.read_table(out).column("v").to_pylist())
    else:
        import tarfile

        with tarfile.open(out) as tf:
            written = sorted(tf.extractfile(m).read() for m in tf.getmembers())  # type: ignore[union-attr]
    assert written == unique


def test_a_split_during_pass_1_uses_the_descriptors_the_reserve_leaves(tmp_path: Path) -> None:
    """Pass 1 at its most buckets under ``ulimit -n 200`` left the split levels none of the
    allowance: every split made 2 buckets, and copies of 5,000-byte records (a sixth of -S) were
    "could not be split ... after 17 passes", where the run had passed (review of the change that
    counted pass 1's open buckets). The reserve beyond the run's own descriptors is theirs to use."""
    import random

    rng = random.Random(7)
    lines = [b"%05d" % rng.randrange(1200) * 1000 for _ in range(600)]
    src = tmp_path / "in.txt"
    src.write_bytes(b"".join(line + b"\n" for line in lines))
    out = tmp_path / "out.txt"

    def lower() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))

    cmd = [sys.executable, "-m", "bigshuf", "--unique", "-S", "32K", "-T", str(tmp_path), "--seed", "1", str(src), "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, timeout=300, preexec_fn=lower, check=False)
    assert (done.returncode, done.stderr) == (0, b"")
    assert sorted(out.read_bytes().splitlines()) == sorted(set(lines))
