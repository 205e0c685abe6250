"""Hostile inputs: files that change while read, endless devices, FIFOs, symlink loops, odd records."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bigshuf
from bigshuf.progress import Progress
from bigshuf.core.records import RecordFormat
from bigshuf.storage.reader import RecordReader
from bigshuf.storage.sources import FileSource

from helpers import assert_permutation, make_records, run_child, write_records


def _rewrite_in_place(src: Path) -> None:
    """Write the file's lines back in another order over it (``dd conv=notrunc``): same size, same
    multiset, so only its modification time says that a run reading it saw a mix of the two."""
    data = src.read_bytes()
    lines = data.splitlines(keepends=True)
    with open(src, "r+b") as f:
        f.write(b"".join(lines[1:] + lines[:1]))
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a clock coarser than the test


@pytest.mark.parametrize("change", ["grows", "shrinks", "rewritten in place"])
def test_a_file_changing_while_read_is_an_error(tmp_path: Path, change: str) -> None:
    src = write_records(tmp_path / "in", make_records(5000, seed=1))
    reader = RecordReader([FileSource(src)], RecordFormat(), Progress())
    blocks = reader.blocks(4096, "-S")
    next(blocks)
    if change == "grows":
        with open(src, "ab") as f:
            f.write(b"appended\n" * 100)
    elif change == "shrinks":
        os.truncate(src, src.stat().st_size // 2)
    else:
        _rewrite_in_place(src)
    with pytest.raises(bigshuf.InputError, match="changed while being read"):
        for _ in blocks:
            pass


def test_an_input_rewritten_while_mapped_for_the_shuffle_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-memory path maps a lone file and gathers from it while shuffling: a same-size rewrite
    meanwhile gave records of neither version, exit 0. Now the run fails naming it, and writes nothing."""
    from bigshuf.formats import line_run

    src = write_records(tmp_path / "in", make_records(5000, seed=3))
    real = line_run.LineRun._in_memory

    def rewritten_first(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        _rewrite_in_place(src)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(line_run.LineRun, "_in_memory", rewritten_first)
    out = tmp_path / "out"
    with pytest.raises(bigshuf.InputError, match="in: file changed while being read \\(modified, its size still"):
        bigshuf.shuffle(src, out, seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_an_input_appended_to_while_its_records_are_found_writes_nothing_to_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """A lone file mapped for the in-memory path, appended to (a live log) once its records are
    found: it was checked only after the shuffle, so standard output got the whole shuffle and then
    the error (found by attack). It is checked before the first record is written too."""
    from bigshuf import cli
    from bigshuf.formats import line_run

    src = write_records(tmp_path / "in", make_records(400_000, seed=3))  # more than the output holds back
    real = line_run.find_offsets_split

    def then_appended(*args, **kwargs):  # type: ignore[no-untyped-def]
        found = real(*args, **kwargs)
        with open(src, "ab") as f:
            f.write(b"late\n")
        return found

    monkeypatch.setattr(line_run, "find_offsets_split", then_appended)
    status = cli.main([str(src)])
    out, err = capfdbinary.readouterr()
    assert (status, out) == (1, b"")
    assert err.startswith(f"bigshuf: {src}: file changed while being read (size ".encode()) and err.count(b"\n") == 1


def shuffle_in_child(src: Path, out: Path, patch: str) -> subprocess.CompletedProcess[str]:
    """``bigshuf.shuffle(src, out, seed=1)`` in a child process once ``patch`` (code that may replace
    parts of the run; ``os`` and ``line_run`` imported) has run, printing the InputError it raises:
    a signal kills the child, not the tests."""
    script = f"""
import os
import bigshuf
from bigshuf.formats import line_run
{patch}
try:
    bigshuf.shuffle({str(src)!r}, {str(out)!r}, seed=1)
except bigshuf.InputError as e:
    print(e)
"""
    return run_child(script)


LOST_PAGES = "in: file changed or unreadable while being read (pages of it were gone while mapped)"


def test_an_input_shortened_while_mapped_for_the_shuffle_is_an_error_not_a_signal(tmp_path: Path) -> None:
    """The in-memory path maps a lone file and gathers from it: a file cut short meanwhile
    (logrotate's copytruncate) killed the run with SIGBUS, leaving its temporary file. Now the
    lost pages read as zeros, the run fails naming the file, and nothing is left behind."""
    src = write_records(tmp_path / "in", make_records(20000, seed=5, min_len=40))
    done = shuffle_in_child(src, tmp_path / "out", f"""
real = line_run.LineRun._in_memory

def shortened_first(self, *args, **kwargs):
    os.truncate({str(src)!r}, {src.stat().st_size // 3})
    return real(self, *args, **kwargs)

line_run.LineRun._in_memory = shortened_first
""")
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
    assert LOST_PAGES in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_pages_lost_while_mapped_are_refused_though_the_file_looks_as_it_was(tmp_path: Path) -> None:
    """The file is cut short while the in-memory path gathers from its mapping (those pages read
    as zeros), then written back as it was, same size and time (``cp -p``): the zeros were
    committed, exit 0. Now the watch's count of lost pages refuses the file, and nothing is left."""
    src = write_records(tmp_path / "in", make_records(20000, seed=6, min_len=40))
    done = shuffle_in_child(src, tmp_path / "out", f"""
real = line_run.LineRun._in_memory
data, st = open({str(src)!r}, "rb").read(), os.stat({str(src)!r})

def shortened_then_restored(self, *args, **kwargs):
    os.truncate({str(src)!r}, len(data) // 3)
    real(self, *args, **kwargs)
    with open({str(src)!r}, "r+b") as f:
        f.write(data)
    os.utime({str(src)!r}, ns=(st.st_atime_ns, st.st_mtime_ns))

line_run.LineRun._in_memory = shortened_then_restored
""")
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
    assert LOST_PAGES in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_a_mapped_input_emptied_before_its_records_are_counted_is_refused(tmp_path: Path) -> None:
    """The file is emptied while the in-memory path finds its records in the mapping: the zeros
    made the run take the streaming path, which read the now-empty file and ended in an internal
    error (ZeroDivisionError). Now the mapping is checked before the run streams instead."""
    src = write_records(tmp_path / "in", make_records(20000, seed=7, min_len=40))
    done = shuffle_in_child(src, tmp_path / "out", f"""
real = line_run.find_offsets_split
calls = []

def emptied_first(*args, **kwargs):
    if not calls:
        os.truncate({str(src)!r}, 0)
    calls.append(1)
    return real(*args, **kwargs)

line_run.find_offsets_split = emptied_first
""")
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
    assert "in: file changed or unreadable while being read" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_an_endless_repeat_of_a_shortened_mapped_input_stops_rather_than_writing_zeros(tmp_path: Path) -> None:
    """``-r`` without ``-n`` streams records drawn from the mapped input for ever, and no check
    before a commit ever comes: a file cut short meanwhile streamed NUL records (the review: 292 MB
    of 400). Each chunk is now checked before it is written: nothing is, the run fails naming the file."""
    src = write_records(tmp_path / "in", make_records(20000, seed=8, min_len=40))
    script = f"""
import os, sys
from bigshuf.formats import line_run
from bigshuf.command import main
real = line_run.LineRun._in_memory

def shortened_first(self, *args, **kwargs):
    os.truncate({str(src)!r}, 4096)
    return real(self, *args, **kwargs)

line_run.LineRun._in_memory = shortened_first
sys.argv = ["bigshuf", "-r", "--seed", "1", {str(src)!r}]
sys.exit(main())
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    with proc, proc.stdout, proc.stderr:
        out = proc.stdout.read(20 << 20)  # zeros for ever, before
        proc.kill()
        err = proc.stderr.read().decode()
    assert (proc.returncode, out) == (1, b""), err[-500:]
    assert err.endswith(LOST_PAGES + "\n")


def test_an_input_emptied_while_a_block_of_it_is_used_is_an_error_not_a_signal(tmp_path: Path) -> None:
    """A block handed out is the reader's own bytes: emptying the file (logrotate's copytruncate)
    while it is being scattered neither kills the process (SIGBUS, as a window of a mapping of
    the file would) nor changes it; the next block says the file changed."""
    src = write_records(tmp_path / "in", make_records(20000, seed=2, min_len=40))
    script = f"""
import os
import bigshuf
from bigshuf.progress import Progress
from bigshuf.core.records import RecordFormat
from bigshuf.storage.reader import RecordReader
from bigshuf.storage.sources import FileSource
blocks = RecordReader([FileSource({str(src)!r})], RecordFormat(), Progress()).blocks(1 << 16, "-S")
block, _final = next(blocks)
before = bytes(block)
os.truncate({str(src)!r}, 0)
assert bytes(block) == before and int(block.sum()) > 0
try:
    next(blocks)
except bigshuf.InputError as e:
    print(e)
"""
    done = run_child(script)
    assert done.returncode == 0, done.stderr[-500:]
    assert "in: file changed while being read" in done.stdout


def test_dev_zero_is_the_record_too_long_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bigshuf", "-S", "1M", "/dev/zero", "-o", str(tmp_path / "out")],
        capture_output=True, timeout=60,
    )
    assert result.returncode == 1
    assert b"/dev/zero: a record is longer than" in result.stderr and b"-S" in result.stderr
    assert not (tmp_path / "out").exists()


def test_fifo_input(tmp_path: Path) -> None:
    records = make_records(3000, seed=2)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    data = b"\n".join(records) + b"\n"

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    out = tmp_path / "out"
    bigshuf.shuffle(fifo, out, memory="16K", seed=1, tmp_dir=tmp_path)
    writer.join()
    assert_permutation(out.read_bytes(), records)


def test_symlink_loop_is_an_error_naming_it(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(bigshuf.InputError, match="loop: Too many levels of symbolic links"):
        bigshuf.shuffle(loop, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_temporary_directory_that_is_a_file(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in", make_records(3000, seed=3))
    with pytest.raises(bigshuf.TempSpaceError, match="is not a directory.*tmp_dir="):
        bigshuf.shuffle(src, tmp_path / "out", memory="8K", tmp_dir=src)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_empty_and_huge_records_together(tmp_path: Path, seed: int) -> None:
    # Two 3 MB records among empty ones at -S 7M: external, and a bucket holding both recurses.
    records = [b""] * 500 + [b"x" * (3 << 20), b"y" * (3 << 20)] + [b""] * 500 + make_records(200, seed=4)
    src = write_records(tmp_path / "in", records)
    out = tmp_path / "out"
    stats = bigshuf.shuffle(src, out, memory="7M", seed=seed, tmp_dir=tmp_path)
    assert stats.passes >= 2
    assert_permutation(out.read_bytes(), records)


def test_the_read_buffer_starts_at_what_the_inputs_need(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The buffer starts whole: at its capacity, or at the inputs' sizes (and a separator each) where
    they say less; growing to it zeroed and copied a smaller one at every step. It grows from
    ``INITIAL_BUFFER`` only where so large an allocation is refused. The blocks are the same either way."""
    monkeypatch.setattr(RecordReader, "INITIAL_BUFFER", 1024)
    src = write_records(tmp_path / "in", make_records(3000, seed=3))
    size = src.stat().st_size
    reader = RecordReader([FileSource(src)], RecordFormat(), Progress())
    assert reader._first_size(4096, None) == 4096 and reader._first_size(size, None) == size
    assert reader._first_size(size + 100, None) == size + 2 and reader._first_size(4096, 512) == 512
    assert RecordReader([FileSource("-")], RecordFormat(), Progress())._first_size(1 << 40, None) == 1 << 40

    def blocks() -> list[bytes]:
        return [bytes(b) for b, _final in RecordReader([FileSource(src)], RecordFormat(), Progress()).blocks(4096, "-S")]

    whole = blocks()
    real = np.empty

    def refused(size: int, dtype: Any) -> np.ndarray:
        if size > 1024:
            raise MemoryError
        return real(size, dtype)

    monkeypatch.setattr(RecordReader, "_first_size", lambda self, capacity, block: 1 << 40)
    monkeypatch.setattr(np, "empty", refused)
    assert len(reader._new_buffer(1 << 40)) == 1024
    monkeypatch.setattr(np, "empty", real)
    monkeypatch.setattr(RecordReader, "_new_buffer", lambda self, size: real(1024, np.uint8))
    assert len(whole) > 3 and blocks() == whole  # grown from 1024: the same cuts


def test_an_input_that_cannot_be_mapped_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system that cannot map a file (sysfs says ENODEV) had the in-memory path refuse the
    file (``No such device``), though reading it works: it is read instead, to the same output."""
    import mmap

    from bigshuf.storage import reader as reader_module

    src = write_records(tmp_path / "in", make_records(3000, seed=9, min_len=10))
    bigshuf.shuffle(src, tmp_path / "mapped", seed=4)

    def unmappable(*args: object, **kwargs: object) -> mmap.mmap:
        raise OSError(19, "No such device")

    monkeypatch.setattr(reader_module.mmap, "mmap", unmappable)
    bigshuf.shuffle(src, tmp_path / "read", seed=4)
    assert (tmp_path / "read").read_bytes() == (tmp_path / "mapped").read_bytes()


SYSFS_FILE = "/sys/devices/system/cpu/online"


@pytest.mark.skipif(not os.path.exists(SYSFS_FILE), reason="no sysfs here")
@pytest.mark.parametrize("limit", ["1G", "1K"])
def test_a_sysfs_file_is_read_as_shuf_reads_it(limit: str) -> None:
    """sysfs gives every file a size of 4096, whatever it holds: the check that a file was read to
    its size refused one (``file changed while being read (size 4096 bytes when opened, 4096 now, 4
    read)``), in memory and through buckets, where GNU shuf reads it."""
    with open(SYSFS_FILE, "rb") as f:
        lines = f.read().splitlines()
    run = subprocess.run([sys.executable, "-m", "bigshuf", "-S", limit, SYSFS_FILE], capture_output=True, timeout=60)
    assert (run.returncode, run.stderr) == (0, b"")
    assert sorted(run.stdout.splitlines()) == sorted(lines)


def test_files_of_generated_file_systems_are_told_apart(tmp_path: Path) -> None:
    """``generated`` finds /proc's and /sys's files by their devices' file systems; a file on
    the test's own file system is not one of them."""
    from bigshuf.storage.sources import generated

    (tmp_path / "plain").write_text("x\n")
    assert not generated(os.stat(tmp_path / "plain"))
    assert generated(os.stat("/proc/self/status"))
    if os.path.exists(SYSFS_FILE):
        assert generated(os.stat(SYSFS_FILE))
