"""A shuffle of lines (or NUL-terminated records, or groups of N lines) on the two-pass driver.

What is particular to lines: a lone plain file is mapped rather than read; the input's size
decides the path before anything is read when it is known; pieces of a block are scattered as
byte ranges; ``--resume`` checkpoints, ``--repeat`` and ``--header`` exist only here.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Generator, Iterator
from concurrent.futures import Future
from itertools import chain
from typing import Any

import numpy as np

from ..core import plan, streams
from ..core.driver import Buckets, Estimate, OutputPlan, Sample, TwoPass, closing
from ..core.fingerprint import Fingerprint, fingerprint
from ..core.gather import sample_with_replacement, shuffle_block
from ..core.resume import Job, JobLock, input_identity, load_state, validate_state
from ..core.scatter import BucketSet, Scattered, cut_pieces, scatter_records
from ..core.streams import Key, rng_for
from ..errors import InputError, UsageError, option
from ..progress import IN_MEMORY, Progress, scatter_phase
from ..storage.output import Output
from ..storage.shards import check_output_directory, shard_paths
from ..request import Request, resolve_memory
from ..storage.codecs import parse_compress
from ..storage.remote import is_remote
from ..storage.sinks import CodecChoice
from ..storage.sources import FileSource, GeneratedSource, RecordReader, Source, map_whole
from ..storage.tempspace import TempSpace, default_tmp_dir, remove_dead_outputs
from ..storage.writeback import WriteBehind
from .detect import line_shard_suffix, refuse_terminal
from ..core.records import RecordFormat, find_offsets, find_offsets_split


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


def _shard_suffix(sources: list[Source], shards: int | None, compress: CodecChoice | None) -> str | None:
    """The suffix of a ``--shards`` directory's files: the inputs' kind and codec when every input is a file."""
    paths = [s.path for s in sources if isinstance(s, FileSource)]
    return line_shard_suffix(paths, compress) if shards is not None and len(paths) == len(sources) else None


class LineRun(TwoPass):
    """One line shuffle: reads the sources, decides the path, owns the output and the temp space."""

    def __init__(self, request: Request, sources: list[Source], entropy: int, progress: Progress) -> None:
        super().__init__(
            entropy, resolve_memory(request.memory), request.head_count, request.tmp_dir, progress, request.workers
        )
        self.request = request
        self.sources = sources
        self.fmt = RecordFormat(0 if request.zero_terminated else 10, request.lines_per_record)
        self.compress = None if request.compress is None else parse_compress(request.compress)
        self.piece = plan.piece_bytes(self.limit)
        self.writer = WriteBehind(plan.IN_FLIGHT_PIECES * self.piece)
        self.out = Output(request.output, self.writer, shards=request.shards, compress=self.compress, sync=request.sync)
        self.out.verify = request.verify
        self.out.hashers = self.workers
        self.temp_ratio = 1.0  # compressed / raw size of temporary buckets (--compress-temp)
        # Pass 2's two read buffers: one holds the bucket being shuffled while the next bucket is
        # read ahead into the other (``_ahead``: bucket -> its buffer and the read).
        self._bufs: list[np.ndarray | None] = [None, None]
        self._ahead: dict[int, tuple[int, Future[np.ndarray]]] = {}
        self.resume_key = self._resume_key() if request.resume else None
        self.resume_space: TempSpace | None = None  # removed once the output is in place
        # Names the job lock, temp directory and output temp files of a --resume job.
        self.resume_name = None if self.resume_key is None else f"bigshuf-resume-{self.resume_key}"
        self.out.resume_tag = self.resume_name
        self.job_lock: JobLock | None = None
        if self.resume_name is not None:
            self.out.resume_dir = os.path.abspath(os.path.join(self.tmp_dir or default_tmp_dir(), self.resume_name))

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
        return Sample(
            est, sampled, exact=final, sized=total is not None, in_memory=in_memory,
            temp_bytes=None if est.nbytes is None else temp_bytes(est.nbytes, request.compress_temp, ratio),
            refusal=repeat_refusal(limit) if request.repeat and not in_memory else "",
        )

    @classmethod
    def output_plan(cls, request: Request, inputs: list[Any]) -> OutputPlan:
        """The output as ``prepare`` checks it: the codec ``--compress`` names and a shard directory's suffix."""
        compress = None if request.compress is None else parse_compress(request.compress)
        local = all(not isinstance(s, str) or not is_remote(s) for s in inputs)
        sources: list[Source] = [FileSource(s) if isinstance(s, str) else s for s in inputs]
        suffix = _shard_suffix(sources, request.shards, compress) if local else None
        return OutputPlan(request.output, request.shards, compress, suffix)

    def _resume_key(self) -> str:
        """Names a ``--resume`` job: the same inputs (by path), output, seed and settings give the same key."""
        from .. import __version__

        request = self.request
        assert request.output is not None  # Request.build refuses --resume without -o
        job = {
            "version": __version__,
            "inputs": [os.path.abspath(s.path) for s in self.sources if isinstance(s, FileSource)],
            "output": os.path.abspath(request.output),
            "settings": [
                self.limit, self.entropy, self.fmt.sep, self.fmt.group, request.head_count, request.repeat,
                request.header, request.shards, self.compress, request.compress_temp, request.verify,
            ],
        }
        return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()[:16]

    def prepare(self) -> None:
        if self.out.target in (None, "-") and self.compress is not None and self.compress[0] != "none":
            refuse_terminal(f"{self.compress[0]}-compressed data")
        paths = [s.path for s in self.sources if isinstance(s, FileSource)]
        self.out.shard_suffix = _shard_suffix(self.sources, self.request.shards, self.compress)
        check_output_directory(self.out.target, self.request.shards, self.compress, self.out.shard_suffix)
        if self.resume_name is not None:
            self._lock_job()
        for directory in dict.fromkeys(os.path.dirname(os.path.abspath(p)) for p in paths if p != "-"):
            remove_dead_outputs(directory)  # a commit a kill interrupted there is finished before reading

    def finished(self) -> None:
        if self.resume_space is not None:
            self.resume_space.discard()

    def release(self) -> None:
        if self.job_lock is not None:
            self.job_lock.release()

    def shuffle(self) -> None:
        sources = self.sources
        reader = RecordReader(sources, self.fmt, self.progress, self.request.header)
        total = reader.total_size()
        stored = reader.progress_total()
        small = total is not None and total + len(sources) <= plan.block_budget(self.limit)
        # A known size names the bar as the run will most likely go (renamed below if it goes the other
        # way); an unknown one (standard input, compressed files) only once the first block tells.
        phase: str | None = None
        if total is not None:
            phase = IN_MEMORY if small else scatter_phase(0)
            self.progress.start(phase, stored)
        else:
            reader.progress = Progress()  # counted in reader.progress_done, shown once the bar is named
        blocks, block, final = self._first_block(reader, total, small)
        self.out.header = reader.header
        if final:
            offsets = find_offsets_split(block, self.fmt, self.workers, plan.block_budget(self.limit) // plan.META_PER_RECORD)
            if offsets[-1] == len(block) and plan.fits_in_memory(len(block), len(offsets) - 1, self.limit):
                if phase != IN_MEMORY:
                    self._rename_phase(IN_MEMORY, stored, reader)
                self._in_memory(block, offsets)
                return
            del offsets
        if self.request.repeat:
            raise UsageError(repeat_refusal(self.limit))
        if phase != scatter_phase(0):
            self._rename_phase(scatter_phase(0), stored, reader)
        if blocks is None:
            # Mapped, but too many records to shuffle in one piece: stream it instead.
            blocks = reader.blocks(plan.read_capacity(self.limit), option("memory"))
            self.readers.append(blocks)
            block, final = next(blocks)
        per_record = mean_record_size(block, self.fmt, self.piece)
        if self.request.compress_temp:
            self.temp_ratio = compression_ratio(block[: self.piece])
        # Only the chain may keep the first block alive, so the read buffer is freed before pass 2.
        everything = (b for b, _final in chain([(block, final)], blocks))
        del block
        whole = reader.estimate_total() if total is None else total + len(sources)
        with TempSpace(self.tmp_dir, self.resume_name) as temp:
            if self.resume_name is not None:
                self.resume_space = temp
                self._load_checkpoint(temp.path, sources)
            self.external(everything, Estimate.of(whole, per_record), temp, streams.TOP, 0, exact=total is not None)

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

    def _in_memory(self, block: np.ndarray, offsets: np.ndarray) -> None:
        n = len(offsets) - 1
        held = len(block) + plan.META_PER_RECORD * n
        if self.request.repeat:
            if n == 0:
                raise InputError("no lines to repeat")
            count = self.head_count
            self.begin_output(count or 0)
            self.records += count or 0
            rng = rng_for(self.entropy, streams.IN_MEMORY)
            sample_with_replacement(block, offsets, rng, self.emit, self.workers, count=count, limit=self.limit, held=held)
            return
        self.begin_output(self.wanted(n))
        if self.request.verify:
            self.read_fingerprint += fingerprint(block, offsets)
        self.records += shuffle_block(
            block, offsets, self.entropy, streams.IN_MEMORY, self.emit, self.workers, head=self.head_count, limit=self.limit, held=held
        )

    # The driver's hooks.

    def free_needed(self, nbytes: int) -> int:
        return temp_bytes(nbytes, self.request.compress_temp, self.temp_ratio)

    def make_buckets(self, directory: str, k: int, top: bool) -> Buckets:
        resuming = top and "k" in self.state
        buckets = BucketSet(directory, k, self.writer, compress=self.request.compress_temp, fresh=not resuming)
        if top and self.state_dir:
            self.resume_buckets(buckets)
        return buckets

    def block_bytes(self, block: Any) -> int:
        return len(block)

    def scatter(self, block: Any, key: Key, buckets: Buckets, keep: int, depth: int) -> int:
        """The block's pieces are scattered on the workers, each from its own stream, and appended
        to the buckets in order; the pieces ahead take the memory the read buffer leaves."""
        assert isinstance(buckets, BucketSet)
        verify = self.request.verify and depth == 0
        most = plan.piece_records(self.limit)

        def scatter_one(p: int, lo: int, hi: int, keep: int) -> tuple[list[Scattered], Fingerprint | None]:
            """Piece ``p`` (``block[lo:hi]``) scattered, and its fingerprint when verifying."""
            piece = block[lo:hi]
            offsets = find_offsets(piece, self.fmt)
            rng = rng_for(self.entropy, streams.piece(key, p))
            return scatter_records(piece, offsets, rng, buckets.k, keep, most), fingerprint(piece, offsets) if verify else None

        jobs = (
            (lambda p=p, lo=lo, hi=hi, keep=keep: scatter_one(p, lo, hi, keep))
            for p, (lo, hi) in enumerate(cut_pieces(block, self.fmt, self.piece))
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

    # --resume

    def _lock_job(self) -> None:
        """Take the ``--resume`` job's lock, beside its output, before touching any of its files:
        a second run of the job (whatever its ``-T``) fails here, naming the run holding it."""
        assert self.resume_name is not None and self.out.target is not None
        first = self.out.target
        if self.request.shards is not None:
            first = shard_paths(self.out.target, self.request.shards, self.compress, self.out.shard_suffix)[0]
        first = os.path.realpath(first)
        lock = os.path.join(os.path.dirname(first), f".{os.path.basename(first)}.{self.resume_name}.lock")
        self.job_lock = JobLock(lock)
        self.job_lock.acquire(f"pid {os.getpid()}, checkpoint in {self.out.resume_dir}")

    def _load_checkpoint(self, directory: str, sources: list[Source]) -> None:
        """Pick up an interrupted ``--resume`` run's checkpoint, every field validated (see ``resume``);
        refuse it if an input changed or anything does not hold up."""
        self.state_dir = directory
        self.input_ids = input_identity([s.path for s in sources if isinstance(s, FileSource)])
        state = load_state(directory)
        if state is None:
            return
        assert self.resume_key is not None
        job = Job(
            self.resume_key, self.input_ids, self.request.verify, self.head_count, self.request.shards,
            self.request.compress_temp,
        )
        validate_state(state, job, directory)
        self.state = state
        self.read_fingerprint = Fingerprint(*state["read_fingerprint"])
        if "buckets_done" in state:
            where = f"pass 2 after {state['buckets_done']} of {state['keep']} buckets ({state['records_out']} records written)"
        elif "pass1_done" in state:
            where = "the start of pass 2 (pass 1 complete)"
        else:
            where = f"pass 1 after {state['blocks_done']} blocks ({plan.format_size(state['bytes_done'])} scattered)"
        self.resume_note = f"bigshuf: resuming from {directory}: {where}"

