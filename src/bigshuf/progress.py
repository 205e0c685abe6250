"""Progress reporting: a tiny callback protocol with a silent default; tqdm is imported only when bars are shown.

Phases are named alike on every path: an in-memory run has one bar, ``shuffle``; an external
run ``pass 1/2 scatter`` then ``pass 2/2 shuffle`` (a bucket scattered again adds a pass:
``pass 2/3 scatter``, ``pass 3/3 shuffle``). Input bars count bytes as stored, so a compressed
input shows its compressed bytes consumed against its compressed size.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import ShuffleStats

#: The one bar of a run that fits in memory.
IN_MEMORY = "shuffle"

#: Size of the terminal assumed when it does not say its own (0x0, as under ``script``): tqdm
#: would otherwise draw blank bars, or none (it hides bars below the last of "-1" rows).
FALLBACK_COLUMNS, FALLBACK_ROWS = 80, 24

#: Narrower than this, a terminal's reported width is taken as not reported.
MIN_COLUMNS = 20

#: Seconds a run lasts before the bars it shows by default (not asked for) appear: a short run
#: at a terminal, such as ``x=$(bigshuf -n 1 FILE)``, prints nothing but the records, as shuf.
QUIET_START = 1.0


def scatter_phase(depth: int) -> str:
    """The scattering pass at recursion ``depth`` (0: the input's, ``pass 1/2 scatter``)."""
    return f"pass {depth + 1}/{depth + 2} scatter"


def dedup_phase(depth: int) -> str:
    """``--unique``'s scatter by hash at ``depth`` (0: the input's), before the shuffle's passes."""
    return "dedup hash scatter" if depth == 0 else f"dedup hash scatter {depth + 1}"


def shuffle_phase(depth: int) -> str:
    """The shuffling pass after the scatter at ``depth`` (0: ``pass 2/2 shuffle``)."""
    return f"pass {depth + 2}/{depth + 2} shuffle"


class Progress:
    """Silent progress: the engine calls these hooks; subclasses draw something."""

    def start(self, description: str, total: int | None) -> None:
        """A new phase begins, ``total`` bytes long if known."""

    def update(self, nbytes: int) -> None:
        """``nbytes`` more bytes of the current phase are done."""

    def close(self) -> None:
        """The current phase is over (called again, or with no phase open, it does nothing more)."""


def _terminal_reports_size() -> bool:
    """Whether standard error is a terminal that reports a usable size (not 0x0, as under ``script``)."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return size.columns >= MIN_COLUMNS and size.lines >= 2


class BarProgress(Progress):
    """One tqdm bar per phase on stderr: bytes done, rate and ETA; a fixed width where the
    terminal reports none, since tqdm would draw blank bars. None is drawn until ``delay`` seconds
    after it is made."""

    def __init__(self, delay: float = 0.0) -> None:
        self._bar: Any = None
        self._from = time.monotonic() + delay

    def visible(self) -> bool:
        """Whether the bars are drawn by now (the run has lasted its ``delay``)."""
        return time.monotonic() >= self._from

    def start(self, description: str, total: int | None) -> None:
        from tqdm import tqdm

        self.close()
        sized = _terminal_reports_size()
        self._bar = tqdm(
            total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
            leave=False, dynamic_ncols=sized, ncols=None if sized else FALLBACK_COLUMNS,
            nrows=None if sized else FALLBACK_ROWS, delay=max(0.0, self._from - time.monotonic()),
        )

    def update(self, nbytes: int) -> None:
        if self._bar is not None:
            self._bar.update(nbytes)
            if self._bar.total is not None and self._bar.n >= self._bar.total and self.visible():
                # tqdm draws at most every 0.1 s: the last update would otherwise stay undrawn, the bar
                # short of its total while the phase finishes (an in-memory shuffle, pass 1's last block).
                self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            if (self._bar.total is None or self._bar.n < self._bar.total) and self.visible():
                self._bar.refresh()  # the phase's end, drawn before the bar goes (update drew a full one)
            self._bar.close()
            self._bar = None


def make_progress(show: bool | None, records_shown: bool = False) -> Progress:
    """Bars when asked, or by default when stderr is a terminal and the records are not written to one
    (``records_shown``: standard output is a terminal, where bars and summary would come between
    them, as shuf writes nothing but the records), once the run has lasted ``QUIET_START``;
    silence otherwise."""
    if show is None:
        return BarProgress(QUIET_START) if sys.stderr.isatty() and not records_shown else Progress()
    return BarProgress() if show else Progress()


def summary(stats: ShuffleStats) -> str:
    """One line saying what a run did: records (in the format's word), bytes, passes, time and rate."""
    from .core.plan import format_size

    rate = stats.bytes / stats.seconds if stats.seconds > 0 else 0.0
    passes = "1 pass" if stats.passes == 1 else f"{stats.passes} passes"
    unit = stats.unit[:-1] if stats.records == 1 else stats.unit  # "1 record"
    return (
        f"{stats.records:,} {unit}, {format_size(stats.bytes)} in {passes}, "
        f"{stats.seconds:.1f} s ({format_size(int(rate))}/s)"
        + (f", {stats.duplicates:,} duplicates dropped" if stats.duplicates else "")
    )
