"""Shared helpers for the engine tests: generated records and permutation checks."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa


def run_child(script: str) -> subprocess.CompletedProcess[str]:
    """``script`` run by this Python in a child process, its output captured as text: a signal
    (SIGBUS, a crash) ends the child, not the tests, and shows as a negative return code."""
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


def make_records(n: int, seed: int = 0, *, min_len: int = 0, max_len: int = 80, sep: bytes = b"\n") -> list[bytes]:
    """``n`` distinct-ish records of random bytes (any byte but ``sep``), with a unique prefix."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, max_len + 1, n)
    out = []
    for i, length in enumerate(lengths):
        body = rng.integers(0, 256, int(length), dtype=np.uint8).tobytes().replace(sep, b"")
        out.append(b"%d:" % i + body)
    return out


def write_records(path: Path, records: list[bytes], sep: bytes = b"\n", final_sep: bool = True) -> Path:
    """Write records joined by ``sep`` (optionally without the last one)."""
    data = sep.join(records) + (sep if final_sep and records else b"")
    path.write_bytes(data)
    return path


def split_records(data: bytes, sep: bytes = b"\n") -> list[bytes]:
    """Records of ``data``, which must end with ``sep`` unless empty."""
    if not data:
        return []
    assert data.endswith(sep), "output must end with a separator"
    return data[:-1].split(sep)


def assert_permutation(output: bytes, records: list[bytes], sep: bytes = b"\n") -> list[bytes]:
    """The output holds exactly ``records`` (as a multiset, byte for byte); returns its records."""
    got = split_records(output, sep)
    assert len(got) == len(records)
    assert Counter(got) == Counter(records)
    return got


def temp_leftovers(directory: Path) -> list[str]:
    """Anything a run left in its temporary directory."""
    return sorted(os.listdir(directory))


def write_short_lines(path: Path, lines: int, seed: int) -> Path:
    """``lines`` random lowercase lines of 1-58 letters, generated with NumPy (fast at millions)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 60, lines)
    data = rng.integers(97, 123, int(lengths.sum()), dtype=np.uint8)
    data[np.cumsum(lengths) - 1] = 10
    path.write_bytes(data.tobytes())
    return path


def compress(codec: str, data: bytes) -> bytes:
    """``data`` compressed by the codec's reference library (not by bigshuf)."""
    if codec == "gzip":
        return gzip.compress(data, mtime=0)
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data)
    if codec == "bzip2":
        return bz2.compress(data)
    return lzma.compress(data)


def decompress(codec: str, blob: bytes) -> bytes:
    """``blob`` decompressed by the codec's reference library (not by bigshuf)."""
    if codec == "gzip":
        return gzip.decompress(blob)
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob), read_across_frames=True).read()
    if codec == "bzip2":
        return bz2.decompress(blob)
    return lzma.decompress(blob)


#: Runs a command in a forked child and prints its exit status and peak RSS (a fresh
#: launcher, so the child's ru_maxrss does not start from the test process's); the first
#: argument is the child's limit of open files (soft and hard), or "-" for the launcher's own.
_LAUNCHER = """
import os, resource, sys
if sys.argv[1] != "-":
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[1])))
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024)
"""


def run_peak(args: list[str], cwd: Path, *, input: bytes | None = None, open_files: int | None = None) -> tuple[int, int]:
    """Exit status and peak RSS in bytes of ``python -m bigshuf ARGS`` (run in a child process),
    ``input`` written to its standard input (a pipe), at most ``open_files`` descriptors open."""
    limit = "-" if open_files is None else str(open_files)
    cmd = [sys.executable, "-S", "-c", _LAUNCHER, limit, sys.executable, "-m", "bigshuf", *args]
    done = subprocess.run(cmd, input=input, capture_output=True, cwd=cwd, timeout=300, check=True)
    out = done.stdout.split()
    return int(out[0]), int(out[1])


def checkpoint_state(temp: Path) -> dict:  # type: ignore[type-arg]
    """The ``--resume`` checkpoint (state.json) under the temporary directory ``temp`` as it stands, or {} if none yet."""
    for d in temp.iterdir():
        try:
            return json.loads((d / "state.json").read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            pass
    return {}


def kill_at_checkpoint(cmd: list[str], temp: Path, ready: Callable[[dict], bool], cwd: Path | None = None) -> dict:  # type: ignore[type-arg]
    """Start ``cmd`` (in ``cwd``) and SIGKILL it once its ``--resume`` checkpoint under ``temp``
    satisfies ``ready``; return the checkpoint it leaves. The test hook stops the run at each
    checkpoint it saves: one that satisfies ``ready`` is let run on for a moment, so the kill finds
    files written past it as a kill in the field would, and a run that reaches its next checkpoint
    meanwhile is killed there, stopped. So it cannot end between the look and the kill (a fast disk
    let it) unless ``ready`` took its last checkpoint. A state between checkpoints (``ready`` of a
    job's files) is looked for as the run goes. Its stderr goes to a log beside ``temp``, shown if
    it ends first."""
    from bigshuf.core.checkpoint import TEST_STOP_VARIABLE

    log = temp.parent / "killed.log"
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env={**os.environ, TEST_STOP_VARIABLE: "1"}, stdout=subprocess.DEVNULL, stderr=stderr
        )
    deadline = time.monotonic() + 120
    try:
        while True:
            pid, status = os.waitpid(proc.pid, os.WUNTRACED | os.WNOHANG)
            if pid and not os.WIFSTOPPED(status):
                proc.returncode = os.waitstatus_to_exitcode(status)
                raise AssertionError(f"the run ended (rc {proc.returncode}) before the checkpoint: {log.read_text()!r}")
            if ready(checkpoint_state(temp)):
                break
            if pid:
                os.kill(proc.pid, signal.SIGCONT)
            else:
                assert time.monotonic() < deadline, "the run neither reached the checkpoint nor ended in 120 s"
                time.sleep(0.001)
        if pid:
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(0.001)
    finally:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended (rc {proc.returncode}) before it could be killed: {log.read_text()!r}"
    log.unlink()
    return checkpoint_state(temp)


def source_records(name: str, n: int, size: int = 60) -> list[bytes]:
    """``n`` distinct records of ``size`` bytes, each naming its source (weighted-source tests)."""
    return [(b"%s%d:" % (name.encode(), i)).ljust(size, b"x") for i in range(n)]


def expected_passes(label: str, passes: int) -> None:
    """A run of a test path (``in-memory``, ``external``, ``recursive``) took that path: 1 pass, 2, 3 or more."""
    assert passes == 1 if label == "in-memory" else passes >= 2, label
    if label == "recursive":
        assert passes >= 3


def make_table(n: int, seed: int = 0) -> pa.Table:
    """``n`` rows with a unique ``id`` and nested, null, dictionary and temporal columns (the table tests' data)."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    ids = np.arange(n, dtype=np.int64)
    words = ["", "a", "héllo", "tab\there", 'quote"d', "new\nline", "x" * 50]
    text = pa.array([None if i % 7 == 3 else words[i % len(words)] + str(i) for i in range(n)])
    lists = pa.array([None if i % 11 == 5 else list(range(i % 4)) for i in range(n)], pa.list_(pa.int32()))
    nested = pa.array(
        [None if i % 13 == 1 else {"x": float(i) / 3, "tags": ["t"] * (i % 3), "flag": bool(i % 2)} for i in range(n)]
    )
    return pa.table({
        "id": ids,
        "text": text,
        "lists": lists,
        "nested": nested,
        "cat": pa.array([["red", "green", "blue"][i % 3] for i in range(n)]).dictionary_encode(),
        "when": pa.array(rng.integers(0, 10**12, n), pa.timestamp("ms")),
        "maybe": pa.array([None if i % 5 == 0 else int(v) for i, v in enumerate(rng.integers(-9, 9, n))], pa.int16()),
    }).replace_schema_metadata({"origin": "bigshuf tests"})


#: A tar member as tarfile reads it back: name, mode, mtime, uid, gid, uname, gname, data.
Member = tuple[str, int, int, int, int, str, str, bytes]


def tar_bytes(samples: Sequence[Sequence[Member]], fmt: int = tarfile.GNU_FORMAT, extra: tuple[tarfile.TarInfo, ...] = ()) -> bytes:
    """``samples`` (lists of members) as the bytes of one tar, with ``extra`` non-regular members first."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info in extra:
            tar.addfile(info)
        for sample in samples:
            for name, mode, mtime, uid, gid, uname, gname, data in sample:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), mode, mtime
                info.uid, info.gid, info.uname, info.gname = uid, gid, uname, gname
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def count_sliced_writes(monkeypatch: Any) -> list[int]:
    """The length of every write a ``SlicedFile`` makes from now on (a list that grows as they happen),
    each slice a call from Python (the compiled loop's slices are counted in tests/storage/test_sliced.py)."""
    from bigshuf.storage import sliced
    from bigshuf.storage.sliced import SlicedFile

    monkeypatch.setattr(sliced, "native", None)

    calls: list[int] = []
    real = SlicedFile.write

    def spy(self: SlicedFile, data: object) -> int:
        n = real(self, data)
        calls.append(n)
        return n

    monkeypatch.setattr(SlicedFile, "write", spy)
    return calls


def cut_stream(path: Path, table: Any, batches: int | None) -> bytes:
    """Write the Arrow ``table`` to ``path`` as an Arrow IPC stream of 60-row batches; with ``batches``, cut it after
    that many (0: after the schema), as a writer killed between batches leaves it. Returns the whole stream."""
    import pyarrow as pa

    whole = pa.BufferOutputStream()
    with pa.ipc.new_stream(whole, table.schema) as w:
        w.write_table(table, max_chunksize=60)
    data = whole.getvalue().to_pybytes()
    ends = []
    with pa.BufferReader(data) as f:
        messages = pa.ipc.MessageReader.open_stream(f)
        for _ in range(len(table.to_batches(max_chunksize=60)) + 1):
            messages.read_next_message()
            ends.append(f.tell())
    path.write_bytes(data if batches is None else data[: ends[batches]])
    return data


def measure_table_buckets(monkeypatch: Any) -> list[int]:
    """Patch ``TableBuckets.close`` (for the test's ``monkeypatch``) to note the bytes on disk of each
    level's bucket files, complete, as pass 1 closes them before pass 2 reads them; the list it fills."""
    from bigshuf.formats.tables import TableBuckets

    on_disk: list[int] = []
    close = TableBuckets.close

    def measured(self: TableBuckets) -> None:
        writing = bool(self._writers)
        close(self)
        if writing:
            on_disk.append(sum(os.path.getsize(self.path(j)) for j in range(self.k)))

    monkeypatch.setattr(TableBuckets, "close", measured)
    return on_disk
