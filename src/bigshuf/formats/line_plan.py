"""What a line run plans with, worked out before it shuffles: the mean record's size, the temporary
buckets' compression ratio and bytes, and ``--dry-run``'s view of the run, the first piece of the
input read and sized as pass 1 would (``sample_lines``) and the output as ``prepare`` checks it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core import mix, plan
from ..core.driver import Estimate, OutputPlan, Sample
from ..core.records import RecordFormat, find_offsets
from ..errors import InputError, option
from ..progress import Progress
from ..quoting import quote_name
from ..request import Request, resolve_memory
from ..storage.codecs import parse_compress
from ..storage.layout import Sharding
from ..storage.reader import RecordReader
from ..storage.remote import URLSource, is_remote
from ..storage.sinks import CodecChoice
from ..storage.sources import BytesSource, FileSource, GeneratedSource, Source, stdin_file, stdin_offset_kept
from .detect import line_shard_suffix, refuse_data_files_in_streams
from .line_mix import count_sources, source_sizes


def compression_ratio(sample: np.ndarray) -> float:
    """Compressed over raw size of ``sample`` with the temporary buckets' codec (zstd level 1)."""
    if not len(sample):
        return 1.0
    import zstandard

    return len(zstandard.ZstdCompressor(level=1).compress(sample.data)) / len(sample)


def mean_record_size(block: np.ndarray, fmt: RecordFormat, piece: int) -> float:
    """Mean size of the whole records in the first ``piece`` bytes of ``block`` (the block's size if it
    holds none): what pass 1 sizes its buckets with."""
    sample = find_offsets(block[:piece], fmt)
    return int(sample[-1]) / max(1, len(sample) - 1) if len(sample) > 1 else float(len(block))


def temp_bytes(nbytes: int, compress_temp: bool, ratio: float) -> int:
    """Temporary space ``nbytes`` of records take as buckets, compressed at ``ratio`` with ``compress_temp``."""
    # 10% spare for compressed buckets: the sample's ratio may flatter the rest.
    return nbytes if not compress_temp else int(nbytes * min(1.0, ratio * 1.1))


def repeat_refusal(limit: int) -> str:
    """Why ``--repeat`` fails on an input that does not fit in memory (the run and ``--dry-run`` say it alike)."""
    return (
        f"{option('repeat')} needs the input in memory, and it does not fit in the {plan.format_size(plan.block_budget(limit))} "
        f"{option('memory')} leaves for records beside the output's buffers; raise {option('memory')}"
    )


def _unreadable(item: Any) -> str:
    """Why ``--dry-run`` does not read input ``item`` (a path, URL or source), or empty if it does."""
    if isinstance(item, str) and item == "-":
        # A regular file on stdin is read from its offset, which is then put back (``sample_lines``).
        return "" if stdin_file() is not None else "standard input is not read by a plan: it could not be read again"
    if isinstance(item, str) and is_remote(item):
        return f"{quote_name(item)}: URLs are not read by a plan"
    if isinstance(item, str):
        try:
            mode = os.stat(item).st_mode
        except OSError:
            return ""  # the read says what is wrong
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return f"{quote_name(item)}: not a regular file, so not read by a plan: it could not be read again"
    if isinstance(item, GeneratedSource):
        return f"{item.name}: generated lines have no size before they are made"
    return ""


def shard_suffix(sources: Sequence[str | Source], sharded: bool, compress: CodecChoice | None) -> str | None:
    """The suffix of a shard directory's files: the inputs' kind and codec when every input is a
    file or a URL (named as given, or a source of one)."""
    names = [s if isinstance(s, str) else s.path if isinstance(s, FileSource) else s.name for s in sources
             if isinstance(s, (str, FileSource, URLSource))]
    return line_shard_suffix(names, compress) if sharded and len(names) == len(sources) else None


def sample_lines(request: Request, inputs: list[Any]) -> Sample:
    """The input's first piece read as pass 1 would read it, sized as pass 1 would size it; standard
    input from a pipe, pipes, URLs and generated lines are not read (nor their size guessed), and a
    regular file on standard input is left at the offset it had."""
    if "-" in inputs and _stdin_write_only():
        # Closed (held open the wrong way round: ``cli._guard_standard_streams``) or ``0>>file``:
        # the run's first read fails so, and the plan says it as the run will.
        raise InputError(f"read error: {os.strerror(errno.EBADF)}")
    why = next((w for w in map(_unreadable, inputs) if w), "")
    if why:
        return Sample(None, why=why)
    for name in inputs:  # each file opened as the run opens it: one missing or unreadable past the sample fails the plan too
        if isinstance(name, str) and name != "-":
            FileSource(name).open().close()
    with stdin_offset_kept():
        return _sample(request, inputs)


def _stdin_write_only() -> bool:
    """Whether standard input is open for writing only, so that reading it fails (EBADF)."""
    try:
        return fcntl.fcntl(0, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY
    except OSError:  # not open at all: the run says so too
        return True


def _sample(request: Request, inputs: list[Any]) -> Sample:
    """``sample_lines`` of inputs it may read."""
    sources: list[Source] = [FileSource(s) if isinstance(s, str) else s for s in inputs]
    if len(sources) == 1 and isinstance(sources[0], BytesSource) and sources[0].ends is not None:
        # Records cut where the source says (LineRun._shuffle_listed): all in memory, counted as records.
        size, records = len(sources[0].data), len(sources[0].ends)
        return Sample(Estimate(size, records, size / max(records, 1)), size, exact=True, sized=True, in_memory=True, temp_bytes=0)
    limit = resolve_memory(request.memory)
    fmt = RecordFormat(0 if request.zero_terminated else 10, request.lines_per_record)
    piece = plan.piece_bytes(limit)
    groups = mix.source_files(request) if request.sources else None
    reader = RecordReader(sources, fmt, Progress(), request.header, stream_check=refuse_data_files_in_streams, groups=groups)
    total = reader.total_size()
    read = max(piece, plan.DRY_RUN_SAMPLE)
    blocks = reader.blocks(plan.read_capacity(limit), option("memory"), block=read)
    try:
        with stdin_offset_kept():  # the weighted sources' count below reads standard input again
            block, final = next(blocks)
            whole = reader.estimate_total() if total is None else total + len(sources)  # from where stdin stands
        per_record = mean_record_size(block, fmt, piece)
        ratio = compression_ratio(block[:piece]) if request.compress_temp else 1.0
        if final:
            est = Estimate(len(block), len(find_offsets(block, fmt)) - 1, per_record)
        else:
            est = Estimate.of(whole, per_record)
        sampled = len(block) if final else min(len(block), piece)  # the records the mean size is of
    finally:
        blocks.close()
    # As ``shuffle`` decides: an input of unknown size goes in memory only if its first block (of
    # up to ``read_capacity``, more than this sample read unless the sample was cut there) is all of it.
    capacity = plan.read_capacity(limit)
    first_block = final or (min(capacity, read) < capacity and est.nbytes is not None and est.nbytes <= capacity)
    in_memory = (
        est.nbytes is not None and est.records is not None and plan.fits_in_memory(est.nbytes, est.records, limit)
        and (total is not None or first_block)
    )
    counts: tuple[int, ...] | None = None
    nbytes: tuple[int, ...] | None = None
    sizes: tuple[int | None, ...] = ()
    if request.sources:
        # Weighted sources: counted as the run's counting pass counts them when the inputs are no
        # more than a plan reads anyway, else sized by their files, as the run weighs them without counts.
        file_source, n = mix.source_files(request), len(request.sources)
        sizes = tuple(source_sizes(reader.decoded_sizes(), file_source, n))
        if final or (total is not None and total <= plan.DRY_RUN_SAMPLE):
            counted = count_sources(sources, file_source, n, fmt, request.header, limit, Progress())
            counts, nbytes = tuple(counted[0]), tuple(counted[1])
    return Sample(
        est, sampled, exact=final, sized=total is not None or reader.sized_exactly(), in_memory=in_memory,
        temp_bytes=None if est.nbytes is None else temp_bytes(est.nbytes, request.compress_temp, ratio),
        refusal=repeat_refusal(limit) if request.repeat and not in_memory else "",
        source_records=counts, source_bytes=nbytes, source_sizes=sizes,
    )


def lines_output_plan(request: Request, inputs: list[Any]) -> OutputPlan:
    """The output as ``prepare`` checks it: the codec ``--compress`` names and a shard directory's suffix."""
    compress = None if request.compress is None else parse_compress(request.compress)
    sharding = Sharding(request.shards, request.shard_records, request.shard_size)
    suffix = shard_suffix(inputs, sharding.on, compress)
    return OutputPlan(request.output, request.shards, compress, suffix, sharding, request.split, request.manifest)
