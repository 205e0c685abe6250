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
from ..core.records import array_block, list_spans

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
    if isinstance(t, pa.ExtensionType):
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
        elif pa.types.is_string_view(t) or pa.types.is_binary_view(t):
            return array_hashes(arr.cast(pa.large_binary() if pa.types.is_binary_view(t) else pa.large_string()))
        elif pa.types.is_binary(t) or pa.types.is_string(t) or pa.types.is_large_binary(t) or pa.types.is_large_string(t):
            h = record_hashes(*array_block(arr))
        elif pa.types.is_boolean(t):
            h = _fixed_hashes(arr.cast(pa.uint8()))
        elif getattr(t, "bit_width", 0) and t.bit_width % 8 == 0:
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


def _list_hashes(arr: Any) -> np.ndarray:
    """Hashes of list values: their elements' hashes, weighted by position, summed, mixed with the length."""
    offsets, values = list_spans(arr)
    element = array_hashes(values)
    starts, lengths = offsets[:-1], np.diff(offsets)
    position = np.arange(len(values), dtype=np.uint64) - np.repeat(starts, lengths).astype(np.uint64)
    weighted = mix(element + (position + np.uint64(1)) * GOLD)
    sums = np.zeros(len(values) + 1, np.uint64)
    np.cumsum(weighted, out=sums[1:])
    return mix((sums[offsets[1:]] - sums[starts]) ^ lengths.astype(np.uint64) * GOLD)
