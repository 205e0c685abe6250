"""Worker threads that leave Ctrl-C and SIGTERM to the main thread.

The kernel hands a process-directed signal to any thread that does not block it. Taken by a
worker, Python's handler only sets a flag: the main thread, blocked reading a pipe or a
terminal, is not woken, so Ctrl-C did nothing until the input ended. Threads started here
block those signals from their first instruction (a new thread inherits its creator's mask);
``deferred_signals`` holds them in the main thread over a step a signal must not cut in two.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: The signals only the main thread takes (the ones bigshuf handles).
MAIN_THREAD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


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
    """Hold MAIN_THREAD_SIGNALS for the block and deliver the first one caught after it.

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
    for sig in MAIN_THREAD_SIGNALS:
        handler = signal.getsignal(sig)
        if handler is not None:
            saved[sig] = signal.signal(sig, hold)
    try:
        yield
    finally:
        for held, previous in saved.items():
            signal.signal(held, previous)
        if caught:
            signal.raise_signal(caught[0])
