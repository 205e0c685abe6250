"""What a library caller's own signal handler raises during a call reaches the caller as it was
raised: a SIGALRM timeout's ``TimeoutError`` (an ``OSError``) was taken by bigshuf for a failed
system call and reported as one (``write error: None``: 393 of 2,554 interrupted calls), or
swallowed by a fall-back and the call returned normally (found by attack)."""

from __future__ import annotations

import mmap
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

import bigshuf
from helpers import assert_permutation, make_records, write_records


class Late(TimeoutError):
    """What the caller's SIGALRM handler raises: an OSError, as the built-in TimeoutError is."""


@pytest.fixture
def alarm_raises() -> Iterator[None]:
    def handler(_signum: int, _frame: Any) -> None:
        raise Late("the caller's timeout")

    before = signal.signal(signal.SIGALRM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGALRM, before)


def _run(tmp_path: Path, **options: Any) -> None:
    """A small external run into ``out.txt``, with its temporary directory ``T``."""
    src = write_records(tmp_path / "in.txt", make_records(3000, seed=1))
    (tmp_path / "T").mkdir(exist_ok=True)
    bigshuf.shuffle(src, tmp_path / "out.txt", tmp_dir=tmp_path / "T", seed=1, **options)


def _signal_after_fsync(monkeypatch: pytest.MonkeyPatch, signum: int) -> None:
    """Have every ``os.fsync`` (the output's, as it is committed) raise ``signum`` as it returns."""
    real = os.fsync

    def then_signalled(fd: int) -> None:
        real(fd)
        signal.raise_signal(signum)

    monkeypatch.setattr(os, "fsync", then_signalled)


def test_a_timeout_raised_in_a_read_is_not_taken_for_a_read_error(tmp_path: Path, alarm_raises: None) -> None:
    """The handler runs as the caller's own stream reads: bigshuf's ``except OSError`` around the
    read made it ``InputError: mine: None``."""
    src = write_records(tmp_path / "in.txt", make_records(100, seed=2))

    class Stream:
        def __init__(self) -> None:
            self.f = open(src, "rb")

        def readinto(self, buffer: Any) -> int:
            signal.raise_signal(signal.SIGALRM)
            return self.f.readinto(buffer)

        def close(self) -> None:
            self.f.close()

    class Mine:
        name = "mine"

        def size(self) -> int:
            return src.stat().st_size

        def open(self) -> BinaryIO:
            return Stream()  # type: ignore[return-value]

    with pytest.raises(Late, match="the caller's timeout"):
        bigshuf.shuffle([Mine()], tmp_path / "out.txt", seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_a_timeout_raised_in_an_fsync_is_not_taken_for_a_write_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alarm_raises: None
) -> None:
    """The output's fsync: ``OutputError: out.txt: None`` it was; no output, no temporary file left."""
    _signal_after_fsync(monkeypatch, signal.SIGALRM)
    with pytest.raises(Late):
        _run(tmp_path, memory="64K")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["T", "in.txt"] and os.listdir(tmp_path / "T") == []


def test_a_timeout_a_fall_back_swallowed_still_reaches_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alarm_raises: None
) -> None:
    """A failed map of the input is read instead: a timeout raised as the map was made was taken for
    that failure, and the call went on and returned normally."""
    real = mmap.mmap

    def then_signalled(*args: Any, **kwargs: Any) -> mmap.mmap:
        made = real(*args, **kwargs)
        signal.raise_signal(signal.SIGALRM)
        return made

    monkeypatch.setattr(mmap, "mmap", then_signalled)
    with pytest.raises(Late):
        _run(tmp_path)


def test_a_handler_that_does_not_raise_runs_and_is_put_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrapped for the call's length only: the caller's handler runs as signalled, the run goes on,
    and the very handler is set again after it."""
    seen: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        seen.append(signum)

    before = signal.signal(signal.SIGUSR1, handler)
    try:
        _signal_after_fsync(monkeypatch, signal.SIGUSR1)
        _run(tmp_path, memory="64K")
        assert seen and set(seen) == {signal.SIGUSR1}
        assert signal.getsignal(signal.SIGUSR1) is handler
    finally:
        signal.signal(signal.SIGUSR1, before)
    assert_permutation((tmp_path / "out.txt").read_bytes(), make_records(3000, seed=1))


def test_a_handler_calling_bigshuf_then_raising_reaches_the_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler that itself shuffles (a nested call, which wraps the handlers again) and then raises:
    the outer call raises what it raised, and both calls' handlers are put back."""
    src = write_records(tmp_path / "small.txt", make_records(50, seed=3))
    nested: list[bigshuf.ShuffleStats | None] = []

    def handler(_signum: int, _frame: Any) -> None:
        if not nested:  # (the nested call signals too: its handler runs, does nothing)
            nested.append(None)
            nested[0] = bigshuf.shuffle(src, tmp_path / "nested.txt", seed=2)
            raise Late("after the nested call")

    before = signal.signal(signal.SIGALRM, handler)
    try:
        _signal_after_fsync(monkeypatch, signal.SIGALRM)
        with pytest.raises(Late, match="after the nested call"):
            _run(tmp_path, memory="64K")
        assert signal.getsignal(signal.SIGALRM) is handler
    finally:
        signal.signal(signal.SIGALRM, before)
    assert nested[0] is not None and nested[0].records == 50 and not (tmp_path / "out.txt").exists()


def test_a_signal_as_the_handlers_are_put_back_raises_the_callers_own_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alarm_raises: None
) -> None:
    """A handler run as the call put the caller's handlers back raised bigshuf's own carrier
    exception out of the call, and left the handler it was putting back wrapped for good (found by
    attack, once in 1,500 interrupted calls). It raises the caller's exception, and every handler is
    the caller's again."""
    from types import SimpleNamespace

    from bigshuf.storage import caller_handlers, threads

    real, calls = caller_handlers.handlers, [0]
    alarm = signal.getsignal(signal.SIGALRM)

    def getsignal(sig: int) -> Any:
        calls[0] += 1
        if calls[0] == len(threads.HELD_SIGNALS) + 1:  # the first look as the handlers are put back
            signal.raise_signal(signal.SIGALRM)
        return real.getsignal(sig)

    monkeypatch.setattr(caller_handlers, "handlers", SimpleNamespace(getsignal=getsignal, signal=real.signal))
    with pytest.raises(Late):
        _run(tmp_path)
    assert signal.getsignal(signal.SIGALRM) is alarm
    assert_permutation((tmp_path / "out.txt").read_bytes(), make_records(3000, seed=1))  # the call had ended


def test_a_handlers_system_exit_that_a_clean_up_swallowed_still_reaches_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temporary directory's removal finishes whatever a handler raises meanwhile: a ``SystemExit``
    (or ``KeyboardInterrupt``) raised there was lost, the call returning normally (found by review)."""
    from bigshuf.storage import tempspace

    real, fired = tempspace.remove_tree, []

    def then_signalled(path: str) -> None:
        if not fired:
            fired.append(path)
            signal.raise_signal(signal.SIGUSR1)
        real(path)

    def leave(_signum: int, _frame: Any) -> None:
        raise SystemExit(7)

    monkeypatch.setattr(tempspace, "remove_tree", then_signalled)
    before = signal.signal(signal.SIGUSR1, leave)
    try:
        with pytest.raises(SystemExit) as caught:
            _run(tmp_path, memory="64K")
    finally:
        signal.signal(signal.SIGUSR1, before)
    assert fired and caught.value.code == 7 and os.listdir(tmp_path / "T") == []
