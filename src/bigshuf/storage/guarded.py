"""Read-only mappings of input files that a shortened file cannot kill (``_mapguard``).

Touching a mapped page past the end of a file another process has shortened raises SIGBUS,
which ends the process. Under a watch, such a page reads as zeros instead and the watch counts
it; the reader then refuses the input as a file changed while being read (or unreadable). Without
the compiled module nothing is watched (``available`` is False) and callers read rather than map.
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
    """A read-only mapping, watched while in use: ``faults`` counts its pages that read as zeros.

    The watch holds the mapping, so the mapping cannot be unmapped before the watch ends (a
    watch left on a range mapped again for something else would take that mapping's faults).
    ``slot`` is -1 if nothing is watched: no compiled module, all of its slots in use, or another
    SIGBUS handler put in its place since.
    """

    def __init__(self, mapped: mmap.mmap) -> None:
        self.mapped = mapped
        self.slot: int = -1 if native is None else native.watch(mapped)
        try:
            self._end = weakref.finalize(self, _unwatch, self.slot)  # also if dropped unclosed: before the mapping goes
        except BaseException:  # Ctrl-C just now: no watch outlives the mapping
            _unwatch(self.slot)
            raise

    def faults(self) -> int:
        """Pages of the range that faulted since it was watched."""
        return 0 if native is None or self.slot < 0 else int(native.faults(self.slot))

    def close(self) -> None:
        """End the watch, then unmap the mapping (once its last view is gone, if one is left)."""
        self._end()
        try:
            self.mapped.close()
        except BufferError:  # a view of it is still referred to: unmapped with the view
            pass


def _unwatch(slot: int) -> None:
    if native is not None and slot >= 0:
        native.unwatch(slot)


#: Most bytes of a file mapped at once by ``read_mapped``: mapped pages count in the process's
#: resident memory until unmapped, so a part is copied a window at a time (``--check-permutation``
#: mapping its 32 MiB reads whole peaked at 146-165 MiB against 99 read; 130 with these). Windows
#: of 4 MiB made 1 GiB of JSON lines at -S 256M slower in 4 pairs of 4 (likely the TLB flush each
#: unmapping sends to the other cores running the process's threads; not measured).
MAP_WINDOW = 16 << 20


def read_mapped(fd: int, offset: int, dest: np.ndarray) -> bool:
    """Copy bytes ``[offset, offset + len(dest))`` of the open file ``fd`` into ``dest`` through
    watched read-only mappings of them, ``MAP_WINDOW`` bytes at a time; False if the file no
    longer holds them all (some read as zeros); OSError if they cannot be mapped and watched.
    Copying out of a mapping costs the kernel page-table entries where ``read`` copies every
    byte: 0.12 s against 0.45-0.71 s per GiB here."""
    for at in range(0, len(dest), MAP_WINDOW):
        if not _copy_window(fd, offset + at, dest[at : at + MAP_WINDOW]):
            return False
    return True


def _copy_window(fd: int, offset: int, dest: np.ndarray) -> bool:
    """``read_mapped`` of one window."""
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
