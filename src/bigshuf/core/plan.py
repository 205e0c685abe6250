"""Memory budget arithmetic: sizes, what fits in memory, bucket counts and piece sizes."""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import InputError, UsageError, option
from ..quoting import quote_arg
from . import numbers

#: Default ``-S``: half of physical memory, as a percentage like GNU sort accepts.
DEFAULT_MEMORY = "50%"

#: Smallest limit accepted; tests use a few KiB to force the external and recursive paths.
MIN_MEMORY = 1024

#: Bytes of bookkeeping per record while a block is shuffled or scattered: int32 offsets
#: (4, twice while they are built), an int32 permutation (4) or, in pass 1, uint8/16 bucket
#: ids (1-2) with an int64 argsort and its scratch (16). Checked against peak RSS in
#: tests/test_memory.py.
META_PER_RECORD = 24

#: Largest piece of a block gathered at once. 16 MiB pieces shuffled 1 GiB of ~60-byte
#: records as fast as 32 MiB ones (2.7 s vs 2.8 s) with 110 MB less peak RSS.
MAX_PIECE = 16 << 20

#: Memory ``-r``'s stream of draws is gathered and written in, whatever -S allows (the records
#: drawn from are held beside it). The default -S, half the RAM, had ``-r -e a b`` hold 540 MB of
#: pieces and their indices; at 16 MiB a gigabyte of draws streams as fast (5.7-6.6 s either way).
REPEAT_STREAM = 16 << 20

#: Expected bucket size as a fraction of the block budget: a Binomial bucket count
#: overflows rarely at 1/3, and a bucket that does is split again.
BUCKET_FRACTION = 3

#: Most temporary buckets open at once (file descriptors); deeper inputs recurse.
MAX_BUCKETS = 4096

#: Deepest recursion before giving up (only reached if records defeat random splitting).
MAX_DEPTH = 16

#: The most memory a run plans with: a larger ``-S`` (up to 16 EiB) is no limit at all, but a
#: buffer planned from it must still be one NumPy can make (fewer than 2**63 bytes).
MOST_MEMORY = 1 << 62


def physical_memory() -> int:
    """Total physical RAM in bytes (for ``%`` sizes and the default limit)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def parse_size(text: str | int) -> int:
    """Parse a memory size as GNU sort's ``-S`` does: ``K`` (the default unit), ``M``, ``G``, ``T``,
    ``%`` of RAM, ``b`` bytes; and ``kB``, ``MB``, ``GB`` as powers of 1000 (``numbers.parse_size``)."""
    if isinstance(text, int):
        if text < 0:
            raise UsageError(f"invalid memory size: {quote_arg(text)}")
        if text >= numbers.SIZE_LIMIT:
            raise UsageError(f"memory size {quote_arg(text)} too large")
        return text
    parsed = numbers.parse_size(text, 1024)  # exact: a float of 400 digits is inf
    if parsed is None:
        raise UsageError(f"invalid {option('memory')} argument {quote_arg(text)}")
    number, percent = parsed
    if percent:
        if number > 100:
            raise UsageError(f"invalid {option('memory')} argument {quote_arg(text)}: more than 100%")
        return int(physical_memory() * number / 100)
    size = int(number)
    if size >= numbers.SIZE_LIMIT:
        raise UsageError(f"{option('memory')} argument {quote_arg(text)} too large")  # as sort words it
    return size


def format_size(n: float) -> str:
    """Human-readable binary size for messages, e.g. ``256 MiB``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")  # sizes here stay under 2**64, 16 EiB
    for unit in units:
        shown = f"{n:.0f}" if unit == "B" else f"{n:.1f}"
        if abs(float(shown)) < 1024 or unit == units[-1]:  # as rounded: 1 MiB less a byte is 1.0 MiB
            return f"{shown} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


#: Bytes of records ``--dry-run`` reads from the input's start at most (lines: as much as pass 1's read
#: buffer, if less): an input this small is counted; a compressed one is read through more than one
#: of the decoder's 256 KiB reads of compressed bytes, so its decompressed size can be estimated
#: (decoding 16 MiB takes a few tens of milliseconds).
DRY_RUN_SAMPLE = 16 << 20

#: Gathered pieces queued for the write-behind thread at most, besides the one being built.
IN_FLIGHT_PIECES = 2


def piece_bytes(limit: int) -> int:
    """Bytes of a block scattered at once in pass 1 (and gathered at once in pass 2)."""
    return max(64, min(MAX_PIECE, limit // 16))


def piece_records(limit: int) -> int:
    """Most records handled at once, so bookkeeping stays bounded for tiny records."""
    return max(16, limit // 16 // META_PER_RECORD)


def read_capacity(limit: int) -> int:
    """Size of the pass-1 read buffer; it also bounds the longest record."""
    return max(256, limit // 2)


def _beside_reading(limit: int) -> int:
    """What the pass-1 read buffer and the queued writes leave of the limit."""
    return limit - read_capacity(limit) - IN_FLIGHT_PIECES * piece_bytes(limit)


def pieces_ahead(limit: int, held: int = 0) -> int:
    """Pieces of a pass-1 block scattered at once: the memory the read buffer, the queued
    writes and ``held`` (the inputs decoded ahead) leave, at two pieces' worth each (the
    gathered copy and its bookkeeping)."""
    return max(1, (_beside_reading(limit) - held) // (2 * piece_bytes(limit)))


def decode_ahead(limit: int) -> int:
    """Decompressed bytes of the next compressed inputs held at once while the one before is
    read (``storage.ahead``): half of what the read buffer and the queued writes leave, the
    pieces ahead (``pieces_ahead``) taking the other half."""
    return max(0, _beside_reading(limit) // 2)


def parts_ahead(limit: int, held: int, part: int = 0) -> int:
    """Parts of an in-memory shuffle gathered at once when the records and their bookkeeping
    hold ``held`` bytes: what the limit leaves besides the queued writes, at two pieces' worth
    each (a gathered part and its indices). ``part``: the most a part may hold, where a record
    longer than a piece makes it more (a part, queued whole, is then also what the writes hold)."""
    piece = max(piece_bytes(limit), part)
    spare = limit - held - max(IN_FLIGHT_PIECES * piece_bytes(limit), part)
    return max(1, spare // (2 * piece))


def block_budget(limit: int) -> int:
    """Bytes left for records (and their bookkeeping) once the output pieces are set aside."""
    return limit - (IN_FLIGHT_PIECES + 2) * piece_bytes(limit)


def fits_in_memory(nbytes: int, nrecords: int, limit: int) -> bool:
    """Whether a block of this size and record count can be shuffled in one piece."""
    return nbytes + META_PER_RECORD * nrecords <= block_budget(limit)


def largest_record(limit: int) -> int:
    """The largest record (by its size as blocks count it) a bucket holding it alone can shuffle in
    memory: a larger one can never be placed, and would be scattered ``MAX_DEPTH`` times in vain."""
    return block_budget(limit) - META_PER_RECORD


#: File descriptors kept out of the bucket files' allowance, for everything else a run opens.
DESCRIPTOR_RESERVE = 64

#: Descriptors a run holds besides its buckets and output files: the standard streams, the input
#: being read, the temporary directory's lock and the output directory's.
BASE_DESCRIPTORS = 6


#: Bucket files a run allows itself where the limit on open files cannot be read.
UNKNOWN_ALLOWANCE = 256


#: Buckets of a level of unknown size (a pipe's): as many as any input may need, whatever the
#: free temporary space, so that a seed gives the same output on every machine.
UNSIZED_BUCKETS = 1024


def open_file_limit() -> int | None:
    """The soft limit on open file descriptors (``ulimit -n``): -1 when unlimited, None when unknown.
    A soft limit below what ``MAX_BUCKETS`` buckets need is first raised towards the hard limit
    (as Go's runtime does): the default 1024 of many systems gave a pipe fewer buckets than
    ``UNSIZED_BUCKETS``, and so a seed another output than on a machine allowing more."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, ValueError, OSError):
        return None
    want = MAX_BUCKETS + DESCRIPTOR_RESERVE
    if soft != resource.RLIM_INFINITY and soft < want and (hard == resource.RLIM_INFINITY or soft < hard):
        raised = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            _note_raised((soft, hard), (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass  # the soft limit stands
    return -1 if soft == resource.RLIM_INFINITY else int(soft)


_limit_lock = threading.Lock()
_limit_calls = 0
#: The limits a run last raised from, and to, while library calls are under way.
_limit_raised: tuple[tuple[int, int], tuple[int, int]] | None = None

C = TypeVar("C", bound=Callable[..., Any])


def _note_raised(before: tuple[int, int], after: tuple[int, int]) -> None:
    """Remember the limits a run raised, and to what, for ``keeps_file_limit`` to undo. (One
    assignment, no lock: a signal handler calling bigshuf may run in the middle of it.)"""
    global _limit_raised
    _limit_raised = (before, after)


def keeps_file_limit(call: C) -> C:
    """``call`` (a library entry point) leaves the soft limit on open files as it found it: a run
    raises it for itself (``open_file_limit``), not for the caller's process for good. With calls
    in several threads at once, the last to end puts it back, none lowering it under another; a
    limit the caller set meanwhile is the caller's, and stays."""

    @functools.wraps(call)
    def kept(*args: Any, **kwargs: Any) -> Any:
        from ..storage.threads import deferred_signals

        counted = False
        try:
            with deferred_signals():  # no handler runs (and raises, or calls bigshuf) under the lock
                _enter_limit_call()
                counted = True
            return call(*args, **kwargs)
        finally:
            if counted:
                with deferred_signals():
                    _leave_limit_call()

    return kept  # type: ignore[return-value]


def _enter_limit_call() -> None:
    """Count a library call in; the first of several forgets a raise made before it."""
    global _limit_calls, _limit_raised
    with _limit_lock:
        if _limit_calls == 0:
            _limit_raised = None
        _limit_calls += 1


def _leave_limit_call() -> None:
    """Count a library call out; the last undoes the calls' last raise of the limits, if they are
    still what it raised them to (a caller may have set its own meanwhile)."""
    global _limit_calls
    with _limit_lock:
        _limit_calls -= 1
        if _limit_calls or _limit_raised is None or _file_limits() != _limit_raised[1]:
            return
        import resource

        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, _limit_raised[0])
        except (ValueError, OSError):
            pass  # (a hard limit lowered meanwhile: the soft one stays where it may)


def _file_limits() -> tuple[int, int] | None:
    """The soft and hard limits on open files, or None where unknown."""
    try:
        import resource

        return resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, ValueError, OSError):
        return None


def _open_file_allowance(reserve: int = DESCRIPTOR_RESERVE) -> int:
    """File descriptors a run may spend on bucket files: the soft limit less ``reserve``."""
    soft = open_file_limit()
    if soft is None:
        return UNKNOWN_ALLOWANCE
    return MAX_BUCKETS if soft == -1 else max(2, soft - reserve)


def spare_descriptors() -> int:
    """File descriptors left beside the buckets' allowance and the run's own (``BASE_DESCRIPTORS``):
    what extras, such as inputs opened ahead, may take. Many where the limit is unknown or none."""
    soft = open_file_limit()
    if soft is None or soft == -1:
        return DESCRIPTOR_RESERVE - BASE_DESCRIPTORS
    return max(0, soft - most_buckets() - BASE_DESCRIPTORS)


def descriptors_needed(buckets: int, output_files: int, files: int = 1) -> int:
    """File descriptors a run holds open at once with ``buckets`` buckets of ``files`` files each
    being written and ``output_files`` output files open (for ``--dry-run``'s check against ``ulimit -n``)."""
    return BASE_DESCRIPTORS + buckets * files + output_files


def buckets_needed(need: float, limit: int) -> int:
    """Buckets for ``need`` bytes (records and their bookkeeping) so that the expected bucket needs
    a third of the record budget, uncapped; both engines start from this."""
    return max(1, math.ceil(need / max(1, block_budget(limit) // BUCKET_FRACTION)))


#: Descriptors kept for what else is open while a dedup level is split during pass 1 (the hash
#: bucket it reads, a module imported meanwhile), beside ``BASE_DESCRIPTORS``: its inputs are read
#: by then and its output not yet open, so the level below takes the rest of ``DESCRIPTOR_RESERVE``.
SPLIT_SPARE = 8


def most_buckets(files: int = 1, held: int = 0) -> int:
    """Buckets of ``files`` files each (a tar bucket's samples and their lengths: 2) one level may
    hold open at once, file descriptors allowing; with ``held`` bucket files of pass 1 open
    meanwhile (a dedup level split while it runs), what they and ``SPLIT_SPARE`` leave."""
    allowance = _open_file_allowance(BASE_DESCRIPTORS + SPLIT_SPARE) if held else _open_file_allowance()
    return max(1, (min(MAX_BUCKETS, allowance) - held) // files)


def unsized_buckets(files: int = 1) -> int:
    """Buckets (of ``files`` files each) for a level of unknown size: ``UNSIZED_BUCKETS``, as the open files allow."""
    return min(UNSIZED_BUCKETS, most_buckets(files))


def bucket_count(
    nbytes: int, nrecords: int, limit: int, max_buckets: int | None = None, *, open_files: bool = True, files: int = 1
) -> int:
    """Buckets to scatter ``nrecords`` records in ``nbytes`` into: ``buckets_needed``, at least 2, at
    most ``max_buckets`` and, where the buckets are ``open_files`` held at once (the local engine's,
    ``files`` files each), at most the descriptors allow; a Dask task writes its buckets as one
    object per block, and its plan must not depend on the machine that makes it."""
    cap = most_buckets(files) if open_files else None
    if max_buckets is not None:
        cap = max_buckets if cap is None else min(cap, max_buckets)
    need = max(2, buckets_needed(nbytes + META_PER_RECORD * nrecords, limit))
    return need if cap is None else min(need, max(2, cap))


def expected_passes(nbytes: int, nrecords: int, limit: int) -> int:
    """Passes over the data an external run of ``nbytes`` in ``nrecords`` expects: two, and one more
    for each level whose expected bucket (``bucket_count`` of them) still does not fit in memory."""
    passes = 2
    while passes <= MAX_DEPTH + 1:
        k = bucket_count(nbytes, nrecords, limit)
        nbytes, nrecords = math.ceil(nbytes / k), math.ceil(nrecords / k)
        if fits_in_memory(nbytes, nrecords, limit):
            break
        passes += 1
    return passes


def check_depth(level: int, limit: int, unit: str = "records") -> None:
    """Refuse to scatter at ``level`` (the first scatter is level 0) past MAX_DEPTH: only records
    that defeat random splitting, such as one bigger than the limit, get there."""
    if level > MAX_DEPTH:
        raise InputError(f"{unit} could not be split below {format_size(limit)} after {level} passes; raise {option('memory')}")
