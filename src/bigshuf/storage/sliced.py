"""Files whose writes reach the kernel in slices of at most ``WRITE_SLICE`` bytes.

Linux (6.x, ext4 and others with large folios) sizes the page-cache folios a buffered write
allocates from the length of the write call: a 16 MiB write takes 2 MiB folios, a 32 KiB one
32 KiB folios. On the 2-vCPU VM bigshuf is measured on, writing 1 GiB to a new file cost 2.8-3.7
CPU-seconds of system time in 16 MiB calls and 0.4-0.5 s in 32 KiB calls (wsize pairs in
benchmarks/README.md, issue 14), most likely because large folios come from the free blocks
the VM hands back to its host (free page reporting), slow to touch again. 32 KiB calls cost
only more system calls elsewhere (32k per GiB), so every output and bucket file is written so.
"""

from __future__ import annotations

import io
from typing import Any, BinaryIO

#: Longest single write call (order-3 folios: the largest the kernel keeps on its per-CPU lists).
WRITE_SLICE = 32 << 10


class SlicedFile(io.FileIO):
    """A raw file (``io.FileIO``) that writes at most ``WRITE_SLICE`` bytes a call; like any raw
    file it may write less than it is given and says how much, which buffered writers loop on."""

    def write(self, data: Any, /) -> int:
        """Write the first ``WRITE_SLICE`` bytes of ``data`` (or all, if fewer); return how many were written."""
        view = memoryview(data).cast("B")
        return super().write(view[:WRITE_SLICE] if len(view) > WRITE_SLICE else view)


def open_sliced(fd: int, mode: str, buffering: int, *, closefd: bool = True) -> BinaryIO:
    """Descriptor ``fd`` as a ``SlicedFile`` (``mode`` ``"wb"`` or ``"ab"``), behind a buffered
    writer of ``buffering`` bytes unless it is 0 (raw)."""
    raw = SlicedFile(fd, mode, closefd=closefd)
    return raw if buffering == 0 else io.BufferedWriter(raw, buffering)
