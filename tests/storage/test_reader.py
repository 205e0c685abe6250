"""The record reader's reads of a plain file spread over the workers, each part read at its offset
or copied out of a watched mapping: the same blocks as one thread's reads, a file that shortens
meanwhile still refused, pipes still read in order."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import bigshuf
from bigshuf.core.parallel import Workers
from bigshuf.core.records import RecordFormat
from bigshuf.progress import Progress
from bigshuf.storage import guarded
from bigshuf.storage import reader as reader_module
from bigshuf.storage.reader import ParallelMap, RecordReader
from bigshuf.storage.sources import FileSource, Source

from helpers import compress, make_records, write_records


def read_all(sources: list[Source], capacity: int, parallel: ParallelMap | None, header: int = 0) -> list[tuple[bytes, bool, list[tuple[int, int]]]]:
    """Every block the reader hands out, whether it is the last, and its inputs' runs."""
    reader = RecordReader(sources, RecordFormat(), Progress(), header, parallel=parallel)
    return [(bytes(block), final, list(reader.block_runs)) for block, final in reader.blocks(capacity, "-S")]


class Reads:
    """How a plain file's parts are taken in a test, and the parts copied out of mappings."""

    def __init__(self, how: Reads) -> None:
        self.how = how
        self.mapped: list[int] = []


@pytest.fixture(params=["read", "mapped"])
def how(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Reads:
    """A plain file's parts read at their offsets, or copied out of watched mappings (whatever their size)."""
    reads = Reads(str(request.param))
    if reads.how == "read":
        monkeypatch.setattr(guarded, "available", False)
        return reads
    assert guarded.available, "bigshuf._mapguard was not built (pip install -e . builds it)"
    monkeypatch.setattr(reader_module, "MAP_READ", 1)
    real = guarded.read_mapped

    def noted(fd: int, offset: int, dest: np.ndarray) -> bool:
        reads.mapped.append(len(dest))
        return real(fd, offset, dest)

    monkeypatch.setattr(guarded, "read_mapped", noted)
    return reads


def counting(workers: Workers, parts: list[int]) -> ParallelMap:
    """``workers.map``, noting how many parts each read was cut into."""

    def run(fn: Callable[[int], int], count: int) -> list[int]:
        parts.append(count)
        return workers.map(fn, count)

    return run


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize("capacity", [40_000, 1 << 20])
def test_reads_spread_over_the_workers_give_the_same_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int, capacity: int, how: Reads) -> None:
    """Several plain files (one without a final newline, one empty), read in parts of at least a
    few pages on 1-8 workers: the blocks, where each ends, and each input's runs are the same as one
    thread's reads give, and the reads were indeed cut into parts."""
    monkeypatch.setattr(reader_module, "SPLIT_READ", 4096)
    paths = [write_records(tmp_path / f"in{i}", make_records(n, seed=i, min_len=10)) for i, n in enumerate([3000, 0, 7000])]
    (tmp_path / "last").write_bytes(b"x" * 9000 + b"\nno newline at the end")
    paths.append(tmp_path / "last")
    with monkeypatch.context() as plain:
        plain.setattr(guarded, "available", False)
        expected = read_all([FileSource(p) for p in paths], capacity, None)
    workers, parts = Workers(threads), []
    try:
        got = read_all([FileSource(p) for p in paths], capacity, counting(workers, parts))
    finally:
        workers.close()
    assert got == expected
    assert len(expected) > (1 if capacity < 100_000 else 0) and max(parts) > 1
    assert bool(how.mapped) == (how.how == "mapped")


def test_a_header_or_a_compressed_input_is_read_by_one_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a plain file's own descriptor is read at offsets: a ``--header`` input (its first
    lines already taken) and a gzip input are read in order, with the same blocks."""
    import gzip

    monkeypatch.setattr(reader_module, "SPLIT_READ", 4096)
    plain = write_records(tmp_path / "plain", make_records(4000, seed=3, min_len=10))
    packed = tmp_path / "packed.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    workers, parts = Workers(2), []
    try:
        for path, header in ((plain, 1), (packed, 0)):
            assert read_all([FileSource(path)], 1 << 20, counting(workers, parts), header) == read_all([FileSource(path)], 1 << 20, None, header)
    finally:
        workers.close()
    assert parts == []


def test_a_file_shortened_during_a_spread_read_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: Reads) -> None:
    """The file is cut short after its size was taken and before its parts are read (logrotate's
    copytruncate): read, the bytes counted end where the file now ends and the reader refuses
    it at the file's end; mapped, the first part past the new end is refused."""
    monkeypatch.setattr(reader_module, "SPLIT_READ", 4096)
    src = write_records(tmp_path / "in", make_records(6000, seed=4, min_len=10))
    size = src.stat().st_size
    workers = Workers(2)
    counted: list[int] = []

    def cut_then_read(fn: Callable[[int], int], count: int) -> list[int]:
        os.truncate(src, size // 3)
        got = workers.map(fn, count)
        counted.append(sum(got))
        return got

    reader = RecordReader([FileSource(src)], RecordFormat(), Progress(), parallel=cut_then_read)
    said = rf"\(size {size} bytes when opened, {size // 3} now, {size // 3} read\)" if how.how == "read" else r"\(shorter than \d+ bytes\)"
    try:
        with pytest.raises(bigshuf.InputError, match=rf"in: file changed while being read {said}"):
            list(reader.blocks(1 << 20, "-S"))
    finally:
        workers.close()
    assert (counted and counted[0] <= size // 3) if how.how == "read" else not counted and how.mapped


def test_a_file_renamed_over_during_a_spread_read_is_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: Reads) -> None:
    """Another file renamed over the input's name while it is read (another run committing its output
    there): the file opened is read whole, as GNU shuf reads it. Its size was checked by the name,
    and the other file's said "file changed while being read (modified, ...)" (found by attack)."""
    monkeypatch.setattr(reader_module, "SPLIT_READ", 4096)
    src = write_records(tmp_path / "in", make_records(6000, seed=4, min_len=10))
    data = src.read_bytes()
    other = tmp_path / "other"
    other.write_bytes(data[::-1][: len(data) - 7])  # another size, and another time
    workers = Workers(2)

    def replace_then_read(fn: Callable[[int], int], count: int) -> list[int]:
        if other.exists():
            os.rename(other, src)
        return workers.map(fn, count)

    try:
        blocks = read_all([FileSource(src)], 1 << 20, replace_then_read)
    finally:
        workers.close()
    assert not other.exists() and b"".join(block for block, _final, _runs in blocks) == data
    assert how.how == "read" or how.mapped


def test_a_named_pipe_is_read_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A FIFO opened by name is a file with no offsets: read as it comes, all of it."""
    monkeypatch.setattr(reader_module, "SPLIT_READ", 4096)
    data = b"\n".join(make_records(20000, seed=5, min_len=10)) + b"\n"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(data)

    feeder = threading.Thread(target=feed)
    feeder.start()
    workers, parts = Workers(2), []
    try:
        blocks = read_all([FileSource(fifo)], 1 << 24, counting(workers, parts))
    finally:
        feeder.join()
        workers.close()
    assert b"".join(b for b, _final, _runs in blocks) == data and parts == []


def test_a_split_read_fills_the_buffer_from_where_it_was_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: Reads) -> None:
    """``_read`` reads the file's next bytes into the view it is given, moves the file's position
    past them, and leaves the rest of the buffer alone."""
    src = tmp_path / "in"
    src.write_bytes(bytes(range(256)) * ((3 << 20) // 256))
    buf = np.zeros(4 << 20, np.uint8)
    workers = Workers(3)
    reader = RecordReader([FileSource(src)], RecordFormat(), Progress(), parallel=workers.map)
    try:
        with open(src, "rb", buffering=0) as f:
            f.seek(1000)
            monkeypatch.setattr(reader_module, "SPLIT_READ", 1 << 18)
            n = reader._read(f, buf[7:], "in")  # type: ignore[arg-type]
            assert (n, f.tell()) == (src.stat().st_size - 1000, src.stat().st_size)
    finally:
        workers.close()
    assert bytes(buf[7 : 7 + n]) == src.read_bytes()[1000:] and not buf[:7].any() and not buf[7 + n :].any()
    assert sum(how.mapped) == (n if how.how == "mapped" else 0)


def test_a_pipe_read_as_input_is_widened(tmp_path: Path) -> None:
    """A named pipe (and so standard input's) is widened to ``PIPE_SIZE`` or the system's most, so
    that its writer is not woken every 64 KiB; what is read through it is unchanged."""
    import fcntl

    from bigshuf.storage import sources

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    keep = os.open(fifo, os.O_RDWR)  # a writer, so that opening it to read does not wait
    try:
        data = b"".join(b"%d\n" % i for i in range(1000))
        os.write(keep, data)  # opening it looks at its first bytes for a codec
        stream = FileSource(fifo).open()
        with open("/proc/sys/fs/pipe-max-size") as f:
            most = int(f.read())
        assert fcntl.fcntl(keep, fcntl.F_GETPIPE_SZ) == min(sources.PIPE_SIZE, most) > 65536
        got = b""
        while len(got) < len(data):
            got += stream.read(len(data) - len(got))
        assert got == data
        stream.close()
    finally:
        os.close(keep)


def test_a_pipe_its_writer_widened_further_stays_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader only widens: a pipe its writer made wider than ``PIPE_SIZE`` is left so (found
    by the attack on the widening: a writer's 8 MiB pipe came back as 1 MiB)."""
    import fcntl

    from bigshuf.storage import sources

    monkeypatch.setattr(sources, "PIPE_SIZE", 1 << 16)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    keep = os.open(fifo, os.O_RDWR)
    try:
        fcntl.fcntl(keep, fcntl.F_SETPIPE_SZ, 1 << 18)
        os.write(keep, b"a\n" * 100)
        FileSource(fifo).open().close()
        assert fcntl.fcntl(keep, fcntl.F_GETPIPE_SZ) == 1 << 18
    finally:
        os.close(keep)


def test_under_ulimit_v_the_read_buffer_grows_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reserving half of a generous -S whole left too little address space under ``ulimit -v`` for
    the libraries loaded later (runs the last release finished failed or crashed): there the buffer
    starts at ``INITIAL_BUFFER`` for inputs that may not fill it, as it did."""
    import resource

    reader = RecordReader([FileSource("-")], RecordFormat(), Progress())
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1 << 31, resource.RLIM_INFINITY))
    assert not reader_module.reserving_is_free()
    assert reader._first_size(1 << 40, None) == RecordReader.INITIAL_BUFFER


def test_under_ulimit_v_an_input_of_known_size_gets_the_buffer_it_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``ulimit -v`` a 6-byte file was given an ``INITIAL_BUFFER`` of 64 MiB, which the limit
    could refuse (``memory exhausted; lower -S`` for a few bytes); it gets its size (and a
    separator), as where reserving is free."""
    import resource

    path = tmp_path / "in.txt"
    path.write_bytes(b"1\n2\n3\n")
    reader = RecordReader([FileSource(str(path))], RecordFormat(), Progress())
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1 << 31, resource.RLIM_INFINITY))
    assert not reader_module.reserving_is_free()
    assert reader._first_size(1 << 40, None) == 6 + 2


def test_a_generous_memory_limit_on_a_pipe_runs_under_ulimit_v(tmp_path: Path) -> None:
    """From the attack on the reserved buffer: ``seq 3000000 | bigshuf -S 512M`` under ``ulimit -v
    600000`` failed to load its libraries, where the last release ran; here at -S 2G."""
    import resource
    import subprocess
    import sys

    data = b"".join(b"%d\n" % i for i in range(300_000))
    limit = 1350 << 20  # room for the libraries, not for them and a reservation of 1 GiB as well

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    run = subprocess.run(
        [sys.executable, "-m", "bigshuf", "--seed", "1", "-S", "2G", "-T", str(tmp_path)],
        input=data, capture_output=True, preexec_fn=limited, timeout=120,
    )
    assert (run.returncode, run.stderr) == (0, b"")
    assert sorted(run.stdout.splitlines()) == sorted(data.splitlines())


POSITIONS = """
import sys
from bigshuf.core.records import RecordFormat
from bigshuf.progress import Progress
from bigshuf.storage.reader import RecordReader
from bigshuf.storage.sources import FileSource

for source in (FileSource(sys.argv[1]), FileSource("-")):
    reader = RecordReader([source], RecordFormat(10), Progress())
    blocks = reader.blocks(1 << 16, "-S")
    next(blocks)
    print(source.position(), reader.estimate_total())
    blocks.close()
"""


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_a_compressed_file_on_stdin_is_consumed_as_the_named_file_is(tmp_path: Path, codec: str) -> None:
    """A compressed input on standard input is read and estimated (``expansion``, from its offset) as
    the named file is. Its head was read to find its codec and replayed, so its offset ran 16 bytes
    ahead: near a bucket count's edge ``< f.gz`` then planned one bucket fewer than ``f.gz`` and its
    seeded output differed (found by review)."""
    import subprocess
    import sys

    raw = b"".join(r + b"\n" for r in make_records(20000, seed=6))
    src = tmp_path / "in.gz"
    src.write_bytes(compress(codec, raw))
    with open(src, "rb") as stdin:
        done = subprocess.run([sys.executable, "-c", POSITIONS, str(src)], stdin=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    named, redirected = done.stdout.splitlines()
    assert redirected == named
    assert int(named.split()[0]) > 0


@pytest.mark.parametrize("group", [1, 3])
def test_the_search_for_the_last_whole_record_compares_a_bounded_window(group: int) -> None:
    """A buffer holding one long record, with no separator: the search compared it whole, a bool
    array as large as the buffer (64 MiB at -S 128M), on top of what -S counts. It now compares at
    most ``LAST_END_WINDOW`` bytes at once, and finds the same ends."""
    import tracemalloc

    reader = RecordReader([FileSource("-")], RecordFormat(group=group), Progress())
    buf = np.full(48 << 20, ord("x"), np.uint8)
    buf[[5, 9, 100]] = 10
    reader._seps = 3  # the three separators, a whole group of three
    tracemalloc.start()
    try:
        assert reader._last_end(buf, len(buf)) == 101
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * reader_module.LAST_END_WINDOW
    reader._seps = 4 if group == 3 else 3  # one separator past the last whole group
    assert reader._last_end(buf, len(buf)) == (10 if group == 3 else 101)
    buf[:] = ord("x")
    assert reader._last_end(buf, len(buf)) is None
