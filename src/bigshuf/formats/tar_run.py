"""A shuffle of WebDataset samples (``tar_input``) on the two-pass driver, written out as tar files.

A sample is its members' raw tar blocks, so the output's members are the input's byte for byte
(names, modes, mtimes, owners, extension headers) and each sample's members stay together and
in order. Temporary buckets come in pairs: the samples' bytes, and beside them each sample's
length (int64), so bucket offsets are one cumulative sum and the bytes are written out as read.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from typing import Any

import numpy as np

from ..core import mix, plan, streams
from ..core.driver import Buckets, Estimate, OutputPlan, Sample, TwoPass
from ..core.dedup import DEDUP_META
from ..core.fingerprint import fingerprint
from ..core.gather import shuffle_block
from ..core.mix import Mixer
from ..core.records import INT32_LIMIT
from ..core.scatter import Scattered, regroup
from ..core.stratify import Stratifier, split_ids
from ..core.streams import Key, draw_ids, rng_for
from ..errors import UsageError, option
from ..progress import IN_MEMORY, Progress, dedup_phase, scatter_phase
from ..request import LINE_SETTINGS, ROW_SETTINGS, Request, check_line_settings, resolve_memory, settings_in_use
from ..storage.codecs import CODECS, parse_compress
from ..storage.layout import Sharding, parse_split
from ..storage.manifest import input_entries, run_entries, strata_entries
from ..storage.output import Output
from ..storage.remote import URLSource, is_remote
from ..storage.shards import check_outputs
from ..storage.sinks import CodecChoice, output_codec
from ..storage.sources import FileSource, Source
from ..storage.tempspace import TempSpace
from ..storage.writeback import WriteBehind
from . import registry
from .detect import read_back, refuse_terminal
from .tar_buckets import SampleBuckets, bucket_samples
from .tar_input import SampleReader
from .tar_members import BLOCK
from .tar_mix import WeightedSamples, with_files
from .tar_resume import ResumableSamples
from .line_mix import source_sizes
from .line_unique import SOURCE_META
from .tar_unique import TarDedup, fits as unique_fits, hash_buckets, unique_capacity, unique_samples, unique_with_sources

#: What ends a tar archive: two zero blocks.
END_OF_ARCHIVE = bytes(2 * BLOCK)

class TarOutput(Output):
    """The output as tar files: the samples' blocks as they are, and each file ended by the
    end-of-archive marker (an empty output, or shard, is a valid empty tar)."""

    def _close_format(self, shard: int) -> None:
        self.sinks[shard].write(END_OF_ARCHIVE)

    def describe_kind(self) -> str:
        return "samples"


def shard_suffix(compress: CodecChoice | None) -> str:
    """The name suffix of a ``--shards`` directory's files: ``.tar``, and the codec's if ``--compress`` names one."""
    codec = output_codec(None, compress)
    return ".tar" + (CODECS[codec[0]].suffixes[0] if codec else "")


def sample_runs(offsets: np.ndarray, max_bytes: int, max_records: int) -> list[tuple[int, int]]:
    """Runs of whole samples ``[lo, hi)`` tiling ``offsets``' samples, each of at most ``max_bytes``
    (unless one sample is longer) and ``max_records``."""
    out = []
    lo, n = 0, len(offsets) - 1
    while lo < n:
        hi = int(np.searchsorted(offsets, offsets[lo] + max_bytes, side="right")) - 1
        hi = min(n, lo + max_records, max(hi, lo + 1))
        out.append((lo, hi))
        lo = hi
    return out


class TarRun(WeightedSamples, ResumableSamples, TwoPass):
    """One shuffle of WebDataset samples from tar files (local, or URLs read through fsspec) into a
    tar file or tar shards."""

    unit = "samples"
    files_per_bucket = 2  # the samples' bytes and their lengths (``SampleBuckets``)
    hash_bytes = 0  # (identities hashed again as a hash bucket is read)

    def __init__(self, request: Request, paths: list[str | Source], entropy: int, progress: Progress) -> None:
        super().__init__(
            entropy, resolve_memory(request.memory), request.head_count, request.tmp_dir, progress, request.workers,
            request.head_share,
        )
        self.request = request
        self.paths = paths
        self.compress = None if request.compress is None else parse_compress(request.compress)
        self.piece = plan.piece_bytes(self.limit)
        self.writer = WriteBehind(plan.IN_FLIGHT_PIECES * self.piece)
        self.out = TarOutput(
            request.output, self.writer, shards=request.shards, compress=self.compress, sync=request.sync,
            shard_size=request.shard_size, shard_records=request.shard_records,
            split=None if request.split is None else parse_split(request.split), manifest=request.manifest,
        )
        self.out.shard_suffix = shard_suffix(self.compress)
        self.out.verify = request.verify
        self.out.hashers = self.workers
        self._buf: np.ndarray | None = None  # pass 2's read buffer
        self.reader: SampleReader | None = None  # the inputs' reader, whose counts the manifest gives
        self.mixer: Mixer | None = None  # weighted sources (``tar_mix``)
        self.stratifier: Stratifier | None = None  # --stratify: each sample's split
        self.strata_bounds: np.ndarray | None = None  # --stratify: the first bucket of each split
        self.out.manifest_info = self._manifest_info
        self._start_job()  # --resume: the job's key, and the name of its lock, temp directory and output temp files

    @classmethod
    def for_request(cls, request: Request, inputs: list[Any], entropy: int, progress: Progress) -> TarRun:
        """Samples of tar files: local paths, and URLs the engine opened as sources."""
        return cls(request, list(inputs), entropy, progress)

    @classmethod
    def sample(cls, request: Request, inputs: list[Any]) -> Sample:
        """The inputs' size (compressed tars' decoded, as the run plans it), and their mean sample size
        from the first samples (up to ``DRY_RUN_SAMPLE`` bytes)."""
        limit = resolve_memory(request.memory)
        remote = next((item for item in inputs if isinstance(item, str) and is_remote(item)), None)
        if remote is not None:
            return Sample(None, why=f"{remote}: URLs are not read by a plan")
        reader = SampleReader(list(inputs), Progress(), groups=mix.source_files(request) if request.sources else None)
        total = reader.estimate_total()
        capacity = unique_capacity(limit) if request.unique else plan.read_capacity(limit)
        blocks = reader.blocks(capacity, first=plan.DRY_RUN_SAMPLE)
        try:
            block, offsets, final = next(blocks)
        finally:
            blocks.close()
        n = len(offsets) - 1
        per_record = len(block) / n if n else float(max(1, len(block)))
        est = Estimate(len(block), n, per_record) if final else Estimate.of(total, per_record)
        # As ``shuffle`` decides: in memory when every sample was read into the first block and fits.
        whole = final or (total is not None and total <= capacity)
        in_memory = whole and est.nbytes is not None and _fits_whole(request, est.nbytes, est.records or 0, limit)
        counts, nbytes = _source_counts(request, reader.per_input) if final and request.sources else (None, None)
        # Weighted sources without counts are weighed by their sizes, as ``_plan_mix`` weighs them.
        sizes = tuple(source_sizes(reader.decoded_sizes(), mix.source_files(request), len(request.sources))) if request.sources else ()
        return Sample(
            est, len(block), exact=final, sized=reader.sized_exactly(), in_memory=in_memory, temp_bytes=est.nbytes,
            source_records=counts, source_bytes=nbytes, source_sizes=sizes,
        )

    @classmethod
    def output_plan(cls, request: Request, inputs: list[Any]) -> OutputPlan:
        compress = None if request.compress is None else parse_compress(request.compress)
        sharding = Sharding(request.shards, request.shard_records, request.shard_size)
        return OutputPlan(request.output, request.shards, compress, shard_suffix(compress), sharding, request.split, request.manifest)

    def prepare(self) -> None:
        if self.out.target in (None, "-"):
            refuse_terminal("tar data")
        local = [item if isinstance(item, str) else item.name for item in self.paths if isinstance(item, (str, URLSource))]
        check_outputs(
            self.out.target, self.out.sharding, self.out.split, self.request.manifest, self.compress, self.out.shard_suffix,
            inputs=local, input_directories=self.request.input_directories, taken=read_back,
        )
        if self.resume_name is not None:
            self._lock_job()

    def _manifest_info(self) -> dict[str, Any]:
        """The manifest's run-wide entries: the request, and every input's samples and their bytes as read."""
        assert self.reader is not None
        sources = self.reader.sources
        counts = [(records, nbytes) for records, nbytes in self.reader.per_input]
        inputs = input_entries(self.reader.paths, counts, [isinstance(s, FileSource) for s in sources])
        entries = run_entries(self.request, inputs, {"samples": "tar"}, self.head_count, self.source_stats(), self.duplicates, self.entropy)
        if self.stratifier is not None and self.out.split is not None:
            names = [p.name for p in self.out.split]
            entries["stratified"] = strata_entries(names, self.stratifier.names, self.stratifier.table)
        return entries

    def shuffle(self) -> None:
        unique = self.request.unique
        # With --unique the rates apply to the samples left once copies are dropped: the mix is
        # planned once they are counted (by the dedup, in memory or by its buckets).
        unique_mix = unique and bool(self.request.sources)
        groups = mix.source_files(self.request) if self.request.sources else None
        reader = self.reader = SampleReader(self.paths, self.progress, groups=groups)
        self.decoded = reader.decoded_sizes
        factor = self._plan_mix() if self.request.sources and not unique_mix else 1.0  # bytes of the mix over bytes read
        total = reader.total_size()
        n_sources = len(self.request.sources) if unique_mix else 0
        # --unique holds each block with its samples' identities and its unique copy: a third as much is read at once.
        capacity = unique_capacity(self.limit) if unique else plan.read_capacity(self.limit)
        small = total is not None and total <= capacity
        first_pass = dedup_phase(0) if unique else scatter_phase(0)
        self.progress.start(IN_MEMORY if small else first_pass, total)
        blocks = reader.blocks(capacity)
        self.readers.append(blocks)
        block, offsets, final = next(blocks)
        n = len(offsets) - 1
        if final and _fits_whole(self.request, len(block), n, self.limit):
            held = len(block) + plan.META_PER_RECORD * n
            files = reader.block_files
            if unique_mix:
                # The first copy of each sample in input order; the mix planned from each source's samples left.
                block, offsets, files, (counts, nbytes, dropped) = unique_with_sources(
                    block, offsets, files, mix.source_files(self.request), n_sources,
                )
                self.duplicates = n - (len(offsets) - 1)
                self._plan_mix((counts, nbytes))
                assert self.mixer is not None
                self.mixer.dropped = dropped
                n = len(offsets) - 1
                held += len(block)
            elif unique:
                block, offsets, self.duplicates = unique_samples(block, offsets)
                n = len(offsets) - 1
                held += len(block)
            index = labels = None
            if self.mixer is not None:
                # Weighted sources: the samples in the mix, drawn for the whole input at once.
                picked, labels = self._picked(files, streams.IN_MEMORY)
                index = np.flatnonzero(picked)
                held += 9 * len(index)
                if self.request.verify:
                    self.read_fingerprint += mix.multiset_fingerprint(block, offsets, picked.astype(np.int64))
                self.mixer.check_complete()
            elif self.request.verify:
                self.read_fingerprint += fingerprint(block, offsets)
            self.begin_output(self.wanted(n if index is None else len(index)))
            if labels is not None and index is not None and self.stratifier is not None:
                # --stratify: each split's samples shuffled on their own (stream ``stratum(v)``), splits in order.
                for v in range(self.stratifier.splits):
                    self.records += shuffle_block(
                        block, _narrow(offsets, len(block)), self.entropy, streams.stratum(v), self.emit, self.workers,
                        limit=self.limit, held=held, index=index[labels == v],
                    )
                return
            self.records += shuffle_block(
                block, _narrow(offsets, len(block)), self.entropy, streams.IN_MEMORY, self.emit, self.workers,
                head=self.head_count, limit=self.limit, held=held, index=index,
            )
            return
        if small:
            self.progress.start(first_pass, total)
        per_record = len(block) / max(1, n)
        first = [(block, offsets)]
        del block, offsets
        everything: Iterator[Any] = _chained(first, blocks)
        # Compressed tars are planned at their decoded size; held against the free space when exact.
        whole, exact = reader.estimate_total(), reader.sized_exactly()
        if self.request.sources:
            everything = with_files(reader, everything)  # each sample's source decides whether it is in the mix
        if self.mixer is not None and whole is not None:
            whole = int(whole * factor)
        with TempSpace(self.tmp_dir, self.resume_name) as temp:
            if self.resume_name is not None:
                self._load_checkpoint(temp, self._input_files())
            if unique:
                # Pass 1 scatters the unique samples, at most what the hash buckets hold (known now).
                dedup = TarDedup(self, temp, mix.source_files(self.request) if unique_mix else None, n_sources)
                if "dedup" not in self.state and exact and whole is not None:
                    # The hash buckets take the input's bytes: refused before they are written, as
                    # --dry-run checks (they were written until the disk was full).
                    temp.check_free(self.free_needed(whole))
                hashed = dedup.resume(everything) if "dedup" in self.state else dedup.scatter(everything, whole)
                whole, exact = int(hashed.sizes.sum()), True
                if unique_mix:
                    whole = int(whole * dedup.plan_mix(hashed))
                everything = dedup.unique(hashed)
            self.external(everything, Estimate.of(whole, per_record), temp, streams.TOP, 0, exact=exact)
        if self.mixer is not None:
            self.mixer.check_complete()

    # The driver's hooks.

    @classmethod
    def dedup_buckets(cls, est: Estimate, limit: int, sources: int) -> int:
        return hash_buckets(-1 if est.nbytes is None else est.nbytes, limit, cls.files_per_bucket)

    def make_buckets(self, directory: str, k: int, top: bool) -> Buckets:
        if top and self.stratifier is not None:
            self.strata_bounds = self.stratifier.bucket_bounds(k)
        buckets = SampleBuckets(directory, k, self.writer, self.request.compress_temp, fresh=not (top and "k" in self.state))
        if top and self.state_dir:
            self.resume_buckets(buckets)
        return buckets

    def rereads_inputs(self) -> bool:
        # A manifest counts every input's samples; weighted sources draw each block's picks again;
        # --unique's blocks come from the hash buckets, read again for the copies they drop.
        return self.request.manifest is not None or self.mixer is not None or self.request.unique

    def checkpoint_due(self, nbytes: int) -> bool:
        # --unique's blocks are a hash bucket's unique samples each: a checkpoint per half a read buffer of them.
        return not self.request.unique or nbytes >= plan.read_capacity(self.limit) // 2

    def replay(self, block: Any, key: Key) -> None:
        if self.mixer is not None:
            self._picked(block[2], key)

    def _bucket_count(self, est: Estimate) -> int:
        """As the driver counts them, and with ``--stratify`` at least one for each split."""
        k = super()._bucket_count(est)
        return k if self.stratifier is None else max(k, self.stratifier.splits)

    def block_bytes(self, block: Any) -> int:
        return len(block[0])

    def scatter(self, block: Any, key: Key, buckets: Buckets, keep: int, depth: int) -> int:
        """Each run of samples (a piece) draws its buckets from its own stream on a worker; the
        samples and their lengths are regrouped by the same draws and appended in order."""
        assert isinstance(buckets, SampleBuckets)
        data, offsets = block[:2]
        verify = self.request.verify and depth == 0
        k = buckets.k
        # Weighted sources (top level only): the samples left out of the mix are dropped (bucket k),
        # and with --stratify each one in it draws a bucket of its split's range.
        picked = labels = before = None
        if depth == 0 and self.mixer is not None:
            picked, labels = self._picked(block[2], key)
            before = np.concatenate([[0], np.cumsum(picked)])  # samples in the mix before each

        def scatter_one(p: int, lo: int, hi: int, keep: int) -> tuple[Scattered, Scattered, Any]:
            """Samples ``[lo, hi)`` of the block scattered, with their lengths, and their fingerprint when verifying."""
            start = int(offsets[lo])
            piece = data[start : int(offsets[hi])]
            offs = _narrow(offsets[lo : hi + 1] - start, len(piece))
            rng = rng_for(self.entropy, streams.piece(key, p))
            if picked is None:
                ids = draw_ids(rng, k, hi - lo)
                fp = fingerprint(piece, offs) if verify else None
            else:
                mine = picked[lo:hi]
                ids = np.full(hi - lo, k, np.uint32)
                if labels is not None and before is not None and self.strata_bounds is not None:
                    ids[mine] = split_ids(rng, self.strata_bounds, labels[before[lo] : before[hi]], k)
                else:
                    ids[mine] = draw_ids(rng, k, hi - lo)[mine]
                fp = mix.multiset_fingerprint(piece, offs, mine.astype(np.int64)) if verify else None
            lengths = np.diff(offs).astype("<i8").view(np.uint8)
            length_offsets = np.arange(0, len(lengths) + 1, 8, dtype=np.int32)
            return regroup(piece, offs, ids, k, keep), regroup(lengths, length_offsets, ids, k, keep), fp

        cuts = sample_runs(offsets, self.piece, plan.piece_records(self.limit))
        jobs = ((lambda p=p, lo=lo, hi=hi, keep=keep: scatter_one(p, lo, hi, keep)) for p, (lo, hi) in enumerate(cuts))
        for part, lengths, fp in self.workers.sized(len(data)).ordered(jobs, ahead=plan.pieces_ahead(self.limit)):
            if fp is not None:
                self.read_fingerprint += fp
            buckets.append(part, lengths, keep)
            keep = self.cutoff(buckets, keep)
        return keep

    def shuffle_bucket(self, buckets: Buckets, j: int, key: Key, left: int | None, room: int) -> int:
        assert isinstance(buckets, SampleBuckets)
        if self._buf is None or len(self._buf) < room:
            self._buf = np.empty(room, np.uint8)
        offsets = buckets.offsets(j)
        view = buckets.data.read_into(j, self._buf)
        held = room + plan.META_PER_RECORD * (len(offsets) - 1)
        return shuffle_block(
            view, _narrow(offsets, len(view)), self.entropy, key, self.emit, self.workers, head=left, limit=self.limit, held=held,
        )

    def release_buffers(self) -> None:
        self._buf = None

    def bucket_blocks(self, buckets: Buckets, j: int) -> tuple[Iterator[Any], Estimate]:
        assert isinstance(buckets, SampleBuckets)
        buckets.data.check_file(j)
        buckets.lengths.check_file(j)
        size, count = int(buckets.sizes[j]), int(buckets.records[j])
        return bucket_samples(buckets, j, plan.read_capacity(self.limit)), Estimate.of(size, size / count)


def _fits_whole(request: Request, nbytes: int, records: int, limit: int) -> bool:
    """Whether every sample read (``nbytes``, ``records``) is shuffled in memory: with ``--unique``
    beside its identities, its unique copy and the dedup's bookkeeping (with sources, each sample's too)."""
    if not request.unique:
        return plan.fits_in_memory(nbytes, records, limit)
    return unique_fits(nbytes, records, limit, DEDUP_META + (SOURCE_META if request.sources else 0))


def _source_counts(request: Request, per_input: list[list[int]]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Each source's samples and bytes (every input read: ``per_input``), for the dry run, whose
    mixer refuses what the run's would (a ``--mix`` whose rates come out above 1)."""
    counts, nbytes = [0] * len(request.sources), [0] * len(request.sources)
    for s, (records, size) in zip(mix.source_files(request), per_input):
        counts[s] += records
        nbytes[s] += size
    return tuple(counts), tuple(nbytes)


def _narrow(offsets: np.ndarray, nbytes: int) -> np.ndarray:
    """Offsets as int32 when the block allows (Arrow ``binary``, half the memory), else int64."""
    return offsets.astype(np.int32) if nbytes <= INT32_LIMIT else offsets


def _chained(
    first: list[tuple[np.ndarray, np.ndarray]], rest: Generator[tuple[np.ndarray, np.ndarray, bool], None, None]
) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
    """The first block (handed out, then let go of), then the reader's others; closes the reader."""
    try:
        yield first.pop()
        for block, offsets, _final in rest:
            yield block, offsets
    finally:
        rest.close()


def refusal(request: Request) -> str | None:
    """Why ``request`` cannot shuffle tar samples, naming the settings (None: it can)."""
    lines_only = tuple(name for name in LINE_SETTINGS if name != "resume")
    unsupported = settings_in_use(request, (*lines_only, *ROW_SETTINGS))
    if unsupported:
        return f"{', '.join(unsupported)}: not available for WebDataset tar shards (samples, not lines)"
    return None


def check_request(request: Request) -> None:
    """Refuse what tar samples cannot do (``refusal``), and an output named as something else."""
    why = refusal(request)
    if why is not None:
        raise UsageError(why)
    check_output_name(request.output)


def check_settings(request: Request, all_paths: bool) -> None:
    """The request checks of tar samples (``registry``'s webdataset family): their own, then those of lines."""
    check_request(request)
    check_line_settings(request, all_paths)


def check_output_name(target: str | None) -> None:
    """Refuse an output named as something other than a tar (``out.jsonl``), which would get tar data."""
    if target is not None and not _tar_name_or_plain(target):
        raise UsageError(
            f"{target}: tar samples are written as a tar; give {option('output')} a tar name "
            "(.tar, .tar.gz or .tgz, .tar.zst, .tar.bz2, .tar.xz) or a directory"
        )


def _tar_name_or_plain(target: str) -> bool:
    """Whether ``-o`` may receive tar data: standard output, a directory, a name without a suffix
    (``/dev/stdout``) or a tar's name; not another format's (``.jsonl``) nor a codec bigshuf does
    not write (``.tar.lz4``), which would be written as a plain tar under that name."""
    from .detect import data_kind

    name = os.path.basename(target)
    if target == "-" or not name or os.path.isdir(target) or not os.path.splitext(name)[1]:
        return True
    return data_kind(name) == registry.WEBDATASET
