"""The external shuffle's two passes, written once for every record format.

Pass 1 scatters each block of records into k buckets, every record's bucket drawn from the
block's own random stream; pass 2 shuffles each bucket in memory with the bucket's stream and
writes it, in bucket order. A bucket too big for memory is scattered again one level deeper
(the Rao/Sandelius recursion). ``-n`` stops at the bucket that reaches the count, so later
buckets are dropped while pass 1 still runs. A record format (lines, Arrow rows, tar samples,
Megatron documents) plugs in by subclassing ``TwoPass`` and filling in its hooks: how to make
buckets, scatter a block, shuffle a bucket that fits, and read a bucket back in blocks. Hooks
spread their work over the run's worker threads (``workers``), drawing from streams named below
the key they are given, so the output does not depend on how many there are.
"""

from __future__ import annotations

import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from ..errors import InputError
from ..progress import Progress, scatter_phase, shuffle_phase
from ..storage.layout import Sharding
from ..storage.output import Output
from ..storage.tempspace import TempSpace, default_tmp_dir, remove_dead_runs
from ..storage.threads import each
from ..storage.writeback import WriteBehind
from . import head, plan, streams
from .fingerprint import Fingerprint
from .level import Level
from .records import GATHERED
from .mix import SourceStats
from .checkpoint import FORMAT, advice, refusal, save_state
from .parallel import Workers
from .streams import Key

if TYPE_CHECKING:
    from ..request import Request
    from ..storage.sinks import CodecChoice


T = TypeVar("T")


def closing(items: Iterable[T], source: Generator[Any, None, None]) -> Generator[T, None, None]:
    """``items``, closing ``source`` (a reader holding files open) when they run out, fail or are
    abandoned: closed at once, not whenever the garbage collector finds a cycle's leftovers."""
    try:
        yield from items
    finally:
        source.close()


@dataclass(frozen=True)
class Estimate:
    """What pass 1 expects to scatter: bytes and records (None: unknown, plan from free space),
    and the mean record size the sample showed."""

    nbytes: int | None
    records: int | None
    per_record: float

    @classmethod
    def of(cls, nbytes: int | None, per_record: float) -> Estimate:
        """An estimate from a byte count and the mean record size (records rounded down)."""
        return cls(nbytes, None if nbytes is None else int(nbytes / per_record), per_record)


@dataclass(frozen=True)
class Sample:
    """What a format's first look at its input shows before a run (``--dry-run``): the estimate
    pass 1 would plan with, how it was made, and the path and temporary space it leads to.

    ``estimate`` is None when the input cannot be looked at without being consumed (standard
    input) or is generated; ``why`` then says so. ``exact``: the whole input was read, so the
    figures are counts. ``sized``: its size was known before reading (the run then checks the free
    temporary space before pass 1). ``temp_bytes``: the temporary space its buckets would take;
    ``sampled``: the bytes of records the mean record size (and so the count) was taken from.
    """

    estimate: Estimate | None
    sampled: int = 0
    exact: bool = False
    sized: bool = False
    in_memory: bool | None = None
    temp_bytes: int | None = None
    why: str = ""
    #: How an exact count was made, for ``--dry-run``'s records line.
    counted: str = "the whole input was read"
    #: Not ``exact``, but the record count is (Parquet and Arrow metadata): how it was made.
    records_counted: str = ""
    #: What the run would fail with, once it had read this much (a message with ``errors.option`` names).
    refusal: str = ""
    #: Weighted sources: each source's records and bytes where known without the run's counting pass
    #: (the sample read every input, or the files' metadata say their rows); else None.
    source_records: tuple[int, ...] | None = None
    source_bytes: tuple[int, ...] | None = None
    #: Weighted sources: each source's size as the run weighs its multiset without counts (None: unknown).
    source_sizes: tuple[int | None, ...] = ()


@dataclass(frozen=True)
class OutputPlan:
    """The arguments a run gives ``storage.shards.check_outputs``: they name its files."""

    target: str | None
    shards: int | None
    compress: CodecChoice | None
    suffix: str | None
    sharding: Sharding = Sharding()
    split: str | None = None
    manifest: str | None = None
    #: The format's own checks of its output files, beyond the names (a Megatron pair's ``.idx``).
    own_check: Callable[[], None] | None = None


def level_buckets(est: Estimate, limit: int, files: int = 1) -> int:
    """How many buckets (of ``files`` files each) one level needs: from the estimate, or
    ``plan.unsized_buckets`` when the size is unknown (the run and ``--dry-run`` both count them here)."""
    if est.nbytes is not None and est.records is not None:
        return plan.bucket_count(est.nbytes, est.records, limit, files=files)
    return plan.unsized_buckets(files)


class Buckets(Protocol):
    """One level's k temporary buckets, with the records and bytes pass 1 put in each."""

    k: int
    records: np.ndarray
    sizes: np.ndarray

    def close(self) -> None: ...

    def remove(self, j: int) -> None: ...

    def drop_after(self, last: int) -> None: ...


@runtime_checkable
class Resumable(Protocol):
    """Buckets that a ``--resume`` checkpoint can count on: synced, described and restored."""

    advice: str

    def sync(self) -> None: ...

    def state(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any], consumed: int, complete: bool) -> None: ...


class TwoPass(ABC):
    """One shuffle run: the output, the memory limit, the counts, and the passes over a format's hooks."""

    #: What the format calls a record, in messages.
    unit = "records"
    #: Files each bucket holds open while pass 1 writes it (the open-file limit caps the buckets).
    files_per_bucket = 1
    #: Bytes a record's hash takes beside ``--unique``'s hash buckets (a tar's identity is hashed
    #: again when its bucket is read: none), counted in the temporary space the dedup needs.
    hash_bytes = 8

    def __init__(
        self, entropy: int, limit: int, head_count: int | None, tmp_dir: str | None, progress: Progress, threads: int = 1,
        head_share: Fraction | None = None,
    ) -> None:
        self.entropy = entropy
        self.workers = Workers(threads)
        self.limit = limit
        self.head_count = head_count
        self.head_share = head_share  # -n P%: resolved into head_count once the records are counted
        self.tmp_dir = tmp_dir
        self.progress = progress
        self.records = 0  # written
        self.buckets = 0  # made, at every level
        self.depth = 0  # deepest level reached
        # Bucket files pass 1's top level holds open while it runs: a dedup level split meanwhile
        # (``--unique``, from the blocks pass 1 reads) makes fewer buckets, to stay within the open-file limit.
        self.held_files = 0
        self.duplicates = 0  # records ``--unique`` dropped
        self.extra_passes = 0  # passes over the data before the shuffle's (``--unique``'s dedup levels)
        self.read_fingerprint = Fingerprint()  # of the records read, when verifying
        # The input readers (generators holding files open), closed when the run ends however it
        # ends: left to the garbage collector, a failed run's files were closed late, with a warning.
        self.readers: list[Generator[Any, None, None]] = []
        #: Inputs read through a mapping while the records are shuffled, each checked unchanged
        #: (``check_unchanged``) before the output is committed.
        self.inputs_in_use: list[Any] = []
        self.out: Output
        self.writer: WriteBehind
        # --resume: the checkpoint being continued (empty: none), and the directory it lives in.
        self.resume_key: str | None = None
        self.state: dict[str, Any] = {}
        self.state_dir = ""
        self.input_ids: list[list[Any]] = []  # the inputs' identities, kept in the checkpoint
        self.input_records: list[int] | None = None  # each input's records as a counting pass saw them (None: not counted)
        self.resume_note = ""  # where a resumed run picks up, said once its files are checked

    # The format's hooks.

    @classmethod
    @abstractmethod
    def for_request(cls, request: Request, inputs: list[Any], entropy: int, progress: Progress) -> TwoPass:
        """The run of ``request`` over ``inputs`` (paths, or sources read through fsspec and the like),
        every input and output setting checked against the format before anything is read."""

    @classmethod
    @abstractmethod
    def sample(cls, request: Request, inputs: list[Any]) -> Sample:
        """``--dry-run``: the estimate the run of ``request`` would plan with, from the input's start,
        writing nothing and consuming no stream (``Sample.why`` says what it could not look at)."""

    @classmethod
    @abstractmethod
    def output_plan(cls, request: Request, inputs: list[Any]) -> OutputPlan:
        """``--dry-run``: the output's target, shard count, codec and shard suffix, as the run checks them."""

    @abstractmethod
    def prepare(self) -> None:
        """Check the output and take what the run needs before any input is read."""

    @abstractmethod
    def shuffle(self) -> None:
        """Read the input; shuffle it in memory, or call ``external`` with its blocks."""

    @abstractmethod
    def make_buckets(self, directory: str, k: int, top: bool) -> Buckets:
        """The k buckets of one level, in ``directory`` (``top``: the first level)."""

    @abstractmethod
    def scatter(self, block: Any, key: Key, buckets: Buckets, keep: int, depth: int) -> int:
        """Scatter one block's records into the first ``keep`` buckets, drawing from stream ``key``
        (and streams named below it); return ``keep`` after ``cutoff``."""

    @abstractmethod
    def shuffle_bucket(self, buckets: Buckets, j: int, key: Key, left: int | None, room: int) -> int:
        """Write bucket ``j`` (it fits in memory; ``room``: the largest such at this level) in random
        order drawn from stream ``key``, at most ``left`` records; return how many were written."""

    @abstractmethod
    def bucket_blocks(self, buckets: Buckets, j: int) -> tuple[Iterator[Any], Estimate]:
        """Bucket ``j``'s records in blocks, to scatter one level deeper, and what they hold."""

    def read_ahead(self, buckets: Buckets, j: int, room: int, key: Key, left: int | None) -> bool:
        """Bucket ``j`` fits in memory and is shuffled soon after the one about to be (``key`` and
        ``left`` as ``shuffle_bucket`` will be given them): a format may start loading it, or
        shuffling it, now, to overlap the two. True: the next such bucket may be started too."""
        return False

    def block_bytes(self, block: Any) -> int:
        """A block's size, for the progress of a deeper level."""
        return 0

    def release_buffers(self) -> None:
        """Let go of pass 2's read buffer (before a deeper level allocates its own)."""

    def free_needed(self, nbytes: int) -> int:
        """Temporary space ``nbytes`` of records take as buckets."""
        return nbytes

    def replay(self, block: Any, key: Key) -> None:
        """``--resume``: a top-level block scattered before the interruption, read again; a format
        whose draws run on from block to block (weighted sources' picks) draws its share again
        from stream ``key`` as ``scatter`` would, writing nothing."""

    def rereads_inputs(self) -> bool:
        """``--resume`` past pass 1: whether the inputs are read again (scattering nothing, see
        ``replay``), for what the output needs of them (a manifest's counts, weighted sources'
        draws), their bytes checked against the checkpoint's."""
        return False

    def records_read(self) -> list[list[Any]] | None:
        """``--resume``: ``[input, records]`` of each input pass 1 has read so far, kept in its
        checkpoints; a resumed run reading the same blocks again must count the same (None: not counted)."""
        return None

    def checkpoint_due(self, nbytes: int) -> bool:
        """``--resume``: whether pass 1 checkpoints after a block, ``nbytes`` scattered since its last
        checkpoint (every block, unless a format's blocks are small enough to batch)."""
        return True

    def finished(self) -> None:
        """The output is in place: remove what only a resumed run would have needed."""

    def release(self) -> None:
        """Give back what ``prepare`` took (the run ended either way)."""

    def source_stats(self) -> tuple[SourceStats, ...]:
        """Weighted sources: what the run did with each (none unless the format mixes sources)."""
        return ()

    # The driver.

    def run(self) -> tuple[int, int, int, int, float]:
        """Shuffle into the output and commit it, or leave no trace; return records and bytes
        written, buckets made, passes over the data and seconds."""
        start = time.perf_counter()
        GATHERED.hold_at_most(plan.piece_bytes(self.limit))
        try:
            self.prepare()
            self.out.note_start()
            # As an external run would: whatever is in memory, killed runs' leftovers under -T go.
            remove_dead_runs(self.tmp_dir or default_tmp_dir())
            if self.head_count != 0:
                self.shuffle()
            self.begin_output(0)
            for source in self.inputs_in_use:  # a mapped input is read until the shuffle ends: still as it was?
                source.check_unchanged()
            self.out.commit_checked(self.read_fingerprint)
            self.finished()
        except BaseException:
            self.out.abort()
            raise
        finally:  # each step even if a signal handler raises in one before it (the writer's thread was left)
            steps = [
                *(reader.close for reader in self.readers),
                self.workers.close,
                *(source.unmap for source in self.inputs_in_use),  # no worker reads a mapped input now
                GATHERED.clear,  # the run's gather buffers go with it
                self.writer.close,
                self.progress.close,
                self.release,
            ]
            try:
                each(steps)
            finally:  # again (each step does nothing the second time): a handler may raise as ``each`` begins
                each(steps)
        passes = (1 if self.buckets == 0 else 2 + self.depth) + self.extra_passes
        return self.records, self.out.bytes_written, self.buckets, passes, time.perf_counter() - start

    def begin_output(self, total: int, restore: dict[str, Any] | None = None) -> None:
        """Open the output once the input has been read and ``total`` records will be written
        (``restore``: where an interrupted ``--resume`` run left it)."""
        self.progress.close()
        self.out.begin(total, restore)

    def emit(self, records: Any) -> None:
        """Queue a chunk of shuffled records for the output, unless a page of a mapped input they
        were gathered from read as zeros (an output that is not renamed into place, such as
        standard output or ``-r``'s endless stream, would take them)."""
        for source in self.inputs_in_use:
            source.check_pages()
        self.out.emit(records)

    def count_read(self, total: int) -> None:
        """``total`` records have been read: ``-n P%`` becomes a count of them."""
        self.head_count = head.resolve(self.head_count, self.head_share, total)
        self.head_share = None

    def wanted(self, total: int) -> int:
        """Records written of ``total`` read: all, or ``-n``'s count (its share of ``total``)."""
        self.count_read(total)
        return total if self.head_count is None else min(total, self.head_count)

    def external(self, blocks: Iterator[Any], est: Estimate, temp: TempSpace, key: Key, depth: int, exact: bool = True) -> None:
        """Two-pass scatter over ``blocks``; buckets too big for memory recurse one level deeper.

        ``est`` sizes the buckets; only an ``exact`` size is held against free space.
        """
        plan.check_depth(depth, self.limit, self.unit)
        self.depth = max(self.depth, depth)
        k = self._bucket_count(est)
        if est.nbytes is not None and exact:
            share = head.temp_share(self.head_count, est.records, k, bool(self.state_dir)) if depth == 0 else 1.0
            temp.check_free(self.free_needed(int(est.nbytes * share)))
            # Every bucket's files, unless -n drops buckets as it goes or a resumed pass 1 made them already.
            if depth == 0 and share == 1.0 and "k" not in self.state:
                temp.check_files(k * self.files_per_bucket)
        if depth == 0 and "k" in self.state and self.state["k"] != k:
            if "pass1_done" not in self.state:
                made = int(self.state["k"])
                why = ""
                if plan.most_buckets(self.files_per_bucket) < made:  # the open files cap them now
                    why = f" (the open-file limit allows {k} now: raise it, ulimit -n, to resume)"
                elif made < k:  # capped then (the options, and so -S, are the job's own)
                    why = f" (a lower open-file limit when the job began, ulimit -n, would have made {made}: resume under it)"
                else:  # the same inputs and options planned otherwise: by another version's plan
                    why = " (another version of bigshuf planned it: finish the job with that version)"
                raise refusal(temp.path, f"made with {made} buckets, not {k}{why}")
            # Pass 1 is done: its buckets count, not this estimate of an input that the job's own
            # output has since replaced (``-o data.txt data.txt`` killed after its commit).
            k = int(self.state["k"])
        self.buckets += k
        buckets = self.make_buckets(os.path.join(temp.path, streams.name(key)), k, depth == 0)
        if depth:
            self.progress.start(scatter_phase(depth), est.nbytes)
        try:
            if depth == 0:
                self.held_files = k * self.files_per_bucket
            keep = self._pass1(blocks, buckets, key, depth)
            self.held_files = 0
            if depth == 0 and self.head_share is not None:
                # -n P%: the count is known now; the buckets past it are dropped before pass 2.
                self.count_read(int(buckets.records[:keep].sum()))
                keep = self.cutoff(buckets, keep)
            self.writer.flush()
            if depth == 0 and self.state_dir:
                self._resumable(buckets).sync()
            buckets.close()
            if depth == 0:
                if self.state_dir:
                    self.save_checkpoint(k=k, keep=keep, pass1_done=True, buckets=self._resumable(buckets).state())
                restore = self.state.get("output")  # with the records it counts written: the files must hold them
                restore = None if restore is None else {**restore, "written": self.state["records_out"]}
                self.begin_output(self.wanted(int(buckets.records[:keep].sum())), restore)
            self._pass2(buckets, keep, temp, key, depth)
        finally:
            self.writer.wait_idle()
            buckets.close()
            if isinstance(blocks, Generator):
                blocks.close()  # the reader's files, whatever ended the level

    @classmethod
    def dedup_buckets(cls, est: Estimate, limit: int, sources: int) -> int:
        """``--unique``'s hash buckets for an input of ``est`` (with ``sources`` weighted sources), as
        the format's dedup stage makes them before pass 1 (for ``--dry-run``)."""
        raise NotImplementedError

    def _bucket_count(self, est: Estimate) -> int:
        """How many buckets one level needs (see ``level_buckets``)."""
        return level_buckets(est, self.limit, self.files_per_bucket)

    def cutoff(self, buckets: Buckets, keep: int) -> int:
        """With ``-n``: drop the buckets past the one where the count is reached; return how many stay."""
        if self.head_count is None:
            return keep
        last = self.level(buckets).last(self.head_count)
        if last < keep - 1:
            buckets.drop_after(last)
            keep = last + 1
        return keep

    def level(self, buckets: Buckets) -> Level:
        """The level ``buckets`` make, as pass 1 has filled them so far."""
        return Level(buckets.records, buckets.sizes, self.limit)

    def _pass1(self, blocks: Iterator[Any], buckets: Buckets, key: Key, depth: int) -> int:
        """Scatter every block into ``buckets``; return how many leading buckets ``-n`` still needs."""
        keep = buckets.k
        checkpoints = depth == 0 and bool(self.state_dir)
        done = scattered = seen = saved = 0  # saved: bytes scattered as of the last checkpoint
        complete = False  # pass 1 was complete: its blocks are read again only to be counted
        if depth == 0 and "k" in self.state:
            keep = int(self.state["keep"])
            done, saved = self.state["blocks_done"], self.state["bytes_done"]
            complete = bool(self.state.get("pass1_done"))
            if complete and not self.rereads_inputs():
                return keep
            self.announce()
        for index, block in enumerate(blocks):
            seen = index + 1
            scattered += self.block_bytes(block)
            if index < done:
                if seen == done and scattered != self.state["bytes_done"]:
                    raise refusal(self.state_dir, f"counts {self.state['bytes_done']} bytes in {done} blocks, the inputs hold {scattered}")
                if seen == done:
                    self._check_records_read()
                self.replay(block, streams.scatter(key, index))
                continue  # scattered before the interruption
            if complete:
                raise refusal(self.state_dir, f"counts {done} blocks read, the inputs hold more")
            keep = self.scatter(block, streams.scatter(key, index), buckets, keep, depth)
            if depth:
                self.progress.update(self.block_bytes(block))
            if checkpoints and self.checkpoint_due(scattered - saved):
                saved = self._pass1_checkpoint(buckets, keep, index + 1, scattered)
        if seen < done:
            raise refusal(self.state_dir, f"counts {done} blocks read, the inputs hold {seen}")
        if checkpoints and scattered > saved:
            self._pass1_checkpoint(buckets, keep, seen, scattered)  # the blocks since the last, which were not due one
        return keep

    def _pass1_checkpoint(self, buckets: Buckets, keep: int, blocks: int, scattered: int) -> int:
        """Checkpoint pass 1 after ``blocks`` blocks (``scattered`` bytes), the buckets synced first; return ``scattered``."""
        self.writer.flush()
        resumable = self._resumable(buckets)
        resumable.sync()
        self.save_checkpoint(
            k=buckets.k, keep=keep, blocks_done=blocks, bytes_done=scattered, buckets=resumable.state(),
            records_read=self.records_read(),
        )
        return scattered

    def _check_records_read(self) -> None:
        """The blocks scattered before the interruption, read again: refuse an input whose records
        differ from what pass 1 counted in them (a separator added or removed, its bytes kept)."""
        then, now = self.state["records_read"], self.records_read()
        if now == then:
            return
        for (name, was), (_, holds) in zip(then or [], now or []):
            if was != holds:
                raise InputError(
                    f"{name}: changed since the interrupted run (its part read again holds {holds} records, "
                    f"the interrupted run read {was}); {advice(self.state_dir)}"
                )
        raise refusal(self.state_dir, f"counts records read of {len(then or [])} inputs, the inputs read again {len(now or [])}")

    def _pass2(self, buckets: Buckets, keep: int, temp: TempSpace, key: Key, depth: int) -> None:
        """Shuffle the first ``keep`` buckets in order, each in memory or one level deeper."""
        sizes, counts = buckets.sizes, buckets.records
        level = self.level(buckets)
        fits = [level.fits(j) for j in range(keep)]
        room, following = level.room(keep), level.following(keep)
        name = shuffle_phase(depth)
        self.progress.start(name, int(sizes[:keep].sum()))
        checkpoints = depth == 0 and bool(self.state_dir)
        done = 0
        if depth == 0:
            self.announce()
        if depth == 0 and "buckets_done" in self.state:
            done = self.state["buckets_done"]
            self.records = self.state["records_out"]
        for j in range(done, keep):
            left = None if self.head_count is None else self.head_count - self.records
            if left == 0:
                break
            size, count = int(sizes[j]), int(counts[j])
            if not count:
                continue
            if fits[j]:
                self._start_following(buckets, j, following, level.starts, room, key)
                self.records += self.shuffle_bucket(buckets, j, streams.bucket(key, j), left, room)
                self.progress.update(size)
            else:
                self.release_buffers()
                blocks, est = self.bucket_blocks(buckets, j)
                self.external(blocks, est, temp, streams.sublevel(key, j), depth + 1)
                self.progress.start(name, int(sizes[j + 1 : keep].sum()))
            if checkpoints:
                self.save_checkpoint(buckets_done=j + 1, records_out=self.records, output=self.out.checkpoint())
            self.writer.submit_job(partial(buckets.remove, j), 0)  # off the main thread, after the bucket's output
        self.release_buffers()

    def _start_following(
        self, buckets: Buckets, j: int, following: list[int | None], starts: np.ndarray, room: int, key: Key,
    ) -> None:
        """Offer the format the buckets shuffled in memory after bucket ``j``, in order, while it
        takes them (``read_ahead``) and ``-n`` still reaches them; each with the records ``-n``
        will leave it, all those of the buckets before it being written by then (``starts``: where
        each bucket starts in the level's output)."""
        b = following[j]
        while b is not None:
            before = self.records + int(starts[b] - starts[j])
            if self.head_count is not None and before >= self.head_count:
                return
            left = None if self.head_count is None else self.head_count - before
            if not self.read_ahead(buckets, b, room, streams.bucket(key, b), left):
                return
            b = following[b]

    # --resume: checkpoints of the top level, written here, loaded by the format's run.

    def _resumable(self, buckets: Buckets) -> Resumable:
        """``buckets`` as checkpointed buckets (only formats that support ``--resume`` get here)."""
        assert isinstance(buckets, Resumable), f"{type(buckets).__name__} cannot be checkpointed"
        return buckets

    def resume_buckets(self, buckets: Buckets) -> None:
        """Point a fresh top level's buckets at the checkpoint's advice, and refill them from it."""
        resumable = self._resumable(buckets)
        resumable.advice = advice(self.state_dir)
        if "k" in self.state:
            resumable.restore(self.state["buckets"], self.state.get("buckets_done", 0), "pass1_done" in self.state)

    def save_checkpoint(self, **changes: Any) -> None:
        """Write the checkpoint durably; the data it counts (buckets, output) is synced by the caller."""
        assert self.resume_key is not None
        self.state.update(
            changes, format=FORMAT, job=self.resume_key, inputs=self.input_ids, records=self.input_records,
            read_fingerprint=[self.read_fingerprint.records, self.read_fingerprint.bytes, self.read_fingerprint.digest],
        )
        save_state(self.state_dir, self.state)

    def announce(self) -> None:
        """Say where a resumed run picks up, once its files have passed their checks."""
        if self.resume_note:
            print(self.resume_note, file=sys.stderr)
            self.resume_note = ""
