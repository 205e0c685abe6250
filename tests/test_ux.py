"""What a new user meets: directory operands, messages that say what to do, progress, --help (issue 12)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import zstandard

import bigshuf
from bigshuf.core import plan
from bigshuf.errors import BigShufError, UsageError

from conftest import Runner
from helpers import split_records


def _corpus(root: Path) -> list[bytes]:
    """A directory as users have them: line files of several kinds and codecs, nested, with
    hidden and ``_`` names and files of no known kind beside them; returns the data records."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".cache").mkdir()
    (root / "_tmp").mkdir()
    records: list[bytes] = []
    files = {
        "a.txt": b"t1\nt2\n",
        "b.jsonl": b'{"j":1}\n{"j":2}\n',
        "c.csv": b"x,1\nx,2\n",
        "sub/d.jsonl.zst": b'{"z":1}\n{"z":2}\n{"z":3}\n',
        "sub/deeper/e.fq": b"@r\nACGT\n+\nIIII\n",
        "sub/f.tsv.gz": b"g\t1\n",
    }
    for name, data in files.items():
        path = root / name
        if name.endswith(".zst"):
            path.write_bytes(zstandard.ZstdCompressor().compress(data))
        elif name.endswith(".gz"):
            import gzip

            path.write_bytes(gzip.compress(data))
        else:
            path.write_bytes(data)
        records += data.splitlines()
    for skipped in (".hidden.txt", "_SUCCESS", ".cache/x.txt", "_tmp/y.jsonl", "README", "notes.md"):
        (root / skipped).write_bytes(b"SKIPPED\n")
    return records


# --- directories -----------------------------------------------------------------------------


def test_directory_of_line_files_is_read_by_suffix(tmp_path: Path, run_cli: Runner) -> None:
    """issue 12: a directory of line files shuffled as one input; hidden, _-prefixed and unknown names skipped."""
    records = _corpus(tmp_path / "data")
    code, out, err = run_cli(["--seed", "3", tmp_path / "data"])
    assert (code, err) == (0, b"")
    assert Counter(out.splitlines()) == Counter(records)


def test_directory_from_the_library(tmp_path: Path) -> None:
    """The library reads a directory operand by the same rule as the command line."""
    records = _corpus(tmp_path / "data")
    stats = bigshuf.shuffle(tmp_path / "data", tmp_path / "out.txt", seed=1)
    assert stats.records == len(records)
    assert Counter((tmp_path / "out.txt").read_bytes().splitlines()) == Counter(records)


def test_shard_pattern_whose_format_cannot_number_shards(tmp_path: Path, run_cli: Runner) -> None:
    """A pattern with {} whose format gives shards the same name is named for what it is, not as a missing {}."""
    (tmp_path / "in.txt").write_bytes(b"".join(b"%d\n" % i for i in range(100)))
    target = f"{tmp_path}/pc/{{:.0e}}.txt"
    code, _, err = run_cli(["--shards", "30", tmp_path / "in.txt", "-o", target])
    assert (code, err) == (1, f"bigshuf: 30 shards: '{{:.0e}}' in -o '{target}' cannot number shards; use {{}} or {{:05d}}\n".encode())
    assert not (tmp_path / "pc").exists()
    with pytest.raises(UsageError, match=r"'\{!r:\.1\}' in .* cannot number shards; use \{\} or \{:05d\}$"):
        bigshuf.shuffle(tmp_path / "in.txt", f"{tmp_path}/pc/{{!r:.1}}", shards=30)
    code, _, err = run_cli(["--shards", "30", tmp_path / "in.txt", "-o", tmp_path / "one.txt"])
    assert code == 1 and b"30 shards need -o to be a directory or a pattern with {}" in err


def test_directory_of_jsonl_zst_shards(tmp_path: Path, run_cli: Runner) -> None:
    """issue 12: the common corpus layout, a directory of .jsonl.zst shards, shuffles as lines."""
    data = tmp_path / "corpus"
    data.mkdir()
    records = [b'{"id":%d}' % i for i in range(300)]
    for shard in range(3):
        part = b"".join(r + b"\n" for r in records[shard * 100 : (shard + 1) * 100])
        (data / f"part-{shard:05d}.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(part))
    code, out, err = run_cli(["--seed", "1", data, "-o", tmp_path / "out.jsonl"])
    assert (code, err) == (0, b"")
    got = (tmp_path / "out.jsonl").read_bytes().splitlines()
    assert Counter(got) == Counter(records) and got != records


def test_directory_of_line_files_into_parquet(tmp_path: Path, run_cli: Runner) -> None:
    """A directory of JSON Lines files converts to a table output like the files named one by one."""
    pq = pytest.importorskip("pyarrow.parquet")
    data = tmp_path / "rows"
    data.mkdir()
    (data / "a.jsonl").write_bytes(b'{"x":1}\n{"x":2}\n')
    (data / "b.ndjson").write_bytes(b'{"x":3}\n')
    code, _, err = run_cli(["--seed", "1", data, "-o", tmp_path / "out.parquet"])
    assert (code, err) == (0, b"")
    assert sorted(pq.read_table(tmp_path / "out.parquet").column("x").to_pylist()) == [1, 2, 3]


def test_mixed_directory_names_one_file_of_each_kind(tmp_path: Path, run_cli: Runner) -> None:
    """issue 12: a directory of line files and tables is an error naming one of each, not a silent skip."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    data = tmp_path / "data"
    _corpus(data)
    (data / "pq").mkdir()
    pq.write_table(pa.table({"x": [1, 2]}), data / "pq" / "p.parquet")
    code, out, err = run_cli([data])
    assert (code, out) == (1, b"")
    line = err.decode()
    assert line.count("\n") == 1 and line.startswith(f"bigshuf: {data}: ")
    assert f"{data}/a.txt" in line and f"{data}/pq/p.parquet" in line
    with pytest.raises(UsageError, match="p.parquet"):
        bigshuf.shuffle(data, tmp_path / "out.txt")


def test_directory_of_tables_still_shuffles_rows(tmp_path: Path, run_cli: Runner) -> None:
    """A directory of Parquet files is still a dataset of rows, skipping non-data files beside them."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    data = tmp_path / "ds"
    data.mkdir()
    pq.write_table(pa.table({"x": [1, 2]}), data / "a.parquet")
    pq.write_table(pa.table({"x": [3]}), data / "b.parquet")
    (data / "_SUCCESS").write_bytes(b"")
    (data / "README").write_bytes(b"about\n")
    code, _, err = run_cli(["--seed", "1", data, "-o", tmp_path / "out.parquet"])
    assert (code, err) == (0, b"")
    assert sorted(pq.read_table(tmp_path / "out.parquet").column("x").to_pylist()) == [1, 2, 3]


@pytest.mark.parametrize("args", [["-r", "."], ["-n1", "."], ["."]])
def test_directory_without_data_files_is_a_read_error(tmp_path: Path, run_cli: Runner, run_gnu: Runner, args: list[str]) -> None:
    """coreutils tests/misc/read-errors.sh:70-71 (`shuf -r .`, `shuf -n1 .`): exit 1 with the read's own error.

    GNU says "shuf: read error: Is a directory"; bigshuf names the file as well, as its other messages do.
    """
    (tmp_path / "all_readers").write_bytes(b"no data suffix\n")
    gnu_code, _, gnu_err = run_gnu(args, cwd=tmp_path)
    code, out, err = run_cli(args, cwd=tmp_path)
    assert (code, out) == (gnu_code, b"") == (1, b"")
    assert gnu_err == b"bigshuf: read error: Is a directory\n"
    assert err == b"bigshuf: .: read error: Is a directory\n"


def test_directory_read_error_comes_from_the_read(tmp_path: Path) -> None:
    """coreutils tests/misc/read-errors.sh:114-124: with read() on '.' failing with EIO (strace fault
    injection), the message is the read's EIO, so bigshuf really reads the directory as shuf does."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    probe = subprocess.run(
        [strace, "-o", "/dev/null", "-P", "_", "-e", "/read,splice", "-e", "fault=all:error=EIO", "true"],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip("strace cannot inject faults here")
    proc = subprocess.run(
        [strace, "-f", "-o", "/dev/null", "-P", ".", "-e", "/read,splice", "-e", "fault=all:error=EIO",
         sys.executable, "-m", "bigshuf", "-n1", "."],
        cwd=tmp_path, capture_output=True, timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.endswith(b"bigshuf: .: read error: Input/output error\n")


def _run_on_pty(
    argv: list[str], cwd: Path, *, rows: int = 24, cols: int = 80, pty_for: str = "stdout", stdin: int = subprocess.DEVNULL
) -> tuple[int, bytes, bytes]:
    """Run ``python -m bigshuf argv`` with stdout, stderr or both on a pseudo-terminal of the given size
    (``stdin``: a descriptor, or nothing); returns the status, what the terminal showed and the other stream (empty for both)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    for name in ("stdout", "stderr") if pty_for == "both" else (pty_for,):
        streams[name] = slave
    proc = subprocess.Popen(
        [sys.executable, "-m", "bigshuf", *argv], cwd=cwd, stdin=stdin, **streams  # type: ignore[arg-type]
    )
    os.close(slave)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    other = None if pty_for == "both" else proc.stderr if pty_for == "stdout" else proc.stdout
    rest = b""
    if other is not None:
        rest = other.read()
        other.close()
    return proc.wait(timeout=60), bytes(shown), rest


def test_binary_output_to_a_terminal_is_refused(tmp_path: Path) -> None:
    """issue 12: Parquet rows and compressed lines are not written to a terminal (as zstd refuses)."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "in.parquet")
    (tmp_path / "in.txt").write_bytes(b"a\nb\n")
    code, shown, err = _run_on_pty(["in.parquet"], tmp_path)
    assert (code, shown) == (1, b"")
    assert err == b"bigshuf: refusing to write Parquet to a terminal; give -o a file name, or pipe the output\n"
    code, shown, err = _run_on_pty(["--compress", "zstd", "in.txt"], tmp_path)
    assert (code, shown) == (1, b"")
    assert b"refusing to write zstd-compressed data to a terminal" in err
    code, shown, err = _run_on_pty(["--output-format", "jsonl", "in.parquet"], tmp_path)
    assert (code, err) == (0, b"")
    assert sorted(shown.split()) == [b'{"x":1}', b'{"x":2}']


# --- messages that name a setting ------------------------------------------------------------


def test_option_placeholders_render_for_each_side() -> None:
    """Every setting has both spellings, and a message renders to one or the other, never a placeholder."""
    from bigshuf.errors import OPTION_SPELLINGS, option, render

    for setting, (cli, lib) in OPTION_SPELLINGS.items():
        message = f"raise {option(setting)} now"
        assert render(message, cli=True) == f"raise {cli} now"
        assert render(message, cli=False) == f"raise {lib} now"
    error = UsageError(f"x; raise {option('memory')}")
    assert (str(error), error.cli_message()) == ("x; raise memory=", "x; raise -S")
    with pytest.raises(KeyError):
        option("no_such_setting")


def test_library_errors_name_keyword_arguments(tmp_path: Path) -> None:
    """issue 12: a library caller who passed memory= is told to raise memory=, not -S."""
    long_record = tmp_path / "long.txt"
    long_record.write_bytes(b"x" * 300_000 + b"\n")
    with pytest.raises(BigShufError) as caught:
        bigshuf.shuffle(long_record, tmp_path / "out", memory="64K")
    assert "raise memory=" in str(caught.value) and "-S" not in str(caught.value)
    with pytest.raises(UsageError) as caught:
        bigshuf.shuffle(long_record, None, verify=True, head_count=1)
    assert str(caught.value) == "verify=True checks whole shuffles; it cannot check a sample (head_count=) or repeat=True"
    with pytest.raises(UsageError, match=r"^memory limit 1 bytes is below the minimum of \d+; raise memory=$"):
        bigshuf.shuffle(long_record, None, memory=1)
    with pytest.raises(UsageError, match="^resume=True needs seed="):
        bigshuf.shuffle(long_record, tmp_path / "out", resume=True)


def test_command_line_errors_name_flags(tmp_path: Path, run_cli: Runner) -> None:
    """The same errors from the command line name the flags."""
    long_record = tmp_path / "long.txt"
    long_record.write_bytes(b"x" * 300_000 + b"\n")
    code, _, err = run_cli(["-S", "64K", long_record, "-o", tmp_path / "out"])
    assert code == 1 and err.endswith(b"; raise -S\n") and b"memory=" not in err
    code, _, err = run_cli(["--verify", "-n", "1", long_record])
    assert (code, err) == (1, b"bigshuf: --verify checks whole shuffles; it cannot check a sample (-n) or --repeat\n")
    code, _, err = run_cli(["-S", "1b", long_record])
    assert code == 1 and err.endswith(b"; raise -S\n")
    code, _, err = run_cli(["--resume", long_record, "-o", tmp_path / "out"])
    assert code == 1 and err.startswith(b"bigshuf: --resume needs --seed (or --random-source)")


def test_resume_refuses_a_random_source_that_changes_between_reads(tmp_path: Path, run_cli: Runner) -> None:
    """``--resume --random-source=/dev/urandom`` ran, and every rerun after a kill was refused as "a run
    of this output with other inputs, seed or options" (its first 4 KiB differ each read): the job could
    never resume (found by attack). A device or FIFO is refused at the start now; a regular file is taken."""
    (tmp_path / "in.txt").write_bytes(b"".join(b"%d\n" % i for i in range(100)))
    (tmp_path / "rs").write_bytes(bytes(range(256)) * 20)
    code, out, err = run_cli(["--resume", "--random-source=/dev/urandom", "in.txt", "-o", "out.txt"], cwd=tmp_path)
    assert (code, out) == (1, b"")
    assert err == (b"bigshuf: --resume needs --random-source naming a regular file, not /dev/urandom: a device or FIFO gives "
                   b"other bytes each time it is read, so a rerun could never resume\n")
    with pytest.raises(bigshuf.UsageError, match="random_source= naming a regular file"):
        bigshuf.shuffle(tmp_path / "in.txt", tmp_path / "out.txt", resume=True, random_source="/dev/urandom")
    assert sorted(os.listdir(tmp_path)) == ["in.txt", "rs"]
    assert run_cli(["--resume", "--random-source=rs", "in.txt", "-o", "out.txt"], cwd=tmp_path)[0] == 0


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 3 MiB tmpfs to use as -T (skips the test where mounting is not allowed)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True
    ).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def _compressed_lines(path: Path, lines: int = 150_000) -> Path:
    """A zstd file of distinct lines, about 10 MB once decompressed: more than the tiny tmpfs holds.
    Its frame does not state its size (as ``zstd < in`` writes it), so its size is only sampled and
    not checked against free space up front (a recorded size is: ``tests/storage/test_expansion.py``)."""
    data = b"".join(b"%08d %s\n" % (i, b"x" * 55) for i in range(lines))
    path.write_bytes(zstandard.ZstdCompressor(write_content_size=False).compress(data))
    return path


def test_full_temporary_directory_hints_at_t(tmp_path: Path, tiny_tmpfs: Path, run_cli: Runner) -> None:
    """issue 12: compressed input (not size-checked up front) filling -T names the bucket and says to use -T."""
    source = _compressed_lines(tmp_path / "big.txt.zst")
    code, out, err = run_cli(["-S", "1M", "-T", tiny_tmpfs, source, "-o", tmp_path / "out.txt"])
    assert (code, out) == (1, b"")
    assert err.count(b"\n") == 1 and b"No space left on device" in err
    assert err.endswith(b"; the temporary directory is full: choose one with more space with -T, or use --compress-temp\n")
    assert os.listdir(tiny_tmpfs) == [] and not (tmp_path / "out.txt").exists()
    with pytest.raises(BigShufError, match="choose one with more space with tmp_dir=, or use compress_temp=True$") as caught:
        bigshuf.shuffle(source, tmp_path / "out.txt", memory="1M", tmp_dir=tiny_tmpfs)
    # The failed run closed its input although the exception (frames, readers) is still alive: it
    # used to stay open until the garbage collector met it, with a ResourceWarning that failed CI.
    if os.path.isdir("/proc/self/fd"):
        held = {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd") if os.path.islink(f"/proc/self/fd/{fd}")}
        assert str(source) not in held, caught.value


def test_full_temporary_directory_hints_at_t_for_tables(tmp_path: Path, tiny_tmpfs: Path, run_cli: Runner) -> None:
    """The same hint when the buckets of a table run (compressed JSON Lines to Parquet) fill -T."""
    pytest.importorskip("pyarrow")
    data = b"".join(b'{"id":%d,"text":"%s"}\n' % (i, b"y" * 55) for i in range(150_000))
    source = tmp_path / "in.jsonl.zst"
    source.write_bytes(zstandard.ZstdCompressor().compress(data))
    code, out, err = run_cli(["-S", "1M", "-T", tiny_tmpfs, source, "-o", tmp_path / "out.parquet"])
    assert (code, out) == (1, b"")
    assert err.count(b"\n") == 1 and b"No space left on device" in err
    assert err.endswith(b"; the temporary directory is full: choose one with more space with -T, or use --compress-temp\n")


# --- URLs on the local engine ----------------------------------------------------------------


def test_url_inputs_are_read_through_fsspec() -> None:
    """issue 12: URL inputs (here memory://, globs and zstd included) shuffle on the local engine."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    records = [b"r%d" % i for i in range(20_000)]
    fs.pipe("/ux-corpus/a.txt", b"".join(r + b"\n" for r in records[:8000]))
    fs.pipe("/ux-corpus/b.txt.zst", zstandard.ZstdCompressor().compress(b"".join(r + b"\n" for r in records[8000:])))
    try:
        out = Path(os.environ.get("TMPDIR", "/tmp")) / f"ux-url-{os.getpid()}.txt"
        stats = bigshuf.shuffle("memory://ux-corpus/*", out, seed=4, memory="64K")
        got = out.read_bytes().splitlines()
        out.unlink()
    finally:
        fs.rm("/ux-corpus", recursive=True)
    assert stats.records == 20_000 and stats.passes == 2
    assert Counter(got) == Counter(records) and got != records


def test_url_inputs_from_the_command_line(tmp_path: Path, run_cli: Runner) -> None:
    """file:// URLs name inputs on the command line as s3:// ones would (same code path)."""
    pytest.importorskip("fsspec")
    (tmp_path / "a.txt").write_bytes(b"1\n2\n")
    (tmp_path / "b.txt").write_bytes(b"3\n")
    code, out, err = run_cli([f"file://{tmp_path}/*.txt"])
    assert (code, err) == (0, b"")
    assert sorted(out.split()) == [b"1", b"2", b"3"]


def test_url_errors_say_what_to_do(tmp_path: Path, run_cli: Runner) -> None:
    """A URL output names the engine that writes URLs; a Parquet URL and a missing object are one line each."""
    pytest.importorskip("fsspec")
    (tmp_path / "a.txt").write_bytes(b"1\n")
    code, _, err = run_cli([tmp_path / "a.txt", "-o", "s3://bucket/out.txt"])
    assert (code, err) == (1, b"bigshuf: s3://bucket/out.txt: this engine writes local files; write to URLs with --engine=dask\n")
    with pytest.raises(UsageError, match=r"write to URLs with engine='dask'$"):
        bigshuf.shuffle(tmp_path / "a.txt", "s3://bucket/out.txt")
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    code, _, err = run_cli([f"file://{tmp_path}/t.parquet"])
    assert code == 1 and err.endswith(b"Parquet and Arrow data are read from local files only; copy it here first\n")
    code, _, err = run_cli([f"file://{tmp_path}/missing.txt"])
    assert (code, err) == (1, f"bigshuf: file://{tmp_path}/missing.txt: No such file or directory\n".encode())


# --- progress --------------------------------------------------------------------------------


class _Recorder(bigshuf.progress.Progress):
    """Keeps every phase a run reports, with its total and the bytes reported done."""

    def __init__(self) -> None:
        self.phases: list[list] = []  # type: ignore[type-arg]

    def start(self, description: str, total: int | None) -> None:
        self.phases.append([description, total, 0])

    def update(self, nbytes: int) -> None:
        self.phases[-1][2] += nbytes


def _lines_file(path: Path, lines: int = 40_000) -> bytes:
    data = b"".join(b"%07d %s\n" % (i, b"abcdefghij"[i % 10 :] * 3) for i in range(lines))
    path.write_bytes(data)
    return data


def test_progress_phases_are_named_alike(tmp_path: Path) -> None:
    """issue 12: `pass 1/2 scatter` and `pass 2/2 shuffle` for an external run, one `shuffle` phase in memory."""
    data = _lines_file(tmp_path / "in.txt")
    seen = _Recorder()
    bigshuf.shuffle(tmp_path / "in.txt", tmp_path / "out.txt", memory="256K", seed=1, progress=seen)
    names = [name for name, _, _ in seen.phases]
    assert names[0] == "pass 1/2 scatter" and set(names) == {"pass 1/2 scatter", "pass 2/2 shuffle"}
    assert seen.phases[0][1:] == [len(data), len(data)]
    seen = _Recorder()
    bigshuf.shuffle(tmp_path / "in.txt", tmp_path / "out.txt", seed=1, progress=seen)
    assert seen.phases == [["shuffle", len(data), len(data)]]


def test_a_file_whose_bytes_fit_but_not_its_records_has_the_external_bars_only(tmp_path: Path) -> None:
    """A lone file small enough in bytes for -S but not with each record's bookkeeping: its bars are the
    external run's two, not a `shuffle` bar run to 100% first (it was, the input then read again)."""
    data = _lines_file(tmp_path / "in.txt")
    n = data.count(b"\n")
    limit = next(k << 10 for k in range(64, 4096) if plan.block_budget(k << 10) > len(data))
    assert not plan.fits_in_memory(len(data), n, limit)  # the bytes fit, the records do not
    seen = _Recorder()
    bigshuf.shuffle(tmp_path / "in.txt", tmp_path / "out.txt", memory=limit, seed=1, progress=seen)
    assert [name for name, _, _ in seen.phases] == ["pass 1/2 scatter", "pass 2/2 shuffle"]
    assert seen.phases[0][1:] == [len(data), len(data)]
    assert sorted(split_records((tmp_path / "out.txt").read_bytes())) == sorted(split_records(data))


@pytest.mark.parametrize("memory", ["256K", "64M"])
def test_compressed_input_progress_counts_stored_bytes(tmp_path: Path, memory: str) -> None:
    """issue 12: a compressed input's bar has a total, its compressed size, and reaches it exactly."""
    data = _lines_file(tmp_path / "plain.txt")
    stored = zstandard.ZstdCompressor(level=1).compress(data)
    (tmp_path / "in.txt.zst").write_bytes(stored)
    seen = _Recorder()
    bigshuf.shuffle(tmp_path / "in.txt.zst", tmp_path / "out.txt", memory=memory, seed=1, progress=seen)
    first = "pass 1/2 scatter" if memory == "256K" else "shuffle"
    assert seen.phases[0][1:] == [len(stored), len(stored)] and seen.phases[0][0] == first


def test_input_of_unknown_size_in_memory_has_one_shuffle_bar(tmp_path: Path, run_cli: Runner) -> None:
    """Standard input and compressed input in memory: one bar, `shuffle`, named once the run knows it is
    in memory (not `pass 1/2 scatter` and then a second, empty `shuffle`)."""
    data = _lines_file(tmp_path / "plain.txt")
    stored = zstandard.ZstdCompressor(level=1).compress(data)
    (tmp_path / "in.txt.zst").write_bytes(stored)
    seen = _Recorder()
    bigshuf.shuffle(tmp_path / "in.txt.zst", tmp_path / "out.txt", seed=1, progress=seen)
    assert seen.phases == [["shuffle", len(stored), len(stored)]]
    code, _, err = run_cli(["--progress", "-o", tmp_path / "out.txt"], input=b"".join(b"%d\n" % i for i in range(10)))
    frames = [f.strip() for f in err.decode().replace("\n", "\r").split("\r") if f.strip()]
    assert code == 0 and frames[-1].endswith(" in 1 pass, " + frames[-1].split(" in 1 pass, ")[-1]), frames
    assert all(f.startswith("shuffle: ") for f in frames[:-1]) and frames[-2].startswith("shuffle: 20.0B "), frames


def test_bars_are_drawn_full_before_they_close(tmp_path: Path, run_cli: Runner) -> None:
    """An in-memory run's `shuffle` bar, and pass 1 of compressed input, are drawn at 100% (every byte,
    compressed bytes for compressed input), not left at the last throttled draw (0%, 84%)."""
    data = _lines_file(tmp_path / "plain.txt")
    (tmp_path / "in.txt.zst").write_bytes(zstandard.ZstdCompressor(level=1).compress(data))
    code, _, err = run_cli(["--progress", tmp_path / "plain.txt", "-o", tmp_path / "out.txt"])
    assert code == 0 and re.search(r"shuffle: 100%\|", err.decode()), err
    code, _, err = run_cli(["--progress", "-S", "256K", tmp_path / "in.txt.zst", "-o", tmp_path / "out.txt"])
    assert code == 0 and re.search(r"pass 1/2 scatter: 100%\|", err.decode()), err


@pytest.mark.parametrize("memory", ["256K", "64M"])
def test_table_progress_counts_stored_bytes(tmp_path: Path, memory: str) -> None:
    """A Parquet input's bar runs to its size on disk (not to its Arrow size), under the same phase names."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": range(30_000), "text": [f"row {i}" for i in range(30_000)]}), path, row_group_size=3000)
    seen = _Recorder()
    bigshuf.shuffle(path, tmp_path / "out.parquet", memory=memory, seed=1, progress=seen)
    first = "pass 1/2 scatter" if memory == "256K" else "shuffle"
    reading = [p for p in seen.phases if p[0] == first]
    assert reading[-1][1:] == [path.stat().st_size, path.stat().st_size]
    assert ("pass 2/2 shuffle" in {p[0] for p in seen.phases}) == (memory == "256K")


def test_progress_bars_and_summary_from_the_command_line(tmp_path: Path, run_cli: Runner) -> None:
    """--progress on a pipe: the new phase names, a total for compressed input, and one summary line at the end."""
    data = _lines_file(tmp_path / "plain.txt")
    (tmp_path / "in.txt.zst").write_bytes(zstandard.ZstdCompressor(level=1).compress(data))
    code, _, err = run_cli(["--progress", "-S", "1M", tmp_path / "in.txt.zst", "-o", tmp_path / "out.txt"])
    assert code == 0
    text = err.decode()
    assert "pass 2/2 shuffle:" in text and "reading" not in text
    assert re.search(r"pass 1/2 scatter: +\d+%\|", text), text  # a percentage: the bar has a total
    last = text.split("\n")[-2].split("\r")[-1]
    assert re.fullmatch(r"bigshuf: 40,000 records, [\d.]+ [KM]iB in 2 passes, [\d.]+ s \([\d.]+ [KMG]?i?B/s\)", last), last
    code, _, err = run_cli(["--progress", tmp_path / "plain.txt", "-o", tmp_path / "out.txt"])
    assert code == 0 and err.decode().endswith(" in 1 pass, " + err.decode().split(" in 1 pass, ")[-1])
    code, _, err = run_cli([tmp_path / "plain.txt", "-o", tmp_path / "out.txt"])
    assert (code, err) == (0, b"")


def test_records_written_to_the_terminal_get_no_bars_unless_asked(tmp_path: Path) -> None:
    """``bigshuf FILE`` at a terminal wrote bars and a summary line between and after the records, where
    shuf writes the records alone (found by attack); with --progress the bars are drawn."""
    data = _lines_file(tmp_path / "in.txt", 20_000)
    code, shown, _ = _run_on_pty(["-S", "256K", "--seed", "1", "in.txt"], tmp_path, pty_for="both")
    assert code == 0 and sorted(shown.replace(b"\r\n", b"\n").split(b"\n")) == sorted(data.split(b"\n"))
    code, shown, _ = _run_on_pty(["-S", "256K", "--seed", "1", "in.txt", "--progress"], tmp_path, pty_for="both")
    assert code == 0 and b"pass 1/2 scatter" in shown and b"bigshuf: 20,000 records" in shown


def test_bars_shown_by_default_wait_for_a_run_that_lasts(tmp_path: Path) -> None:
    """At a terminal, records written elsewhere: a run shorter than ``QUIET_START`` prints nothing,
    as shuf (``x=$(bigshuf -n 1 FILE)`` printed a bar and "1 records, ..." there: differential test);
    one that lasts longer draws its bars and sums up, and ``-q`` keeps it silent."""
    data = _lines_file(tmp_path / "in.txt", 20_000)
    for args in (["-o", "out.txt"], ["-n", "1"]):
        code, shown, out = _run_on_pty(["-S", "256K", "--seed", "1", "in.txt", *args], tmp_path, pty_for="stderr")
        assert (code, shown) == (0, b"") and (out == b"" or out in data)
    for quiet in ([], ["-q"]):
        r, w = os.pipe()

        def feed(w: int = w) -> None:
            try:
                os.write(w, data[: len(data) // 2])
                time.sleep(1.5)  # the run lasts longer than QUIET_START
                os.write(w, data[len(data) // 2 :])
            finally:
                os.close(w)

        feeder = threading.Thread(target=feed)
        feeder.start()
        code, shown, _ = _run_on_pty(["--seed", "1", "-o", "out.txt", *quiet], tmp_path, pty_for="stderr", stdin=r)
        feeder.join()
        os.close(r)
        assert code == 0 and (tmp_path / "out.txt").read_bytes() != data
        if quiet:
            assert shown == b""
        else:
            assert b"shuffle" in shown and b"bigshuf: 20,000 records" in shown, shown


def test_progress_on_a_zero_size_terminal(tmp_path: Path) -> None:
    """issue 12: a 0x0 terminal (as under `script`) gets bars of a fixed width, not blank ones."""
    _lines_file(tmp_path / "in.txt", 200_000)
    code, shown, _ = _run_on_pty(["--progress", "-S", "1M", "in.txt", "-o", "out.txt"], tmp_path, rows=0, cols=0, pty_for="stderr")
    assert code == 0
    frames = [f for f in shown.decode().replace("\n", "\r").split("\r") if f.strip()]
    bars = [f for f in frames if f.startswith("pass ")]
    assert bars and all(len(f) == 80 for f in bars), frames
    assert frames[-1].startswith("bigshuf: 200,000 records")


# --- --help ----------------------------------------------------------------------------------


def test_help_examples_run(tmp_path: Path, run_cli: Runner) -> None:
    """issue 12: --help shows examples from the README's recipes, each of which runs as shown here."""
    import glob
    import gzip
    import shlex

    code, out, err = run_cli(["--help"])
    assert (code, err) == (0, b"")
    text = out.decode()
    assert "\nExamples:\n" in text and all(len(line) <= 80 for line in text.splitlines())
    examples = [line.split(None, 1)[1] for line in text.split("\nExamples:\n")[1].splitlines() if line.startswith("  bigshuf ")]
    assert len(examples) >= 4
    records = [b'{"id":%d}' % i for i in range(100)]
    (tmp_path / "corpus.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(b"\n".join(records) + b"\n"))
    (tmp_path / "part-1.csv").write_bytes(b"h\n1\n2\n")
    (tmp_path / "part-2.csv").write_bytes(b"h\n3\n")
    (tmp_path / "reads.fastq.gz").write_bytes(gzip.compress(b"@a\nAC\n+\nII\n@b\nGT\n+\nII\n"))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.jsonl.zst").write_bytes((tmp_path / "corpus.jsonl.zst").read_bytes())
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": range(50)}), tmp_path / "train.parquet")
    (tmp_path / "tok").mkdir()
    for name, tokens in (("web", b"\x01\x00\x02\x00"), ("code", b"\x03\x00")):  # uint16 documents of one sequence each
        n = len(tokens) // 2
        body = struct.pack(f"<{n}i", *[1] * n) + struct.pack(f"<{n}q", *range(0, 2 * n, 2)) + struct.pack(f"<{n + 1}q", *range(n + 1))
        (tmp_path / "tok" / f"{name}_text_document.idx").write_bytes(b"MMIDIDX\0\0" + struct.pack("<QBQQ", 1, 8, n, n + 1) + body)
        (tmp_path / "tok" / f"{name}_text_document.bin").write_bytes(tokens)
    for example in examples:
        argv = [match for word in shlex.split(example) for match in (sorted(glob.glob(word, root_dir=tmp_path)) or [word])]
        code, _, err = run_cli(argv, cwd=tmp_path)
        assert (code, err) == (0, b""), example
    assert len((tmp_path / "sample.jsonl").read_bytes().splitlines()) == 50
    assert (tmp_path / "shuffled.csv").read_bytes().startswith(b"h\n")
    assert sorted(p.name for p in (tmp_path / "out").iterdir())[:2] == ["part-00000.jsonl.zst", "part-00001.jsonl.zst"]
    assert (tmp_path / "mixed.bin").stat().st_size == 6 and (tmp_path / "mixed.idx").stat().st_size == 34 + 12 * 3 + 8 * 4


def test_unlistable_subdirectory_fails_rather_than_losing_its_files(run_cli: Runner) -> None:
    """A subdirectory the user cannot list is an error naming it, not silently skipped data."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run as a second user (nobody)")
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="bigshuf-ux-", dir="/tmp"))
    try:
        top.chmod(0o755)
        (top / "a.txt").write_bytes(b"1\n")
        (top / "locked").mkdir(mode=0o700)
        (top / "locked" / "b.txt").write_bytes(b"2\n")
        proc = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "bigshuf", str(top)],
            capture_output=True, timeout=60, cwd="/",
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        )
        assert (proc.returncode, proc.stdout) == (1, b"")
        assert proc.stderr == f"bigshuf: {top}/locked: cannot list directory: Permission denied\n".encode()
    finally:
        shutil.rmtree(top)


def test_directory_on_the_dask_engine(tmp_path: Path, run_cli: Runner) -> None:
    """--engine=dask reads a directory operand by the same rule as the local engine."""
    pytest.importorskip("distributed")
    records = _corpus(tmp_path / "data")
    code, out, err = run_cli(["--engine=dask", "-S", "1M", "--seed", "2", tmp_path / "data"])
    assert (code, err) == (0, b"")
    assert Counter(out.splitlines()) == Counter(records)


#: A file name that a raw message would break over two lines, and how GNU tools show it.
_NL = "x\ny"
_NL_SHOWN = b"x'$'\\n''y"  # within quotes that may begin earlier, at a directory


def _bad_inputs(root: Path, case: str) -> list[str]:
    """The arguments of a run that must fail naming a file whose name holds a newline."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if case == "parquet":
        (root / f"{_NL}.parquet").write_bytes(b"PAR1xxxx")
        return [f"{_NL}.parquet", "-o", "o.parquet"]
    if case == "arrow":
        (root / f"{_NL}.arrow").write_bytes(b"ARROW1xx")
        return [f"{_NL}.arrow", "-o", "o.arrow"]
    if case == "json line":
        (root / f"{_NL}.jsonl").write_bytes(b'{"a":1}\n{"a":\n')
        return [f"{_NL}.jsonl", "-o", "o.parquet"]
    if case == "schemas":
        pq.write_table(pa.table({"a": [1]}), root / f"{_NL}-a.parquet")
        pq.write_table(pa.table({"b": [1]}), root / "b.parquet")
        return ["b.parquet", f"{_NL}-a.parquet", "-o", "o.parquet"]
    if case == "empty dataset":
        (root / _NL).mkdir()
        return [_NL, "-o", "o.parquet"]
    if case == "tables compared":
        pq.write_table(pa.table({"a": [1]}), root / f"{_NL}.parquet")
        return ["--check-permutation", f"{_NL}.parquet", "--against", f"{_NL}.parquet"]
    if case == "megatron index":
        (root / f"{_NL}.bin").write_bytes(b"xx")
        (root / f"{_NL}.idx").write_bytes(b"MMIDIDX\x00\x00garbage")
        return [f"{_NL}.bin", "-o", "o.bin"]
    if case == "tar and lines compared":
        (root / _NL).write_bytes(b"a\n")
        return ["--check-permutation", _NL, "--against", "o.tar"]
    if case == "source twice":
        (root / _NL).write_bytes(b"a\n")
        return ["--source", f"a={_NL}", "--source", f"b={_NL}"]
    if case == "resume into a FIFO":
        os.mkfifo(root / _NL)
        (root / "in").write_bytes(b"a\n")
        return ["--resume", "--seed", "1", "-o", _NL, "in"]
    if case == "manifest a directory":
        (root / _NL).mkdir()
        (root / "in").write_bytes(b"a\n")
        return ["in", "-o", "out", "--manifest", f"{_NL}/"]
    if case == "manifest missing":
        return ["--check-manifest", f"{_NL}.json"]
    if case == "manifest not JSON":
        (root / f"{_NL}.json").write_bytes(b"{")
        return ["--check-manifest", f"{_NL}.json"]
    assert case == "output unlike its manifest"
    (root / "in").write_bytes(b"a\nb\n")
    (root / "d").mkdir()
    made = subprocess.run([sys.executable, "-m", "bigshuf", "in", "-o", "d/o", "--manifest", "d/m.json"], cwd=root)
    assert made.returncode == 0
    (root / "d" / "o").rename(root / "d" / _NL)
    manifest = (root / "d" / "m.json").read_text().replace('"o"', '"x\\ny"')
    (root / "d" / "m.json").write_text(manifest)
    with open(root / "d" / _NL, "ab") as f:
        f.write(b"c\n")
    return ["--check-manifest", "d/m.json"]


@pytest.mark.parametrize("case", [
    "parquet", "arrow", "json line", "schemas", "empty dataset", "tables compared", "megatron index",
    "tar and lines compared", "source twice", "resume into a FIFO", "manifest a directory", "manifest missing", "manifest not JSON", "output unlike its manifest",
])
def test_a_file_name_with_a_newline_stays_on_the_message_line(tmp_path: Path, run_cli: Runner, case: str) -> None:
    """Messages about tables, Megatron datasets, sources and manifests printed file names raw, so
    ``x<newline>y.parquet`` broke the one line into two; they are quoted as GNU tools quote them."""
    code, out, err = run_cli(_bad_inputs(tmp_path, case), cwd=tmp_path)
    assert (code, out) == (1, b"")
    lines = err.splitlines()
    assert all(line.startswith(b"bigshuf: ") for line in lines) and _NL_SHOWN in err, err
    assert len(lines) == (2 if case == "output unlike its manifest" else 1), err


@pytest.mark.parametrize("options, message", [
    # The keyword named, as for the other settings (found by a review of the library).
    ({"head_count": -1}, "invalid head_count= value: '-1': a non-negative integer is needed"),
    ({"head_count": 3, "seed": -1}, "invalid seed= value: '-1': a non-negative integer is needed"),
    ({"head_count": 3, "seed": "3"}, "seed must be an integer, not str '3'"),
    ({"head_count": 3, "seed": float("nan")}, "seed must be an integer, not float nan"),
    ({"head_count": 3, "seed": 1.5}, "seed must be an integer, not float 1.5"),
    ({"head_count": 3, "seed": True}, "seed must be an integer, not bool True"),
    ({"head_count": 3, "random_source": 5}, "random_source must be a path (str or os.PathLike), not int 5"),
    ({"head_count": 3, "random_source": b"x"}, "random_source must be a path (str or os.PathLike), not bytes b'x'"),
    ({"head_count": 3, "progress": 5}, "progress must be Progress or None, not int 5"),
])
def test_shuffle_range_checks_its_keywords_as_shuffle_does(tmp_path: Path, options: dict, message: str) -> None:
    """A sample of a range is drawn without ``shuffle``, whose checks it skipped: a negative count
    was NumPy's ValueError, a seed of '3' a TypeError, 1.5 or True taken (found by attack)."""
    with pytest.raises(UsageError) as caught:
        bigshuf.shuffle_range(1, 100, tmp_path / "o.txt", **options)
    assert str(caught.value) == message
    with pytest.raises(TypeError, match="^shuffle_range\\(\\) got an unexpected keyword argument 'dry_run'$"):
        bigshuf.shuffle_range(1, 100, tmp_path / "o.txt", dry_run=True)
    assert list(tmp_path.iterdir()) == []


def test_numpy_numbers_are_library_numbers(tmp_path: Path) -> None:
    """``rates={'a': np.float64(0.5)}`` leaked decimal.InvalidOperation (NumPy 2's repr is
    'np.float64(0.5)'), and check_manifest(memory=1.5) a TypeError (found by attack)."""
    import numpy as np

    from bigshuf.api import check_manifest

    (tmp_path / "a").write_bytes(b"".join(b"%d\n" % i for i in range(10)))
    stats = bigshuf.shuffle(sources={"a": tmp_path / "a"}, rates={"a": np.float64(0.5)}, output=tmp_path / "o", seed=1)
    assert stats.records == 5
    stats = bigshuf.shuffle(sources={"a": tmp_path / "a"}, rates={"a": np.float64(2.0)}, max_rate=np.float64(3.0),
                            output=tmp_path / "p", seed=1)
    assert stats.records == 20
    with pytest.raises(UsageError, match="^memory must be a byte count"):
        check_manifest(tmp_path / "m.json", memory=1.5)


def test_an_empty_sources_mapping_and_records_given_as_str_are_named(tmp_path: Path) -> None:
    """``sources={}`` was told "no inputs given: pass '-' to read standard input", and
    ``BytesSource('m', 'text')`` was a TypeError from deep in the run (found by attack)."""
    from bigshuf.storage.sources import BytesSource

    with pytest.raises(UsageError, match="^sources names no source"):
        bigshuf.shuffle(sources={}, output=tmp_path / "o")
    with pytest.raises(UsageError, match="^BytesSource takes the records as bytes, not str$"):
        BytesSource("m", "text")  # type: ignore[arg-type]
    assert bigshuf.shuffle(BytesSource("m", bytearray(b"a\nb\n")), tmp_path / "o", seed=1).records == 2


def test_records_in_memory_may_hold_the_separator(tmp_path: Path) -> None:
    """``BytesSource.of_records`` keeps each record whole (``-e`` operands holding a newline); without one
    inside it reads the data as lines, as before, so seeded outputs do not move. Bad ``ends`` and such a
    source beside another input are refused in a line."""
    from bigshuf.storage.sources import BytesSource

    plain = BytesSource.of_records("m", [b"a", b"b"], b"\n")
    assert (plain.data, plain.ends) == (b"a\nb\n", None)
    held = BytesSource.of_records("m", [b"a\nb", b"", b"c"], b"\n")
    assert (held.data, held.ends) == (b"a\nb\n\nc\n", [4, 5, 7])
    out = tmp_path / "o"
    assert bigshuf.shuffle(held, out, seed=3).records == 3
    assert sorted(out.read_bytes().replace(b"a\nb\n", b"X\n").splitlines()) == [b"", b"X", b"c"]
    for ends in ([2, 2, 4], [1, 3], [4, 5]):
        with pytest.raises(UsageError, match="^BytesSource's ends must rise, each past the last, to the length of its data$"):
            BytesSource("m", b"a\nbc", ends)
    (tmp_path / "f").write_bytes(b"x\n")
    with pytest.raises(UsageError, match="^m records holding a newline are shuffled alone, not with other inputs$"):
        bigshuf.shuffle([held, str(tmp_path / "f")], out)
    # A record not ended by the separator would run into the next one in the output.
    for source, zero in ((BytesSource("m", b"a\nbc", [2, 4]), False), (held, True)):
        sep = "NUL" if zero else "newline"
        with pytest.raises(UsageError, match=f"^m records holding a {sep}: each must end with one, as its ends say where records end$"):
            bigshuf.shuffle(source, out, zero_terminated=zero)


@pytest.mark.parametrize("where", ["inputs", "output", "manifest", "tmp_dir", "random_source", "sources", "split pattern"])
@pytest.mark.parametrize("call", ["shuffle", "plan_shuffle"])
def test_a_nul_byte_in_a_path_is_a_usage_error(tmp_path: Path, where: str, call: str) -> None:
    """The OS's ValueError ("embedded null byte") leaked from the library for a path holding a NUL."""
    (tmp_path / "in.txt").write_bytes(b"a\nb\n")
    given: dict[str, object] = {"inputs": str(tmp_path / "in.txt"), "output": str(tmp_path / "o")}
    bad = str(tmp_path / "x\0y")
    if where in ("inputs", "output", "manifest", "tmp_dir", "random_source"):
        given[where] = bad
    elif where == "sources":
        given.update(inputs=[], sources={"a": bad})
    else:
        given.update(output=bad + "{split}", split="a=0.5,b=rest")
    inputs, output = given.pop("inputs"), given.pop("output")
    with pytest.raises(UsageError, match="holds a NUL byte, which no file name may have"):
        getattr(bigshuf, call)(inputs, output, **given)
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]


def test_arguments_that_iterate_or_convert_wrongly_are_usage_errors(tmp_path: Path) -> None:
    """Found by attack: NumPy arrays as ``rates``/``mix``/``by`` leaked ValueError ("truth value of an
    array is ambiguous"); an ``__fspath__`` returning an int a TypeError; an open file was iterated as
    a list of paths (its lines); a set was taken, its order, so the output for a seed, changing with
    the hash seed from one process to the next."""
    import io

    import numpy as np

    class BadPath:
        def __fspath__(self) -> int:
            return 5

    src = tmp_path / "in.txt"
    src.write_bytes(b"a\nb\n")
    out = tmp_path / "o.txt"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"rates": np.array([1, 2])}, "^rates= needs sources="),
        ({"mix": np.array([1, 2])}, "^mix= needs sources="),
        ({"by": np.array(["a", "b"])}, "^invalid by= value"),
        ({"output": BadPath()}, r"^output must be a path \(str or os.PathLike\), not BadPath"),
        ({"tmp_dir": BadPath()}, r"^tmp_dir must be a path \(str or os.PathLike\), not BadPath"),
    ]
    for options, message in cases:
        with pytest.raises(UsageError, match=message):
            bigshuf.shuffle(src, **{"output": out, **options})
    with src.open() as f:
        with pytest.raises(UsageError, match=r"^inputs must be paths, not an open file \(TextIOWrapper"):
            bigshuf.shuffle(f, out)
    with pytest.raises(UsageError, match=r"^inputs must be paths, not an open file \(StringIO"):
        bigshuf.shuffle(io.StringIO(f"{src}\n"), out)
    with pytest.raises(UsageError, match="^inputs must be a path or an ordered list of them, not a set"):
        bigshuf.shuffle({str(src)}, out)
    with tempfile.NamedTemporaryFile("w+", dir=tmp_path) as listing:  # not an io.IOBase: a wrapper
        listing.write(f"{src}\n")
        listing.flush()
        listing.seek(0)
        with pytest.raises(UsageError, match=r"^inputs must be paths, not an open file \(_TemporaryFileWrapper"):
            bigshuf.shuffle(listing, out)
        with pytest.raises(UsageError, match=r"^outputs must be paths, not an open file"):
            bigshuf.check_permutation([str(src)], listing)


    class Lines:  # a caller's own Source that happens to have a readline: a source, not an open file
        name = "lines"

        def size(self) -> int:
            return 4

        def open(self) -> io.BytesIO:
            return io.BytesIO(b"a\nb\n")

        def readline(self) -> bytes:
            return b""

    assert bigshuf.shuffle(Lines(), out, seed=1).records == 2
    found, expected = bigshuf.check_permutation({str(src)}, [str(src)])  # order does not matter to a comparison
    assert found == expected
    assert bigshuf.shuffle(src, out, rates={}, seed=1).records == 2  # an empty mapping weighs nothing, as before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "o.txt"]


def test_a_callers_source_that_answers_wrongly_is_named(tmp_path: Path) -> None:
    """A caller's own Source whose size() is not a count, whose open() gives a text stream or
    raises OSError: bare TypeError/ValueError/AttributeError/OSError leaked from deep in the run
    (found by attack); each is now one error naming it, and a good one still runs."""
    import io

    class Mine:
        name = "mine"

        def __init__(self, size: object, opener: Any) -> None:
            self._size, self._opener = size, opener

        def size(self) -> object:
            return self._size

        def open(self) -> Any:
            return self._opener()

    def broken() -> Any:
        raise OSError(5, "Input/output error")

    def good() -> Any:
        return io.BytesIO(b"a\nb\nc\n")

    out = tmp_path / "o.txt"
    for source, error, message in [
        (Mine("big", good), UsageError, "source mine: size() gave 'big', not a byte count or None"),
        (Mine(-5, good), UsageError, "source mine: size() gave -5, not a byte count or None"),
        (Mine(None, lambda: io.StringIO("a\n")), UsageError, "source mine: open() gave StringIO, not a binary stream (with readinto)"),
        (Mine(None, broken), bigshuf.InputError, "mine: Input/output error"),
    ]:
        with pytest.raises(error) as caught:
            bigshuf.shuffle(source, out, seed=1)
        assert str(caught.value) == message
        assert not out.exists()
    assert bigshuf.shuffle(Mine(6, good), out, seed=1).records == 3
    with pytest.raises(UsageError, match="^engine='dask' reads files and URLs, not Mine objects$"):
        bigshuf.shuffle(Mine(6, good), out, engine="dask")


@pytest.mark.parametrize("answer", [None, -1, "x", True])
def test_a_callers_stream_whose_readinto_answers_wrongly_is_named(tmp_path: Path, answer: object) -> None:
    """A caller's stream whose ``readinto`` gave None (taken for the end of input: its records lost),
    a negative count (taken), or a str (a bare TypeError) after writing a record (found by attack):
    one InputError naming the source, as Python's buffered reader refuses such a raw stream; no output."""
    import io

    class Lying(io.RawIOBase):
        def readable(self) -> bool:
            return True

        calls = 0

        def readinto(self, buffer: Any) -> Any:
            self.calls += 1
            if self.calls > 1:
                return 0  # (so that code taking the answer ends rather than reads for ever)
            buffer[:2] = b"a\n"
            return answer

    class Mine:
        name = "mine"

        def size(self) -> None:
            return None

        def open(self) -> Any:
            return Lying()

    out = tmp_path / "o.txt"
    with pytest.raises(bigshuf.InputError, match=rf"^mine: its stream's readinto\(\) gave {re.escape(repr(answer))} for a buffer of \d+ bytes, not a count from 0 to \d+$"):
        bigshuf.shuffle(Mine(), out, seed=1)
    assert os.listdir(tmp_path) == []
