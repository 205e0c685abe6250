"""Compressed inputs decoded ahead (``storage.ahead``): the position plans are made from depends
only on how much was read, whether pieces were decoded ahead or not and however the reads were
sized; errors met ahead are raised where the read reaches them; streams opened ahead and not
read are closed; a run's output does not depend on the threads that decode ahead."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bigshuf
from bigshuf.formats import line_run
from bigshuf.core.records import RecordFormat
from bigshuf.errors import InputError
from bigshuf.progress import Progress
from bigshuf.storage import ahead, decoding, reader
from bigshuf.storage.ahead import AheadPlan, DecodeAhead
from bigshuf.storage.sources import FileSource
from helpers import assert_permutation, compress, make_records, run_child

CODECS = ["gzip", "zstd", "bzip2", "xz"]

#: The command line, run with small compressed files decoded ahead too (``SMALLEST_FILE``).
SMALL_FILES_AHEAD = (
    "import sys; from bigshuf.storage import ahead; ahead.SMALLEST_FILE = 0; "
    "from bigshuf.command import main; sys.exit(main())"
)


@pytest.fixture(autouse=True)
def small_files_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's files are small: decode them ahead all the same."""
    monkeypatch.setattr(ahead, "SMALLEST_FILE", 0)


def _blob(codec: str, size: int = 3 << 20) -> tuple[bytes, bytes]:
    """Text that compresses about 3:1, and its compressed form in two members."""
    rng = np.random.default_rng(7)
    words = np.array([b"alpha", b"beta", b"gamma", b"delta", b"\n", b"epsilon", b"zeta "], dtype=object)
    data = b" ".join(rng.choice(words, size // 5).tolist())[:size]
    half = len(data) // 3
    return data, compress(codec, data[:half]) + compress(codec, data[half:])


def _positions(stream: Any, sizes: list[int], marks: list[int]) -> list[int]:
    """The position at each of ``marks`` (bytes read), reading on to the end in reads of the given
    sizes in turn, each cut short at the next mark; the last item is the position at the end."""
    out, total, i = [], 0, 0
    left = sorted(marks)
    while True:
        size = sizes[i % len(sizes)]
        if left:
            size = min(size, left[0] - total)
        n = stream.readinto(memoryview(bytearray(size)))
        if not n:
            return out + [stream.position()]
        total += n
        i += 1
        if left and total == left[0]:
            out.append(stream.position())
            left.pop(0)


#: Bytes read at which positions are compared: inside pieces, at a member's edge, near the end.
MARKS = [1, 100_000, 1 << 20, 1_048_577, 2_500_000, 3_000_000]


@pytest.mark.parametrize("codec", CODECS)
def test_the_position_depends_only_on_how_much_was_read(codec: str) -> None:
    """Reads of different sizes that stop at the same byte report the same position: a plan made
    from it (the bucket count of a compressed input) cannot depend on how the reader's buffer
    happened to be cut."""
    data, blob = _blob(codec)
    small = _positions(decoding.open_reader(io.BytesIO(blob), codec, "x"), [4096, 700_001, 65536], MARKS)
    large = _positions(decoding.open_reader(io.BytesIO(blob), codec, "x"), [1 << 21, 12_345], MARKS)
    assert small == large
    assert len(small) == len(MARKS) + 1 and small[-1] == len(blob)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("most", [1, 300_000, 1 << 30])
def test_pieces_decoded_ahead_read_and_place_as_pieces_decoded_then(codec: str, most: int) -> None:
    data, blob = _blob(codec)
    sizes = [1 << 16, 999_999]
    plain = decoding.open_reader(io.BytesIO(blob), codec, "x")
    marks = _positions(plain, sizes, MARKS)
    early = decoding.open_reader(io.BytesIO(blob), codec, "x")
    assert isinstance(early, decoding.Decompressed)
    early.decode_ahead(most, lambda: False)
    held = sum(len(item[0]) for item in early._ahead if not isinstance(item, InputError))
    assert held >= min(most, len(data))
    assert held < most + decoding._MemberLoop.OUT_CHUNK or held == len(data)  # one piece over at most
    assert _positions(early, sizes, MARKS) == marks


def test_decoding_ahead_stops_when_told() -> None:
    _data, blob = _blob("gzip")
    stream = decoding.open_reader(io.BytesIO(blob), "gzip", "x")
    assert isinstance(stream, decoding.Decompressed)
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 2

    stream.decode_ahead(1 << 30, stop)
    assert len(stream._ahead) == 2


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_an_error_met_ahead_is_raised_where_the_read_reaches_it(codec: str, damage: str) -> None:
    """The data before the fault is read as it would be, then the same error, once."""
    _data, blob = _blob(codec)
    if damage == "corrupt":
        bad = bytearray(blob)
        at = len(blob) * 3 // 4
        bad[at : at + 64] = bytes(64)
        blob = bytes(bad)
    else:
        blob = blob[: len(blob) * 3 // 4]

    def read_all(stream: Any) -> tuple[bytes, str]:
        got = bytearray()
        buf = bytearray(100_000)
        try:
            while n := stream.readinto(memoryview(buf)):
                got += buf[:n]
        except InputError as e:
            return bytes(got), str(e)
        raise AssertionError("no error")

    expected = read_all(decoding.open_reader(io.BytesIO(blob), codec, "in.x"))
    early = decoding.open_reader(io.BytesIO(blob), codec, "in.x")
    early.decode_ahead(1 << 30, lambda: False)  # type: ignore[attr-defined]
    assert isinstance(early._ahead[-1], InputError)  # type: ignore[attr-defined]
    assert read_all(early) == expected
    assert expected[1].startswith("in.x: ")


def _sources(tmp_path: Path, n: int) -> list[FileSource]:
    paths = []
    for i in range(n):
        p = tmp_path / f"part{i}.gz"
        p.write_bytes(compress("gzip", b"%d\n" % i * 1000))
        paths.append(FileSource(str(p)))
    return paths


class _Pool:
    """Runs each job when its result is asked for, so a test sees what was started and when."""

    def __init__(self) -> None:
        self.started: list[Any] = []

    def submit(self, job: Any) -> Any:
        from concurrent.futures import Future

        f: Future[Any] = Future()
        f.set_result(job())
        self.started.append(f)
        return f


def test_the_next_inputs_are_started_and_taken_in_turn(tmp_path: Path) -> None:
    sources = _sources(tmp_path, 4)
    pool = _Pool()
    early = DecodeAhead(sources, AheadPlan(pool.submit, 2, 1 << 20))
    assert early.take(0) is None  # not started: opened by the reader
    early.start_after(0)
    assert len(pool.started) == 2  # inputs 1 and 2
    stream = early.take(1)
    assert stream is not None and stream.read() == b"1\n" * 1000
    stream.close()
    early.start_after(1)
    assert len(pool.started) == 3  # input 3 (2 is running)
    early.close()
    assert early.take(2) is None and early.take(3) is None


def test_streams_not_taken_are_closed(tmp_path: Path) -> None:
    sources = _sources(tmp_path, 3)
    pool = _Pool()
    early = DecodeAhead(sources, AheadPlan(pool.submit, 2, 1 << 20))
    early.start_after(0)
    opened = [f.result() for f in pool.started]
    assert not any(s.closed for s in opened)
    early.close()
    assert all(s.closed for s in opened)


def test_an_input_that_fails_to_open_ahead_is_opened_again_in_its_turn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its turn then fails or not as reading in turn would (a descriptor may be free by then)."""
    sources = _sources(tmp_path, 3)
    real = FileSource.open

    def refuse(self: FileSource) -> Any:
        if self.path.endswith("part2.gz"):
            raise InputError(f"{self.name}: Too many open files")
        return real(self)

    monkeypatch.setattr(FileSource, "open", refuse)
    pool = _Pool()
    early = DecodeAhead(sources, AheadPlan(pool.submit, 2, 1 << 20))
    early.start_after(0)
    assert len(pool.started) == 2 and pool.started[1].result() is None  # started, failed
    taken = early.take(1)
    assert taken is not None
    taken.close()
    assert early.take(2) is None  # opened by the reader in its turn
    early.close()


@pytest.mark.parametrize("change", ["append", "replace", "delete", "touch"])
def test_an_input_changed_after_it_was_opened_ahead_is_opened_again_in_its_turn(tmp_path: Path, change: str) -> None:
    """What is read is the file as it stands in its turn: reading in turn would not see the file
    as it was when opened ahead, nor fail that it changed while read."""
    sources = _sources(tmp_path, 2)
    pool = _Pool()
    early = DecodeAhead(sources, AheadPlan(pool.submit, 1, 1 << 20))
    early.start_after(0)
    stream = pool.started[0].result()
    path = Path(sources[1].path)
    if change == "append":
        with path.open("ab") as f:
            f.write(compress("gzip", b"more\n"))
    elif change == "replace":
        (tmp_path / "new.gz").write_bytes(compress("gzip", b"new\n"))
        os.replace(tmp_path / "new.gz", path)
    elif change == "delete":
        path.unlink()
    else:
        os.utime(path, ns=(0, 0))
    assert early.take(1) is None
    assert stream.closed
    early.close()


def test_an_unchanged_input_opened_ahead_is_taken(tmp_path: Path) -> None:
    sources = _sources(tmp_path, 2)
    pool = _Pool()
    early = DecodeAhead(sources, AheadPlan(pool.submit, 1, 1 << 20))
    early.start_after(0)
    stream = early.take(1)
    assert stream is pool.started[0].result() and stream is not None and not stream.closed
    stream.close()


def test_only_compressed_files_listed_once_are_opened_ahead(tmp_path: Path) -> None:
    """Not standard input (its offset is shared), a pipe (opening it waits for a writer), a
    plain file (read in parts on every worker already), nor a source object listed twice (one
    opened ahead would take the place of the one being read)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"a\n")
    twice = _sources(tmp_path, 1)[0]
    sources = [FileSource("-"), FileSource(str(fifo)), FileSource(str(plain)), twice, twice, FileSource("-")]
    pool = _Pool()
    DecodeAhead(sources, AheadPlan(pool.submit, 6, 1 << 20)).start_after(-1)
    assert pool.started == []


def test_decoding_ahead_is_planned_within_its_memory() -> None:
    """Each input ahead is given its decoder's state and a piece past its budget out of its share,
    and there are no more of them than the memory, the workers and the descriptors allow."""
    mib = 1 << 20
    assert ahead.plan_ahead(_Pool().submit, 2, 15 * mib) is None
    one = ahead.plan_ahead(_Pool().submit, 2, 48 * mib)
    assert one is not None and one.files == 1 and one.most == 48 * mib - ahead.DECODER_STATE - decoding.LARGEST_PIECE
    three = ahead.plan_ahead(_Pool().submit, 64, 48 * mib)
    assert three is not None and three.files == 3
    assert three.files * (three.most + ahead.DECODER_STATE + decoding.LARGEST_PIECE) <= 48 * mib
    wide = ahead.plan_ahead(_Pool().submit, 64, 1 << 40)
    assert wide is not None and wide.files == ahead.MOST_FILES
    assert ahead.plan_ahead(_Pool().submit, 1, 1 << 40) is None


def test_a_reader_decoding_ahead_plans_as_one_that_does_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first block ends inside an input decoded far ahead of it: its blocks and the size
    estimated from them (the bucket count of a compressed input) are those of a reader without."""
    monkeypatch.setattr(decoding._MemberLoop, "RAW_CHUNK", 4096)
    data, blob = _blob("gzip", 1 << 20)
    first = tmp_path / "a.gz"
    first.write_bytes(compress("gzip", b"x\n" * 5000))
    second = tmp_path / "b.gz"
    second.write_bytes(blob)
    seen = []
    for plan in (None, AheadPlan(_Pool().submit, 1, 1 << 30)):
        sources = [FileSource(str(first)), FileSource(str(second))]
        read = reader.RecordReader(sources, RecordFormat(10), Progress(), ahead=plan)
        blocks = read.blocks(200_000, "-S")
        block, final = next(blocks)
        head = block.tobytes()
        seen.append((head, final, read.estimate_total(), sources[1].position()))
        rest = b"".join(b.tobytes() for b, _final in blocks)
        assert head + rest == b"x\n" * 5000 + data + (b"" if data.endswith(b"\n") else b"\n")
    assert seen[0] == seen[1]
    assert not seen[0][1] and 0 < seen[0][3] < len(blob)


# Runs: the same output whatever the threads, with inputs decoded ahead.


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes each ``decode_ahead`` call held, to see the runs really decoded ahead."""
    held: list[int] = []
    real = decoding.Decompressed.decode_ahead

    def count(self: decoding.Decompressed, most: int, stop: Any) -> None:
        real(self, most, stop)
        held.append(sum(len(item[0]) for item in self._ahead if not isinstance(item, InputError)))

    monkeypatch.setattr(decoding.Decompressed, "decode_ahead", count)
    return held


def _inputs(tmp_path: Path) -> tuple[list[Path], list[bytes]]:
    """Six inputs, compressed each its own way or not, one without a final newline."""
    codecs = ["gzip", "zstd", None, "bzip2", "xz", "gzip"]
    paths, lines = [], []
    for i, codec in enumerate(codecs):
        part = make_records(700, seed=20 + i, max_len=60)
        lines += part
        raw = b"\n".join(part) + (b"" if i == 2 else b"\n")
        path = tmp_path / (f"in{i}.txt" if codec is None else f"in{i}.txt.{codec}")
        path.write_bytes(raw if codec is None else compress(codec, raw))
        paths.append(path)
    return paths, lines


@pytest.mark.parametrize("memory", ["64M", "64K"], ids=["in-memory", "external"])
@pytest.mark.parametrize("settings", [{}, {"verify": True}, {"resume": True}], ids=["plain", "verify", "resume"])
@pytest.mark.parametrize("at_once", [False, True], ids=["workers", "at-start"])
def test_compressed_inputs_decoded_ahead_give_the_same_output_whatever_the_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory: str, settings: dict[str, Any], at_once: bool
) -> None:
    """On the workers, as they come free; or ``at_once``, each input decoded ahead whole when it
    is started (so every run with workers certainly reads its later inputs from memory)."""
    monkeypatch.setattr(ahead, "LEAST_PER_FILE", 1)  # inputs and memory of a test's size
    monkeypatch.setattr(ahead, "DECODER_STATE", 0)
    monkeypatch.setattr(ahead, "LARGEST_PIECE", 0)
    monkeypatch.setattr(decoding._MemberLoop, "RAW_CHUNK", 4096)  # many pieces in small inputs
    if at_once:
        real = line_run.plan_ahead
        monkeypatch.setattr(line_run, "plan_ahead", lambda submit, workers, held: real(_Pool().submit, workers, 1 << 30))
    held = _counting(monkeypatch)
    paths, lines = _inputs(tmp_path)
    results = set()
    for n in (1, 2, 3, 8):
        out = tmp_path / f"out-{n}.txt"
        stats = bigshuf.shuffle(paths, out, seed=4, memory=memory, tmp_dir=tmp_path, sync=False, threads=n, **settings)
        results.add((out.read_bytes(), stats.passes, stats.buckets))
    assert len(results) == 1
    output, passes, _buckets = results.pop()
    assert passes == (1 if memory == "64M" else 2)
    assert_permutation(output, lines)
    if at_once:  # the four compressed inputs after the first, in each of the three runs with workers
        assert len(held) == 3 * 4 and min(held) > 0


def test_a_fault_in_an_input_decoded_ahead_fails_as_it_does_read_in_turn(tmp_path: Path) -> None:
    """From the command line (its inputs decoded ahead though small): the same line and exit
    status with and without workers, no output, and no descriptor left open by the inputs
    opened ahead (the library run)."""
    paths, _lines = _inputs(tmp_path)
    blob = bytearray(paths[4].read_bytes())
    blob[len(blob) // 2 : len(blob) // 2 + 32] = bytes(32)
    paths[4].write_bytes(bytes(blob))
    seen = set()
    for flags in (["-j1"], ["-j2"], ["-j8"]):
        out = tmp_path / "out.txt"
        run = subprocess.run(
            [sys.executable, "-c", SMALL_FILES_AHEAD, "--seed", "1", "-o", str(out), *flags, *map(str, paths)],
            capture_output=True, text=True,
        )
        seen.add((run.returncode, run.stderr))
        assert not out.exists()
    assert len(seen) == 1
    code, err = seen.pop()
    assert code == 1 and err.startswith("bigshuf: ") and "in4.txt.xz: corrupt xz data" in err and err.count("\n") == 1
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(InputError, match="in4.txt.xz"):
        bigshuf.shuffle(paths, tmp_path / "lib.txt", seed=1, threads=3)
    assert len(os.listdir("/proc/self/fd")) == before


def _zstd_shards(tmp_path: Path, lines: list[bytes], n: int) -> list[Path]:
    """``lines`` in ``n`` zstd files of as many lines each."""
    per = len(lines) // n
    paths = []
    for i in range(n):
        paths.append(tmp_path / f"s{i:02d}.zst")
        paths[-1].write_bytes(compress("zstd", b"\n".join(lines[i * per : (i + 1) * per]) + b"\n"))
    return paths


def _few_descriptors(paths: list[Path], out: Path, nofile: int, memory: str, threads: int, stat: str) -> list[str]:
    """Shuffle ``paths`` in a child process under ``ulimit -n nofile``, decoding ahead at a test's
    size; what it prints: how many files are planned ahead before and after the limit, and the
    run's ``stat``."""
    run = run_child(
        "import resource, bigshuf\n"
        "from bigshuf.storage import ahead\n"
        "ahead.LEAST_PER_FILE, ahead.DECODER_STATE, ahead.LARGEST_PIECE, ahead.SMALLEST_FILE = 1, 0, 0, 0\n"
        f"print(ahead.plan_ahead(None, {threads}, 1 << 30).files)\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile}))\n"
        f"print(getattr(ahead.plan_ahead(None, {threads}, 1 << 30), 'files', 0))\n"
        f"stats = bigshuf.shuffle({[str(p) for p in paths]!r}, {str(out)!r}, seed=1, memory={memory!r},"
        f" threads={threads}, tmp_dir={str(out.parent)!r}, sync=False)\n"
        f"print(stats.{stat})\n"
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def test_inputs_open_ahead_leave_the_buckets_their_descriptors(tmp_path: Path) -> None:
    """With ``ulimit -n 100`` the buckets take all the descriptors the run allows them (36); the
    inputs opened ahead come out of the spare ones, however many workers there are (with one
    open per worker, -j64 failed with "Too many open files" on a bucket)."""
    lines = make_records(8000, seed=3, max_len=150)
    out = tmp_path / "out.txt"
    assert _few_descriptors(_zstd_shards(tmp_path, lines, 80), out, 100, "64K", 64, "buckets") == ["8", "8", "36"]
    assert_permutation(out.read_bytes(), lines)


def test_an_input_whose_worker_has_not_started_is_opened_by_the_reader(tmp_path: Path) -> None:
    """The reader does not wait for a worker that is busy elsewhere (scattering pieces)."""
    from concurrent.futures import Future

    queued: list[Future[Any]] = []

    def later(job: Any) -> Future[Any]:
        queued.append(Future())
        return queued[-1]

    early = DecodeAhead(_sources(tmp_path, 2), AheadPlan(later, 1, 1 << 20))
    early.start_after(0)
    assert len(queued) == 1
    assert early.take(1) is None and queued[0].cancelled()
    early.close()


def test_each_input_is_looked_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether an input is worth opening ahead costs a stat and a read of its head: once per input,
    not once per input before it (a run may name thousands)."""
    looked: list[str] = []
    real = ahead.compressed_file

    def counting(source: Any) -> bool:
        looked.append(source.path)
        return real(source)

    monkeypatch.setattr(ahead, "compressed_file", counting)
    sources = _sources(tmp_path, 12)
    for i in range(0, 12, 2):  # plain files between them: looked at, not started
        plain = tmp_path / f"plain{i}.txt"
        plain.write_bytes(b"p\n")
        sources[i] = FileSource(str(plain))
    pool = _Pool()
    early = DecodeAhead(sources, AheadPlan(pool.submit, 3, 1 << 20))
    for i in range(len(sources)):
        stream = early.take(i)
        (stream or sources[i].open()).close()
        early.start_after(i)
    assert sorted(looked) == sorted(s.path for s in sources[1:])
    assert len(pool.started) == 6


def test_a_file_of_tiny_members_is_not_decoded_ahead_past_a_few(tmp_path: Path) -> None:
    """A member per line (``gzip >> log.gz``): each piece would hold more bookkeeping than bytes,
    and decoding it is the interpreter's work, so a second thread only contends for it."""
    lines = [b"line %d of a log\n" % i for i in range(3000)]
    blob = b"".join(compress("gzip", line) for line in lines)
    stream = decoding.open_reader(io.BytesIO(blob), "gzip", "log.gz")
    assert isinstance(stream, decoding.Decompressed)
    stream.decode_ahead(1 << 30, lambda: False)
    assert len(stream._ahead) == decoding.SMALL_PIECES_SEEN
    assert stream.read() == b"".join(lines)


def test_pieces_ahead_count_their_bookkeeping_against_the_budget() -> None:
    data = b"".join(b"row %d\n" % i for i in range(200))
    blob = b"".join(compress("zstd", data[i : i + 7]) for i in range(0, len(data), 7))
    stream = decoding.open_reader(io.BytesIO(blob), "zstd", "x")
    assert isinstance(stream, decoding.Decompressed)
    stream.decode_ahead(10 * decoding.PIECE_OVERHEAD, lambda: False)
    assert len(stream._ahead) == 10  # 70 bytes of data, 10 pieces' worth of memory
    assert stream.read() == data


def test_no_input_is_opened_ahead_without_spare_descriptors(tmp_path: Path) -> None:
    """At ``ulimit -n 9`` the buckets (2) and the run's own descriptors leave one: nothing is
    opened ahead, and the run succeeds as reading in turn does (with three open ahead it failed
    with "Too many open files")."""
    lines = make_records(3000, seed=4, max_len=60)
    out = tmp_path / "out.txt"
    files, planned, passes = _few_descriptors(_zstd_shards(tmp_path, lines, 10), out, 9, "16K", 8, "passes")
    assert (files, planned) == ("7", "0") and int(passes) > 2  # external: with 2 buckets, recursive
    assert_permutation(out.read_bytes(), lines)


def test_small_compressed_files_are_not_opened_ahead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file under ``SMALLEST_FILE`` decodes in less time than handing it to a worker costs."""
    monkeypatch.setattr(ahead, "SMALLEST_FILE", 4096)
    small = tmp_path / "small.gz"
    small.write_bytes(compress("gzip", b"few lines\n" * 10))
    large = tmp_path / "large.gz"
    large.write_bytes(compress("gzip", np.random.default_rng(1).integers(0, 256, 8192, dtype=np.uint8).tobytes()))
    assert small.stat().st_size < 4096 <= large.stat().st_size
    assert not ahead.compressed_file(FileSource(str(small)))
    assert ahead.compressed_file(FileSource(str(large)))
