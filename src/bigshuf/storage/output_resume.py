"""``--resume`` for the output: each file's size and CRC-32 checkpointed, and the files of an
interrupted run taken up again where ``Output``'s plan puts them (read back when a manifest or
``--shard-size`` needs their records), under the fixed temporary names a resumed run finds again."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.fingerprint import Fingerprint
from ..core.checkpoint import advice, refusal
from ..core.resume import FileCheck, ResumePoint
from ..errors import OutputError
from .layout import file_places
from .manifest import OutputFile
from .paths import followed_path, generated_path
from ..quoting import quote_name
from .shards import make_directories
from .sinks import AtomicFileSink, output_codec

if TYPE_CHECKING:
    from .output import Output


def resumable_sink(output: Output, i: int, path: str, at: ResumePoint | None) -> AtomicFileSink:
    """The --resume file number ``i`` (named ``path``): fresh, or reopened ``at`` a checkpoint. A name
    bigshuf made (a shard's, a split's) is opened in its directory's real path, never through a
    link; the single output as ``-o`` names it, links followed (as a run without --resume does)."""
    finished = at is not None and at.finished
    codec = None if finished else output_codec(path, output._codec_choice())
    made = output.sharding.on or output.split is not None
    if made:
        output._made += make_directories([path])
    sink = AtomicFileSink(
        generated_path(path) if made else followed_path(path), codec, path, output.resume_tag, at, output.resume_dir,
        files=output.files, index=i if made else None,
    )
    if finished:
        sink.finish()
    return sink


def take_up(output: Output, restore: dict[str, Any]) -> None:
    """Take up the files of an interrupted ``--resume`` run (a ``checkpoint()``): each where the
    plan puts it, finished ones as they are, the last cut back to the checkpoint and appended to.
    A layout the plan could not have made is refused. Each file's records are read back from disk
    (``read_back``): they must be the ``written`` records the checkpoint counts in all."""
    counts: list[int] = restore["records"]
    output._done = restore["done"]
    output.fingerprint = Fingerprint(*restore["fingerprint"])
    try:
        places = [(0, 0)] * len(counts) if output._plain else file_places(counts, [g[3] for g in output._groups], output.sharding)
    except ValueError as e:
        raise refusal(output.resume_dir, str(e)) from None
    for i, ((size, crc), records, (group, index)) in enumerate(zip(restore["files"], counts, places)):
        at = ResumePoint(size, crc, finished=i < len(counts) - 1)
        path = output.target if output._plain else output._file_path(group, index)
        assert path is not None
        sink = resumable_sink(output, i, path, at)
        output.sinks.append(sink)
        output.outputs.append(OutputFile(None if output._plain else output._groups[group][0], path, records))
        output._checks.append(FileCheck(sink.tmp_path, at))
        output._finished += at.finished
    if output.sinks and output._groups:
        output._group, output._index = places[-1]
        _split, _target, start, count = output._groups[output._group]
        output._end = output.sharding.file_end(start, count, output._index)
    if output.rescan is not None:
        read_back(output, restore["written"])


def read_back(output: Output, written: int) -> None:
    """Count, size and fingerprint each file taken up from a checkpoint by reading it back
    (``rescan``): its records must be the checkpoint's (one file counts none there: all of the
    ``written`` records), and together their fingerprints the checkpoint's; with ``--shard-size``
    every file followed by another of its split must be full. A checkpoint whose counts were
    edited to skip a bucket is so refused, not resumed into an output short of its records."""
    assert output.rescan is not None
    total = Fingerprint()
    hashing = output.verify or output.manifest is not None
    for i, (sink, out) in enumerate(zip(output.sinks, output.outputs)):
        assert isinstance(sink, AtomicFileSink)
        fp = output.rescan(sink.tmp_path, output_codec(out.path, output._codec_choice()))
        expected = written if output._plain else out.records
        if fp.records != expected:
            raise OutputError(
                f"{sink.tmp_path}: holds {fp.records} records, the checkpoint in {output.resume_dir} says {expected}; "
                f"{advice(output.resume_dir)}"
            )
        out.bytes = fp.bytes
        if hashing:
            out.fingerprint = fp
        total += fp
        following = output.outputs[i + 1] if i + 1 < len(output.outputs) else None
        size = output.sharding.size
        if size is not None and following is not None and following.split == out.split and fp.bytes < size:
            raise refusal(output.resume_dir, f"cut output file {i} at {fp.bytes} bytes of records, short of {size}")
    if hashing and total != output.fingerprint:
        raise refusal(output.resume_dir, "holds an output fingerprint that the files taken up from it do not add up to")


def checkpoint(output: Output) -> dict[str, Any]:
    """Where the output stands after the queued writes, every file synced up to there:
    enough for ``begin(restore=...)`` (each file's size and CRC-32, records emitted, fingerprint)."""
    output.writer.flush()
    output._tally()
    size = output.sinks[-1].cut() if output.sinks else 0
    for sink in output.sinks[len(output._checks) :]:
        assert isinstance(sink, AtomicFileSink)
        output._checks.append(FileCheck(sink.tmp_path))
    last = len(output._checks) - 1
    try:
        files = [check.advance(size if i == last else None) for i, check in enumerate(output._checks)]
    except OSError as e:
        raise OutputError(f"{quote_name(output._checks[-1].path)}: cannot checkpoint: {e.strerror}") from None
    return {
        "files": files,
        "done": output._done,
        "fingerprint": [output.fingerprint.records, output.fingerprint.bytes, output.fingerprint.digest],
        "records": [out.records for out in output.outputs],
    }
