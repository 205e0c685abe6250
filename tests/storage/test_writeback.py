"""storage/writeback.WriteBehind and storage/threads.signals_held, directly: jobs run in order, at
most ``max_bytes`` are in flight, a job's error reaches the submitter and is never lost, cleanup
never raises or hangs, and the writer thread leaves Ctrl-C and SIGTERM to the main thread.
"""

from __future__ import annotations

import functools
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from bigshuf.storage.threads import MAIN_THREAD_SIGNALS, signals_held
from bigshuf.storage.writeback import WRITE_INLINE_BELOW, WriteBehind

#: Long enough for a thread that is not blocked to get through a few lines; a blocked one never does.
SETTLE = 0.2


@pytest.fixture
def gate() -> threading.Event:
    """An event jobs wait on, so that a test controls when they finish."""
    return threading.Event()


@pytest.fixture
def writer(gate: threading.Event) -> Iterator[WriteBehind]:
    """A write-behind with room for 10 bytes in flight, closed after the test (the gate opened
    first, so that a failed test does not leave close() waiting on a blocked job)."""
    w = WriteBehind(10)
    yield w
    gate.set()
    w.close()


def gated(gate: threading.Event, ran: list[str], label: str) -> Callable[[], None]:
    """A job that waits for ``gate`` and then records ``label`` in ``ran``."""
    def job() -> None:
        gate.wait()
        ran.append(label)

    return job


def in_thread(target: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    """Start ``target()`` on a daemon thread; the list gets the exception it raised, if any."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def test_jobs_run_in_submission_order(writer: WriteBehind) -> None:
    """Every job runs once, in the order submitted, whatever their sizes."""
    done: list[int] = []
    for i in range(200):
        writer.submit_job(functools.partial(done.append, i), i % 7)
    writer.flush()
    assert done == list(range(200))


def test_submit_hands_the_data_to_the_write(writer: WriteBehind) -> None:
    """``submit(write, data)`` calls ``write`` with exactly ``data``, in order."""
    out = bytearray()
    for chunk in (b"abc", b"", b"defgh", b"ij"):
        writer.submit(out.extend, memoryview(chunk))
    writer.flush()
    assert bytes(out) == b"abcdefghij"


def test_a_small_write_with_nothing_queued_is_made_in_the_caller() -> None:
    """Under ``WRITE_INLINE_BELOW`` bytes and an idle queue, the write runs in the submitting thread,
    done when submit returns; at ``WRITE_INLINE_BELOW`` bytes it goes to the writer thread."""
    w = WriteBehind(1 << 30)
    ran: list[tuple[int, int]] = []
    record = lambda data: ran.append((len(data), threading.get_ident()))  # noqa: E731
    w.submit(record, memoryview(bytes(WRITE_INLINE_BELOW - 1)))
    assert ran == [(WRITE_INLINE_BELOW - 1, threading.get_ident())]
    w.submit(record, memoryview(bytes(WRITE_INLINE_BELOW)))
    w.flush()
    w.close()
    assert len(ran) == 2 and ran[1][0] == WRITE_INLINE_BELOW and ran[1][1] != threading.get_ident()


def test_a_small_write_goes_behind_queued_jobs_even_of_no_bytes(writer: WriteBehind, gate: threading.Event) -> None:
    """A job still queued or running (a 0-byte one too: a file's close) keeps a small write behind it, in order."""
    ran: list[str] = []
    writer.submit_job(gated(gate, ran, "close"), 0)
    writer.submit(lambda data: ran.append(bytes(data).decode()), memoryview(b"after"))
    time.sleep(SETTLE)
    assert ran == []
    gate.set()
    writer.flush()
    assert ran == ["close", "after"]


def test_a_small_write_made_in_the_caller_fails_there_and_in_every_later_call(writer: WriteBehind) -> None:
    """Its error is raised by the submit, and kept, as a queued write's is: later calls raise it and run nothing."""
    def full(data: memoryview) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        writer.submit(full, memoryview(b"x"))
    ran: list[bytes] = []
    with pytest.raises(OSError, match="No space"):
        writer.submit(lambda data: ran.append(bytes(data)), memoryview(b"y"))
    with pytest.raises(OSError, match="No space"):
        writer.flush()
    assert ran == []


def test_a_ctrl_c_in_a_write_made_in_the_caller_stops_every_later_write(writer: WriteBehind) -> None:
    """As for a queued job: the KeyboardInterrupt is raised, kept, and no write runs after it."""
    def interrupted(data: memoryview) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        writer.submit(interrupted, memoryview(b"x"))
    ran: list[bytes] = []
    with pytest.raises(KeyboardInterrupt):
        writer.submit(lambda data: ran.append(bytes(data)), memoryview(b"y"))
    writer.wait_idle()  # the cleanup's wait neither raises nor hangs
    assert ran == []


def test_a_submitter_blocks_while_the_new_job_would_exceed_max_bytes(writer: WriteBehind, gate: threading.Event) -> None:
    """With 6 of 10 bytes held by a job that has not finished, a 6-byte submit waits for it."""
    ran: list[str] = []
    writer.submit_job(gated(gate, ran, "first"), 6)
    thread, errors = in_thread(lambda: writer.submit_job(lambda: ran.append("second"), 6))
    thread.join(SETTLE)
    assert thread.is_alive(), "submit returned with 12 bytes in flight, max_bytes is 10"
    gate.set()
    thread.join(10)
    assert not thread.is_alive() and not errors
    writer.flush()
    assert ran == ["first", "second"]


def test_jobs_that_fit_together_do_not_wait(writer: WriteBehind, gate: threading.Event) -> None:
    """4 + 6 bytes fit in 10: the second submit returns while the first job is still running."""
    writer.submit_job(gate.wait, 4)
    thread, errors = in_thread(lambda: writer.submit_job(lambda: None, 6))
    thread.join(10)
    assert not thread.is_alive() and not errors
    gate.set()
    writer.flush()


def test_a_job_larger_than_max_bytes_is_taken_when_nothing_is_in_flight(writer: WriteBehind) -> None:
    """A single piece bigger than the whole allowance must not deadlock."""
    thread, errors = in_thread(lambda: writer.submit(lambda data: None, memoryview(bytes(100))))
    thread.join(10)
    assert not thread.is_alive() and not errors
    writer.flush()


def test_bytes_in_flight_never_exceed_max_bytes() -> None:
    """Random sizes from a fast submitter: submitted-but-unfinished bytes stay within the bound."""
    w = WriteBehind(50)
    lock = threading.Lock()
    pending = [0, 0]  # bytes submitted and not yet run, the most seen

    def job(size: int) -> None:
        with lock:
            pending[0] -= size

    rng = random.Random(1)
    for _ in range(2000):
        size = rng.randrange(0, 30)
        w.submit_job(functools.partial(job, size), size)
        with lock:  # counted once submit returned, uncounted as the job runs: never more than in flight
            pending[0] += size
            pending[1] = max(pending[1], pending[0])
    w.flush()
    w.close()
    assert pending[0] == 0
    assert 0 < pending[1] <= 50


def test_an_error_is_raised_by_flush_and_again_by_every_later_call(writer: WriteBehind) -> None:
    """The first error is kept: flush raises it, and so do later submits and flushes."""
    writer.submit_job(lambda: 1 / 0, 1)
    with pytest.raises(ZeroDivisionError):
        writer.flush()
    with pytest.raises(ZeroDivisionError):
        writer.submit_job(lambda: None, 1)
    with pytest.raises(ZeroDivisionError):
        writer.flush()


def test_an_error_is_raised_at_the_next_submit(writer: WriteBehind) -> None:
    """Once a job has failed, the next submit raises its error (wait_idle lets it fail first)."""
    writer.submit_job(lambda: [][0], 1)
    writer.wait_idle()
    with pytest.raises(IndexError):
        writer.submit(lambda data: None, memoryview(b"x"))


def test_no_job_runs_after_one_failed(writer: WriteBehind) -> None:
    """A write queued after a failed one is not made: the output never gets a gap followed by more data."""
    ran: list[int] = []
    writer.submit_job(lambda: ran.append(1), 1)
    writer.submit_job(lambda: 1 / 0, 1)
    writer.submit_job(lambda: ran.append(3), 1)
    with pytest.raises(ZeroDivisionError):
        writer.flush()
    assert ran == [1]


def test_the_first_of_several_errors_is_the_one_raised(writer: WriteBehind) -> None:
    """Two failing jobs: the caller learns of the first."""
    def fail(e: BaseException) -> None:
        raise e

    writer.submit_job(lambda: fail(KeyError("first")), 1)
    writer.submit_job(lambda: fail(KeyError("second")), 1)
    with pytest.raises(KeyError, match="first"):
        writer.flush()


def test_a_base_exception_in_a_job_is_handed_over() -> None:
    """Even a KeyboardInterrupt raised by a job reaches the submitting thread."""
    def interrupted() -> None:
        raise KeyboardInterrupt

    w = WriteBehind(10)
    w.submit_job(interrupted, 1)
    with pytest.raises(KeyboardInterrupt):
        w.flush()
    w.close()


def test_a_blocked_submitter_is_woken_by_an_error(writer: WriteBehind, gate: threading.Event) -> None:
    """A submitter waiting for room gets the error of the job it waited for rather than hanging."""

    def fail() -> None:
        gate.wait()
        raise OSError(28, "No space left on device")

    writer.submit_job(fail, 8)
    thread, errors = in_thread(lambda: writer.submit_job(lambda: None, 8))
    thread.join(SETTLE)
    assert thread.is_alive()
    gate.set()
    thread.join(10)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], OSError) and errors[0].errno == 28


def test_wait_idle_never_raises_but_waits_for_the_queue(writer: WriteBehind, gate: threading.Event) -> None:
    """wait_idle returns after the queued jobs have run, without raising their error."""
    writer.submit_job(gate.wait, 1)
    writer.submit_job(lambda: 1 / 0, 1)
    thread, errors = in_thread(writer.wait_idle)
    thread.join(SETTLE)
    assert thread.is_alive(), "wait_idle returned before the queue drained"
    gate.set()
    thread.join(10)
    assert not thread.is_alive() and not errors
    writer.wait_idle()  # and again, with the error still pending
    with pytest.raises(ZeroDivisionError):  # which flush does raise
        writer.flush()


def test_close_runs_the_queued_jobs_then_ends_the_thread(gate: threading.Event) -> None:
    """close() returns only once every queued job has run and the writer thread is gone."""
    before = threading.active_count()
    w = WriteBehind(10)
    assert threading.active_count() == before  # started by its first job
    done: list[int] = []
    def first() -> None:
        gate.wait()
        done.append(1)

    w.submit_job(first, 1)
    assert threading.active_count() == before + 1
    w.submit_job(lambda: done.append(2), 1)
    thread, errors = in_thread(w.close)
    thread.join(SETTLE)
    try:
        assert thread.is_alive(), "close returned before its queued jobs ran"
    finally:
        gate.set()
    thread.join(10)
    assert not thread.is_alive() and not errors
    assert done == [1, 2]
    assert threading.active_count() == before


def test_cleanup_calls_after_close_return_at_once() -> None:
    """close twice, and wait_idle or flush after close, neither hang nor raise."""
    w = WriteBehind(10)
    w.close()
    def cleanup() -> None:
        w.close()
        w.wait_idle()
        w.flush()

    thread, errors = in_thread(cleanup)
    thread.join(10)
    assert not thread.is_alive() and not errors


def _blocked_here() -> set[signal.Signals]:
    """The signals the calling thread blocks."""
    return {signal.Signals(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])}


def _proc_blocked(native_id: int) -> int | None:
    """The SigBlk mask of a thread of this process from /proc, or None without /proc."""
    try:
        with open(f"/proc/self/task/{native_id}/status") as f:
            for line in f:
                if line.startswith("SigBlk:"):
                    return int(line.split()[1], 16)
    except OSError:
        return None
    return None


needs_sigmask = pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="no pthread_sigmask")


@needs_sigmask
def test_the_writer_thread_blocks_the_main_thread_signals(writer: WriteBehind) -> None:
    """Ctrl-C, SIGTERM and SIGHUP are never given to the writer thread; the main thread's mask is unchanged."""
    seen: list[tuple[set[signal.Signals], int | None]] = []

    def look() -> None:
        seen.append((_blocked_here(), _proc_blocked(threading.get_native_id())))

    main_before = _blocked_here()
    writer.submit_job(look, 0)
    writer.flush()
    (blocked, proc_mask), = seen
    assert MAIN_THREAD_SIGNALS <= blocked
    assert _blocked_here() == main_before
    assert not MAIN_THREAD_SIGNALS & main_before
    if proc_mask is not None:  # the kernel's own view agrees
        assert all(proc_mask >> (s - 1) & 1 for s in MAIN_THREAD_SIGNALS)


@needs_sigmask
def test_signals_held_blocks_meanwhile_and_restores_even_on_error() -> None:
    """Inside the block the signals are held; after it, even after an exception, the mask is as before."""
    before = _blocked_here()
    assert not MAIN_THREAD_SIGNALS & before
    with pytest.raises(RuntimeError):
        with signals_held():
            assert MAIN_THREAD_SIGNALS <= _blocked_here()
            raise RuntimeError
    assert _blocked_here() == before
