"""The private temporary directory of one run: created under -T, checked for space, always removed."""

from __future__ import annotations

import os
import shutil
import tempfile
from types import TracebackType

from .errors import TempSpaceError
from .plan import format_size


def default_tmp_dir() -> str:
    """``$TMPDIR`` if set, else /tmp, as GNU sort."""
    return os.environ.get("TMPDIR") or "/tmp"


class TempSpace:
    """A ``bigshuf-*`` directory under ``parent`` that is removed on any exit from the block."""

    def __init__(self, parent: str | None) -> None:
        self.parent = parent or default_tmp_dir()
        self.path = ""

    def __enter__(self) -> TempSpace:
        if not os.path.isdir(self.parent):
            raise TempSpaceError(f"{self.parent}: temporary directory does not exist; choose another with -T")
        try:
            self.path = tempfile.mkdtemp(prefix="bigshuf-", dir=self.parent)
        except OSError as e:
            raise TempSpaceError(f"{self.parent}: cannot create a temporary directory: {e.strerror}; choose another with -T") from None
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def check_free(self, needed: int) -> None:
        """Fail before pass 1 if the directory cannot hold ``needed`` bytes of buckets."""
        free = shutil.disk_usage(self.path).free
        if free < needed:
            raise TempSpaceError(
                f"{self.parent}: not enough temporary space: need {format_size(needed)}, "
                f"{format_size(free)} free; choose another directory with -T"
            )
