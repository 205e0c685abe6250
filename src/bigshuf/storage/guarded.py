"""Read-only mappings of input files that a shortened file cannot kill (``_mapguard``).

Touching a mapped page past the end of a file another process has shortened raises SIGBUS,
which ends the process. Under a watch, such a page reads as zeros instead and the watch counts
it; the reader then refuses the input as a file changed while being read. Without the compiled
module nothing is watched (``available`` is False) and callers read rather than map.
"""

from __future__ import annotations

import mmap
import weakref
from types import ModuleType

import numpy as np

native: ModuleType | None
try:
    from .. import _mapguard as native
except ImportError:  # built without a C compiler
    native = None

#: Whether mappings can be watched here.
available = native is not None


class Watch:
    """One watched range: how many of its pages faulted (and read as zeros). ``slot`` is -1 if
    the range could not be watched (every one of the module's slots is in use)."""

    def __init__(self, buffer: mmap.mmap) -> None:
        assert native is not None
        self.slot: int = native.watch(buffer)

    def faults(self) -> int:
        """Pages of the range that faulted since it was watched."""
        assert native is not None
        return int(native.faults(self.slot))

    def close(self) -> None:
        """Stop watching (before the range is unmapped)."""
        if native is not None and self.slot >= 0:
            native.unwatch(self.slot)
            self.slot = -1


def watch_while_mapped(mapped: mmap.mmap) -> Watch:
    """Watch ``mapped`` for as long as it is mapped (the watch ends when the mapping is freed)."""
    watch = Watch(mapped)
    weakref.finalize(mapped, watch.close)
    return watch


def read_mapped(fd: int, offset: int, dest: np.ndarray) -> bool:
    """Copy bytes ``[offset, offset + len(dest))`` of the open file ``fd`` into ``dest`` through a
    watched read-only mapping of them; False if the file no longer holds them all (some read as
    zeros); OSError if they cannot be mapped and watched. Copying out of a mapping costs the kernel
    page-table entries where ``read`` copies every byte: 0.12 s against 0.45-0.71 s per GiB here."""
    lo = offset - offset % mmap.ALLOCATIONGRANULARITY
    try:
        mapped = mmap.mmap(fd, offset + len(dest) - lo, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=lo)
    except ValueError:  # the file is now shorter than that
        return False
    watch = Watch(mapped)
    try:
        if watch.slot < 0:
            raise OSError("no watch free for another mapping")
        src = np.frombuffer(mapped, np.uint8)[offset - lo :]
        np.copyto(dest, src)
        del src
        return watch.faults() == 0
    finally:
        watch.close()
        try:
            mapped.close()
        except BufferError:  # an error left a view of it in a traceback: unmapped with the view
            pass
