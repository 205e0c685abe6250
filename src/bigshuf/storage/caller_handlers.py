"""A library caller's own signal handlers during a call: they run as before, and what they raise reaches the caller intact.

A handler's exception surfaces wherever the main thread happens to be. A caller's SIGALRM timeout
raising ``TimeoutError`` (an ``OSError``) inside a system call was taken by bigshuf's ``except
OSError`` for the call's own failure (``write error: None``), or swallowed by a fall-back (a failed
``mmap`` read instead). While a call runs, each Python handler is wrapped: an ``Exception`` it raises
travels as ``HandlerRaised``, a ``BaseException`` as Ctrl-C's ``KeyboardInterrupt`` is, and the call
raises the original when it ends.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .threads import HELD_SIGNALS, each, handlers

C = TypeVar("C", bound=Callable[..., Any])


class HandlerRaised(BaseException):
    """A caller's signal handler raised ``original`` during a library call."""

    def __init__(self, original: Exception) -> None:
        super().__init__(original)
        self.original = original


def carries_handler_exceptions(call: C) -> C:
    """``call`` (a library entry point) raises what a caller's signal handler raised while it ran,
    whatever bigshuf was doing when the handler ran. ``BaseException``\\ s (Ctrl-C's, the command
    line's own) pass as they are; in a thread other than the main one no handler runs, nothing is wrapped."""

    @functools.wraps(call)
    def carried(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return call(*args, **kwargs)
        during = _During()
        wrapped: list[tuple[int, Any, Any]] = []
        try:
            for sig in HELD_SIGNALS:
                handler = handlers.getsignal(sig)
                if callable(handler):  # a Python handler (SIG_DFL, SIG_IGN and C handlers run no Python)
                    carrier = _carrier(handler, during)
                    wrapped.append((sig, handler, carrier))  # noted first: a pending handler may run as the swap returns
                    handlers.signal(sig, carrier)
            result = call(*args, **kwargs)
        except BaseException:
            during.running = False  # (no call between: no handler runs before it)
            if not during.raised:  # the call's own failure, or an outer call's handler (this call runs inside one)
                raise
        finally:
            during.running = False  # a handler run from here on raises as it would outside the call
            try:
                _unwrap(wrapped)
            finally:  # again, for one a handler raising cut short (the rest were put back)
                _unwrap(wrapped)
        if during.raised:  # the first, whatever followed it, even if bigshuf swallowed it (a fall-back, a cleanup)
            raise during.raised[0]
        return result

    return carried  # type: ignore[return-value]


class _During:
    """One call's carriers' shared state: whether it still runs, and what its handlers raised."""

    def __init__(self) -> None:
        self.running = True
        self.raised: list[BaseException] = []


def _carrier(handler: Callable[[int, Any], Any], during: _During) -> Callable[[int, Any], Any]:
    """``handler``, while the call runs what it raises noted (in case bigshuf swallows it), an
    ``Exception`` raised as ``HandlerRaised``; after, as it is (a signal as the handlers are put back)."""

    def carrier(signum: int, frame: Any) -> Any:
        if not during.running:
            return handler(signum, frame)
        try:
            return handler(signum, frame)
        except Exception as e:
            during.raised.append(e)
            raise HandlerRaised(e) from None
        except BaseException as e:  # (KeyboardInterrupt, SystemExit: on its way as it is, noted in case it is swallowed)
            during.raised.append(e)
            raise

    return carrier


def _unwrap(wrapped: list[tuple[int, Any, Any]]) -> None:
    """Put each handler back where its carrier still stands, each one even if a handler run before it raised."""
    each([functools.partial(_put_back, *entry) for entry in wrapped])


def _put_back(sig: int, handler: Any, carrier: Any) -> None:
    """``handler`` for ``sig`` again, unless the caller set one of its own meanwhile (kept)."""
    if handlers.getsignal(sig) is carrier:
        handlers.signal(sig, handler)
