"""A shuffle of lines (or NUL-terminated records, or groups of N lines) on the two-pass driver.

What is particular to lines: a lone plain file is mapped rather than read; the input's size
decides the path before anything is read when it is known; pieces of a block are scattered as
byte ranges; ``--resume`` checkpoints, ``--repeat`` and ``--header`` exist only here. Weighted
sources (``line_mix``) and ``--resume``'s job and checkpoint (``line_resume``) come as mixins;
the sizes it plans with, and ``--dry-run``'s sample of it, are ``line_plan``'s.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future
from itertools import chain
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

from ..core import mix, plan, streams
from ..core.bucket_groups import grouped_bytes, table_parts
from ..core.dedup import dedup_need, first_copies, gather
from ..core.driver import Buckets, Estimate, OutputPlan, Sample, TwoPass, closing
from ..core.fingerprint import Fingerprint, fingerprint
from ..core.gather import in_one_part, records_per_chunk, sample_with_replacement, shuffle_block, shuffled_in_one_part
from ..core.mix import Mixer
from ..core.parallel import settled, share_one_heap
from ..core.stratify import Stratifier
from ..core.buckets import BucketSet
from ..core.scatter import Scattered, cut_pieces, scatter_records
from ..core.streams import Key, rng_for
from ..errors import InputError, OutputError, UsageError, option
from ..quoting import quote_name
from ..progress import IN_MEMORY, Progress, dedup_phase, scatter_phase
from ..storage.output import Output
from ..storage.layout import parse_split
from ..storage.manifest import input_entries, run_entries, strata_entries
from ..storage.shards import check_outputs
from ..request import Request, resolve_memory
from ..storage.ahead import AheadPlan, compressed_file, plan_ahead
from ..storage.codecs import parse_compress
from ..storage.remote import URLSource
from ..storage.reader import RecordReader, map_whole
from ..storage.sources import BytesSource, FileSource, RangeSource, Source
from ..storage.tempspace import TempSpace, remove_dead_outputs
from ..storage.writeback import WriteBehind
from .detect import read_back, refuse_data_files_in_streams, refuse_terminal
from ..core.records import INT32_LIMIT, RecordFormat, decimal_records, find_offsets, find_offsets_split, searched_whole
from .line_early import EarlyPieces
from .line_mix import WeightedLines
from .line_plan import (
    compression_ratio, lines_output_plan, mean_record_size, repeat_refusal, sample_lines, shard_suffix, temp_bytes,
)
from .line_resume import ResumableLines
from .line_unique import Dedup, hash_buckets, parallel_hashes, record_ranges


#: A bucket loaded for pass 2: its bytes, and its records' ends when found where it was loaded.
Loaded = tuple[np.ndarray, "np.ndarray | None"]


class ShuffledAhead(NamedTuple):
    """A bucket shuffled ahead on a worker: its records in their shuffled order as one chunk
    (None: none), how many, and the count ``-n`` left it when its job started."""

    chunk: pa.Array | None
    records: int
    left: int | None


class Ahead(NamedTuple):
    """A pass-2 job started ahead: its read slot, the job, and whether it shuffles (or just loads)."""

    slot: int
    job: Future[Loaded | ShuffledAhead]
    shuffled: bool


class LineRun(WeightedLines, ResumableLines, TwoPass):
    """One line shuffle: reads the sources, decides the path, owns the output and the temp space."""

    #: Numbers written at once by ``-r -i`` without ``-n``.
    RANGE_WRITTEN = 1 << 20

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
        self._unsized = False  # the level being planned has an unknown size (``_bucket_count`` says)
        # Pass 2's read slots: one holds the bucket being shuffled while the next is loaded ahead
        # into another, or the next few small ones are shuffled ahead (``_ahead``: bucket -> its
        # slot and the job). Uncompressed files are mapped; the buffers are for compressed buckets
        # (--compress-temp) and those begun in group files.
        self._bufs: list[np.ndarray | None] = []
        self._ahead: dict[int, Ahead] = {}
        self._start_job()  # --resume: the job's key, and the name of its lock, temp directory and output temp files
        # Weighted sources: which source each input belongs to, and the copies each record gets.
        self.mixer: Mixer | None = None
        # --stratify: which split each copy goes to, and the top level's buckets each split owns.
        self.stratifier: Stratifier | None = None
        self.strata_bounds: np.ndarray | None = None
        # Pass 1's next block started as it is read (``_scatter_early``).
        self.early: EarlyPieces[tuple[Iterable[Scattered], Fingerprint | None]] | None = None
        self.decode_held = 0  # bytes the reader holds decoded ahead at most (``_plan_decoding_ahead``)

    @classmethod
    def for_request(cls, request: Request, inputs: list[Any], entropy: int, progress: Progress) -> LineRun:
        """Lines of every input, files as they are named, other sources (URLs, generated lines) as given."""
        sources: list[Source] = [FileSource(s) if isinstance(s, str) else s for s in inputs]
        if request.compress_temp or any(not isinstance(s, FileSource) or s.disk_size() is None for s in sources):
            # Before any worker starts: they make what the writing thread frees, --compress-temp's
            # frames, or (an input other than a local file of known size: a pipe's many small
            # buckets, also a URL's or generated lines') the buckets they shuffle ahead; each
            # worker's own heap kept those, and peak memory grew with -j.
            share_one_heap()
        return cls(request, sources, entropy, progress)

    @classmethod
    def sample(cls, request: Request, inputs: list[Any]) -> Sample:
        """The input's first piece read as pass 1 would read it, sized as pass 1 would size it; standard
        input, pipes, URLs and generated lines are not read (nor their size guessed)."""
        return sample_lines(request, inputs)

    @classmethod
    def output_plan(cls, request: Request, inputs: list[Any]) -> OutputPlan:
        """The output as ``prepare`` checks it: the codec ``--compress`` names and a shard directory's suffix."""
        return lines_output_plan(request, inputs)

    def prepare(self) -> None:
        if self.out.target in (None, "-") and self.compress is not None and self.compress[0] != "none":
            refuse_terminal(f"{self.compress[0]}-compressed data")
        paths = [s.path for s in self.sources if isinstance(s, FileSource)]
        named = {os.path.realpath(p) for p in paths if p != "-"}
        for directory in dict.fromkeys(os.path.dirname(os.path.abspath(p)) for p in paths if p != "-"):
            # A commit a kill interrupted there is finished before reading.
            for targets in remove_dead_outputs(directory):
                _refuse_inputs_named_before(named, targets)
        self.out.shard_suffix = shard_suffix(self.sources, self.out.sharding.on, self.compress)
        check_outputs(
            self.out.target, self.out.sharding, self.out.split, self.request.manifest, self.compress, self.out.shard_suffix,
            inputs=paths + [s.name for s in self.sources if isinstance(s, URLSource)],
            input_directories=self.request.input_directories, taken=read_back,
        )
        if self.resume_name is not None:
            self._lock_job()

    def _manifest_info(self) -> dict[str, Any]:
        """The manifest's run-wide entries: the request, and every input's records and bytes as read."""
        names = [s.path if isinstance(s, FileSource) else s.name for s in self.sources]
        counts = None if self.counted_reader is None else self.counted_reader.counted()
        files = [isinstance(s, FileSource) for s in self.sources]
        inputs = input_entries(names, counts, files, [s.read_as() if isinstance(s, FileSource) else None for s in self.sources])
        fmt: dict[str, Any] = {"separator": self.fmt.sep, "lines_per_record": self.fmt.group, "header_lines": self.request.header}
        if self.request.header:  # every output starts with it: --check-manifest compares it too
            fmt["header_sha256"] = hashlib.sha256(self.out.header).hexdigest()
        entries = run_entries(self.request, inputs, fmt, self.head_count, self.source_stats(), self.duplicates, self.entropy)
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

    def shuffle(self) -> None:
        request, source = self.request, self.sources[0] if len(self.sources) == 1 else None
        if isinstance(source, RangeSource) and source.drawn_unlisted(
            request.repeat, self.head_count, request.header, self.fmt.group, plan.block_budget(self.limit)
        ):
            self._repeat_range(source)
            return
        if isinstance(source, BytesSource) and source.ends is not None:
            self._shuffle_listed(source.data, source.ends)
            return
        reader, factor, unique_mix = self._open_input()
        total = reader.total_size()
        stored = reader.progress_total()
        # --unique holds a deduplicated copy beside the input in memory: half as much fits.
        budget = plan.block_budget(self.limit) // (2 if self.request.unique else 1)
        small = total is not None and total + len(self.sources) <= budget
        first_pass = dedup_phase(0) if self.request.unique else scatter_phase(0)
        mapped = self._map_small(total, small)
        if mapped is not None:  # its bar is named once its records are counted: whether they fit is known then
            phase, blocks, block, final = None, None, mapped, True
        else:
            phase = self._name_bar(reader, total, stored, IN_MEMORY if small else first_pass)
            blocks, block, final = self._first_block(reader, total, small)
        self.out.header = reader.header
        runs = reader.block_runs if blocks is not None else [(0, 0)]
        if final and self._shuffled_whole(block, runs, blocks is None, reader, phase, stored, unique_mix):
            return
        for source in self.inputs_in_use:  # mapped, not shuffled whole: were the records found the file's?
            source.check_unchanged()
            source.unmap()
        self.inputs_in_use = []  # read from here on, and checked as read
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
        everything, per_record = self._pass1_input(reader, blocks, block, final, runs)
        del block  # only the chain may keep the first block alive, so the read buffer is freed before pass 2
        whole = reader.estimate_total() if total is None else total + len(self.sources)
        if whole is not None and self.mixer is not None:
            whole = int(whole * factor)
        self._external_passes(everything, whole, per_record, total is not None or reader.sized_exactly(), unique_mix)

    def _repeat_range(self, source: RangeSource) -> None:
        """``-r -i LO-HI`` without ``-n`` (or with one too large to shuffle again in memory): numbers
        drawn from the range, for ever or ``-n`` of them, none listed, so any range runs. They are
        the draws ``_in_memory`` makes from the listed range (its record i is LO + i, chunks as many
        records): a range small enough to list gives the same output as before."""
        lo, n = source.lo, source.hi - source.lo + 1
        if n == 0:
            raise InputError("no lines to repeat")
        self.count_read(n)
        left = self.head_count  # None: for ever
        self.begin_output(0 if left is None else left)
        rng = rng_for(self.entropy, streams.IN_MEMORY)
        per_chunk = records_per_chunk(1 << 62, source.listed_bytes(), n, plan.piece_bytes(min(self.limit, plan.REPEAT_STREAM)))
        dtype = np.uint64 if n > np.iinfo(np.int64).max else np.int64
        while left is None or left > 0:
            size = per_chunk if left is None else min(per_chunk, left)
            drawn = rng.integers(0, n, size, dtype=dtype).astype(np.uint64) + np.uint64(lo)
            for at in range(0, size, self.RANGE_WRITTEN):  # written in parts: their digits take 2-3x the text
                self.emit(decimal_records(drawn[at : at + self.RANGE_WRITTEN], source.sep[0]))
            if left is not None:
                left -= size

    def _shuffle_listed(self, data: bytes, ends: list[int]) -> None:
        """Records of ``data`` cut at ``ends`` (``-e`` operands, one holding a newline): shuffled in memory
        whatever ``-S`` says, as they are already held there, by the draws ``_in_memory`` makes."""
        self.progress.start(IN_MEMORY, len(data))
        self.progress.update(len(data))
        block = np.frombuffer(data, np.uint8)
        self._in_memory(block, np.array([0, *ends], np.int32 if len(block) <= INT32_LIMIT else np.int64))

    def _open_input(self) -> tuple[RecordReader, float, bool]:
        """The reader of every input; the bytes of the multiset shuffled over the bytes read (weighted
        sources, their mix planned now); and whether the mix waits for ``--unique`` to count what is left."""
        reader = RecordReader(
            self.sources, self.fmt, self.progress, self.request.header, stream_check=refuse_data_files_in_streams,
            parallel=self.workers.map, ahead=self._plan_decoding_ahead(),
            groups=mix.source_files(self.request) if self.request.sources else None,
        )
        self.decoded = reader.decoded_sizes
        factor = 1.0
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
        return reader, factor, unique_mix

    def _plan_decoding_ahead(self) -> AheadPlan | None:
        """How the reader decodes compressed inputs ahead on the workers (``storage.ahead``), or None:
        one worker, ``--unique`` (its copy of the input takes the memory), too little memory or no
        compressed input after the first. What it holds is taken from the pieces scattered at once
        (``decode_held``, set here)."""
        held = plan.decode_ahead(self.limit)
        if self.workers.n == 1 or self.request.unique or not any(compressed_file(s) for s in self.sources[1:]):
            return None
        ahead = plan_ahead(self.workers.submit, self.workers.n, held)
        if ahead is not None:
            self.decode_held = held
        return ahead

    def _name_bar(self, reader: RecordReader, total: int | None, stored: int | None, likely: str) -> str | None:
        """The bar's name: with a known size, the path the run will most likely take (``likely``; renamed
        if it takes the other); with an unknown one (standard input, compressed files) none until the
        first block tells, the reader counting meanwhile."""
        if total is None:
            reader.progress = Progress()  # counted in reader.progress_done, shown once the bar is named
            return None
        self.progress.start(likely, stored)
        return likely

    def _shuffled_whole(
        self, block: np.ndarray, runs: list[tuple[int, int]], mapped: bool, reader: RecordReader, phase: str | None,
        stored: int | None, unique_mix: bool,
    ) -> bool:
        """Shuffle the whole input (``block``, read or ``mapped`` whole) in memory if it fits with its
        multiset (or, weighted after ``--unique``, its unique records); False: it goes through buckets."""
        offsets = find_offsets_split(block, self.fmt, self.workers, plan.block_budget(self.limit) // plan.META_PER_RECORD)
        if unique_mix:
            if offsets[-1] == len(block) and self._unique_mix_in_memory(block, offsets, runs, mapped, reader, phase, stored):
                return True
        else:
            mult, per_source = (None, []) if self.mixer is None or offsets[-1] != len(block) else self._copies(block, offsets, runs)
            copies = 0 if mult is None else int(mult.sum())  # the multiset's index, beside the offsets
            if offsets[-1] == len(block) and self._fits_whole(len(block), len(offsets) - 1 + copies):
                self._to_memory(phase, stored, reader, mapped, len(offsets) - 1, len(block))
                self._in_memory(block, offsets, mult, per_source)
                return True
        if self.mixer is not None:
            self.mixer.reset()  # pass 1 draws its own picks, block by block
        return False

    def _pass1_input(
        self, reader: RecordReader, blocks: Iterator[tuple[np.ndarray, bool]], block: np.ndarray, final: bool,
        runs: list[tuple[int, int]],
    ) -> tuple[Iterator[Any], float]:
        """Pass 1's blocks, the first (``block``) then the reader's (with weighted sources each with
        where its inputs start), and the mean record size measured on the first."""
        per_record = mean_record_size(block, self.fmt, self.piece)
        if self.request.compress_temp:
            self.temp_ratio = compression_ratio(block[: self.piece])
        everything: Iterator[Any]
        if not self.request.sources:
            everything = self._scatter_early(reader, (b for b, _final in chain([(block, final)], blocks)))
        else:
            # Each block with where its inputs start, read as the block is handed out.
            later = ((b, reader.block_runs) for b, _final in blocks)
            everything = chain([(block, runs)], later)
        return everything, per_record

    def _external_passes(self, everything: Iterator[Any], whole: int | None, per_record: float, exact: bool, unique_mix: bool) -> None:
        """The passes through buckets, in the run's temp space (``--resume``: its checkpoint loaded first);
        with ``--unique``, the hash buckets' unique records are what pass 1 scatters."""
        with TempSpace(self.tmp_dir, self.resume_name) as temp:
            if self.resume_name is not None:
                self._load_checkpoint(temp, [s.path for s in self.sources if isinstance(s, FileSource)])
            if self.request.unique:
                # Pass 1 scatters the unique records, at most what the hash buckets hold (known now).
                n = len(self.request.sources)
                dedup = Dedup(self, temp, mix.source_files(self.request) if n else None, n)
                if "dedup" not in self.state and exact and whole is not None:
                    # The hash buckets take the input's bytes: refused before they are written, as
                    # --dry-run checks (the check before pass 1 came only once they filled the disk).
                    temp.check_free(self.free_needed(whole) + self.hash_bytes * int(whole / max(1.0, per_record)))
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
            nbytes = dedup_need(nbytes, nrecords)
        return plan.fits_in_memory(nbytes, nrecords, self.limit)

    def _to_memory(self, phase: str | None, stored: int | None, reader: RecordReader, mapped: bool, records: int, nbytes: int) -> None:
        """The input (``records``, ``nbytes``) is shuffled in memory: its bar named so, and a mapped
        input checked as it was opened (again once the shuffle ends: the mapping is read until then)
        and its counts given to the manifest (the reader saw none of it)."""
        if phase != IN_MEMORY:
            self._rename_phase(IN_MEMORY, stored, reader)
        if mapped:
            for source in self.inputs_in_use:  # changed while its records were found: refused before any is written
                source.check_unchanged()
            self.progress.update(nbytes)
            if reader.per_input is not None:
                reader.per_input = [[records * self.fmt.group, nbytes]]

    def _map_small(self, total: int | None, small: bool) -> np.ndarray | None:
        """A lone plain file small enough to try in memory, mapped whole (None if it is not one)."""
        if total is None or not small or self.request.header or self.fmt.group != 1:
            return None
        mapped = map_whole(self.sources, self.fmt.sep)
        if mapped is not None:
            self.inputs_in_use = self.sources[:1]
        return mapped

    def _first_block(
        self, reader: RecordReader, total: int | None, small: bool
    ) -> tuple[Generator[tuple[np.ndarray, bool], None, None], np.ndarray, bool]:
        """The reader's blocks, the first block, and whether it is the last."""
        if total is not None and small:  # small enough to try in memory: read it all
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
            self.count_read(n)
            if n == 0 and self.head_count == 0:  # -n 0% of no lines: no draws, as -n 0
                self.begin_output(0)
                return
            if n == 0:
                raise InputError("no lines to repeat")
            count = self.head_count
            self.begin_output(count or 0)
            self.records += count or 0
            rng = rng_for(self.entropy, streams.IN_MEMORY)
            limit = min(self.limit, plan.REPEAT_STREAM)  # (the draws do not depend on it)
            sample_with_replacement(block, offsets, rng, self.emit, self.workers, count=count, limit=limit, held=held)
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

    @classmethod
    def dedup_buckets(cls, est: Estimate, limit: int, sources: int) -> int:
        nbytes = -1 if est.nbytes is None else est.nbytes
        return hash_buckets(nbytes, int(nbytes / max(1.0, est.per_record)), limit, sources)

    def make_buckets(self, directory: str, k: int, top: bool) -> Buckets:
        resuming = top and "k" in self.state
        # A level of unknown size gets all the buckets its free space may need; its first bytes go
        # to a few group files (``BucketGroups``), unless a checkpoint must describe its buckets.
        grouped = grouped_bytes(self.limit) if self._unsized and not (top and self.state_dir) else 0
        buckets = BucketSet(
            directory, k, self.writer, compress=self.request.compress_temp, fresh=not resuming, grouped=grouped,
            group_parts=table_parts(self.limit, k),
        )
        if top and self.stratifier is not None:
            self.strata_bounds = self.stratifier.bucket_bounds(k)
        if top and self.state_dir:
            self.resume_buckets(buckets)
        return buckets

    def _bucket_count(self, est: Estimate) -> int:
        """As the driver counts them, and with ``--stratify`` at least one for each split (and
        whether the level's size is unknown, for ``make_buckets``, which comes next)."""
        self._unsized = est.nbytes is None
        k = super()._bucket_count(est)
        return k if self.stratifier is None else max(k, self.stratifier.splits)

    def block_bytes(self, block: Any) -> int:
        return len(block[0] if isinstance(block, tuple) else block)

    def scatter(self, block: Any, key: Key, buckets: Buckets, keep: int, depth: int) -> int:
        """The block's pieces are scattered on the workers, each from its own stream, and appended
        to the buckets in order; the pieces ahead take the memory the read buffer leaves. Those
        started while the block was read (``line_early``) come first, and the next block's are
        started as it is read.

        With weighted sources (a top-level block comes with its inputs' runs), the records of
        each piece per source are counted on the workers first, the block's picks drawn here in
        block order, and every copy of a record scattered with its own bucket draw."""
        assert isinstance(buckets, BucketSet)
        verify = self.request.verify and depth == 0
        ranges = None
        if isinstance(block, tuple):
            block, ranges = self._pick_copies(block[0], block[1], key)
        early = self.early if depth == 0 else None
        started, start, first = ([], 0, 0) if early is None else early.take(key)
        cuts = cut_pieces(block, self.fmt, self.piece, start) if ranges is None else (r[0] for r in ranges)
        jobs = (
            (lambda p=p, lo=lo, hi=hi, keep=keep: self._scatter_one(block, key, buckets, p, lo, hi, keep, verify, ranges))
            for p, (lo, hi) in enumerate(cuts, first)
        )
        for done in self.workers.sized(len(block)).ordered(jobs, ahead=plan.pieces_ahead(self.limit, self.decode_held), started=started):
            keep = self._take_piece(done, buckets, keep)
        if early is not None:
            after = streams.following(key)
            early.expect(
                after,
                lambda p, buf, lo, hi: self.workers.submit(lambda: self._scatter_one(buf, after, buckets, p, lo, hi, buckets.k, verify)),
                lambda done: self._take_piece(done, buckets, buckets.k),
            )
        return keep

    def _scatter_one(
        self, block: np.ndarray, key: Key, buckets: BucketSet, p: int, lo: int, hi: int, keep: int, verify: bool,
        ranges: list[Any] | None = None,
    ) -> tuple[Iterable[Scattered], Fingerprint | None]:
        """Piece ``p`` of block ``key`` (``block[lo:hi]``) scattered, and its fingerprint when verifying."""
        compress = buckets.compress
        most = plan.piece_records(self.limit)
        piece = block[lo:hi]
        offsets = find_offsets(piece, self.fmt)
        rng = rng_for(self.entropy, streams.piece(key, p))
        if ranges is not None:
            assert self.mixer is not None
            _range, counts, shares, labels = ranges[p]
            mult = self.mixer.multiplicity(counts, shares)
            fp = mix.multiset_fingerprint(piece, offsets, mult) if verify else None
            strata = None
            if labels is not None:
                assert self.strata_bounds is not None
                strata = (self.strata_bounds, labels)
            runs = (part.checksummed(compress) for part in scatter_records(piece, offsets, rng, buckets.k, keep, most, mult, self.piece, strata))
            if int(mult.sum()) > 2 * most:  # a record copied many times: its runs drawn as they are taken, one held at a time
                return runs, fp
            return list(runs), fp
        scattered = [part.checksummed(compress) for part in scatter_records(piece, offsets, rng, buckets.k, keep, most)]
        return scattered, fingerprint(piece, offsets) if verify else None

    def _take_piece(self, done: tuple[Iterable[Scattered], Fingerprint | None], buckets: BucketSet, keep: int) -> int:
        """Append a scattered piece to the buckets and count its fingerprint; return the buckets ``-n`` keeps."""
        parts, fp = done
        if fp is not None:
            self.read_fingerprint += fp
        for part in parts:
            buckets.append(part, keep)
            keep = self.cutoff(buckets, keep)
        return keep

    def _scatter_early(self, reader: RecordReader, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """``blocks``, the reader's, with each block's pieces started as it is read (``line_early``)
        where that cuts them as the whole block would: lines, not weighted, all kept (so into
        all ``k`` buckets), on several workers; ``scatter`` says where each block's pieces go.
        Pieces still running when the blocks end are waited for."""
        if self.workers.n == 1 or self.fmt.group != 1 or self.request.sources or self.request.sampled or self.request.unique:
            yield from blocks
            return
        early = self.early = EarlyPieces(self.fmt, self.piece, self.workers.most_ahead(plan.pieces_ahead(self.limit, self.decode_held)))
        reader.on_read = early.read
        try:
            yield from blocks
        finally:
            reader.on_read = None
            early.settle()

    def shuffle_bucket(self, buckets: Buckets, j: int, key: Key, left: int | None, room: int) -> int:
        """Shuffle bucket ``j`` as loaded (mapped, or read into a buffer), read ahead or now, or
        emit it as shuffled ahead. No chunk emitted is a view of it (they are gathered copies), so
        its mapping goes when this returns."""
        assert isinstance(buckets, BucketSet)
        got = settled(self._ahead.pop(j).job) if j in self._ahead else None
        if isinstance(got, ShuffledAhead) and got.left == left:
            if got.chunk is not None:
                self.emit(got.chunk)
            return got.records
        if got is None or isinstance(got, ShuffledAhead):  # (not shuffled for this count: never, as the driver plans)
            got = self._loader(buckets, j, self._free_buffer(), room)()
        view, offsets = got
        if offsets is None:
            offsets = find_offsets_split(view, self.fmt, self.workers)
        buckets.check_count(j, len(offsets) - 1)
        held = self._held(room) + plan.META_PER_RECORD * (len(offsets) - 1)
        return shuffle_block(view, offsets, self.entropy, key, self.emit, self.workers, head=left, limit=self.limit, held=held)

    def read_ahead(self, buckets: Buckets, j: int, room: int, key: Key, left: int | None) -> bool:
        """Load bucket ``j`` on a worker while the current one is shuffled (map and check it, or
        read it into a free buffer), when what is held ahead fits in the limit (mapped pages
        count in the resident memory as the buffers do). A bucket shuffled in one part is
        shuffled there too, and then the next may be as well, one a worker: pipes leave a
        thousand small buckets, each too small to share between the workers."""
        assert isinstance(buckets, BucketSet)
        if j in self._ahead:
            return self._ahead[j].shuffled
        if self.workers.sized(room).n == 1:
            return False
        size, count = int(buckets.sizes[j]), int(buckets.records[j])
        small = in_one_part(count, size, self.limit)
        if small and sum(a.shuffled for a in self._ahead.values()) >= self.workers.n:
            return False
        meta = plan.META_PER_RECORD * int(buckets.records.max())
        if self._held(room) + (2 * room if small else room) + meta > plan.block_budget(self.limit):
            return False
        slot = self._free_buffer()
        load = self._loader(buckets, j, slot, room)
        if not small:
            self._ahead[j] = Ahead(slot, self.workers.submit(load), False)
            return False
        fmt, entropy = self.fmt, self.entropy

        def shuffle() -> ShuffledAhead:
            view, offsets = load()
            offsets = find_offsets(view, fmt) if offsets is None else offsets
            buckets.check_count(j, len(offsets) - 1)
            chunk, m = shuffled_in_one_part(view, offsets, entropy, key, left)
            return ShuffledAhead(chunk, m, left)

        self._ahead[j] = Ahead(slot, self.workers.submit(shuffle), True)
        return True

    def _held(self, room: int) -> int:
        """Bytes pass 2 holds at most while the current bucket is shuffled: its ``room`` and those
        of the buckets ahead (twice for those shuffled ahead: their gathered copy too)."""
        return room + sum(2 * room if a.shuffled else room for a in self._ahead.values())

    def _loader(self, buckets: BucketSet, j: int, slot: int, room: int) -> Callable[[], Loaded]:
        """What loads bucket ``j``: a mapping of it, or (compressed buckets, read through the
        decompressor, and buckets begun in a group file) a read into buffer ``slot``, allocated
        here on the calling thread. A bucket whose records' ends are searched on one thread has them
        searched there too (on a worker, when read ahead); else they are left to ``shuffle_bucket``."""
        fmt, workers = self.fmt, self.workers
        buf = None if buckets.mappable(j) else self._buffer(slot, room)

        def load() -> Loaded:
            view = buckets.map(j) if buf is None else buckets.read_into(j, buf)
            return view, find_offsets(view, fmt) if searched_whole(len(view), fmt, workers) else None

        return load

    def _free_buffer(self) -> int:
        """A read slot no job ahead is filling or holds."""
        busy = {a.slot for a in self._ahead.values()}
        return next(slot for slot in range(len(self._ahead) + 1) if slot not in busy)

    def _buffer(self, slot: int, room: int) -> np.ndarray:
        """Read buffer ``slot``, of at least ``room`` bytes (allocated once a level, then reused)."""
        if slot >= len(self._bufs):
            self._bufs.extend([None] * (slot + 1 - len(self._bufs)))
        buf = self._bufs[slot]
        if buf is None or len(buf) < room:
            buf = self._bufs[slot] = np.empty(room, np.uint8)
        return buf

    def release_buffers(self) -> None:
        ahead, self._ahead = self._ahead, {}
        for a in ahead.values():  # jobs ahead that will not be used: waited for, errors raised, let go
            settled(a.job)
        self._bufs = []

    def bucket_blocks(self, buckets: Buckets, j: int) -> tuple[Iterator[Any], Estimate]:
        assert isinstance(buckets, BucketSet)
        buckets.check_file(j)
        size, count = int(buckets.sizes[j]), int(buckets.records[j])
        sub = RecordReader([FileSource(buckets.path(j))], self.fmt, Progress())
        flagged = sub.blocks(plan.read_capacity(self.limit), option("memory"))
        blocks = closing((b for b, _final in flagged), flagged)
        return blocks, Estimate.of(size, size / count)


def _refuse_inputs_named_before(named: set[str], targets: list[str]) -> None:
    """Refuse a run whose inputs (``named``, real paths) were listed before a killed run's commit
    was finished among them: a file that commit put in place under a new name, in a directory
    they were listed from, is not among them (a shell's glob, a directory listed, both saw its
    temporary name), and the run would replace it unread. Its files elsewhere were not asked for."""
    real = [os.path.realpath(t) for t in targets]
    listed = {os.path.dirname(n) for n in named}  # a file elsewhere was never going to be among them
    missed = [t for t in real if t not in named and os.path.dirname(t) in listed]
    if missed and any(t in named for t in real):
        raise OutputError(
            f"{quote_name(missed[0])}: put in place just now by finishing or undoing a killed run's commit, after this run's "
            f"inputs were named, so it is not among them; nothing was read: run the command again"
        )
