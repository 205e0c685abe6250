"""Write-behind: disk writes run on one background thread so they overlap NumPy and Arrow work.

Writes into a fresh page cache cost the kernel about as much time as the shuffle's own
computing on these machines (3.7 s of 7.5 s for an external run over 1 GiB of short lines),
and both NumPy/Arrow kernels and file writes release the GIL, so the two can run at once.
Jobs run in submission order; an error is raised in the caller at its next call. A small write
submitted while nothing is queued runs in the caller: handing it over costs more than writing it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from .threads import deferred_signals, signals_held

Write = Callable[[memoryview], object]
Job = Callable[[], object]

#: Writes of fewer bytes than this run in the submitting thread when no job is queued or running:
#: the thread's wake-up and the GIL's hand-off each way cost more (a run over a 1 KB file made
#: ~2,900 of them, 1.1 s of 4.3 s per 100 runs).
WRITE_INLINE_BELOW = 64 << 10


#: Set by the command line as its process ends on a signal, cleared as its ``main`` returns: queued
#: writes are dropped and no one waits for the one under way, which a pipe nobody reads would hold
#: for ever (GNU shuf dies at once; bigshuf waited until the reader went away).
ENDING = threading.Event()


class WriteBehind:
    """A FIFO of pending writes, at most ``max_bytes`` in flight, drained by one thread.

    Waiting for the queue to drain uses a barrier job rather than the byte count, so a
    signal arriving mid-``submit`` (Ctrl-C, SIGTERM) cannot leave a waiter hanging.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._queue: queue.SimpleQueue[tuple[Job | threading.Event, int] | None] = queue.SimpleQueue()
        # Taken as the lock itself (``with self._lock``): its enter and exit are C calls no signal
        # handler can run inside. A ``Condition``'s are Python code, where a handler raising as the lock
        # was taken or before it was let go left it taken, and the writer thread waited for ever.
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._inflight = 0
        self._jobs = 0  # queued or running
        self._error: BaseException | None = None
        # Started with the first job it is handed: a run refused before it writes (or whose few
        # small writes all run inline) leaves no thread behind and starts none.
        self._thread = threading.Thread(target=self._drain, name="bigshuf-writer", daemon=True)

    def submit(self, write: Write, data: memoryview) -> None:
        """Queue ``write(data)`` (made now if it is small and nothing is queued); blocks while too
        many bytes are pending."""
        self.submit_job(lambda: write(data), len(data), may_inline=True)

    def submit_job(self, job: Job, size: int, may_inline: bool = False) -> None:
        """Queue ``job()``, which holds ``size`` bytes until it has run; blocks while too many are
        pending. A job that ``may_inline`` (a write) of under ``WRITE_INLINE_BELOW`` bytes runs now if nothing is queued."""
        with self._lock:
            while self._inflight > 0 and self._inflight + size > self.max_bytes and self._error is None:
                self._cond.wait()
            self._raise_pending()
            if may_inline and size < WRITE_INLINE_BELOW and not self._jobs:
                try:  # holding the lock: other submitters wait until it is done, as behind a queued job
                    job()
                except BaseException as e:  # kept for later calls, as a queued job's error is: no job runs after
                    self._error = e  # it (the cleanup after Ctrl-C only waits: wait_idle never raises)
                    raise
                return
            self._inflight += size
            self._jobs += 1
            if self._thread.ident is None:  # not started yet
                with signals_held(), deferred_signals():  # started whole: until it runs, close() takes it for never started
                    self._thread.start()
        self._queue.put((job, size))

    def wait_idle(self) -> None:
        """Wait until every job queued so far has run, without raising (for cleanup paths)."""
        with self._lock:
            if not self._jobs:  # none queued or running: no barrier to send round
                return
        if self._thread.is_alive() and not ENDING.is_set():
            done = threading.Event()
            self._queue.put((done, 0))
            done.wait()

    def flush(self) -> None:
        """Wait until every queued job is done; raise the first error any of them met."""
        self.wait_idle()
        with self._lock:
            self._raise_pending()

    def close(self) -> None:
        """Stop the thread after the queued jobs (or, as the process ends on a signal, without waiting for it)."""
        if self._thread.is_alive():
            self._queue.put(None)
            if not ENDING.is_set():
                self._thread.join()

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error

    def _drain(self) -> None:
        failed = False
        while True:
            job = self._queue.get()
            if job is None:
                return
            run, size = job
            if isinstance(run, threading.Event):
                run.set()
                continue
            try:
                if not failed and not ENDING.is_set():
                    run()
            except BaseException as e:  # handed to the submitting thread
                failed = True
                with self._lock:
                    self._error = e
            finally:
                with self._lock:
                    self._inflight -= size
                    self._jobs -= 1
                    self._cond.notify_all()
