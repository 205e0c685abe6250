"""Random streams: the run's root entropy, and one named, independent stream per step of it.

Streams are keyed by position (which block, which bucket, which level), never by order of
use, so a step draws the same numbers whichever thread, worker or retry runs it. The keys
below decide every seeded output: changing one changes what a seed gives.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from ..errors import InputError, UsageError, option
from ..quoting import quote_arg, quote_name

Key = tuple[int, ...]

#: The in-memory path's permutation (or sample) of all the records.
IN_MEMORY: Key = (0,)
#: ``shuffle_range``'s direct draws (``-i LO-HI -n N``).
RANGE_DRAWS: Key = (4,)
#: The top level of the external path; deeper levels are ``sublevel(level, bucket)``.
TOP: Key = ()

_SCATTER, _BUCKET, _SUBLEVEL, _PART_DRAWS, _PART, _SELECT, _STRATIFY, _STRATUM, _UNIQUE = 1, 2, 3, 5, 6, 7, 8, 9, 10
_UNIQUE_SOURCE = 11


def scatter(level: Key, *block: int) -> Key:
    """Pass 1 at ``level``: the buckets drawn for the records of one block (the Dask engine
    names a block by file, byte range and block within it)."""
    return level + (_SCATTER, *block)


def following(block: Key) -> Key:
    """The key of the block after ``block``, both from ``scatter`` with one block number."""
    return block[:-1] + (block[-1] + 1,)


def bucket(level: Key, j: int) -> Key:
    """Pass 2 at ``level``: the permutation of bucket ``j``."""
    return level + (_BUCKET, j)


def piece(block: Key, p: int) -> Key:
    """Piece ``p`` of a pass-1 block (``block`` from ``scatter``): the buckets drawn for its records."""
    return block + (p,)


def part_draws(shuffle: Key, c: int) -> Key:
    """An in-memory shuffle split into parts (``shuffle`` is its stream: ``IN_MEMORY`` or a
    bucket's): the parts drawn for the ``c``-th run of records (``gather.shuffle_block``)."""
    return shuffle + (_PART_DRAWS, c)


def part(shuffle: Key, b: int) -> Key:
    """An in-memory shuffle split into parts: the permutation of part ``b``."""
    return shuffle + (_PART, b)


def sublevel(level: Key, j: int) -> Key:
    """The level below ``level`` that scatters bucket ``j`` again (it did not fit in memory)."""
    return level + (_SUBLEVEL, j)


def selection(block: Key) -> Key:
    """Weighted sources: which records of ``block`` (``IN_MEMORY`` for the whole input, else a
    top-level ``scatter`` key) get a copy more for their source's fractional rate; ``TOP``: the Dask
    engine's client, how many of each pass-1 block's records get one."""
    return (_SELECT, *block)


def stratify(block: Key) -> Key:
    """``--stratify``: which split each copy of ``block``'s records (``IN_MEMORY`` for the whole
    input, else a top-level ``scatter`` key) goes to; ``TOP``: the Dask engine's client, how many of
    each pass-1 block's copies go to each split."""
    return (_STRATIFY, *block)


def stratum(v: int) -> Key:
    """``--stratify``, the whole input in memory: the permutation of split ``v``'s records."""
    return (_STRATUM, v)


def unique(*hash_bucket: int) -> Key:
    """The Dask engine's ``--unique``: the buckets drawn for the unique records of one hash bucket
    (its number at each level of splitting, from the top)."""
    return (_UNIQUE, *hash_bucket)


def unique_source(s: int, *hash_bucket: int) -> Key:
    """The Dask engine's ``--unique`` with weighted sources: source ``s``'s unique records of one
    hash bucket, as a block (the buckets drawn for their copies; ``selection``, ``stratify`` and
    ``piece`` of it). The depth comes first, so a ``piece`` never names a deeper hash bucket's block."""
    return (_UNIQUE_SOURCE, s, len(hash_bucket), *hash_bucket)


def name(level: Key) -> str:
    """``level`` as a directory name for its buckets (``top`` for the first)."""
    return "-".join(map(str, level)) or "top"


def seed_entropy(
    seed: int | None = None, random_source: str | os.PathLike[str] | None = None, needed: bool = True, opened: bool = False,
) -> int:
    """The root entropy of a run: ``seed``, or a hash of the first 4 KiB of ``random_source``, or fresh
    OS randomness. A run that draws nothing (``-n 0``) does not ``need`` it: the random source is
    not opened, as GNU shuf opens it only to draw; unless ``opened`` (``-r -n 0``), where GNU shuf
    opens it all the same, and reads nothing: a missing file is an error, an empty one is not."""
    if seed is not None and random_source is not None:
        raise UsageError(f"{option('seed')} and {option('random_source')} cannot be combined")
    if seed is not None:
        if seed < 0:
            raise UsageError(f"invalid {option('seed')} value: {quote_arg(seed)}: a non-negative integer is needed")
        return int(seed)
    if random_source is not None and not needed:
        if opened:
            path = os.fspath(random_source)
            try:
                open(path, "rb").close()
            except IsADirectoryError:
                pass  # C's fopen takes a directory
            except OSError as e:
                raise InputError(f"{quote_name(path)}: {e.strerror}") from None
        return 0
    if random_source is not None:
        path = os.fspath(random_source)
        try:
            with open(path, "rb") as f:
                data = f.read(4096)
        except IsADirectoryError as e:  # C's fopen takes a directory; its read fails, as GNU shuf says
            raise InputError(f"{quote_arg(path)}: read error: {e.strerror}") from None
        except OSError as e:
            raise InputError(f"{quote_name(path)}: {e.strerror}") from None
        if not data:
            raise InputError(f"{quote_arg(path)}: end of file")
        return int.from_bytes(hashlib.sha256(data).digest(), "little")
    return int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]


def draw_ids(rng: np.random.Generator, k: int, n: int) -> np.ndarray:
    """``n`` independent uniform picks of ``[0, k)`` (a bucket or part for each record), in the
    smallest unsigned type that holds them."""
    dtype = np.uint8 if k <= 1 << 8 else np.uint16 if k <= 1 << 16 else np.uint32
    return rng.integers(0, k, n, dtype=dtype)


def rng_for(entropy: int, key: Key) -> np.random.Generator:
    """The PCG64 stream of the run with root ``entropy`` named by ``key`` (one of the keys above)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy, spawn_key=key)))
