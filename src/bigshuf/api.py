"""The library's functions (``shuffle``, ``shuffle_range``, ``check_permutation``), and the local line engine's run."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any

import numpy as np

from .core import plan, streams
from .core.streams import rng_for, seed_entropy
from .errors import InputError, TempSpaceError, UsageError, option
from .core.fingerprint import Fingerprint, fingerprint
from .core.gather import sample_with_replacement, shuffle_block
from .progress import IN_MEMORY, Progress, scatter_phase, shuffle_phase
from .formats.lines import RecordFormat, find_offsets
from .core.scatter import BucketSet, iter_pieces, scatter_piece
from .core.resume import FORMAT, Job, JobLock, advice, input_identity, load_state, refusal, save_state, validate_state
from .storage.sinks import CodecChoice, Output, check_output_directory, line_shard_suffix, shard_paths
from .engines.base import run_request
from .request import Request, _check_types, _integer, _memory_argument, _optional_integer, _optional_path, _path_list
from .request import ShuffleStats as ShuffleStats, resolve_memory as resolve_memory
from .storage.sources import FileSource, GeneratedSource, RangeSource, RecordReader, Source, map_whole
from .storage.tempspace import TempSpace, default_tmp_dir, remove_dead_outputs, remove_dead_runs
from .storage.threads import signals_held
from .storage.writeback import WriteBehind

if TYPE_CHECKING:
    import pyarrow as pa

    from .engines.dask import Runner

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Options:
    """Everything that shapes a run, resolved and validated."""

    memory: int
    entropy: int
    fmt: RecordFormat = RecordFormat()
    head_count: int | None = None
    repeat: bool = False
    tmp_dir: str | None = None
    header: int = 0
    shards: int | None = None
    compress: CodecChoice | None = None
    compress_temp: bool = False
    verify: bool = False
    resume_key: str | None = None


def shuffle(
    inputs: PathLike | Source | Sequence[PathLike | Source],
    output: PathLike | None = None,
    *,
    memory: int | str | None = None,
    seed: int | None = None,
    tmp_dir: PathLike | None = None,
    head_count: int | None = None,
    zero_terminated: bool = False,
    repeat: bool = False,
    random_source: PathLike | None = None,
    progress: Progress | None = None,
    header: int = 0,
    lines_per_record: int = 1,
    shards: int | None = None,
    compress: str | None = None,
    compress_temp: bool = False,
    verify: bool = False,
    resume: bool = False,
    row_group_size: int | None = None,
    schema: str | None = None,
    output_format: str | None = None,
    sync: bool = True,
    engine: str = "local",
    scheduler: str | Runner | None = None,
    temp_url: str | None = None,
) -> ShuffleStats:
    """Write the records of ``inputs`` to ``output`` in uniformly random order.

    ``inputs`` is one path or several (``-`` is stdin), read as one concatenated input;
    ``output`` a path written atomically, or None / ``-`` for stdout. ``memory`` bounds
    the working memory (bytes, or a size string like ``"256M"``, ``"25%"``); inputs that do
    not fit are shuffled externally with temporary files under ``tmp_dir``. The same inputs,
    seed and options (memory included) give the same output. ``head_count`` keeps the first
    COUNT records (a uniform sample); ``repeat`` samples with replacement.

    Inputs may be gzip, zstd, bzip2 or xz compressed (detected by their magic bytes).
    ``compress`` (``"zstd"``, ``"gzip:6"``, ``"none"``) overrides the codec implied by the
    output's suffix. ``shards=N`` writes N files (``output`` a directory or a pattern such as
    ``"out/part-{:05d}.jsonl.zst"``) that concatenated are one uniform shuffle. ``header=N``
    keeps the first input's first N records on top of every output file and drops the first N
    records of later inputs. ``lines_per_record=N`` shuffles groups of N lines (FASTQ: 4).
    ``compress_temp`` keeps the temporary buckets zstd-compressed. ``verify`` fingerprints
    the records read and the records written and fails, output not put in place, if they differ.
    ``resume`` checkpoints an external run (needs a ``seed``) so that the same call, after a
    crash, continues where it stopped and writes the same output.

    Parquet and Arrow IPC inputs (files, or directories of them) have their rows shuffled and
    are written as Parquet, Arrow or JSON Lines as ``output``'s suffix says (default: the input's
    format, or ``output_format``: ``"parquet"``, ``"arrow"``, ``"jsonl"``); ``row_group_size``
    sets the rows per Parquet row group (Arrow record batch). Line
    inputs with a ``.parquet`` or ``.arrow`` output are read as JSON Lines, their columns typed by
    ``schema`` (``"name:type,..."`` or a Parquet/Arrow file) or inferred from the first rows.
    ``sync=False`` skips the fsync of output files and their directories before and after the
    rename that puts them in place (faster; a machine crash may then lose the new output).

    ``engine="dask"`` runs the shuffle as Dask tasks (``pip install 'bigshuf[dask]'``): inputs and
    ``output`` may then be fsspec URLs; ``scheduler`` is the scheduler's address (default
    ``$DASK_SCHEDULER_ADDRESS``, else a cluster of processes on this machine) or a client or
    executor to submit the tasks to; ``temp_url`` where temporary objects go, reachable by every
    worker. Settings an engine cannot run are refused before anything starts.
    """
    _check_types(("progress",), Progress, (progress,), optional=True)
    request = Request.build(
        inputs, output, memory=memory, seed=seed, tmp_dir=tmp_dir, head_count=head_count,
        zero_terminated=zero_terminated, repeat=repeat, random_source=random_source, header=header,
        lines_per_record=lines_per_record, shards=shards, compress=compress, compress_temp=compress_temp,
        verify=verify, resume=resume, row_group_size=row_group_size, schema=schema, output_format=output_format,
        sync=sync, engine=engine, scheduler=scheduler, temp_url=temp_url,
    )
    return run_request(request, progress or Progress())


#: The largest number ``shuffle_range`` takes: GNU shuf's limit (SIZE_MAX) on 64-bit systems.
RANGE_MAX = 2**64 - 1

#: Above this, NumPy's default (int64) draws cannot reach the numbers; unsigned 64-bit draws can.
_INT64_MAX = 2**63 - 1


def shuffle_range(lo: int, hi: int, output: PathLike | None = None, **options: Any) -> ShuffleStats:
    """Shuffle the integers ``lo..hi`` (``-i LO-HI``, at most 0..2**64-1); takes ``shuffle``'s keyword options.

    With ``head_count`` (and ``repeat``, or a sample that fits in memory) the numbers are
    drawn directly, without listing the range: ``-i 1-18446744073709551615 -n 5`` is instant.
    A range that must be listed and can fit neither in memory nor in the free temporary
    space is refused at once.
    """
    lo, hi = _integer("lo", lo), _integer("hi", hi)
    if lo > hi + 1 or lo < 0 or hi > RANGE_MAX:
        raise UsageError(f"invalid input range: '{lo}-{hi}' (from 0 up to {RANGE_MAX}, lo at most hi + 1)")
    # The engine's refusals first (ranges run on the local engine), before the range is sized or drawn from.
    engine_settings = {k: v for k, v in options.items() if k in ("engine", "scheduler", "temp_url")}
    if engine_settings:
        Request.build(RangeSource(lo, hi, b"\n"), output, **engine_settings)
    head_count = _optional_integer("head_count", options.get("head_count"))
    repeat = options.get("repeat", False)
    _check_types(("repeat", "zero_terminated"), bool, (repeat, options.get("zero_terminated", False)), optional=False)
    limit = resolve_memory(_memory_argument(options.get("memory")))
    sep = b"\0" if options.get("zero_terminated") else b"\n"
    count = hi - lo + 1
    if repeat and count == 0:
        raise InputError("no lines to repeat")
    sampling = head_count is not None and (repeat or (head_count <= count // 2 and head_count * 16 <= limit))
    if not sampling:
        _check_range_fits(lo, hi, head_count, limit, options)
        return shuffle(RangeSource(lo, hi, sep), output, **options)
    assert head_count is not None
    entropy = seed_entropy(options.get("seed"), options.get("random_source"))
    rng = rng_for(entropy, streams.RANGE_DRAWS)
    # Ranges that reach past int64 draw unsigned 64-bit numbers; the others draw as they always
    # have, so their seeded outputs stay the same.
    wide = hi > _INT64_MAX
    chosen = None
    if not repeat:
        chosen = _distinct_draws(rng, lo, hi, head_count) if wide else rng.choice(count, size=head_count, replace=False) + lo

    def draws() -> Iterator[bytes]:
        for first in range(0, head_count, 1 << 20):
            size = min(1 << 20, head_count - first)
            if chosen is not None:
                values = chosen[first : first + size]
            elif wide:
                values = rng.integers(lo, hi, size, dtype=np.uint64, endpoint=True)
            else:
                values = rng.integers(lo, hi, size, endpoint=True)
            yield sep.join(b"%d" % v for v in values.tolist()) + sep

    # The draws are i.i.d. (or a uniform sample in random order), so shuffling them again,
    # through the same engine and options as any input, keeps the result uniform.
    rest = {k: v for k, v in options.items() if k not in ("head_count", "repeat", "random_source", "seed")}
    return shuffle(GeneratedSource(f"{lo}-{hi}", draws), output, seed=entropy, **rest)


def _distinct_draws(rng: np.random.Generator, lo: int, hi: int, n: int) -> np.ndarray:
    """``n`` distinct numbers of ``lo..hi`` (``n`` at most half of them) in uniformly random order.

    Each number's first appearance in a stream of uniform draws is a uniform pick among those
    not yet picked, so keeping first appearances, drawing again for the repeats, is an exact
    sample without replacement, in random order, for ranges too wide for ``Generator.choice``.
    """
    chosen = np.empty(0, np.uint64)
    while len(chosen) < n:
        drawn = np.concatenate([chosen, rng.integers(lo, hi, n - len(chosen), dtype=np.uint64, endpoint=True)])
        _, first = np.unique(drawn, return_index=True)
        chosen = drawn[np.sort(first)]
    return chosen


def _range_bytes(lo: int, hi: int) -> int:
    """Bytes of the numbers ``lo..hi`` written in decimal, each with its separator."""
    total, digits = 0, 1
    while 10 ** (digits - 1) <= hi or digits == 1:
        first, last = max(lo, 10 ** (digits - 1) if digits > 1 else 0), min(hi, 10**digits - 1)
        total += max(0, last - first + 1) * (digits + 1)
        digits += 1
    return total


def _check_range_fits(lo: int, hi: int, head_count: int | None, limit: int, options: dict[str, Any]) -> None:
    """Refuse at once a range that must be listed and fits neither in memory nor in the temp space.

    Listing ``-i 1-18446744073709551615`` would otherwise run for ever (GNU shuf runs out of
    memory at once). The space asked for is a lower bound: the part of the range that a
    ``head_count`` keeps, at one bit per number with ``compress_temp``.
    """
    count = hi - lo + 1
    nbytes = _range_bytes(lo, hi)
    if plan.fits_in_memory(nbytes, count, limit):
        return
    kept = count if head_count is None else min(count, head_count)
    need = kept // 8 if options.get("compress_temp") else nbytes * kept // count
    from .storage.tempspace import default_tmp_dir

    parent = _optional_path("tmp_dir", options.get("tmp_dir")) or default_tmp_dir()
    try:
        free = shutil.disk_usage(parent).free
    except OSError:
        return  # the run itself says what is wrong with the directory
    if need > free:
        raise TempSpaceError(
            f"{parent}: not enough temporary space for the {count} numbers of {lo}-{hi}: need at least "
            f"{plan.format_size(need)} (they do not fit in memory, {plan.format_size(limit)}), "
            f"{plan.format_size(free)} free; take a sample with {option('head_count')} or choose another directory with {option('tmp_dir')}"
        )


def _compression_ratio(sample: np.ndarray) -> float:
    """Compressed over raw size of ``sample`` with the temporary buckets' codec (zstd level 1)."""
    if not len(sample):
        return 1.0
    import zstandard

    return len(zstandard.ZstdCompressor(level=1).compress(sample.data)) / len(sample)


def check_permutation(
    inputs: PathLike | Sequence[PathLike],
    outputs: PathLike | Sequence[PathLike],
    *,
    memory: int | str | None = None,
    zero_terminated: bool = False,
    lines_per_record: int = 1,
    header: int = 0,
) -> tuple[Fingerprint, Fingerprint]:
    """Fingerprints of the records of ``inputs`` and of ``outputs`` (each a path or a list of
    paths); equal when the outputs hold exactly the inputs' records, in any order and split
    over any number of files.

    Compressed files are read as such; ``header`` records are set aside as ``shuffle`` does
    (no file's first ``header`` records are counted).
    """
    from .formats.detect import expand_directories, is_table_input

    inputs = expand_directories(_path_list("inputs", inputs))
    outputs = expand_directories(_path_list("outputs", outputs))
    memory = _memory_argument(memory)
    _check_types(("zero_terminated",), bool, (zero_terminated,), optional=False)
    lines_per_record, header = _integer("lines_per_record", lines_per_record), _integer("header", header)
    if lines_per_record < 1 or header < 0:
        raise UsageError(f"lines_per_record must be at least 1 and header at least 0, not {lines_per_record} and {header}")
    for path in [*inputs, *outputs]:
        if is_table_input(os.fspath(path)):
            raise UsageError(f"{os.fspath(path)}: {option('check_permutation')} compares lines; shuffle tables with {option('verify')} instead")
    fmt = RecordFormat(0 if zero_terminated else 10, lines_per_record)
    capacity = plan.read_capacity(resolve_memory(memory))

    def total(paths: Sequence[PathLike]) -> Fingerprint:
        fp = Fingerprint()
        for path in paths:
            reader = RecordReader([FileSource(path)], fmt, Progress(), header)
            for block, _final in reader.blocks(capacity, option("memory")):
                fp += fingerprint(block, find_offsets(block, fmt))
        return fp

    # The two sides on two threads: NumPy releases the GIL, so a 2-core machine does both at once.
    with ThreadPoolExecutor(2) as pool:
        with signals_held():  # the pool's threads leave Ctrl-C to the main thread
            got_in, got_out = pool.submit(total, inputs), pool.submit(total, outputs)
        return got_in.result(), got_out.result()


class Run:
    """One shuffle: reads the sources, decides the path, owns the output and the temp space."""

    def __init__(self, opts: Options, output: PathLike | None, progress: Progress, sync: bool = True) -> None:
        self.opts = opts
        self.progress = progress
        self.records = 0
        self.buckets = 0
        self.depth = 0
        self.limit = opts.memory
        self.piece = plan.piece_bytes(self.limit)
        self.writer = WriteBehind(plan.IN_FLIGHT_PIECES * self.piece)
        self.out = Output(output, self.writer, shards=opts.shards, compress=opts.compress, sync=sync)
        self.temp_ratio = 1.0  # compressed / raw size of temporary buckets (--compress-temp)
        self.out.verify = opts.verify
        self.read_fingerprint = Fingerprint()  # of the records read, when verifying
        # --resume: the checkpoint being continued, and the file it lives in.
        self.state: dict[str, Any] = {}
        self.state_dir = ""
        self.inputs: list[list[Any]] = []
        self.resume_space: TempSpace | None = None  # removed once the output is in place
        self.resume_note = ""  # where a resumed run picks up, said once its files are checked
        # Names the job lock, temp directory and output temp files of a --resume job.
        self.resume_name = None if opts.resume_key is None else f"bigshuf-resume-{opts.resume_key}"
        self.out.resume_tag = self.resume_name
        self.job_lock: JobLock | None = None
        if self.resume_name is not None:
            self.out.resume_dir = os.path.abspath(os.path.join(opts.tmp_dir or default_tmp_dir(), self.resume_name))

    def begin_output(self, total: int, restore: dict[str, Any] | None = None) -> None:
        """Open the output once the input has been read and ``total`` records will be written
        (``restore``: where an interrupted ``--resume`` run left it)."""
        self.progress.close()
        self.out.begin(total, restore)

    def emit(self, records: pa.Array) -> None:
        """Queue a chunk of shuffled records for the output."""
        self.out.emit(records)

    def run(self, sources: list[Source]) -> ShuffleStats:
        """Shuffle ``sources`` into the output and commit it, or leave no trace on failure."""
        start = time.perf_counter()
        try:
            paths = [s.path for s in sources if isinstance(s, FileSource)]
            if self.opts.shards is not None and len(paths) == len(sources):
                self.out.shard_suffix = line_shard_suffix(paths, self.opts.compress)
            check_output_directory(self.out.target, self.opts.shards, self.opts.compress, self.out.shard_suffix)
            if self.resume_name is not None:
                self._lock_job()
            for directory in dict.fromkeys(os.path.dirname(os.path.abspath(p)) for p in paths if p != "-"):
                remove_dead_outputs(directory)  # a commit a kill interrupted there is finished before reading
            # As an external run would: whatever is in memory, killed runs' leftovers under -T go.
            remove_dead_runs(self.opts.tmp_dir or default_tmp_dir())
            if self.opts.head_count != 0:
                self._shuffle(sources)
            self.begin_output(0)
            self.out.commit_checked(self.read_fingerprint)
            if self.resume_space is not None:
                self.resume_space.discard()
        except BaseException:
            self.out.abort()
            raise
        finally:
            self.writer.close()
            self.progress.close()
            if self.job_lock is not None:
                self.job_lock.release()
        passes = 1 if self.buckets == 0 else 2 + self.depth
        return ShuffleStats(self.records, self.out.bytes_written, self.buckets, passes, time.perf_counter() - start)

    def _shuffle(self, sources: list[Source]) -> None:
        reader = RecordReader(sources, self.opts.fmt, self.progress, self.opts.header)
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
        blocks: Iterator[tuple[np.ndarray, bool]] | None = None
        block: np.ndarray | None = None
        if total is not None and small:
            # Small enough to try in memory: map a lone plain file, else read it all.
            if not self.opts.header and self.opts.fmt.group == 1:
                block = map_whole(sources, self.opts.fmt.sep)
            if block is not None:
                final = True
                self.progress.update(len(block))
            else:
                blocks = reader.blocks(total + len(sources) + 1, option("memory"))
                block, final = next(blocks)
        else:
            blocks = reader.blocks(plan.read_capacity(self.limit), option("memory"))
            block, final = next(blocks)
        self.out.header = reader.header
        if final:
            offsets = find_offsets(block, self.opts.fmt, plan.block_budget(self.limit) // plan.META_PER_RECORD)
            if offsets[-1] == len(block) and plan.fits_in_memory(len(block), len(offsets) - 1, self.limit):
                if phase != IN_MEMORY:
                    self._rename_phase(IN_MEMORY, stored, reader)
                self._in_memory(block, offsets)
                return
            del offsets
        if self.opts.repeat:
            raise UsageError(
                f"{option('repeat')} needs the input in memory, and it does not fit in {plan.format_size(self.limit)}; "
                f"raise {option('memory')}"
            )
        if phase != scatter_phase(0):
            self._rename_phase(scatter_phase(0), stored, reader)
        if blocks is None:
            # Mapped, but too many records to shuffle in one piece: stream it instead.
            blocks = reader.blocks(plan.read_capacity(self.limit), option("memory"))
            block, final = next(blocks)
        sample = find_offsets(block[: self.piece], self.opts.fmt)
        per_record = int(sample[-1]) / max(1, len(sample) - 1) if len(sample) > 1 else float(len(block))
        if self.opts.compress_temp:
            self.temp_ratio = _compression_ratio(block[: self.piece])
        # Only the chain may keep the first block alive, so the read buffer is freed before pass 2.
        everything = chain([(block, final)], blocks)
        del block
        whole = reader.estimate_total() if total is None else total + len(sources)
        with TempSpace(self.opts.tmp_dir, self.resume_name) as temp:
            if self.resume_name is not None:
                self.resume_space = temp
                self._load_checkpoint(temp.path, sources)
            self._external(everything, whole, per_record, temp, streams.TOP, 0, exact=total is not None)

    def _rename_phase(self, name: str, total: int | None, reader: RecordReader) -> None:
        """Go on with the input's bar under ``name`` (the run took the other path, or it was not named
        yet), as far as ``reader`` has read, and let the reader report to it from there."""
        self.progress.start(name, total)
        self.progress.update(reader.progress_done)
        reader.progress = self.progress

    def _lock_job(self) -> None:
        """Take the ``--resume`` job's lock, beside its output, before touching any of its files:
        a second run of the job (whatever its ``-T``) fails here, naming the run holding it."""
        assert self.resume_name is not None and self.out.target is not None
        first = self.out.target
        if self.opts.shards is not None:
            first = shard_paths(self.out.target, self.opts.shards, self.opts.compress, self.out.shard_suffix)[0]
        first = os.path.realpath(first)
        lock = os.path.join(os.path.dirname(first), f".{os.path.basename(first)}.{self.resume_name}.lock")
        self.job_lock = JobLock(lock)
        self.job_lock.acquire(f"pid {os.getpid()}, checkpoint in {self.out.resume_dir}")

    def _load_checkpoint(self, directory: str, sources: list[Source]) -> None:
        """Pick up an interrupted ``--resume`` run's checkpoint, every field validated (see ``resume``);
        refuse it if an input changed or anything does not hold up."""
        self.state_dir = directory
        self.inputs = input_identity([s.path for s in sources if isinstance(s, FileSource)])
        state = load_state(directory)
        if state is None:
            return
        assert self.opts.resume_key is not None
        job = Job(
            self.opts.resume_key, self.inputs, self.opts.verify, self.opts.head_count, self.opts.shards,
            self.opts.compress_temp,
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

    def _announce(self) -> None:
        """Say where a resumed run picks up, once its files have passed their checks."""
        if self.resume_note:
            print(self.resume_note, file=sys.stderr)
            self.resume_note = ""

    def _save_checkpoint(self, **changes: Any) -> None:
        """Write the checkpoint durably; the data it counts (buckets, output) is synced by the caller."""
        assert self.opts.resume_key is not None
        self.state.update(
            changes, format=FORMAT, job=self.opts.resume_key, inputs=self.inputs,
            read_fingerprint=list(astuple(self.read_fingerprint)),
        )
        save_state(self.state_dir, self.state)

    def _in_memory(self, block: np.ndarray, offsets: np.ndarray) -> None:
        rng = rng_for(self.opts.entropy, streams.IN_MEMORY)
        n = len(offsets) - 1
        if self.opts.repeat:
            if n == 0:
                raise InputError("no lines to repeat")
            count = self.opts.head_count
            self.begin_output(count or 0)
            self.records += count or 0
            sample_with_replacement(block, offsets, rng, self.emit, count=count, chunk_bytes=self.piece)
            return
        self.begin_output(n if self.opts.head_count is None else min(n, self.opts.head_count))
        if self.opts.verify:
            self.read_fingerprint += fingerprint(block, offsets)
        self.records += shuffle_block(block, offsets, rng, self.emit, head=self.opts.head_count, chunk_bytes=self.piece)

    def _external(
        self,
        blocks: Iterator[tuple[np.ndarray, bool]],
        est_bytes: int | None,
        per_record: float,
        temp: TempSpace,
        key: tuple[int, ...],
        depth: int,
        exact: bool = True,
    ) -> None:
        """Two-pass scatter over ``blocks``; buckets too big for memory recurse one level deeper.

        ``est_bytes`` sizes the buckets; only an ``exact`` size is held against free space.
        """
        if depth > plan.MAX_DEPTH:
            raise InputError(
                f"records could not be split below {plan.format_size(self.limit)} after {depth} passes; raise {option('memory')}"
            )
        self.depth = max(self.depth, depth)
        if est_bytes is not None and exact:
            # 10% spare for compressed buckets: the sample's ratio may flatter the rest.
            temp.check_free(est_bytes if not self.opts.compress_temp else int(est_bytes * min(1.0, self.temp_ratio * 1.1)))
        if est_bytes is not None:
            k = plan.bucket_count(est_bytes, int(est_bytes / per_record), self.limit)
        else:
            free = shutil.disk_usage(temp.path).free
            k = plan.bucket_count(free, int(free / per_record), self.limit, max_buckets=1024)
        self.buckets += k
        directory = os.path.join(temp.path, streams.name(key))
        resuming = depth == 0 and "k" in self.state
        if resuming and self.state["k"] != k:
            raise refusal(temp.path, f"made with {self.state['k']} buckets, not {k}")
        buckets = BucketSet(directory, k, self.writer, compress=self.opts.compress_temp, fresh=not resuming)
        if depth == 0 and self.state_dir:
            buckets.advice = advice(self.state_dir)
        if resuming:
            buckets.restore(self.state["buckets"], self.state.get("buckets_done", 0), "pass1_done" in self.state)
        if depth:
            self.progress.start(scatter_phase(depth), est_bytes)
        try:
            keep = self._pass1(blocks, buckets, key, depth)
            self.writer.flush()
            if depth == 0 and self.state_dir:
                buckets.sync()
            buckets.close()
            if depth == 0:
                if self.state_dir:
                    self._save_checkpoint(k=k, keep=keep, pass1_done=True, buckets=buckets.state())
                total = int(buckets.records[:keep].sum())
                self.begin_output(
                    total if self.opts.head_count is None else min(total, self.opts.head_count),
                    self.state.get("output"),
                )
            self._pass2(buckets, keep, temp, key, depth)
        finally:
            self.writer.wait_idle()
            buckets.close()

    def _pass1(
        self, blocks: Iterator[tuple[np.ndarray, bool]], buckets: BucketSet, key: tuple[int, ...], depth: int
    ) -> int:
        """Scatter every block into ``buckets``; return how many leading buckets ``-n`` still needs."""
        keep = buckets.k
        head = self.opts.head_count
        checkpoints = depth == 0 and bool(self.state_dir)
        done = scattered = seen = 0
        if depth == 0 and self.state:
            keep = int(self.state["keep"])
            done = self.state["blocks_done"]
            if self.state.get("pass1_done"):
                return keep
            self._announce()
        for index, (block, _final) in enumerate(blocks):
            seen = index + 1
            scattered += len(block)
            if index < done:
                if seen == done and scattered != self.state["bytes_done"]:
                    raise refusal(self.state_dir, f"counts {self.state['bytes_done']} bytes in {done} blocks, the inputs hold {scattered}")
                continue  # scattered before the interruption
            rng = rng_for(self.opts.entropy, streams.scatter(key, index))
            for piece, offsets in iter_pieces(block, self.opts.fmt, self.piece, plan.piece_records(self.limit)):
                if self.opts.verify and depth == 0:
                    self.read_fingerprint += fingerprint(piece, offsets)
                buckets.append(scatter_piece(piece, offsets, rng, buckets.k, keep))
                if head is not None:
                    last = int(np.searchsorted(np.cumsum(buckets.records), head))
                    if last < keep - 1:
                        buckets.drop_after(last)
                        keep = last + 1
            if depth:
                self.progress.update(len(block))
            if checkpoints:
                self.writer.flush()
                buckets.sync()
                self._save_checkpoint(
                    k=buckets.k, keep=keep, blocks_done=index + 1, bytes_done=scattered, buckets=buckets.state()
                )
        if seen < done:
            raise refusal(self.state_dir, f"counts {done} blocks read, the inputs hold {seen}")
        return keep

    def _pass2(self, buckets: BucketSet, keep: int, temp: TempSpace, key: tuple[int, ...], depth: int) -> None:
        fitting = [
            int(buckets.sizes[j]) for j in range(keep)
            if plan.fits_in_memory(int(buckets.sizes[j]), int(buckets.records[j]), self.limit)
        ]
        buf: np.ndarray | None = None
        name = shuffle_phase(depth)
        self.progress.start(name, int(buckets.sizes[:keep].sum()))
        checkpoints = depth == 0 and bool(self.state_dir)
        done = 0
        if depth == 0:
            self._announce()
        if depth == 0 and "buckets_done" in self.state:
            done = self.state["buckets_done"]
            self.records = self.state["records_out"]
        for j in range(keep):
            if j < done:
                continue  # output before the interruption
            left = None if self.opts.head_count is None else self.opts.head_count - self.records
            if left == 0:
                break
            size, count = int(buckets.sizes[j]), int(buckets.records[j])
            if not count:
                continue
            if plan.fits_in_memory(size, count, self.limit):
                if buf is None:
                    buf = np.empty(max(fitting), np.uint8)
                view = buckets.read_into(j, buf)
                offsets = find_offsets(view, self.opts.fmt)
                rng = rng_for(self.opts.entropy, streams.bucket(key, j))
                self.records += shuffle_block(view, offsets, rng, self.emit, head=left, chunk_bytes=self.piece)
                del view, offsets
                self.progress.update(size)
            else:
                buf = None
                buckets.check_file(j)
                sub = RecordReader([FileSource(buckets.path(j))], self.opts.fmt, Progress())
                self._external(
                    sub.blocks(plan.read_capacity(self.limit), option("memory")), size, size / count, temp, streams.sublevel(key, j), depth + 1
                )
                self.progress.start(name, int(buckets.sizes[j + 1 : keep].sum()))
            if checkpoints:
                self._save_checkpoint(buckets_done=j + 1, records_out=self.records, output=self.out.checkpoint())
            buckets.remove(j)
