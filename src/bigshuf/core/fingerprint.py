"""Order-independent fingerprints of record multisets, vectorised, for ``--verify`` and ``--check``.

A record's hash is a sum over its 8-byte words (read little-endian, the last one zero-filled)
of splitmix64's finaliser applied to the word XOR a key for the word's position in the record,
mixed with the record's length. Every byte counts where it stands: reordering bytes within a
record (``1221``/``2112``, ``abba``/``baab``) changes a word and so, but for a 2**-64 chance,
the hash. The fingerprint of a set of records is their count, their bytes and the sum of their
hashes modulo 2**64: the same for any order, changed by a lost, doubled or altered record except
with probability about 2**-64 per change. Not a defence against crafted collisions.

The hashing runs in the compiled ``bigshuf._hashing`` where it was built (several GB/s a core, the
GIL released), else in the NumPy code below; both give the same values.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from types import ModuleType

import numpy as np

from .records import RecordFormat, find_offsets

native: ModuleType | None
try:
    from .. import _hashing as native
except ImportError:  # built without a C compiler: the NumPy code computes the same hashes
    native = None

#: Bytes hashed at once (a multiple of 8): the temporaries cost about 4 bytes a byte.
SLICE = 1 << 20

#: Most records hashed at once: bounds the temporaries (about 100 bytes a record) for tiny records.
MAX_RECORDS = 1 << 16

#: Words read per gathered index (a row): 128 bytes, most short records in one row. Gathering costs
#: about the same per row up to this width (rows of 8 and 32 words were slower on ~1 KB records).
ROW = 16

#: Records of at most this many full rows (and a last one) are hashed a row number at a time, with no index of rows.
FEW_ROWS = 8

#: Bumped whenever a hash changes: fingerprints saved under another scheme cannot be added to these.
SCHEME = 2

_M1, _M2, GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise (wrapping uint64 arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    mixed: np.ndarray = x ^ (x >> np.uint64(31))
    return mixed


@dataclass(frozen=True)
class Fingerprint:
    """Records, bytes and the wrapping sum of record hashes."""

    records: int = 0
    bytes: int = 0
    digest: int = 0
    #: What the summary calls the records: the format's unit (``samples``, ``documents``), as the
    #: run's ``ShuffleStats.unit``; a name only, never compared. A sum keeps its left side's.
    unit: str = field(default="records", compare=False)

    def __add__(self, other: Fingerprint) -> Fingerprint:
        return Fingerprint(self.records + other.records, self.bytes + other.bytes, (self.digest + other.digest) % 2**64, self.unit)

    def __str__(self) -> str:
        return f"{self.records} {self.unit}, {self.bytes} bytes, digest {self.digest:016x}"


def verification_failure(read: Fingerprint, wrote: Fingerprint, rows: bool) -> str:
    """The one line ``--verify`` refuses a run with, every engine alike: what was read against what
    was written; ``rows`` (a table's) by count and digest, as their bytes are not counted."""

    def shown(fp: Fingerprint) -> str:
        return f"{fp.records} rows (digest {fp.digest:016x})" if rows else str(fp)

    return f"verification failed: read {shown(read)}, wrote {shown(wrote)}; output not put in place"


def fingerprint(block: np.ndarray, offsets: np.ndarray) -> Fingerprint:
    """Fingerprint of the records ``block[offsets[i]:offsets[i+1]]`` (separators included)."""
    n = len(offsets) - 1
    if n <= 0:
        return Fingerprint()
    if native is not None:
        digest = native.hash_records(np.ascontiguousarray(block), np.ascontiguousarray(offsets, np.int64), None)
        return Fingerprint(n, int(offsets[-1]) - int(offsets[0]), digest)
    return numpy_fingerprint(block, offsets)


def numpy_fingerprint(block: np.ndarray, offsets: np.ndarray) -> Fingerprint:
    """``fingerprint`` in NumPy (the compiled module's reference, and its stand-in where it is not built)."""
    n = len(offsets) - 1
    if n <= 0:
        return Fingerprint()
    digest = 0
    for _i, _j, hashes in _slice_hashes(block, offsets):
        digest += int(np.sum(hashes, dtype=np.uint64))
    return Fingerprint(n, int(offsets[-1]) - int(offsets[0]), digest % 2**64)


def fingerprint_records(block: np.ndarray, fmt: RecordFormat) -> Fingerprint:
    """Fingerprint of the whole records of ``block``, which starts at a record boundary.

    Records are found a slice at a time, never listed for the whole block, so the memory this
    takes does not grow with the block: 3 MiB on 60-byte records, 26 MiB at most (empty lines).
    ``--check-permutation`` hashes this way.
    """
    if native is not None:
        return Fingerprint(*native.separated_sum(np.ascontiguousarray(block), fmt.sep, fmt.group))
    return numpy_fingerprint_records(block, fmt)


def numpy_fingerprint_records(block: np.ndarray, fmt: RecordFormat) -> Fingerprint:
    """``fingerprint_records`` in NumPy, a slice at a time."""
    total = Fingerprint()
    lo = 0
    mask = np.empty(min(SLICE, len(block)) + 1, np.bool_)
    while lo < len(block):
        # From the separator ending the previous record (offset 0 of what follows), if any.
        part = block[lo - 1 if lo else 0 : lo + SLICE]
        hits = np.flatnonzero(np.equal(part, fmt.sep, out=mask[: len(part)]))
        offsets = hits[:: fmt.group] if lo else np.concatenate(([0], hits[fmt.group - 1 :: fmt.group] + 1))
        if len(offsets) == 1:  # a record longer than a slice, or bytes after the last record
            offsets = find_offsets(block[lo:], fmt, max_records=1)
            if len(offsets) == 1:
                break
        total += numpy_fingerprint(block[lo:], offsets)
        lo += int(offsets[-1])
    return total


def record_hashes(block: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The 64-bit hash of each record ``block[offsets[i]:offsets[i+1]]``: its words' keyed mixes, summed, mixed with its length."""
    if native is None or len(offsets) < 2:
        return numpy_record_hashes(block, offsets)
    out = np.zeros(len(offsets) - 1, np.uint64)
    native.hash_records(np.ascontiguousarray(block), np.ascontiguousarray(offsets, np.int64), out)
    return out


def numpy_record_hashes(block: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``record_hashes`` in NumPy, about one slice at a time."""
    out = np.zeros(max(0, len(offsets) - 1), np.uint64)
    for i, j, hashes in _slice_hashes(block, offsets):
        out[i:j] = hashes
    return out


def _slice_hashes(block: np.ndarray, offsets: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(i, j, hashes)``: the hashes of records ``i`` to ``j - 1``, whole records filling about one
    slice (at most MAX_RECORDS) at a time, so that the temporaries stay small."""
    n = len(offsets) - 1
    ends = offsets[1:]
    i = 0
    with np.errstate(over="ignore"):
        while i < n:
            lo = int(offsets[i])
            reach = ends.dtype.type(min(lo + SLICE, np.iinfo(ends.dtype).max))  # the offsets' own type: no converted copy
            j = min(int(np.searchsorted(ends, reach, side="right")), i + MAX_RECORDS)
            if j == i:  # a record longer than a slice, alone, a slice at a time
                j = i + 1
                sums = np.array([_long_record_sum(block, lo, int(ends[i]))], np.uint64)
                lengths = np.array([int(ends[i]) - lo], np.int64)
            else:
                bounds = offsets[i : j + 1].astype(np.int64)
                bounds -= lo
                lengths = np.diff(bounds)
                sums = _word_sums(_padded(block, lo, int(ends[j - 1])), bounds[:-1], lengths, _slice_keys(SLICE))
            length_mix = lengths.astype(np.uint64)
            length_mix *= GOLD
            length_mix += _LENGTH_SALT
            _mix_in_place(length_mix)
            sums ^= length_mix
            _mix_in_place(sums)
            yield i, j, sums
            i = j


def _padded(block: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``block[lo:hi]`` followed by at least 7 readable bytes (the block's own, or zeros in a copy), for whole-word reads."""
    if hi + 7 <= len(block):
        return block[lo : hi + 7]
    seg = np.zeros(hi - lo + 7, np.uint8)
    seg[: hi - lo] = block[lo:hi]
    return seg


def _long_record_sum(block: np.ndarray, lo: int, hi: int) -> np.uint64:
    """The word sum of one record longer than a slice, a slice (a whole number of words) at a time."""
    total = np.uint64(0)
    for at in range(lo, hi, SLICE):
        size = min(SLICE, hi - at)
        first_word = (at - lo) // 8
        keys = _slice_keys(SLICE) if first_word == 0 else word_keys(first_word, first_word + SLICE // 8 + ROW)
        part = _word_sums(_padded(block, at, at + size), np.zeros(1, np.int64), np.full(1, size, np.int64), keys)
        total += part[0]
    return total


def _word_sums(seg: np.ndarray, starts: np.ndarray, lengths: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For each record ``seg[starts[i]:starts[i]+lengths[i]]``, the wrapping sum over its 8-byte words
    (little-endian, the last one zero-filled) of ``mix(word ^ keys[word's index in the record])``.

    Words are read ROW at a time, one row per gathered index: a record is its full rows and a last
    row of 1 to ROW words, hashed with the other records' last rows of that width. ``seg`` must have
    7 readable bytes after the last record (words are read whole, unaligned), and ``keys`` ROW - 1
    more than the longest record has words.
    """
    sums = np.zeros(len(starts), np.uint64)
    words_per = (lengths + 7) >> 3
    if not words_per.all():  # empty records (Arrow strings) have no words
        some = np.flatnonzero(words_per)
        if len(some):
            sums[some] = _word_sums(seg, starts[some], lengths[some], keys)
        return sums
    key_rows = keys[: len(keys) // ROW * ROW].reshape(-1, ROW)
    full = (words_per - 1) // ROW  # the rows before each record's last
    most = int(full.max())
    if most > FEW_ROWS:
        sums += _full_row_sums(seg, starts, full, key_rows)
    for row in range(most if most <= FEW_ROWS else 0):  # the records' rows ``row``, all with the same keys
        these = np.flatnonzero(full > row)
        at = starts[these]
        at += 8 * ROW * row
        words = _word_rows(seg, at, ROW)
        words ^= key_rows[row]
        _mix_in_place(words)
        sums[these] += _row_sums(words)
    last_words = words_per - full * ROW  # 1 to ROW
    last_at = full * (8 * ROW)
    last_at += starts
    tails = _TAIL_MASKS[lengths - 8 * (words_per - 1)]
    by_width = np.argsort(last_words.astype(np.uint8), kind="stable")  # a radix sort: records grouped by last row's width
    bounds = np.cumsum(np.bincount(last_words, minlength=ROW + 1))
    for width in range(1, ROW + 1):
        these = by_width[bounds[width - 1] : bounds[width]]
        if not len(these):
            continue
        words = _word_rows(seg, last_at[these], width)
        words[:, width - 1] &= tails[these]
        rows = full[these]
        words ^= key_rows[rows, :width] if rows.any() else keys[:width]
        _mix_in_place(words)
        sums[these] += _row_sums(words)
    return sums


def _full_row_sums(seg: np.ndarray, starts: np.ndarray, full: np.ndarray, key_rows: np.ndarray) -> np.ndarray:
    """``_word_sums`` of the first ``full[i]`` rows of each record, all in one array (for records of many rows)."""
    firsts = np.cumsum(full)
    firsts -= full
    row_in_record = np.arange(int(firsts[-1] + full[-1]), dtype=np.int64)
    row_in_record -= np.repeat(firsts, full)
    at = row_in_record * (8 * ROW)
    at += np.repeat(starts, full)
    words = _word_rows(seg, at, ROW)
    del at
    words ^= key_rows[row_in_record]
    _mix_in_place(words)
    row_sums = np.zeros(len(words) + 1, np.uint64)
    np.cumsum(_row_sums(words), out=row_sums[1:])
    sums: np.ndarray = row_sums[firsts + full]
    sums -= row_sums[firsts]
    return sums


def _word_rows(seg: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """The ``width`` little-endian words starting at each byte offset ``at[i]`` of ``seg``, one row each.

    Gathered as one opaque item of ``8 * width`` bytes per row: 2-3 times as fast as indexing a
    2-D view of words (NumPy copies an item at once, a row of a 2-D view word by word).
    """
    rows = max(0, len(seg) - 8 * width + 1)
    items = np.ndarray((rows,), np.dtype((np.void, 8 * width)), buffer=seg, strides=(1,))
    words: np.ndarray = items[at].view("<u8").reshape(len(at), width)
    return words


def _row_sums(words: np.ndarray) -> np.ndarray:
    """Each row's wrapping sum: einsum's loop, about four times as fast as ``sum(axis=1)`` on rows of 8."""
    sums: np.ndarray = np.einsum("ij->i", words)
    return sums


def _mix_in_place(x: np.ndarray) -> None:
    """``mix`` overwriting ``x``, with one temporary (the hash of every word is the hot loop)."""
    tmp = np.empty_like(x)
    for shift, factor in ((30, _M1), (27, _M2), (31, None)):
        np.right_shift(x, np.uint64(shift), out=tmp)
        np.bitwise_xor(x, tmp, out=x)
        if factor is not None:
            np.multiply(x, factor, out=x)


def word_keys(lo: int, hi: int) -> np.ndarray:
    """The keys of words ``lo`` to ``hi - 1`` of a record: distinct pseudo-random values."""
    with np.errstate(over="ignore"):
        return mix((np.arange(lo, hi, dtype=np.uint64) + np.uint64(1)) * GOLD)


@cache
def _slice_keys(slice_bytes: int) -> np.ndarray:
    """The keys of the words a slice can hold, computed on first use (10 ms: not at start-up)."""
    return word_keys(0, slice_bytes // 8 + ROW)


#: Masks keeping the first r bytes of a little-endian word, r = 0..8.
_TAIL_MASKS = np.array([(1 << (8 * r)) - 1 for r in range(9)], np.uint64)
_LENGTH_SALT = np.uint64(0x243F6A8885A308D3)
