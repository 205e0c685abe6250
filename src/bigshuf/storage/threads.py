"""Worker threads that leave Ctrl-C and SIGTERM to the main thread.

The kernel hands a process-directed signal to any thread that does not block it. Taken by a
worker, Python's handler only sets a flag: the main thread, blocked reading a pipe or a
terminal, is not woken, so Ctrl-C did nothing until the input ended. Threads started here
block those signals from their first instruction (a new thread inherits its creator's mask).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

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

