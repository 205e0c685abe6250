"""Order-independent fingerprints of table rows, for ``--verify`` on Parquet and Arrow data.

A row's hash mixes its columns' value hashes, each salted by the column's position. Values
hash by their bytes: fixed-width values by their bit pattern in 8-byte words (so ``-0.0`` and each NaN payload
are told apart, as a byte-for-byte copy must keep them), strings and binaries as the line
fingerprint hashes records, lists by their elements' hashes weighted by position, structs by
their fields'. Nulls hash to a constant whatever the bytes under them. The fingerprint of a set
of rows is their count and the wrapping sum of their hashes, as for lines.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import UsageError, option
from ..core.fingerprint import GOLD, Fingerprint, mix, record_hashes, word_keys
from ..core.records import array_block, list_spans, union_spans

_NULL = np.uint64(0x6A09E667F3BCC908)


def row_fingerprint(rows: pa.Table | pa.RecordBatch) -> Fingerprint:
    """Row count and the wrapping sum of row hashes of ``rows``."""
    if isinstance(rows, pa.Table):
        total = Fingerprint()
        for batch in rows.to_batches():
            total += row_fingerprint(batch)
        return total
    with np.errstate(over="ignore"):
        digest = int(np.sum(row_hashes(rows), dtype=np.uint64))
    return Fingerprint(rows.num_rows, 0, digest)


def row_hashes(batch: pa.RecordBatch) -> np.ndarray:
    """The 64-bit hash of every row of ``batch``."""
    h = np.zeros(batch.num_rows, np.uint64)
    with np.errstate(over="ignore"):
        for i, column in enumerate(batch.columns):
            h += mix(array_hashes(column) + np.uint64(i + 1) * GOLD)
        return mix(h)


def array_hashes(arr: pa.Array) -> np.ndarray:
    """The 64-bit hash of every value of ``arr`` (nulls included), for any column type bigshuf can verify."""
    t = arr.type
    if isinstance(t, pa.BaseExtensionType):
        arr, t = arr.storage, t.storage_type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    n = len(arr)
    with np.errstate(over="ignore"):
        if pa.types.is_null(t):
            return np.full(n, _NULL, np.uint64)
        if pa.types.is_struct(t):
            h = np.zeros(n, np.uint64)
            for i, field in enumerate(arr.flatten()):
                h += mix(array_hashes(field) ^ np.uint64(i + 1) * GOLD)
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t) or pa.types.is_fixed_size_list(t):
            h = _list_hashes(arr)
        elif pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
            h = _list_view_hashes(arr)
        elif pa.types.is_union(t):
            h = _union_hashes(arr)
        elif pa.types.is_string_view(t) or pa.types.is_binary_view(t):
            return array_hashes(arr.cast(pa.large_binary() if pa.types.is_binary_view(t) else pa.large_string()))
        elif pa.types.is_binary(t) or pa.types.is_string(t) or pa.types.is_large_binary(t) or pa.types.is_large_string(t):
            h = record_hashes(*array_block(arr))
        elif pa.types.is_boolean(t):
            h = _fixed_hashes(arr.cast(pa.uint8()))
        elif _byte_width(t):
            h = _fixed_hashes(arr)
        else:
            raise UsageError(f"{option('verify')} cannot hash a column of type {t}")
        h = mix(h ^ np.uint64(t.id + 1) * GOLD)  # the kind of type, not its field names
        if arr.null_count:
            h[~np.asarray(arr.is_valid())] = _NULL
        return h


def _fixed_hashes(arr: pa.Array) -> np.ndarray:
    """Hashes of fixed-width values from their bytes, read as little-endian 8-byte words (the last
    zero-filled), each word mixed with the hash so far and a key for its place."""
    width = arr.type.bit_width // 8
    n = len(arr)
    data = np.frombuffer(arr.buffers()[1], np.uint8)[arr.offset * width : (arr.offset + n) * width].reshape(n, width)
    words = (width + 7) // 8
    if width % 8:
        padded = np.zeros((n, 8 * words), np.uint8)
        padded[:, :width] = data
        data = padded
    values = data.view("<u8")
    h = np.zeros(n, np.uint64)
    for k, key in enumerate(word_keys(0, words)):
        h = mix(h ^ values[:, k] ^ key)
    return h


def _byte_width(t: pa.DataType) -> bool:
    """Whether ``t`` is of a fixed width in whole bytes (pyarrow raises for types of no fixed width)."""
    try:
        return bool(t.bit_width) and t.bit_width % 8 == 0
    except ValueError:
        return False


def _list_hashes(arr: Any) -> np.ndarray:
    """Hashes of list values: their elements' hashes, weighted by position, summed, mixed with the length."""
    offsets, values = list_spans(arr)
    return _span_hashes(offsets, array_hashes(values))


def _list_view_hashes(arr: Any) -> np.ndarray:
    """Hashes of list views, as of lists of the same elements (each row's range gathered in order)."""
    lengths = np.asarray(arr.sizes, np.int64)
    if arr.null_count:
        lengths = np.where(arr.is_null().to_numpy(zero_copy_only=False), 0, lengths)  # a null's range may be anything
    offsets = np.zeros(len(arr) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    starts = np.asarray(arr.offsets, np.int64)
    elements = np.repeat(starts - offsets[:-1], lengths) + np.arange(int(offsets[-1]), dtype=np.int64)
    return _span_hashes(offsets, array_hashes(arr.values.take(elements)))


def _span_hashes(offsets: np.ndarray, element: np.ndarray) -> np.ndarray:
    """Hashes of the runs ``offsets`` cut ``element`` (element hashes) into, weighted by position."""
    starts, lengths = offsets[:-1], np.diff(offsets)
    position = np.arange(len(element), dtype=np.uint64) - np.repeat(starts, lengths).astype(np.uint64)
    weighted = mix(element + (position + np.uint64(1)) * GOLD)
    sums = np.zeros(len(element) + 1, np.uint64)
    np.cumsum(weighted, out=sums[1:])
    return mix((sums[offsets[1:]] - sums[starts]) ^ lengths.astype(np.uint64) * GOLD)


def _union_hashes(arr: Any) -> np.ndarray:
    """Hashes of union values: the value of the child each holds, mixed with its type code."""
    t = arr.type
    children, offsets = union_spans(arr)
    h = np.zeros(len(arr), np.uint64)
    for c, code in enumerate(t.type_codes):
        rows = np.flatnonzero(children == c)
        if not len(rows):
            continue
        at = offsets[rows]
        lo, hi = int(at.min()), int(at.max()) + 1
        h[rows] = array_hashes(arr.field(c).slice(lo, hi - lo))[at - lo] ^ np.uint64(code + 1) * GOLD
    return h
