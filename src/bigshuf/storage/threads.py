"""Worker threads that leave Ctrl-C and SIGTERM to the main thread.

The kernel hands a process-directed signal to any thread that does not block it. Taken by a
worker, Python's handler only sets a flag: the main thread, blocked reading a pipe or a
terminal, is not woken, so Ctrl-C did nothing until the input ended. Threads started here
block those signals from their first instruction (a new thread inherits its creator's mask);
``deferred_signals`` holds them in the main thread over a step a signal must not cut in two.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

#: The signals only the main thread takes (the ones bigshuf handles).
MAIN_THREAD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}

#: The signals ``deferred_signals`` holds when a Python handler is set for them: bigshuf's, and the
#: asynchronous ones a library caller's handler may raise from (a ``SIGALRM`` timeout). Synchronous
#: ones (SIGBUS, SIGSEGV) are never held: their faulting instruction would only run again.
HELD_SIGNALS = MAIN_THREAD_SIGNALS | {
    getattr(signal, name) for name in ("SIGQUIT", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGUSR1", "SIGUSR2", "SIGXCPU")
    if hasattr(signal, name)
}


try:
    #: The C functions under ``signal.getsignal`` and ``signal.signal``, without their conversions to
    #: enums: 0.05 and 0.4 µs a call where those take 3.5 and 5.3 (``deferred_signals`` runs once for
    #: each bucket opened and each job handed to a worker).
    handlers: Any = importlib.import_module("_signal")
except ImportError:  # (an interpreter without it)
    handlers = signal


@contextmanager
def signals_held() -> Iterator[None]:
    """Block MAIN_THREAD_SIGNALS in this thread meanwhile, so that threads started inside inherit the block."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, MAIN_THREAD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold HELD_SIGNALS that have Python handlers for the block, and deliver each one caught after it.

    Python runs signal handlers in the main thread, whichever thread the kernel chose, so blocking
    the main thread's mask alone (``pthread_sigmask``) would not stop them while the write-behind
    thread lives; the handlers are swapped instead. In another thread there is nothing to hold: no
    handler runs there.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, _frame: Any) -> None:
        caught.append(signum)

    saved: dict[signal.Signals, Any] = {}
    try:
        for sig in HELD_SIGNALS:
            handler = handlers.getsignal(sig)
            if callable(handler):  # a Python handler: SIG_DFL, SIG_IGN and C handlers (None) run no Python
                saved[sig] = handler  # kept first: a pending handler may raise as soon as the swap returns
                handlers.signal(sig, hold)
        yield
    finally:
        _restore(saved, caught)


def _restore(saved: dict[signal.Signals, Any], caught: list[int]) -> None:
    """Put every handler ``saved`` back, even if a signal pending from before runs its handler and
    raises between two of them (the rest would keep ``hold`` for good); then deliver what was held."""
    try:
        each([functools.partial(handlers.signal, sig, handler) for sig, handler in saved.items()])
    finally:
        each([functools.partial(signal.raise_signal, signum) for signum in dict.fromkeys(caught)])


def each(steps: Sequence[Callable[[], object]]) -> None:
    """Run each of ``steps`` in turn, every one even if one before it raised (a signal handler may
    raise from any step of a clean-up); what was raised goes on, the earlier as the later's context."""
    if steps:
        try:
            steps[0]()
        finally:
            each(steps[1:])


class _Closable(Protocol):
    def close(self) -> None: ...


F = TypeVar("F", bound=_Closable)


def owned(make: Callable[[], F]) -> F:
    """The file object ``make`` opens, with no signal handler run between its descriptor's open
    and its return; closed again if a signal held meanwhile raises when delivered."""
    made: F | None = None
    try:
        with deferred_signals():
            made = make()
    except BaseException:
        if made is not None:
            made.close()
        raise
    return made


def descriptor(opener: Callable[[], int]) -> int:
    """The descriptor ``opener`` returns, with no signal handler run between its open and its return;
    closed again if a signal held meanwhile raises when delivered."""
    fd = -1
    try:
        with deferred_signals():
            fd = opener()
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    return fd


@contextmanager
def opened(opener: Callable[[], int]) -> Iterator[int]:
    """The descriptor ``opener`` returns, closed when the block ends. No signal handler runs between
    the open and the block's start, where an exception it raised (Ctrl-C's KeyboardInterrupt, a
    library caller's timeout) would leave the descriptor open for good."""
    fd = descriptor(opener)
    try:
        yield fd  # (a signal held over the open was delivered before ``descriptor`` returned, ``fd`` kept)
    finally:
        os.close(fd)
