"""Order-independent fingerprints of record multisets, vectorised, for ``--verify`` and ``--check``.

A record's hash is a sum over its 8-byte words (read little-endian, the last one zero-filled)
of splitmix64's finaliser applied to the word XOR a key for the word's position in the record,
mixed with the record's length. Every byte counts where it stands: reordering bytes within a
record (``1221``/``2112``, ``abba``/``baab``) changes a word and so, but for a 2**-64 chance,
the hash. The fingerprint of a set of records is their count, their bytes and the sum of their
hashes modulo 2**64: the same for any order, changed by a lost, doubled or altered record except
with probability about 2**-64 per change. Not a defence against crafted collisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

#: Bytes hashed at once (a multiple of 8): the temporaries cost about 4 bytes a byte.
SLICE = 1 << 20

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

    def __add__(self, other: Fingerprint) -> Fingerprint:
        return Fingerprint(self.records + other.records, self.bytes + other.bytes, (self.digest + other.digest) % 2**64)

    def __str__(self) -> str:
        return f"{self.records} records, {self.bytes} bytes, digest {self.digest:016x}"


def fingerprint(block: np.ndarray, offsets: np.ndarray) -> Fingerprint:
    """Fingerprint of the records ``block[offsets[i]:offsets[i+1]]`` (separators included)."""
    n = len(offsets) - 1
    if n <= 0:
        return Fingerprint()
    digest = int(np.sum(record_hashes(block, offsets), dtype=np.uint64))
    return Fingerprint(n, int(offsets[-1]) - int(offsets[0]), digest)


def record_hashes(block: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The 64-bit hash of each record ``block[offsets[i]:offsets[i+1]]``: its words' keyed mixes, summed, mixed with its length."""
    n = len(offsets) - 1
    if n <= 0:
        return np.zeros(0, np.uint64)
    ends = np.asarray(offsets[1:], np.int64)
    starts = np.asarray(offsets[:-1], np.int64)
    sums = np.empty(n, np.uint64)
    i = 0
    with np.errstate(over="ignore"):
        while i < n:
            # Whole records filling about one slice at a time; a longer record alone, a slice at a time.
            lo = int(starts[i])
            j = int(np.searchsorted(ends, lo + SLICE, side="right"))
            if j == i:
                sums[i] = _long_record_sum(block, lo, int(ends[i]))
                i += 1
                continue
            hi = int(ends[j - 1])
            sums[i:j] = _word_sums(_padded(block, lo, hi), starts[i:j] - lo, ends[i:j] - starts[i:j], _slice_keys(SLICE))
            i = j
        lengths = (ends - starts).astype(np.uint64)
        return mix(sums ^ mix(lengths * GOLD + _LENGTH_SALT))


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
        keys = _slice_keys(SLICE) if first_word == 0 else word_keys(first_word, first_word + SLICE // 8 + 1)
        part = _word_sums(_padded(block, at, at + size), np.zeros(1, np.int64), np.full(1, size, np.int64), keys)
        total += part[0]
    return total


def _word_sums(seg: np.ndarray, starts: np.ndarray, lengths: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For each record ``seg[starts[i]:starts[i]+lengths[i]]``, the wrapping sum over its 8-byte words
    (little-endian, the last one zero-filled) of ``mix(word ^ keys[word's index in the record])``.

    ``seg`` must have 7 readable bytes after the last record: words are read whole, unaligned.
    """
    words_per = (lengths + 7) >> 3
    ends = np.cumsum(words_per)
    firsts = ends - words_per
    index = np.arange(int(ends[-1]), dtype=np.int64)
    index -= np.repeat(firsts, words_per)  # each word's index in its record
    at = np.repeat(starts, words_per)
    at += index << 3
    view = np.ndarray((len(seg) - 7,), "<u8", buffer=seg, strides=(1,))  # a word at every byte
    words = view[at]
    del at
    whole = words_per > 0  # empty records (Arrow strings) have no words
    if whole.all():
        last, tail = ends - 1, lengths - 8 * (words_per - 1)
    else:
        last, tail = ends[whole] - 1, lengths[whole] - 8 * (words_per[whole] - 1)
    words[last] &= _TAIL_MASKS[tail]
    words ^= keys[index]
    del index
    _mix_in_place(words)
    sums = np.zeros(len(words) + 1, np.uint64)
    np.cumsum(words, out=sums[1:])
    out: np.ndarray = sums[ends] - sums[firsts]
    return out


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
    return word_keys(0, slice_bytes // 8 + 1)


#: Masks keeping the first r bytes of a little-endian word, r = 0..8.
_TAIL_MASKS = np.array([(1 << (8 * r)) - 1 for r in range(9)], np.uint64)
_LENGTH_SALT = np.uint64(0x243F6A8885A308D3)
