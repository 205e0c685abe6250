"""A shuffle of lines (or NUL-terminated records, or groups of N lines) on the two-pass driver.

What is particular to lines: a lone plain file is mapped rather than read; the input's size
decides the path before anything is read when it is known; pieces of a block are scattered as
byte ranges; ``--resume`` checkpoints, ``--repeat`` and ``--header`` exist only here. Weighted
sources (``line_mix``) and ``--resume``'s job and checkpoint (``line_resume``) come as mixins.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Generator, Iterator
from concurrent.futures import Future
from itertools import chain
from typing import Any

import numpy as np

from ..core import mix, plan, streams
from ..core.dedup import DEDUP_META, first_copies, gather
from ..core.driver import Buckets, Estimate, OutputPlan, Sample, TwoPass, closing
from ..core.fingerprint import Fingerprint, fingerprint
from ..core.gather import sample_with_replacement, shuffle_block
from ..core.resume import JobLock
from ..core.mix import Mixer
from ..core.stratify import Stratifier
from ..core.scatter import BucketSet, Scattered, cut_pieces, scatter_records
from ..core.streams import Key, rng_for
from ..errors import InputError, UsageError, option
from ..progress import IN_MEMORY, Progress, dedup_phase, scatter_phase
from ..storage.output import Output
from ..storage.layout import Sharding, parse_split
from ..storage.manifest import input_entries, run_entries, strata_entries
from ..storage.shards import check_outputs
from ..request import Request, resolve_memory
from ..storage.codecs import parse_compress
from ..storage.remote import URLSource, is_remote
from ..storage.sinks import CodecChoice
from ..storage.sources import FileSource, GeneratedSource, RecordReader, Source, map_whole
from ..storage.tempspace import TempSpace, default_tmp_dir, remove_dead_outputs
from ..storage.writeback import WriteBehind
from .detect import line_shard_suffix, refuse_terminal
from ..core.records import RecordFormat, find_offsets, find_offsets_split
from .line_mix import WeightedLines, count_sources, source_sizes
from .line_resume import ResumableLines
from .line_unique import Dedup, parallel_hashes, record_ranges
from .tar_input import refuse_tar_on_stdin


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
        f"{option('repeat')} needs the input in memory, and it does not fit in {plan.format_size(limit)}; "
        f"raise {option('memory')}"
    )


def _unreadable(item: Any) -> str:
    """Why ``--dry-run`` does not read input ``item`` (a path, URL or source), or empty if it does."""
    if isinstance(item, str) and item == "-":
        return "standard input is not read by a plan: it could not be read again"
    if isinstance(item, str) and is_remote(item):
        return f"{item}: URLs are not read by a plan"
    if isinstance(item, str):
        try:
            mode = os.stat(item).st_mode
        except OSError:
            return ""  # the read says what is wrong
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return f"{item}: not a regular file, so not read by a plan: it could not be read again"
    if isinstance(item, GeneratedSource):
        return f"{item.name}: generated lines have no size before they are made"
    return ""


def _shard_suffix(sources: list[Source], sharded: bool, compress: CodecChoice | None) -> str | None:
    """The suffix of a shard directory's files: the inputs' kind and codec when every input is a file."""
    paths = [s.path for s in sources if isinstance(s, FileSource)]
    return line_shard_suffix(paths, compress) if sharded and len(paths) == len(sources) else None


class LineRun(WeightedLines, ResumableLines, TwoPass):
    """One line shuffle: reads the sources, decides the path, owns the output and the temp space."""

    def __init__(self, request: Request, sources: list[Source], entropy: int, progress: Progress) -> None:
        super().__init__(
            entropy, resolve_memory(request.memory), request.head_count, request.tmp_dir, progress, request.workers,
            request.head_share,
        )
        self.request = request
        self.sources = sources
        self.fmt = RecordFormat(0 if request.zero_terminated else 10, request.lines_per_record)
        self.compress = None if request.compress is None else parse_compress(request.compress)
        self.piece = plan.piece_bytes(self.limit)
        self.writer = WriteBehind(plan.IN_FLIGHT_PIECES * self.piece)
        self.out = Output(
            request.output, self.writer, shards=request.shards, compress=self.compress, sync=request.sync,
            shard_size=request.shard_size, shard_records=request.shard_records,
            split=None if request.split is None else parse_split(request.split), manifest=request.manifest,
        )
        self.counted_reader: RecordReader | None = None  # counts each input's records and bytes, for the manifest
        self.pass1_reader: RecordReader | None = None  # counts them for the manifest or --resume
        self.out.manifest_info = self._manifest_info
        self.out.verify = request.verify
        self.out.hashers = self.workers
        self.temp_ratio = 1.0  # compressed / raw size of temporary buckets (--compress-temp)
        # Pass 2's two read buffers: one holds the bucket being shuffled while the next bucket is
        # read ahead into the other (``_ahead``: bucket -> its buffer and the read).
        self._bufs: list[np.ndarray | None] = [None, None]
        self._ahead: dict[int, tuple[int, Future[np.ndarray]]] = {}
        self.resume_space: TempSpace | None = None  # removed once the output is in place
        # The --resume job's key, and the name of its lock, temp directory and output temp files.
        self.resume_key, self.resume_name = self._resume_job() if request.resume else (None, None)
        self.out.resume_tag = self.resume_name
        self.job_lock: JobLock | None = None
        # Weighted sources: which source each input belongs to, and the copies each record gets.
        self.mixer: Mixer | None = None
        # --stratify: which split each copy goes to, and the top level's buckets each split owns.
        self.stratifier: Stratifier | None = None
        self.strata_bounds: np.ndarray | None = None
        if self.resume_name is not None:
            self.out.resume_dir = os.path.abspath(os.path.join(self.tmp_dir or default_tmp_dir(), self.resume_name))
            self.out.rescan = self._read_output_back

    @classmethod
    def for_request(cls, request: Request, inputs: list[Any], entropy: int, progress: Progress) -> LineRun:
        """Lines of every input, files as they are named, other sources (URLs, generated lines) as given."""
        sources: list[Source] = [FileSource(s) if isinstance(s, str) else s for s in inputs]
        return cls(request, sources, entropy, progress)

    @classmethod
    def sample(cls, request: Request, inputs: list[Any]) -> Sample:
        """The input's first piece read as pass 1 would read it, sized as pass 1 would size it; standard
        input, pipes, URLs and generated lines are not read (nor their size guessed)."""
        why = next((w for w in map(_unreadable, inputs) if w), "")
        if why:
            return Sample(None, why=why)
        sources: list[Source] = [FileSource(s) if isinstance(s, str) else s for s in inputs]
        limit = resolve_memory(request.memory)
        fmt = RecordFormat(0 if request.zero_terminated else 10, request.lines_per_record)
        piece = plan.piece_bytes(limit)
        reader = RecordReader(sources, fmt, Progress(), request.header)
        total = reader.total_size()
        read = max(piece, plan.DRY_RUN_SAMPLE)
        blocks = reader.blocks(plan.read_capacity(limit), option("memory"), block=read)
        try:
            block, final = next(blocks)
            per_record = mean_record_size(block, fmt, piece)
            ratio = compression_ratio(block[:piece]) if request.compress_temp else 1.0
            if final:
                est = Estimate(len(block), len(find_offsets(block, fmt)) - 1, per_record)
            else:
                est = Estimate.of(reader.estimate_total() if total is None else total + len(sources), per_record)
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
            sizes = tuple(source_sizes(sources, file_source, n))
            if final or (total is not None and total <= plan.DRY_RUN_SAMPLE):
                counted = count_sources(sources, file_source, n, fmt, request.header, limit, Progress())
                counts, nbytes = tuple(counted[0]), tuple(counted[1])
        return Sample(
            est, sampled, exact=final, sized=total is not None, in_memory=in_memory,
            temp_bytes=None if est.nbytes is None else temp_bytes(est.nbytes, request.compress_temp, ratio),
            refusal=repeat_refusal(limit) if request.repeat and not in_memory else "",
            source_records=counts, source_bytes=nbytes, source_sizes=sizes,
        )

    @classmethod
    def output_plan(cls, request: Request, inputs: list[Any]) -> OutputPlan:
        """The output as ``prepare`` checks it: the codec ``--compress`` names and a shard directory's suffix."""
        compress = None if request.compress is None else parse_compress(request.compress)
        local = all(not isinstance(s, str) or not is_remote(s) for s in inputs)
        sources: list[Source] = [FileSource(s) if isinstance(s, str) else s for s in inputs]
        sharding = Sharding(request.shards, request.shard_records, request.shard_size)
        suffix = _shard_suffix(sources, sharding.on, compress) if local else None
        return OutputPlan(request.output, request.shards, compress, suffix, sharding, request.split, request.manifest)

    def prepare(self) -> None:
        if self.out.target in (None, "-") and self.compress is not None and self.compress[0] != "none":
            refuse_terminal(f"{self.compress[0]}-compressed data")
        paths = [s.path for s in self.sources if isinstance(s, FileSource)]
        self.out.shard_suffix = _shard_suffix(self.sources, self.out.sharding.on, self.compress)
        check_outputs(
            self.out.target, self.out.sharding, self.out.split, self.request.manifest, self.compress, self.out.shard_suffix,
            inputs=paths + [s.name for s in self.sources if isinstance(s, URLSource)],
        )
        if self.resume_name is not None:
            self._lock_job()
        for directory in dict.fromkeys(os.path.dirname(os.path.abspath(p)) for p in paths if p != "-"):
            remove_dead_outputs(directory)  # a commit a kill interrupted there is finished before reading

    def _manifest_info(self) -> dict[str, Any]:
        """The manifest's run-wide entries: the request, and every input's records and bytes as read."""
        names = [s.path if isinstance(s, FileSource) else s.name for s in self.sources]
        counts = None if self.counted_reader is None else self.counted_reader.counted()
        inputs = input_entries(names, counts, [isinstance(s, FileSource) for s in self.sources])
        fmt = {"separator": self.fmt.sep, "lines_per_record": self.fmt.group, "header": self.request.header}
        entries = run_entries(self.request, inputs, fmt, self.head_count, self.source_stats(), self.duplicates)
        if self.stratifier is not None and self.out.split is not None:
            names = [p.name for p in self.out.split]
            entries["stratified"] = strata_entries(names, self.stratifier.names, self.stratifier.table)
        return entries

    def rereads_inputs(self) -> bool:
        # --unique: pass 1's blocks come from the hash buckets, read again for the copies they drop.
        return self.counted_reader is not None or self.mixer is not None or self.request.unique

    def records_read(self) -> list[list[Any]] | None:
        # --unique: pass 1's blocks come from the hash buckets, each checked against its records.
        counted = None if self.pass1_reader is None or self.request.unique else self.pass1_reader.counted()
        return None if counted is None else [[s.path, n] for s, (n, _) in zip(self.sources, counted) if isinstance(s, FileSource)]

    def checkpoint_due(self, nbytes: int) -> bool:
        # --unique's blocks are a hash bucket's unique records each: a checkpoint per half a read buffer of them.
        return not self.request.unique or nbytes >= plan.read_capacity(self.limit) // 2

    def replay(self, block: Any, key: Key) -> None:
        if isinstance(block, tuple):
            self._pick_copies(block[0], block[1], key)

    def finished(self) -> None:
        if self.resume_space is not None:
            self.resume_space.discard()

    def release(self) -> None:
        if self.job_lock is not None:
            self.job_lock.release()

    def shuffle(self) -> None:
        sources = self.sources
        reader = RecordReader(sources, self.fmt, self.progress, self.request.header, stdin_check=refuse_tar_on_stdin)
        factor = 1.0  # bytes of the multiset shuffled over bytes read (weighted sources)
        # With --unique the rates apply to the records left once copies are dropped: the mix is
        # planned once they are counted (by the dedup, in memory or by its buckets).
        unique_mix = self.request.unique and bool(self.request.sources)
        if self.request.sources and not unique_mix:
            factor = self._plan_mix()
        if self.request.manifest is not None or self.resume_name is not None:
            reader.per_input = []  # each input's records: the manifest's, and --resume's check of blocks read again
            self.pass1_reader = reader
        if self.request.manifest is not None:
            self.counted_reader = reader
        total = reader.total_size()
        stored = reader.progress_total()
        # --unique holds a deduplicated copy beside the input in memory: half as much fits.
        budget = plan.block_budget(self.limit) // (2 if self.request.unique else 1)
        small = total is not None and total + len(sources) <= budget
        # A known size names the bar as the run will most likely go (renamed below if it goes the other
        # way); an unknown one (standard input, compressed files) only once the first block tells.
        phase: str | None = None
        first_pass = dedup_phase(0) if self.request.unique else scatter_phase(0)
        if total is not None:
            phase = IN_MEMORY if small else first_pass
            self.progress.start(phase, stored)
        else:
            reader.progress = Progress()  # counted in reader.progress_done, shown once the bar is named
        blocks, block, final = self._first_block(reader, total, small)
        self.out.header = reader.header
        runs = reader.block_runs if blocks is not None else [(0, 0)]
        if final:
            offsets = find_offsets_split(block, self.fmt, self.workers, plan.block_budget(self.limit) // plan.META_PER_RECORD)
            if unique_mix:
                if offsets[-1] == len(block) and self._unique_mix_in_memory(block, offsets, runs, blocks is None, reader, phase, stored):
                    return
                mult = None
            else:
                mult, per_source = (None, []) if self.mixer is None or offsets[-1] != len(block) else self._copies(block, offsets, runs)
                copies = 0 if mult is None else int(mult.sum())  # the multiset's index, beside the offsets
                if offsets[-1] == len(block) and self._fits_whole(len(block), len(offsets) - 1 + copies):
                    self._to_memory(phase, stored, reader, blocks is None, len(offsets) - 1, len(block))
                    self._in_memory(block, offsets, mult, per_source)
                    return
            del offsets, mult
            if self.mixer is not None:
                self.mixer.reset()  # pass 1 draws its own picks, block by block
        if self.request.repeat:
            raise UsageError(repeat_refusal(self.limit))
        if phase != first_pass:
            self._rename_phase(first_pass, stored, reader)
        if blocks is None:
            # Mapped, but too many records to shuffle in one piece: stream it instead.
            blocks = reader.blocks(plan.read_capacity(self.limit), option("memory"))
            self.readers.append(blocks)
            block, final = next(blocks)
            runs = reader.block_runs
        per_record = mean_record_size(block, self.fmt, self.piece)
        if self.request.compress_temp:
            self.temp_ratio = compression_ratio(block[: self.piece])
        # Only the chain may keep the first block alive, so the read buffer is freed before pass 2.
        everything: Iterator[Any]
        if not self.request.sources:
            everything = (b for b, _final in chain([(block, final)], blocks))
        else:
            # Each block with where its inputs start, read as the block is handed out.
            later = ((b, reader.block_runs) for b, _final in blocks)
            everything = chain([(block, runs)], later)
        del block
        whole = reader.estimate_total() if total is None else total + len(sources)
        if whole is not None and self.mixer is not None:
            whole = int(whole * factor)
        with TempSpace(self.tmp_dir, self.resume_name) as temp:
            if self.resume_name is not None:
                self.resume_space = temp
                self._load_checkpoint(temp.path, [s.path for s in sources if isinstance(s, FileSource)])
            exact = total is not None
            if self.request.unique:
                # Pass 1 scatters the unique records, at most what the hash buckets hold (known now).
                n = len(self.request.sources)
                dedup = Dedup(self, temp, mix.source_files(self.request) if n else None, n)
                hashed = dedup.resume(everything) if "dedup" in self.state else dedup.scatter(everything, whole, per_record)
                whole, exact = int(hashed.data.sizes.sum()), True
                if unique_mix:
                    whole = int(whole * dedup.plan_mix(hashed))
                everything = dedup.unique(hashed)
            self.external(everything, Estimate.of(whole, per_record), temp, streams.TOP, 0, exact=exact)

    def _fits_whole(self, nbytes: int, nrecords: int) -> bool:
        """Whether the whole input is shuffled in memory: it fits, and with ``--unique`` so do its
        deduplicated copy and the dedup's bookkeeping."""
        if self.request.unique:
            nbytes = 2 * nbytes + DEDUP_META * nrecords
        return plan.fits_in_memory(nbytes, nrecords, self.limit)

    def _to_memory(self, phase: str | None, stored: int | None, reader: RecordReader, mapped: bool, records: int, nbytes: int) -> None:
        """The input (``records``, ``nbytes``) is shuffled in memory: its bar named so, and a mapped
        input's counts given to the manifest (the reader saw none of it)."""
        if phase != IN_MEMORY:
            self._rename_phase(IN_MEMORY, stored, reader)
        if mapped and reader.per_input is not None:
            reader.per_input = [[records * self.fmt.group, nbytes]]

    def _first_block(
        self, reader: RecordReader, total: int | None, small: bool
    ) -> tuple[Generator[tuple[np.ndarray, bool], None, None] | None, np.ndarray, bool]:
        """The rest of the blocks (None: the input was mapped whole), the first block, and whether it is the last."""
        if total is not None and small:
            # Small enough to try in memory: map a lone plain file, else read it all.
            if not self.request.header and self.fmt.group == 1:
                mapped = map_whole(self.sources, self.fmt.sep)
                if mapped is not None:
                    self.progress.update(len(mapped))
                    return None, mapped, True
            blocks = reader.blocks(total + len(self.sources) + 1, option("memory"))
        else:
            blocks = reader.blocks(plan.read_capacity(self.limit), option("memory"))
        self.readers.append(blocks)
        block, final = next(blocks)
        return blocks, block, final

    def _rename_phase(self, name: str, total: int | None, reader: RecordReader) -> None:
        """Go on with the input's bar under ``name`` (the run took the other path, or it was not named
        yet), as far as ``reader`` has read, and let the reader report to it from there."""
        self.progress.start(name, total)
        self.progress.update(reader.progress_done)
        reader.progress = self.progress

    def _in_memory(
        self, block: np.ndarray, offsets: np.ndarray, mult: np.ndarray | None = None, per_source: list[tuple[int, int]] | None = None,
        beside: int | None = None,
    ) -> None:
        """Shuffle ``block`` in memory (``mult``: each record's copies; ``beside``: bytes of the input held
        beside it, already deduplicated into it)."""
        n = len(offsets) - 1
        index = None if mult is None else mix.copies_index(mult)
        held = len(block) + plan.META_PER_RECORD * (n if index is None else n + len(index))
        if self.request.repeat:
            if n == 0:
                raise InputError("no lines to repeat")
            self.count_read(n)
            count = self.head_count
            self.begin_output(count or 0)
            self.records += count or 0
            rng = rng_for(self.entropy, streams.IN_MEMORY)
            sample_with_replacement(block, offsets, rng, self.emit, self.workers, count=count, limit=self.limit, held=held)
            return
        if beside is not None:
            held += beside
        elif self.request.unique:
            kept = first_copies(block, offsets, parallel_hashes(block, offsets, record_ranges(offsets, self.piece), self.workers))
            self.duplicates = n - len(kept)
            block, offsets = gather(block, offsets, kept)
            n = len(kept)
            del kept
            held += len(block)  # the input stays held beside its unique copy
        self.begin_output(self.wanted(n if index is None else len(index)))
        if self.request.verify:
            self.read_fingerprint += fingerprint(block, offsets) if mult is None else mix.multiset_fingerprint(block, offsets, mult)
        if self.stratifier is not None:
            assert per_source is not None
            self._in_memory_strata(block, offsets, index, per_source, held)
            return
        self.records += shuffle_block(
            block, offsets, self.entropy, streams.IN_MEMORY, self.emit, self.workers, head=self.head_count, limit=self.limit,
            held=held, index=index,
        )

    # The driver's hooks.

    def begin_output(self, total: int, restore: dict[str, Any] | None = None) -> None:
        """Check, with weighted sources, that pass 1 read what the counting pass counted, then open the output."""
        if self.mixer is not None:
            self.mixer.check_complete()
        super().begin_output(total, restore)

    def free_needed(self, nbytes: int) -> int:
        return temp_bytes(nbytes, self.request.compress_temp, self.temp_ratio)

    def make_buckets(self, directory: str, k: int, top: bool) -> Buckets:
        resuming = top and "k" in self.state
        buckets = BucketSet(directory, k, self.writer, compress=self.request.compress_temp, fresh=not resuming)
        if top and self.stratifier is not None:
            self.strata_bounds = self.stratifier.bucket_bounds(k)
        if top and self.state_dir:
            self.resume_buckets(buckets)
        return buckets

    def _bucket_count(self, est: Estimate, temp: TempSpace) -> int:
        """As the driver counts them, and with ``--stratify`` at least one for each split."""
        k = super()._bucket_count(est, temp)
        return k if self.stratifier is None else max(k, self.stratifier.splits)

    def block_bytes(self, block: Any) -> int:
        return len(block[0] if isinstance(block, tuple) else block)

    def scatter(self, block: Any, key: Key, buckets: Buckets, keep: int, depth: int) -> int:
        """The block's pieces are scattered on the workers, each from its own stream, and appended
        to the buckets in order; the pieces ahead take the memory the read buffer leaves.

        With weighted sources (a top-level block comes with its inputs' runs), the records of
        each piece per source are counted on the workers first, the block's picks drawn here in
        block order, and every copy of a record scattered with its own bucket draw."""
        assert isinstance(buckets, BucketSet)
        verify = self.request.verify and depth == 0
        most = plan.piece_records(self.limit)
        ranges = None
        if isinstance(block, tuple):
            block, ranges = self._pick_copies(block[0], block[1], key)

        def scatter_one(p: int, lo: int, hi: int, keep: int) -> tuple[list[Scattered], Fingerprint | None]:
            """Piece ``p`` (``block[lo:hi]``) scattered, and its fingerprint when verifying."""
            piece = block[lo:hi]
            offsets = find_offsets(piece, self.fmt)
            rng = rng_for(self.entropy, streams.piece(key, p))
            if ranges is not None:
                assert self.mixer is not None
                _range, counts, shares, labels = ranges[p]
                mult = self.mixer.multiplicity(counts, shares)
                index = mix.copies_index(mult)
                strata = None
                if labels is not None:
                    assert self.strata_bounds is not None
                    strata = (self.strata_bounds, labels)
                    if index is None:
                        index = np.arange(len(mult), dtype=np.int32)
                scattered = scatter_records(piece, offsets, rng, buckets.k, keep, most, index, self.piece, strata)
                return scattered, mix.multiset_fingerprint(piece, offsets, mult) if verify else None
            return scatter_records(piece, offsets, rng, buckets.k, keep, most), fingerprint(piece, offsets) if verify else None

        cuts = cut_pieces(block, self.fmt, self.piece) if ranges is None else (r[0] for r in ranges)
        jobs = (
            (lambda p=p, lo=lo, hi=hi, keep=keep: scatter_one(p, lo, hi, keep))
            for p, (lo, hi) in enumerate(cuts)
        )
        for parts, fp in self.workers.sized(len(block)).ordered(jobs, ahead=plan.pieces_ahead(self.limit)):
            if fp is not None:
                self.read_fingerprint += fp
            for part in parts:
                buckets.append(part, keep)
                keep = self.cutoff(buckets, keep)
        return keep

    def shuffle_bucket(self, buckets: Buckets, j: int, key: Key, left: int | None, room: int) -> int:
        assert isinstance(buckets, BucketSet)
        if j in self._ahead:
            view = self._ahead.pop(j)[1].result()
        else:
            view = buckets.read_into(j, self._buffer(self._free_buffer(), room))
        offsets = find_offsets_split(view, self.fmt, self.workers)
        held = (2 * room if self._ahead else room) + plan.META_PER_RECORD * (len(offsets) - 1)
        return shuffle_block(view, offsets, self.entropy, key, self.emit, self.workers, head=left, limit=self.limit, held=held)

    def read_ahead(self, buckets: Buckets, j: int, room: int) -> None:
        """Read bucket ``j`` into a second buffer on a worker while the current one is shuffled,
        when two buffers and the larger bucket's bookkeeping fit in the limit."""
        assert isinstance(buckets, BucketSet)
        if self.workers.sized(room).n == 1 or j in self._ahead:
            return
        if 2 * room + plan.META_PER_RECORD * int(buckets.records.max()) > plan.block_budget(self.limit):
            return
        slot = self._free_buffer()
        buf = self._buffer(slot, room)
        self._ahead[j] = (slot, self.workers.submit(lambda: buckets.read_into(j, buf)))

    def _free_buffer(self) -> int:
        """A read buffer no read ahead is filling (the other one may be)."""
        busy = {slot for slot, _read in self._ahead.values()}
        return next(slot for slot in (0, 1) if slot not in busy)

    def _buffer(self, slot: int, room: int) -> np.ndarray:
        """Read buffer ``slot``, of at least ``room`` bytes (allocated once a level, then reused)."""
        buf = self._bufs[slot]
        if buf is None or len(buf) < room:
            buf = self._bufs[slot] = np.empty(room, np.uint8)
        return buf

    def release_buffers(self) -> None:
        ahead, self._ahead = self._ahead, {}
        for _slot, read in ahead.values():  # reads ahead that will not be used: waited for, errors raised
            read.result()
        self._bufs = [None, None]

    def bucket_blocks(self, buckets: Buckets, j: int) -> tuple[Iterator[Any], Estimate]:
        assert isinstance(buckets, BucketSet)
        buckets.check_file(j)
        size, count = int(buckets.sizes[j]), int(buckets.records[j])
        sub = RecordReader([FileSource(buckets.path(j))], self.fmt, Progress())
        flagged = sub.blocks(plan.read_capacity(self.limit), option("memory"))
        blocks = closing((b for b, _final in flagged), flagged)
        return blocks, Estimate.of(size, size / count)
