"""Table rows as JSON Lines, built column by column with Arrow compute kernels (no loop per row).

Each column becomes an array of JSON texts (``"null"`` for nulls), nested lists and structs
recursively, and the row texts are joined element-wise. Strings are escaped as JSON requires;
numbers keep Arrow's shortest round-trip form (non-finite floats, which JSON cannot hold,
become null); timestamps are RFC 3339 strings, dates and times ISO 8601 ones; binary columns must hold UTF-8.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import UsageError
from ..core.records import array_bytes, list_spans
from ..quoting import quote_arg

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def json_lines(table: pa.Table | pa.RecordBatch) -> Iterator[memoryview]:
    """The rows of ``table`` as JSON objects, one per line, in buffers of about a batch each."""
    batches = table.to_batches() if isinstance(table, pa.Table) else [table]
    for batch in batches:
        if not batch.num_rows:
            continue
        parts: list[pa.Array | str] = []
        for i, (name, column) in enumerate(zip(batch.schema.names, batch.columns)):
            parts.append(("{" if i == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":")
            parts.append(json_values(column, name))
        if not parts:
            parts.append("{")
        parts.append("}\n")
        yield array_bytes(_join(parts, batch.num_rows))


def _join(parts: list[pa.Array | str], n: int) -> pa.Array:
    """Element-wise concatenation of arrays and constant strings, as a large_string array of ``n`` texts."""
    if not any(isinstance(p, pa.Array) for p in parts):
        return pa.repeat(_text("".join(p for p in parts if isinstance(p, str))), n)
    args = [_text(p) if isinstance(p, str) else _large(p) for p in parts]
    return pc.binary_join_element_wise(*args, _text(""))


def _text(value: str) -> pa.Scalar:
    return pa.scalar(value, pa.large_string())


def _large(arr: pa.Array) -> pa.Array:
    return arr if arr.type == pa.large_string() else arr.cast(pa.large_string())


def _quote(text: pa.Array) -> pa.Array:
    """JSON string literals of a string array."""
    for raw, escaped in _ESCAPES.items():
        text = pc.replace_substring(text, raw, escaped)
    if pc.any(pc.match_substring_regex(text, r"[\x00-\x1f]")).as_py():
        for code in range(32):
            if chr(code) not in _ESCAPES:
                text = pc.replace_substring(text, chr(code), f"\\u{code:04x}")
    return _join(['"', text, '"'], len(text))


def json_values(arr: pa.Array, name: str) -> pa.Array:
    """The JSON text of every value of ``arr`` (``null`` for nulls); ``name`` is for messages."""
    t = arr.type
    if isinstance(t, pa.ExtensionType):
        return json_values(arr.storage, name)
    if pa.types.is_dictionary(t):
        return json_values(arr.dictionary_decode(), name)
    n = len(arr)
    if pa.types.is_null(t):
        return _join(["null"], n)
    if pa.types.is_boolean(t):
        text = pc.if_else(arr, _text("true"), _text("false"))
    elif pa.types.is_integer(t) or pa.types.is_decimal(t):
        text = arr.cast(pa.string())
    elif pa.types.is_floating(t):
        wide = arr.cast(pa.float64()) if pa.types.is_float16(t) else arr
        text = pc.if_else(pc.is_finite(wide), wide.cast(pa.large_string()), pa.scalar(None, pa.large_string()))
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        text = _quote(arr.cast(pa.large_string()))
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        try:
            text = _quote(arr.cast(pa.large_binary()).cast(pa.large_string()))
        except pa.ArrowInvalid:
            raise UsageError(f"column {quote_arg(name)} holds binary data that is not UTF-8; it cannot be written as JSON") from None
    elif pa.types.is_duration(t):
        text = arr.cast(pa.int64()).cast(pa.string())
    elif pa.types.is_timestamp(t):
        # RFC 3339: "T" between date and time, and a colon in the offset ("+01:00").
        text = pc.replace_substring(arr.cast(pa.string()), " ", "T", max_replacements=1)
        text = _quote(pc.replace_substring_regex(text, r"([+-]\d\d)(\d\d)$", r"\1:\2"))
    elif pa.types.is_temporal(t):
        text = _quote(arr.cast(pa.string()))
    elif pa.types.is_map(t):
        text = _wrap(arr, "{", "}", name)
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        text = _wrap(arr, "[", "]", name)
    elif pa.types.is_struct(t):
        fields = arr.flatten()
        parts: list[pa.Array | str] = []
        for i, field in enumerate(fields):
            parts.append(("{" if i == 0 else ",") + json.dumps(t.field(i).name, ensure_ascii=False) + ":")
            parts.append(json_values(field, f"{name}.{t.field(i).name}"))
        parts.append("}" if parts else "{}")
        text = _join(parts, n)
    else:
        raise UsageError(f"column {quote_arg(name)} of type {t} cannot be written as JSON")
    if arr.null_count or text.null_count:
        text = pc.if_else(pc.and_(arr.is_valid(), text.is_valid()), _large(text), _text("null"))
    return _large(text)


def _wrap(arr: Any, opening: str, closing: str, name: str) -> pa.Array:
    """List values as ``[a,b,...]`` (maps as ``{"k":v,...}``), from the JSON text of the elements they span."""
    offsets, values = list_spans(arr)
    if pa.types.is_map(arr.type):
        keys, items = values.flatten()
        key_text = json_values(keys, name) if pa.types.is_string(keys.type) else _quote(keys.cast(pa.large_string()))
        elements = _join([key_text, ":", json_values(items, name)], len(values))
    else:
        elements = json_values(values, name)
    lists = pa.LargeListArray.from_arrays(pa.array(offsets), elements)
    return _join([opening, pc.binary_join(lists, _text(",")), closing], len(arr))
