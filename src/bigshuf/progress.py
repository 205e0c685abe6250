"""Progress reporting: a tiny callback protocol with a silent default; tqdm is imported only when bars are shown."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    """Silent progress: the engine calls these hooks; subclasses draw something."""

    def start(self, description: str, total: int | None) -> None:
        """A new phase begins, ``total`` bytes long if known."""

    def update(self, nbytes: int) -> None:
        """``nbytes`` more bytes of the current phase are done."""

    def close(self) -> None:
        """The current phase is over."""


class BarProgress(Progress):
    """One tqdm bar per phase on stderr: bytes done, rate and ETA."""

    def __init__(self) -> None:
        self._bar: Any = None

    def start(self, description: str, total: int | None) -> None:
        from tqdm import tqdm

        self.close()
        self._bar = tqdm(
            total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024,
            file=sys.stderr, dynamic_ncols=True, leave=False,
        )

    def update(self, nbytes: int) -> None:
        if self._bar is not None:
            self._bar.update(nbytes)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def make_progress(show: bool | None) -> Progress:
    """Bars when asked, or by default when stderr is a terminal; silence otherwise."""
    if show is None:
        show = sys.stderr.isatty()
    return BarProgress() if show else Progress()
