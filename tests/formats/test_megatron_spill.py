"""A Megatron output's index parts (sequence lengths, sequences per document, modes) held within a
small share of -S: beyond it they go to a private temporary file, read back for the .idx, which stays
byte for byte the index of parts held in memory; the file is removed on success, failure and signals."""

from __future__ import annotations

import os
import signal
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import run_child, temp_leftovers
from test_megatron import MAGIC, as_docs, make_docs, read_dataset, write_dataset

import bigshuf
from bigshuf.formats import megatron, megatron_resume, megatron_run
from bigshuf.formats.megatron_resume import IndexLogs


def write_ones(prefix: Path, documents: int, per_document: int) -> Path:
    """A uint16 dataset of ``documents`` of ``per_document`` one-token sequences, made with NumPy (fast at millions)."""
    sequences = documents * per_document
    Path(f"{prefix}.bin").write_bytes(np.random.default_rng(1).integers(0, 60_000, sequences).astype("<u2").tobytes())
    head = MAGIC + struct.pack("<QBQQ", 1, 8, sequences, documents + 1)
    body = [np.ones(sequences, "<i4"), np.arange(sequences, dtype="<i8") * 2, np.arange(documents + 1, dtype="<i8") * per_document]
    Path(f"{prefix}.idx").write_bytes(head + b"".join(a.tobytes() for a in body))
    return prefix


def spill_at(monkeypatch: pytest.MonkeyPatch, budget: int) -> list[int]:
    """Hold at most ``budget`` bytes of a file's index parts in memory, whatever -S; return a list
    that takes the sequences of each chunk put in a spill file."""
    monkeypatch.setattr(megatron_run, "SPILL_LEAST", budget)
    monkeypatch.setattr(megatron_run, "SPILL_SHARE", 1 << 62)
    put = megatron_run.SpillFile.put
    sizes: list[int] = []

    def counted(self: megatron_run.SpillFile, chunks: Any) -> None:
        sizes.append(sum(len(c[1]) for c in chunks))
        put(self, chunks)

    monkeypatch.setattr(megatron_run.SpillFile, "put", counted)
    return sizes


def test_an_outputs_index_parts_are_held_within_a_share_of_the_memory_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every sequence length, document count and mode of an output file was held until its ``.idx``
    was written, 12 bytes a sequence beyond -S: 8 M sequences at ``-S 16M`` peaked at 200 MB RSS
    (found by review). Traced from the output's start to its commit, 1 M sequences at ``-S 2M`` took
    10.5 MB (8 MB of parts); past a 64th of -S they go to a temporary file now, and 2.6 MB are traced
    (pass 2's own arrays) whether the output holds 0.5, 1 or 2 M sequences."""
    src = write_ones(tmp_path / "d", 500_000, 2)
    (tmp_path / "t").mkdir()
    peaks: list[int] = []
    begin, commit = megatron_run.MegatronOutput.begin, megatron_run.MegatronOutput.commit

    def traced_begin(self: megatron_run.MegatronOutput, *args: Any, **kwargs: Any) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start()
        begin(self, *args, **kwargs)

    def traced_commit(self: megatron_run.MegatronOutput) -> None:
        commit(self)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()

    monkeypatch.setattr(megatron_run.MegatronOutput, "begin", traced_begin)
    monkeypatch.setattr(megatron_run.MegatronOutput, "commit", traced_commit)
    try:
        stats = bigshuf.shuffle([str(src)], str(tmp_path / "o"), memory="2M", seed=1, tmp_dir=tmp_path / "t", sync=False)
    finally:
        tracemalloc.stop()
    assert stats.passes == 2 and len(peaks) == 1
    assert peaks[0] < 2 * (2 << 20), peaks  # twice -S: the parts alone are 8 MB
    assert (tmp_path / "o.idx").stat().st_size == (tmp_path / "d.idx").stat().st_size
    assert temp_leftovers(tmp_path / "t") == []


#: (label, -S): 600 documents of ~60 tokens are ~80 KB as rows.
PATHS = [("in-memory", "64M"), ("external", "32K")]
LAYOUTS: dict[str, tuple[str, dict[str, Any]]] = {
    "one pair": ("out/shuffled", {}),
    "shards": ("shards/", {"shards": 3}),
    "split": ("sp/{split}", {"split": "valid=50,train=rest"}),
}


def files_of(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by its relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("budget", [0, 2048])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("label,memory", PATHS)
@pytest.mark.parametrize("modes", [False, True])
def test_spilled_index_parts_give_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, memory: str, layout: str, modes: bool, budget: int,
) -> None:
    """Spilled (every chunk, or past 2 KB held), the parts give the ``.idx`` (and ``.bin``) bytes of
    parts held in memory, for one pair, shards and splits, with modes or not. The in-memory path
    never spills them: the input it holds whole bounds them, and it needs no -T."""
    docs = make_docs(600, seed=3, modes=modes)
    src = write_dataset(tmp_path / "c", docs, modes=modes)
    target, options = LAYOUTS[layout]
    got = {}
    for name, at in (("held", 1 << 62), ("spilled", budget)):
        work = tmp_path / name
        (work / "t").mkdir(parents=True)
        (work / target).parent.mkdir(exist_ok=True)
        with monkeypatch.context() as patch:
            sizes = spill_at(patch, at)
            stats = bigshuf.shuffle([str(src)], f"{work}/{target}", memory=memory, seed=7, tmp_dir=work / "t", sync=False, **options)
        assert (stats.passes == 1) == (label == "in-memory")
        assert bool(sizes) == (name == "spilled" and label == "external"), sizes
        assert temp_leftovers(work / "t") == []
        got[name] = files_of(work / target.split("/")[0])
    assert got["spilled"] == got["held"]
    assert sorted(got["held"]) == sorted(
        {"one pair": ["shuffled.bin", "shuffled.idx"], "shards": [f"part-{i:05d}.bin" for i in range(3)] + [f"part-{i:05d}.idx" for i in range(3)],
         "split": ["train.bin", "train.idx", "valid.bin", "valid.idx"]}[layout]
    )
    if layout == "one pair":
        _, written = read_dataset(tmp_path / "spilled" / "out" / "shuffled", modes=modes)
        assert sorted(written) == sorted(as_docs(docs, modes=modes))


@pytest.mark.parametrize("modes", [False, True])
def test_each_index_section_reads_only_its_array_of_the_spill_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, modes: bool) -> None:
    """The ``.idx`` is written a section at a time, the spill file read again for each: each read
    whole chunks (12 bytes a one-token document, 13 with modes), where a section needs one array of
    them: 4 M one-token documents at ``-S 16M`` read 144 MB of a 48 MB spill file. Now the lengths
    are read for two sections, the counts and the modes for one each, with the chunks' headers."""
    docs = make_docs(3000, seed=5, modes=modes)
    src = write_dataset(tmp_path / "c", docs, modes=modes)
    (tmp_path / "t").mkdir()
    sizes = spill_at(monkeypatch, 2048)
    read = [0]
    real_pread = os.pread

    def counted(fd: int, n: int, at: int) -> bytes:
        data = real_pread(fd, n, at)
        read[0] += len(data)
        return data

    close = megatron_run.MegatronOutput._close_format

    def reading(self: megatron_run.MegatronOutput, shard: int) -> None:
        with monkeypatch.context() as patch:
            patch.setattr(megatron.os, "pread", counted)
            close(self, shard)

    monkeypatch.setattr(megatron_run.MegatronOutput, "_close_format", reading)
    bigshuf.shuffle([str(src)], str(tmp_path / "o"), memory="256K", seed=7, tmp_dir=tmp_path / "t", sync=False)
    assert sorted(read_dataset(tmp_path / "o", modes=modes)[1]) == sorted(as_docs(docs, modes=modes))
    sequences, documents = struct.unpack_from("<QQ", (tmp_path / "o.idx").read_bytes(), 18)
    documents -= 1  # (the count of document entries is one more)
    # At most (the last chunk may be held in memory): the lengths twice, the counts and modes once, every chunk's header each time.
    need = 2 * 4 * sequences + 8 * documents + (sequences if modes else 0) + (4 if modes else 3) * 16 * len(sizes)
    assert len(sizes) > 3 and 0 < read[0] <= need, (read[0], need)


def test_an_in_memory_run_holds_its_index_parts_and_needs_no_temporary_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spilling is for the external path: an in-memory run, which holds its input whole, kept every
    part in memory and never used -T, and still does, whatever the spill budget (with parts spilled
    there, a -T that does not exist failed a run that fits in memory)."""
    src = write_dataset(tmp_path / "c", make_docs(600, seed=3))
    sizes = spill_at(monkeypatch, 0)
    stats = bigshuf.shuffle([str(src)], str(tmp_path / "o"), memory="64M", seed=7, tmp_dir=tmp_path / "absent", sync=False)
    assert stats.passes == 1 and sizes == []
    assert not (tmp_path / "absent").exists()
    assert (tmp_path / "o.idx").stat().st_size == (tmp_path / "c.idx").stat().st_size


@pytest.mark.parametrize("how", ["signal", "cut"])
def test_a_run_ended_with_index_parts_spilled_leaves_nothing(tmp_path: Path, how: str) -> None:
    """A run that ends once an output file's parts are in a spill file, by SIGTERM (it dies of the
    signal) or refused because the file was cut short before it was read back (exit 1, one line):
    no output, and nothing left in -T."""
    write_dataset(tmp_path / "a", make_docs(3000))
    (tmp_path / "tmp").mkdir()
    done = run_child(f"""
import os, signal, sys
from bigshuf.command import main
from bigshuf.formats import megatron, megatron_resume, megatron_run
from bigshuf.formats.megatron_resume import IndexLogs
megatron_run.SPILL_LEAST, megatron_run.SPILL_SHARE = 0, 1 << 62
put, field = megatron_run.SpillFile.put, megatron_run.SpillFile.field
def signalled(self, chunks):
    first = self.fd < 0
    put(self, chunks)
    if first:
        os.kill(os.getpid(), signal.SIGTERM)
def cut(self, k):
    os.truncate(self.name, 10)
    return field(self, k)
if {how!r} == "signal":
    megatron_run.SpillFile.put = signalled
else:
    megatron_run.SpillFile.field = cut
signal.signal(signal.SIGTERM, signal.SIG_DFL)
sys.argv = ["bigshuf", {str(tmp_path / "a")!r}, "-o", {str(tmp_path / "o")!r}, "-S", "32K", "-T", {str(tmp_path / "tmp")!r}, "--seed", "1"]
sys.exit(main())
""")
    if how == "signal":
        assert done.returncode == -signal.SIGTERM, (done.returncode, done.stderr[-800:])
        assert "Traceback" not in done.stderr
    else:
        assert done.returncode == 1, (done.returncode, done.stderr[-800:])
        assert done.stderr.startswith("bigshuf: ") and done.stderr.count("\n") == 1, done.stderr
        assert "index-00000.spill: its chunk at byte 0 runs past its end; the temporary directory was changed" in done.stderr
    assert not (tmp_path / "o.bin").exists() and not (tmp_path / "o.idx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "a.idx", "tmp"]
    assert temp_leftovers(tmp_path / "tmp") == []


def test_a_resumed_runs_index_logs_are_read_a_chunk_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resumed run read each output file's index log whole (and parsed it into arrays beside the
    bytes) and held what it logged until the ``.idx`` was written: resumed in pass 2, 8 M sequences at
    ``-S 16M`` peaked at 275 MB RSS (found by review). The log is the parts' only copy now, checked
    and read a chunk at a time: 16 MB of log (2 M sequences) were taken up and their ``.idx`` made
    with 40 MB traced, now with a chunk's worth."""
    logs = IndexLogs(str(tmp_path), 2, False)
    logs.open(0, None)
    chunk = (np.full(10_000, 2, np.int64), np.ones(20_000, np.int32), None)
    for _ in range(100):
        logs.append(0, [chunk])
    logs.checkpoint(1_000_000)
    logs.close()
    again = IndexLogs(str(tmp_path), 2, False)
    for name in ("load_state", "open_output_temp"):  # not counted: index.json's read buffer (16 MiB asked
        made = getattr(megatron_resume, name)  # for), the log's CRC-32 checked 4 MiB at a time

        def uncounted(*args: Any, made: Any = made) -> Any:
            done = made(*args)
            tracemalloc.reset_peak()
            return done

        monkeypatch.setattr(megatron_resume, name, uncounted)
    tracemalloc.start()
    try:
        parts = again.restore({"files": [[4_000_000, 0]], "records": [1_000_000], "done": 1_000_000})
        written = sum(len(part) for part in parts[0].index_parts(8))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        again.close()
    assert (parts[0].documents, parts[0].sequences, parts[0].kept) == (1_000_000, 2_000_000, [])
    assert written == 34 + 2_000_000 * 12 + 8 * 1_000_001
    assert peak < 1 << 20, peak  # a chunk of 160 KB and its .idx parts, not the 16 MB log
