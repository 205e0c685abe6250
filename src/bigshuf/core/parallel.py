"""Worker threads for a run: jobs run at once, their results taken back in the order they were given.

NumPy and Arrow release the GIL, so threads use every core without copying data between
processes. Results come back in submission order, and every random draw is named by what it
is for (``streams``), so the output never depends on how many workers there are.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from ..storage.threads import deferred_signals, signals_held

T = TypeVar("T")

#: Work on fewer bytes than this runs in the calling thread: handing it to a worker costs more
#: (a GIL hand-off each way: runs of a few hundred bytes took 25 ms instead of 19).
INLINE_BELOW = 1 << 20


def default_threads() -> int:
    """The cores this process may run on (its CPU affinity), as ``-j``'s default."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class Workers:
    """``n`` threads (none for ``n == 1``: jobs then run in the caller, one at a time)."""

    def __init__(self, n: int) -> None:
        self.n = max(1, n)
        self._pool: ThreadPoolExecutor | None = None

    def ordered(
        self, jobs: Iterable[Callable[[], T]], ahead: int | None = None, started: Iterable[Future[T]] = ()
    ) -> Iterator[T]:
        """Run ``jobs`` on the workers, at most ``ahead`` (default: one per worker) at once, and
        yield their results in the jobs' order, after those of the jobs already ``started``
        (``submit``). Jobs are taken from ``jobs`` only as room frees, so a lazy iterable keeps
        memory bounded; an abandoned or failed map waits for the jobs already running, so none
        outlives the data it reads."""
        limit = self.most_ahead(self.n if ahead is None else ahead)
        pending: deque[Future[T]] = deque(started)
        try:
            if limit == 1:
                while pending:
                    yield settled(pending.popleft())
                for job in jobs:
                    yield job()
                return
            pool = self._start()
            for job in jobs:
                while len(pending) >= limit:  # room first: jobs already started may fill it
                    yield settled(pending.popleft())
                with signals_held(), deferred_signals():  # see ``submit``
                    pending.append(pool.submit(job))
            while pending:
                yield settled(pending.popleft())
        finally:
            for future in pending:
                future.cancel()
            for future in pending:
                if not future.cancelled():
                    with deferred_signals():  # (see ``settled``)
                        future.exception()  # wait; the first error was raised already, or the map was abandoned

    def most_ahead(self, ahead: int) -> int:
        """How many jobs ``ordered(..., ahead)`` keeps running at once."""
        return max(1, min(ahead, self.n))

    def sized(self, nbytes: int) -> Workers:
        """The workers to use for ``nbytes`` of work: these, or none (the caller's thread) below ``INLINE_BELOW``."""
        return self if nbytes >= INLINE_BELOW else INLINE

    def submit(self, job: Callable[[], T]) -> Future[T]:
        """Run ``job`` on a worker; its result (or error) is the future's."""
        pool = self._start()
        # A thread the pool starts for it leaves Ctrl-C to the main thread; and no handler raises
        # inside the pool's locks, which it would leave taken (the next submit waited for ever).
        with signals_held(), deferred_signals():
            return pool.submit(job)

    def map(self, fn: Callable[[int], T], count: int) -> list[T]:
        """``[fn(0), ..., fn(count - 1)]``, run on the workers."""
        return list(self.ordered((lambda i=i: fn(i)) for i in range(count)))  # type: ignore[misc]

    def _start(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.n, thread_name_prefix="bigshuf-worker")
        return self._pool

    def close(self) -> None:
        """Stop the threads (after the jobs already given)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def settled(future: Future[T]) -> T:
    """``future.result()``, waited for with signals held. ``Future`` takes its condition's lock in
    Python code: a handler raising just after the lock was taken left it taken, and the worker
    ending the job waited for it for ever (as did the run's clean-up, joining the worker). A job is
    a piece's work: Ctrl-C waits for it at most."""
    with deferred_signals():
        return future.result()


#: No worker threads: every job runs in the caller.
INLINE = Workers(1)

#: glibc's ``mallopt`` parameter for the most heaps (arenas) its threads may spread over.
M_ARENA_MAX = -8


def share_one_heap() -> None:
    """On glibc, have threads that start from now on allocate from the one main heap. By default
    each thread gets a heap of its own, which keeps what another thread frees from it; where the
    workers allocate what the writing thread frees (``--compress-temp``'s frames) peak memory then
    grew with ``-j``. No effect elsewhere, nor once glibc has fixed its count of heaps."""
    import ctypes

    try:  # glibc names itself here; platform.libc_ver() would scan the interpreter's binary (17 ms)
        glibc = (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):
        glibc = False
    if not glibc:
        return
    try:
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1)
    except (OSError, AttributeError):
        return
