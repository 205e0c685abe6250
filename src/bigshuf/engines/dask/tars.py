"""WebDataset tar samples on the Dask engine.

A pass-1 task reads one whole tar (a sample may not span two) with the local engine's
``SampleReader``, so every check it makes on one tar is made here alike, and scatters its samples'
raw tar blocks. A bucket's part of an object holds its samples' bytes, then each one's length
(int64) and their count (int64): pass 2 finds the samples from those, never from the bytes. The
client checks what spans tars (a sample continuing into the next, a key used in two) from each
task's first and last keys and key hashes. Outputs are the samples' blocks ended by the
end-of-archive blocks, optionally compressed, one file per pass-2 task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from ...core import plan
from ...core.driver import Estimate, Sample
from ...core.fingerprint import Fingerprint, fingerprint, record_hashes
from ...core.gather import emit_in_order
from ...core.records import INT32_LIMIT, array_block
from ...core.scatter import Scattered, regroup
from ...core.dedup import bucket_ids, first_copies
from ...core.mix import multiset_fingerprint
from ...core.stratify import split_ids
from ...core.streams import draw_ids
from ...errors import TempSpaceError, UsageError, option
from ...quoting import quote_name
from ...formats.tar_input import SampleReader, locate_sample, refuse_continued
from ...formats.tar_keys import KeyLedger, stable_hash
from ...formats.tar_run import END_OF_ARCHIVE, sample_runs, shard_suffix
from ...formats.tar_unique import first_samples, identities, kept_samples, unique_capacity
from ...progress import Progress
from ...storage import remote
from ...storage.sinks import CodecChoice
from .lines import RATIO_MARGIN, BytesWriter, estimated_bytes
from .prepared import Inputs, Prepared, Settings, TaskKind, decoded_by_source
from .tasks import Config, Copies, ScatterResult, ScatterTask, Segment, Writable, bucket_count, range_bytes, write_stream

if TYPE_CHECKING:
    from ...request import Request

#: Bytes a bucket's part spends on each sample besides its blocks (its length), and once (the count).
LENGTH_BYTES = 8

#: The least a sample takes in a tar (one member: a header and a block of data), for planning.
LEAST_SAMPLE = 1024


@dataclass(frozen=True)
class TarSummary:
    """What a pass-1 task read of its tar: samples and their bytes, its first and last sample keys
    (None: it has none), and every sample's key hash (``stable_hash``) in reading order."""

    samples: int
    nbytes: int
    first: bytes | None
    last: bytes | None
    hashes: np.ndarray


@dataclass
class Samples:
    """A block of samples: sample ``i`` is ``data[offsets[i]:offsets[i+1]]``; the last block of a
    task carries its tar's ``summary``."""

    data: np.ndarray
    offsets: np.ndarray
    summary: TarSummary | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1


class _TarObject:
    """One input tar as ``SampleReader`` reads it: ``url`` opened through fsspec and decompressed,
    named ``name`` (as the user gave it) in messages; ``size`` when plain, to check size claims."""

    def __init__(self, name: str, url: str, size: int | None) -> None:
        self.name = name
        self.url = url
        self._size = size

    def size(self) -> int | None:
        """The tar's bytes when it is plain (None: compressed)."""
        return self._size

    def open(self) -> BinaryIO:
        """The tar's bytes, decompressed."""
        from ...storage.decoding import decompressing

        return decompressing(remote.open_input(self.url), self.name)


@dataclass(frozen=True)
class TarTasks:
    """The ``TaskFormat`` of WebDataset samples: each pass-1 task names its tar (``ScatterTask.shown``
    in messages), so the format holds nothing per input."""

    whole_output = True  # a tar ends with its end-of-archive blocks
    records_kind = "samples"
    unit = "samples"
    input_bytes = True

    def format_entry(self) -> dict[str, Any]:
        """Tar samples, as the local engine's manifest gives them."""
        return {"samples": "tar"}

    def blocks(self, task: ScatterTask, cfg: Config) -> Iterator[Samples]:
        """The task's tar in blocks of whole samples of at most ``range_bytes`` (a longer sample is
        refused, naming ``-S``), the last one with the tar's summary. With ``--unique``, of at most
        ``unique_capacity``, as the local engine reads them: a hash bucket split again is read in
        runs that then hold two samples or more, so copies shrink from one level to the next."""
        reader = SampleReader([_source(task)], Progress(), stable_hash)
        for data, offsets, final in reader.blocks(block_capacity(cfg.limit, cfg.unique)):
            summary = None
            if final:
                (samples, nbytes), (first, last) = reader.per_input[0], reader.edges[0]
                summary = TarSummary(samples, nbytes, first, last, reader.keys.hashes())
            yield Samples(data, offsets, summary)

    def finish(self, result: ScatterResult, last: Any) -> None:
        """The tar's summary, and its samples and bytes as read if the task has not counted its blocks
        (the objects hold the samples' lengths too)."""
        summary = last.summary
        if result.counted is None:
            result.counted = [(summary.samples, summary.nbytes)]
        result.summary = summary

    def check_unique(self) -> None:
        """Nothing to refuse: samples are compared by their identities (suffixes and data)."""

    def check_scattered(self, tasks: Sequence[ScatterTask], results: Sequence[ScatterResult]) -> None:
        """As the local engine's reader refuses them, naming both tars: a sample whose key is the
        previous tar's last, and a key used in two tars (hashes confirmed by reading the keys again)."""
        previous: tuple[str, bytes] | None = None
        for task, result in zip(tasks, results):
            summary: TarSummary = result.summary
            name = _source(task).name
            if summary.first is not None and previous is not None:
                refuse_continued(name, summary.first, previous)
            previous = None if summary.last is None else (name, summary.last)
        names = [_source(task).name for task in tasks]
        ledger = KeyLedger(names, lambda name, want: locate_sample(_source(tasks[names.index(name)]), want), stable_hash)
        for result in results:
            ledger.add_file(result.summary.hashes)
        ledger.check_all()

    def scatter(
        self, block: Samples, rng: np.random.Generator, k: int, cfg: Config, name: str, copies: Copies | None = None,
    ) -> tuple[Segment, Fingerprint]:
        """Draw a bucket for each sample (each one in the mix, with weighted sources: ``copies``, at
        most one a sample; from its split's range with ``--stratify``), a run of samples at a time,
        and write the object ``name``: bucket after bucket, its samples' blocks, their lengths and their count."""
        read = Fingerprint()
        parts: list[tuple[Scattered, Scattered]] = []
        offsets = block.offsets
        copied = 0  # copies of the runs before this one (their splits' labels)
        for lo, hi in sample_runs(offsets, plan.piece_bytes(cfg.limit), plan.piece_records(cfg.limit)):
            start = int(offsets[lo])
            piece = block.data[start : int(offsets[hi])]
            offs = _narrow(offsets[lo : hi + 1] - start, len(piece))
            if copies is None:
                if cfg.verify:
                    read += fingerprint(piece, offs)
                ids = draw_ids(rng, k, hi - lo)
            else:
                mine = copies.mult[lo:hi]
                assert int(mine.max(initial=0)) <= 1, "tar sources take rates up to 1"
                if cfg.verify:
                    read += multiset_fingerprint(piece, offs, mine)
                picked = mine.astype(bool)
                n = int(picked.sum())
                ids = np.full(hi - lo, k, np.uint32)
                if copies.strata is None:
                    ids[picked] = draw_ids(rng, k, n)
                else:
                    ids[picked] = split_ids(rng, copies.strata[0], copies.strata[1][copied : copied + n], k)
                copied += n
            parts.append(_regrouped(piece, offs, ids, k))
        return _write_parts(parts, k, name), read

    def count(self, block: Samples) -> tuple[int, int]:
        """Samples and their bytes."""
        return len(block), len(block.data)

    def sizes(self, records: Any) -> np.ndarray:
        """Each sample's bytes (its raw tar blocks)."""
        return np.diff(array_block(records)[1])

    def chunks(self, block: Samples, parts: int) -> list[tuple[Samples, int]]:
        """Runs of whole samples of about ``len(block.data) / parts`` bytes each."""
        size = max(1, -(-len(block.data) // max(1, parts)))
        out = []
        for lo, hi in sample_runs(block.offsets, size, max(1, len(block))):
            start = int(block.offsets[lo])
            out.append((Samples(block.data[start : int(block.offsets[hi])], block.offsets[lo : hi + 1] - start), hi - lo))
        return out

    def decode(self, data: np.ndarray, sizes: Sequence[int]) -> Samples:
        """A bucket's parts read back (``sizes`` bytes each): their samples' blocks moved together
        in place, found by the lengths each part ends with (checked against its size)."""
        lengths: list[np.ndarray] = []
        pos = kept = 0
        for size in sizes:
            end = pos + size
            count = int(np.frombuffer(data[end - LENGTH_BYTES : end], "<i8")[0]) if size >= LENGTH_BYTES else -1
            table = end - LENGTH_BYTES * (count + 1)
            if count < 1 or table < pos:
                raise TempSpaceError("temporary bucket unreadable: a part's sample count does not fit its size")
            got = np.frombuffer(data[table : end - LENGTH_BYTES], "<i8").astype(np.int64)
            nbytes = table - pos
            if int(got.min()) < 0 or int(got.sum()) != nbytes:
                raise TempSpaceError("temporary bucket unreadable: its sample lengths do not match its bytes")
            if kept != pos:
                data[kept : kept + nbytes] = data[pos : pos + nbytes]
            lengths.append(got)
            kept += nbytes
            pos = end
        offsets = np.zeros(sum(len(g) for g in lengths) + 1, np.int64)
        np.cumsum(np.concatenate([np.empty(0, np.int64), *lengths]), out=offsets[1:])
        return Samples(data[:kept], offsets)

    def permute(self, block: Samples, count: int, order: np.ndarray, size: int, cfg: Config, emit: Callable[[Any], None], name: str) -> None:
        """Emit samples ``order`` of a bucket read back, in chunks of about a piece."""
        if len(block) != count:
            raise TempSpaceError(f"{quote_name(name)}: {len(block)} samples read back, {count} written")
        per_chunk = max(1, int(plan.piece_bytes(cfg.limit) * count / max(1, size)))
        emit_in_order(block.data, _narrow(block.offsets, len(block.data)), order, emit, per_chunk)

    def open_output(self, f: Writable, codec: CodecChoice | None) -> _TarWriter:
        """The samples' blocks into ``f``, compressed with ``codec`` if given, ended as a tar."""
        return _TarWriter(*write_stream(f, codec))

    def fingerprint(self, records: Any) -> Fingerprint:
        """The fingerprint of a binary array of samples (their raw blocks, as ``--verify`` hashes them locally)."""
        return fingerprint(*array_block(records))

    def hash_scatter(self, block: Samples, level: int, k: int, cfg: Config, name: str) -> tuple[Segment, int]:
        """Runs of at most ``piece_records`` samples, each without its own copies (identities compared
        byte for byte: ``tar_unique.identities``), regrouped by their identities' hash buckets of
        ``level`` and written as ``scatter`` writes; return the object's index and the copies dropped."""
        parts: list[tuple[Scattered, Scattered]] = []
        dropped = 0
        offsets = block.offsets
        for lo, hi in sample_runs(offsets, len(block.data), plan.piece_records(cfg.limit)):
            start = int(offsets[lo])
            piece = block.data[start : int(offsets[hi])]
            offs = offsets[lo : hi + 1] - start
            ident, ends = identities(piece, offs)
            hashes = record_hashes(ident, ends)
            kept = first_copies(ident, ends, hashes)
            del ident
            ids = np.full(hi - lo, k, np.uint32)
            ids[kept] = bucket_ids(hashes[kept], level, k)
            dropped += hi - lo - len(kept)
            parts.append(_regrouped(piece, _narrow(offs, len(piece)), ids, k))
        return _write_parts(parts, k, name), dropped

    def dedup(self, block: Samples, count: int, name: str) -> tuple[Samples, np.ndarray]:
        """The first copy of each sample (by identity), in their order, and their indices, ascending, among the ``count``."""
        if len(block) != count:
            raise TempSpaceError(f"{quote_name(name)}: {len(block)} samples read back, {count} written")
        kept = first_samples(block.data, block.offsets)
        return Samples(*kept_samples(block.data, block.offsets, kept)), kept

    def write_groups(self, block: Samples, ids: np.ndarray, k: int, name: str) -> tuple[Segment, np.ndarray]:
        """Write the samples of ``block`` grouped by ``ids`` (group ``j`` as bucket ``j``, in order within
        it) as the object ``name``; return its index and each group's bytes (the samples' blocks)."""
        regrouped = _regrouped(block.data, _narrow(block.offsets, len(block.data)), ids, k)
        return _write_parts([regrouped], k, name), np.diff(regrouped[0].byte_bounds)


class _TarWriter(BytesWriter):
    """Writes binary arrays of samples as their blocks, and the end-of-archive blocks at the end."""

    trailer = END_OF_ARCHIVE


def block_capacity(limit: int, unique: bool) -> int:
    """The most bytes of samples a pass-1 task reads at once, and so the longest sample: ``range_bytes``,
    or with ``--unique`` the local engine's ``unique_capacity`` if less."""
    return min(range_bytes(limit), unique_capacity(limit)) if unique else range_bytes(limit)


def _source(task: ScatterTask) -> _TarObject:
    """The tar a pass-1 task reads, as ``SampleReader`` reads it."""
    return _TarObject(task.named(), task.source, task.size if task.codec is None else None)


def _narrow(offsets: np.ndarray, nbytes: int) -> np.ndarray:
    """Offsets as int32 when the block allows (Arrow ``binary``), else int64."""
    return offsets.astype(np.int32) if nbytes <= INT32_LIMIT else offsets.astype(np.int64)


def _regrouped(piece: np.ndarray, offsets: np.ndarray, ids: np.ndarray, k: int) -> tuple[Scattered, Scattered]:
    """The samples of ``piece`` and their lengths, regrouped alike by bucket ``ids`` (``k`` or more: dropped)."""
    lengths = np.diff(offsets).astype("<i8").view(np.uint8)
    steps = np.arange(0, len(lengths) + 1, LENGTH_BYTES, dtype=np.int32 if len(lengths) <= INT32_LIMIT else np.int64)
    return regroup(piece, offsets, ids, k, k), regroup(lengths, steps, ids, k, k)


def _write_parts(parts: list[tuple[Scattered, Scattered]], k: int, name: str) -> Segment:
    """Write scattered runs of samples as the object ``name``: each non-empty bucket's blocks, then
    their lengths, then their count; return its index."""
    counts = np.zeros(k, np.int64)
    data_sizes = np.zeros(k, np.int64)
    for data, _lengths in parts:
        counts += data.counts
        data_sizes += np.diff(data.byte_bounds)
    sizes = np.where(counts > 0, data_sizes + LENGTH_BYTES * (counts + 1), 0)
    bounds = np.zeros(k + 1, np.int64)
    np.cumsum(sizes, out=bounds[1:])

    def write(f: BinaryIO) -> None:
        for j in np.flatnonzero(counts).tolist():
            for side in (0, 1):
                for p in parts:
                    lo, hi = int(p[side].byte_bounds[j]), int(p[side].byte_bounds[j + 1])
                    if hi > lo:
                        f.write(p[side].data[lo:hi])
            f.write(np.array([counts[j]], "<i8").tobytes())

    remote.write_whole(name, write)
    return Segment(name, bounds, counts)


# ---------------------------------------------------------------------------------------------
# Planning, on the client


def scatter_tasks(files: Sequence[remote.RemoteFile], shown: Sequence[str], root: str) -> list[ScatterTask]:
    """One pass-1 task per tar, whole (an empty file too: it is refused as no tar), named ``shown`` in messages."""
    return [
        ScatterTask(f.name, f.size, f.codec, i, 0, 0, f.size, remote.join(root, "p1", f"{i:06d}-000000"), f.size, shown=name)
        for i, (f, name) in enumerate(zip(files, shown))
    ]


def tar_bucket_count(files: list[remote.RemoteFile], limit: int, shards: int | None) -> int:
    """Buckets for the samples' bytes (compressed tars by their expansion, as for lines) with the
    bookkeeping of as many samples as could be there (a sample takes at least ``LEAST_SAMPLE``)."""
    nbytes = estimated_bytes(files)
    per_sample = plan.META_PER_RECORD + 2 * LENGTH_BYTES
    return bucket_count(nbytes + per_sample * nbytes / LEAST_SAMPLE, limit, shards)


def check_tar_target(target: str | None) -> None:
    """A tar output goes to a tar name, a directory or pattern, or standard output that is not a terminal."""
    from ...formats.detect import refuse_terminal
    from ...formats.tar_run import check_output_name

    if target in (None, "-"):
        refuse_terminal("tar data")
    else:
        check_output_name(target)


def is_tar(f: remote.RemoteFile) -> bool:
    """Whether an input is a tar, as the local engine tells: a URL by its name (``.tar``, ``.tar.gz``,
    ``.tgz``...), a local file by its name or else its first block."""
    from ...formats import detect, registry
    from ...formats.tar_input import is_tar_path

    if remote.is_url(f.name):
        return detect.data_kind(f.name.split("?", 1)[0].rsplit("/", 1)[-1]) == registry.WEBDATASET
    return is_tar_path(f.name)


class Tars(TaskKind):
    """WebDataset tar samples on the Dask engine (``formats.registry``'s webdataset family): every input a tar."""

    @classmethod
    def claims(cls, inputs: Inputs) -> bool:
        """Whether any input is a tar (then every one must be)."""
        return any(is_tar(f) for f in inputs.files)

    @classmethod
    def prepare(cls, inputs: Inputs, settings: Settings, root: str) -> Prepared:
        """Plan a run of tar samples: every input a tar, a tar output, one pass-1 task per tar."""
        from ...storage.codecs import parse_compress

        files, shown = inputs.files, inputs.shown
        tars = [is_tar(f) for f in files]
        if not all(tars):
            raise UsageError(
                f"{shown[tars.index(True)]} is a tar archive and {shown[tars.index(False)]} is not: "
                "shuffle WebDataset tars in a run of their own"
            )
        used = (
            ("zero_terminated", settings.zero_terminated), ("row_group_size", settings.row_group_size is not None),
            ("output_format", settings.output_format is not None),
        )
        given = [option(name) for name, on in used if on]
        if given:
            raise UsageError(f"{', '.join(given)}: not available for WebDataset tar shards (samples, not lines)")
        check_tar_target(settings.target)
        choice = None if settings.compress is None else parse_compress(settings.compress)
        return Prepared(
            TarTasks(), scatter_tasks(files, shown, root), tar_bucket_count(files, settings.limit, settings.shards),
            choice, shard_suffix(choice), tuple(f.name for f in files), stored=tuple(files),
        )

    @classmethod
    def sample(cls, prepared: Prepared, request: Request) -> Sample:
        """Samples are counted only as pass 1 reads them: their bytes estimated as the bucket plan does."""
        files = list(prepared.stored)
        sizes: tuple[int | None, ...] = decoded_by_source(request, prepared) if request.sources else ()
        est_bytes = estimated_bytes(files)
        plain = sum(f.size for f in files if f.codec is None)
        expected = plain + int((est_bytes - plain) / RATIO_MARGIN)
        return Sample(
            Estimate(expected, None, float(LEAST_SAMPLE)), 0, sized=True, temp_bytes=est_bytes,
            why="tar samples are counted as pass 1 reads them", source_sizes=sizes,
        )

    @classmethod
    def task_words(cls, limit: int, unique: bool) -> str:
        """One task per tar, reading blocks of samples."""
        return f", one per tar, each reading blocks of up to {plan.format_size(block_capacity(limit, unique))}"
