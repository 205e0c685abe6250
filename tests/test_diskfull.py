"""A full disk at the output or in -T: a clear error, exit 1, no output file, no temp files.

Uses a small tmpfs the test mounts itself (CI runs as root); skipped where mounting is not
allowed.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from helpers import make_records, write_records


@contextlib.contextmanager
def tmpfs(mnt: Path, options: str) -> Iterator[Path]:
    """A tmpfs of ``options`` mounted at ``mnt`` (made) for the block; the test skipped where mounting fails."""
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot mount a tmpfs here: {e}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "small", "size=1m") as mnt:
        yield mnt


def _run(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "bigshuf", *args], capture_output=True, timeout=120)


@pytest.mark.parametrize("shards", [None, 2])
def test_full_output_disk(tmp_path: Path, small_fs: Path, shards: int | None) -> None:
    src = write_records(tmp_path / "in", make_records(40000, seed=1))  # ~2 MB, twice the tmpfs
    target = [str(small_fs / "out.txt")] if shards is None else ["--shards", "2", "-o", str(small_fs / "p{}.txt")]
    if shards is None:
        target = ["-o", target[0]]
    result = _run([str(src), *target])
    assert result.returncode == 1
    assert b"No space left on device" in result.stderr and b"Traceback" not in result.stderr
    assert result.stderr.count(b"\n") == 1
    assert os.listdir(small_fs) == []


def test_full_temp_disk(tmp_path: Path, small_fs: Path) -> None:
    src = write_records(tmp_path / "in", make_records(40000, seed=2))
    result = _run(["-S", "64K", "-T", str(small_fs), str(src), "-o", str(tmp_path / "out")])
    assert result.returncode == 1
    assert b"not enough temporary space" in result.stderr
    assert os.listdir(small_fs) == []
    assert not (tmp_path / "out").exists()


def test_a_file_on_standard_input_is_checked_for_temp_space_up_front(tmp_path: Path, small_fs: Path) -> None:
    """``bigshuf < file`` is sized as the file is, so it is refused before it writes a bucket."""
    src = write_records(tmp_path / "in", make_records(40000, seed=2))
    with open(src, "rb") as stdin:
        result = subprocess.run(
            [sys.executable, "-m", "bigshuf", "-S", "64K", "-T", str(small_fs), "-o", str(tmp_path / "out")],
            stdin=stdin, capture_output=True, timeout=120,
        )
    assert result.returncode == 1
    assert b"not enough temporary space" in result.stderr and result.stderr.count(b"\n") == 1
    assert os.listdir(small_fs) == []
    assert not (tmp_path / "out").exists()


def test_temp_disk_filling_up_mid_run(tmp_path: Path, small_fs: Path) -> None:
    # From a pipe the size is unknown, so no check up front: the write itself fails. (A file on
    # standard input is sized, and checked up front as ``test_full_temp_disk`` is.)
    src = write_records(tmp_path / "in", make_records(40000, seed=3))
    result = subprocess.run(
        [sys.executable, "-m", "bigshuf", "-S", "64K", "-T", str(small_fs), "-o", str(tmp_path / "out")],
        input=src.read_bytes(), capture_output=True, timeout=120,
    )
    assert result.returncode == 1
    # Its first bytes go to group files (``core/bucket_groups``), a file a bucket after them.
    assert re.search(rb"/(group|bucket)-\d{5}: write error: No space left on device", result.stderr), result.stderr
    assert b"the temporary directory is full" in result.stderr and result.stderr.count(b"\n") == 1
    assert os.listdir(small_fs) == []
    assert not (tmp_path / "out").exists()


def test_a_resume_run_refused_before_its_first_checkpoint_leaves_no_directory(small_fs: Path, tmp_path: Path) -> None:
    # Found by the issue-11 verification: a --resume run refused for temporary space left its
    # bigshuf-resume-* directory (a lock, no checkpoint) in -T, and no later run removed it.
    src = write_records(tmp_path / "in.txt", make_records(40_000, seed=3))  # ~1.6 MB, -T holds 1 MB
    proc = _run(["--resume", "--seed", "1", "-S", "256K", "-T", str(small_fs), str(src), "-o", str(tmp_path / "out.txt")])
    assert proc.returncode == 1 and b"not enough temporary space" in proc.stderr, proc.stderr
    assert os.listdir(small_fs) == []
    assert not (tmp_path / "out.txt").exists()


def test_resume_with_a_url_input_names_the_real_reason(tmp_path: Path) -> None:
    # Found by the issue-12 verification: a URL input under --resume was told standard input cannot be read again.
    src = write_records(tmp_path / "in.txt", make_records(100, seed=4))
    proc = _run(["--resume", "--seed", "1", f"file://{src}", "-o", str(tmp_path / "out.txt")])
    assert proc.returncode == 1 and proc.stderr.count(b"\n") == 1
    assert b"URLs cannot be checked and read again" in proc.stderr, proc.stderr


def test_unique_is_refused_before_its_hash_buckets_fill_the_temp_disk(tmp_path: Path, small_fs: Path) -> None:
    """--unique's hash buckets (the input's bytes, until copies are dropped) were written without the
    check --dry-run makes, until the disk was full: a write error naming a bucket, where the plan
    said "not enough temporary space" (found by a dry-run differential attack)."""
    src = tmp_path / "in.txt"
    src.write_bytes(b"".join(b"%d some text for the line\n" % i for i in range(80_000)))  # 2 MiB, 1 MiB free
    _refused_as_planned(["-S", "256K", "--unique", str(src)], small_fs, tmp_path / "out.txt", "")


def _refused_as_planned(args: list[str], temp: Path, out: Path, need: str) -> None:
    """``bigshuf ARGS -T TEMP -o OUT`` refused for its temporary space (``need``: how the figure
    starts) before writing anything, in the words of the refusal its ``--dry-run`` gives."""
    args = [*args, "-T", str(temp), "-o", str(out)]
    plan = _run(["--dry-run", *args])
    proc = _run(args)
    assert proc.returncode == 1 and proc.stderr.startswith(f"bigshuf: {temp}: not enough temporary space: need {need}".encode())
    assert proc.stderr in plan.stderr.splitlines(keepends=True), (proc.stderr, plan.stderr)
    assert os.listdir(temp) == [] and not out.exists()


def test_unique_counts_the_hashes_beside_its_hash_buckets(tmp_path: Path) -> None:
    """The hash buckets keep 8 bytes of hash a record beside the records: 400,000 records of 5 bytes
    (2 MB) need 5.2 MB, and the plan and the check before the dedup counted 2, so a 4 MB -T passed
    them and the run failed part way, "unique-hashes/bucket-...: write error: No space left on
    device" (attack)."""
    src = tmp_path / "in.txt"
    src.write_bytes(b"".join(b"%04d\n" % (i * 7919 % 10_000) for i in range(400_000)))
    with tmpfs(tmp_path / "small", "size=4m") as small:
        _refused_as_planned(["-S", "1M", "--unique", str(src)], small, tmp_path / "out.txt", "5.")


def test_a_range_too_big_for_memory_and_the_temp_disk_is_refused_by_the_plan_too(tmp_path: Path, small_fs: Path) -> None:
    """``-i 1-500000`` at ``-S 256K`` is refused at once by the run (it can be listed nowhere); its
    plan said the space needed was unknown and "ok" (found by a dry-run differential attack)."""
    args = ["-i", "1-500000", "-S", "256K", "-T", str(small_fs), "-o", str(tmp_path / "out.txt")]
    plan = _run(["--dry-run", *args])
    proc = _run(args)
    assert proc.returncode == 1 and b"not enough temporary space for the 500000 numbers of 1-500000" in proc.stderr
    assert (plan.returncode, plan.stderr) == (1, proc.stderr)
    assert os.listdir(small_fs) == [] and not (tmp_path / "out.txt").exists()


def test_a_megatron_bin_that_fills_the_disk_is_the_file_named(tmp_path: Path, small_fs: Path) -> None:
    """The ``.bin``'s last buffered tokens meet the full disk: the error names it, not the ``.idx``
    written after it (whose write then failed too)."""
    sys.path.insert(0, str(Path(__file__).parent / "formats"))  # the writer the Megatron tests use
    from test_megatron import write_dataset

    rng = np.random.default_rng(0)
    # 2.2 MB of tokens onto a 1.5 MiB disk: the writes past the space left are short, and the bytes they
    # did not take wait in the .bin's buffer until it is flushed.
    docs = [[rng.integers(0, 60000, 1000).astype(np.uint16)] for _ in range(1100)]
    write_dataset(tmp_path / "ds", docs)
    subprocess.run(["mount", "-o", "remount,size=1500k", str(small_fs)], check=True)
    result = _run([str(tmp_path / "ds"), "--seed", "1", "-o", str(small_fs / "out")])
    assert result.returncode == 1
    assert result.stderr.decode() == f"bigshuf: {small_fs / 'out.bin'}: write error: No space left on device\n"
    assert os.listdir(small_fs) == []


def test_a_megatron_outputs_spilled_index_parts_that_fill_the_temp_disk(
    tmp_path: Path, small_fs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An external run whose output's index parts (2 M sequences, 12 MB) go past a 64th of -S into a
    disk too small for them: one error naming the spill file and saying the temporary directory is
    full, no output, nothing left on that disk. (Pass 2 frees buckets faster than the parts grow, so
    a -T the buckets fit is not filled by the parts alone: here the parts' run directory is put on the
    small disk, the buckets beside it on a roomy one.)"""
    sys.path.insert(0, str(Path(__file__).parent / "formats"))  # the writer the Megatron tests use
    from test_megatron_spill import write_ones

    import bigshuf
    from bigshuf.formats import megatron_run

    write_ones(tmp_path / "ds", 1_000_000, 2)
    take_up = megatron_run.MegatronRun.take_up

    def parts_on_the_small_disk(self: megatron_run.MegatronRun, temp: object) -> None:
        take_up(self, temp)  # type: ignore[arg-type]
        self.table_out.tmp_dir = str(small_fs)

    monkeypatch.setattr(megatron_run.MegatronRun, "take_up", parts_on_the_small_disk)
    (tmp_path / "t").mkdir()
    with pytest.raises(bigshuf.TempSpaceError) as e:
        bigshuf.shuffle([str(tmp_path / "ds")], str(tmp_path / "out"), memory="32M", seed=1, tmp_dir=tmp_path / "t", sync=False)
    assert re.fullmatch(
        rf"{re.escape(str(small_fs))}/bigshuf-[0-9a-f]{{12}}/index-00000\.spill: write error: No space left on device; "
        r"the temporary directory is full: .*", str(e.value),
    ), str(e.value)
    assert os.listdir(small_fs) == [] and os.listdir(tmp_path / "t") == []
    assert not (tmp_path / "out.bin").exists() and not (tmp_path / "out.idx").exists()


@pytest.mark.parametrize("rows", [False, True], ids=["lines", "rows"])
@pytest.mark.parametrize("shards", [None, 3])
def test_a_full_output_disk_on_the_dask_engine_names_the_file(tmp_path: Path, small_fs: Path, rows: bool, shards: int | None) -> None:
    """Found by attack: on the Dask engine a full output disk said ``'standard output': write error``
    for Parquet outputs, and ``task failed: No space left on device`` (or a temporary file's name)
    for lines; it names the output file, as the local engine does, as given (relative here)."""
    pytest.importorskip("distributed")
    if rows:
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        src = tmp_path / "in.parquet"
        text = [bytes(row).hex() for row in np.random.default_rng(3).integers(0, 256, (60000, 16), dtype=np.uint8)]
        pq.write_table(pa.table({"id": range(60000), "text": text}), src, compression="none")
    else:
        src = write_records(tmp_path / "in.jsonl", make_records(40000, seed=3))
    suffix = src.suffix
    target = [f"small/out{suffix}"] if shards is None else ["small/sh/"]
    options = [] if shards is None else ["--shards", str(shards)]
    temp = tmp_path / "temp"
    temp.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "bigshuf", "--engine=dask", src.name, *options, "-o", target[-1], "-S", "1M", "-T", "temp", "--seed", "2",
         "--compress", "none"],
        capture_output=True, timeout=180, cwd=tmp_path,
    )
    assert result.returncode == 1
    named = rf"small/out{suffix}" if shards is None else rf"small/sh/part-0000[0-2]{suffix}"
    assert re.fullmatch(rf"bigshuf: {named}: write error: No space left on device\n", result.stderr.decode()), result.stderr
    assert os.listdir(small_fs) == [] and os.listdir(temp) == []


def test_a_full_temp_disk_on_the_dask_engine_names_it(tmp_path: Path, small_fs: Path) -> None:
    """Found by attack: a full -T on the Dask engine said ``task failed: .../bigshuf-dask-<id>/p1/000000-000005-000000:
    No space left on device`` (an object of the run's, no hint), and the library raised a plain
    BigShufError; it is a TempSpaceError naming -T, as the local engine's (whose check comes first)."""
    pytest.importorskip("distributed")
    src = write_records(tmp_path / "in.txt", make_records(40000, seed=4))
    result = subprocess.run(
        [sys.executable, "-m", "bigshuf", "--engine=dask", "-S", "64K", "-T", "small", "in.txt", "-o", "out.txt"],
        capture_output=True, timeout=180, cwd=tmp_path,
    )
    assert (result.returncode, result.stderr) == (
        1, b"bigshuf: small: not enough temporary space (No space left on device); choose another directory with -T or --temp-url\n"
    )
    assert os.listdir(small_fs) == [] and sorted(os.listdir(tmp_path)) == ["in.txt", "small"]
    assert src.exists()


def test_shard_records_past_the_files_left_are_refused_before_writing(tmp_path: Path) -> None:
    """``--shard-records 1`` of 100 records on a file system of about 30 files left: refused once the
    count is known, naming the room, before any shard is written (without the check the run wrote
    until the inodes ran out: mutation review)."""
    with tmpfs(tmp_path / "few", "size=4m,nr_inodes=32") as mnt:
        src = write_records(tmp_path / "in", [b"%d" % i for i in range(100)])
        done = _run([str(src), "--shard-records", "1", "--seed", "1", "-o", f"{mnt}/out/"])
        err = done.stderr.decode()
        assert done.returncode == 1 and err.count("\n") == 1, err
        assert err.startswith("bigshuf: 100 shards: the file system of ") and "has room for only" in err, err
        assert os.listdir(mnt) == []


@pytest.mark.parametrize("codec,unique", [("zstd", False), ("xz", False), (None, True), ("zstd", True)])
def test_a_tar_of_recorded_size_is_refused_before_it_fills_the_temp_disk(tmp_path: Path, small_fs: Path, codec: str | None, unique: bool) -> None:
    """A compressed tar whose size zstd or xz records is held against the free space before pass 1,
    as a plain tar is, and with --unique any tar before its hash buckets, with the line --dry-run
    fails with: both wrote buckets until the disk was full and failed naming one."""
    import io
    import tarfile

    from helpers import compress

    rng = np.random.default_rng(5)
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as t:
        for i in range(300):  # ~2.4 MiB, more than twice the tmpfs
            for suffix in ("bin", "json"):
                data = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
                info = tarfile.TarInfo(f"{i:06d}.{suffix}")
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    src = tmp_path / ("in.tar" if codec is None else f"in.tar.{'zst' if codec == 'zstd' else 'xz'}")
    src.write_bytes(tar.getvalue() if codec is None else compress(codec, tar.getvalue()))
    args = ["-S", "256K", "-T", str(small_fs), *(["--unique"] if unique else []), str(src), "-o", str(tmp_path / "out.tar")]
    plan = _run(["--dry-run", *args])
    proc = _run(args)
    assert proc.returncode == 1 and proc.stderr.startswith(f"bigshuf: {small_fs}: not enough temporary space: need ".encode()), proc.stderr
    assert proc.stderr in plan.stderr.splitlines(keepends=True), (proc.stderr, plan.stderr)
    assert os.listdir(small_fs) == [] and not (tmp_path / "out.tar").exists()


@pytest.mark.parametrize("piped", [False, True])
def test_a_temp_directory_out_of_inodes_says_so(tmp_path: Path, piped: bool) -> None:
    """On a -T with 30 inodes a file needing 121 buckets failed at ``.../top/bucket-00026: No space
    left on device``, bare. A file's buckets are counted against the inodes left before pass 1;
    from a pipe (no count up front) the failing create says the file system is out of inodes."""
    with tmpfs(tmp_path / "few", "size=64m,nr_inodes=30") as mnt:
        src = write_records(tmp_path / "in", [b"%d" % i for i in range(200000)])  # 1.3 MB
        args = ["-S", "256K", "-T", str(mnt), "-o", str(tmp_path / "out")]
        if piped:
            done = subprocess.run([sys.executable, "-m", "bigshuf", *args], input=src.read_bytes(), capture_output=True, timeout=120, check=False)
        else:
            done = _run([str(src), *args])
        err = done.stderr.decode()
        assert done.returncode == 1 and err.count("\n") == 1 and "Traceback" not in err, err
        if piped:
            assert re.search(r"/(group|bucket)-\d{5}: No space left on device; .* out of files \(inodes\)", err), err
        else:
            assert err.startswith(f"bigshuf: {mnt}: not enough free files (inodes) for the temporary buckets: need "), err
        assert os.listdir(mnt) == []
        assert not (tmp_path / "out").exists()
