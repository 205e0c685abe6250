"""The command under ``ulimit -v``: its libraries loaded while there is room, and its exit past
their C clean-up, so that too small an address space ends it with a message, never a signal.

Arrow's libraries die rather than fail when their own start or end runs out of address space:
a static initialiser's ``std::bad_alloc`` aborts, glibc aborts for their thread-local data, and
mimalloc's clean-up at exit faults. Loaded lazily mid-run, after the run's buffers, they met
such a limit; at exit, a run that had used the address space up (or met ``MemoryError``) faulted.
"""

from __future__ import annotations

import os
import resource
import sys

#: Address space Arrow's load takes (about 100 MiB here: 106 -> 206 MiB of VmSize), with room to
#: spare; with less left than this its load died of SIGSEGV or SIGABRT in a band of limits.
ARROW_LOAD_ROOM = 160 << 20


def limited() -> int | None:
    """The soft ``ulimit -v`` in bytes, or None when the address space is not limited."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def limit_text() -> str:
    """`` (ulimit -v N)`` when the address space is limited, else empty: the usual cause of a failed load."""
    soft = limited()
    return "" if soft is None else f" (ulimit -v {soft // 1024})"


def no_room_to_load(e: ImportError) -> bool:
    """Whether a library failed to load for want of address space (it is installed)."""
    return "failed to map segment" in str(e) or "annot allocate memory" in str(e)


def load_failure(e: ImportError | MemoryError) -> str:
    """The message for a library that could not be loaded: most often memory too small to map it."""
    text = str(e)
    # One line: NumPy's ImportError is a page of advice that ends with the loader's own error.
    detail = ([line.strip() for line in text.splitlines() if line.strip()] or [type(e).__name__])[-1]
    if isinstance(e, MemoryError) or no_room_to_load(e):
        return f"memory too small to load the libraries bigshuf needs{limit_text()}: {detail}"
    return f"cannot load {e.name or 'a library bigshuf needs'}: {detail}"


def _in_use() -> int | None:
    """This process's address space in bytes (Linux's VmSize), or None where it cannot be read."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


#: glibc's ``mallopt`` parameter for the most malloc arenas (``M_ARENA_MAX``).
M_ARENA_MAX = -8


def _one_malloc_arena() -> None:
    """Have every thread allocate from glibc's main arena: each other arena reserves 64 MiB of address
    space, so under a limit a run failed at some limits and ran at lower ones (where the reservation
    was refused and the thread shared the main arena): ``memory exhausted`` at 345000 KiB, not 340000."""
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(1))
    except (OSError, AttributeError):  # not glibc: nothing to set
        pass


def load_arrow() -> None:
    """Under ``ulimit -v``, have threads share one malloc arena and load Arrow now, before the run
    takes any room, or raise MemoryError if the room left is too small for its load to fail cleanly
    (without a limit Arrow loads when first used)."""
    soft = limited()
    if soft is None:
        return
    _one_malloc_arena()
    used = _in_use()
    if used is not None and soft - used < ARROW_LOAD_ROOM:
        raise MemoryError(f"pyarrow needs {ARROW_LOAD_ROOM >> 20} MiB more address space, {max(soft - used, 0) >> 20} MiB are left")
    import pyarrow  # noqa: F401


def leave(status: int) -> int:
    """End the command with ``status``. Under ``ulimit -v`` the process ends here, without the C
    libraries' clean-up at exit (mimalloc's faulted on an address space used up), once its
    standard streams are flushed; if one cannot be, Python's own exit reports it as always."""
    if limited() is None:
        return status
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return status
    os._exit(status)
