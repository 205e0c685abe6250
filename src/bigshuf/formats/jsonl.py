"""Table rows as JSON Lines, built column by column with Arrow compute kernels (no loop per row).

Each column becomes an array of JSON texts (``"null"`` for nulls), nested lists and structs
recursively, and the row texts are joined element-wise. Strings are escaped as JSON requires;
numbers keep Arrow's shortest round-trip form, a whole float with ``.0`` so that it reads back
as a float (non-finite floats, which JSON cannot hold, become null); timestamps are RFC 3339 strings, dates and times ISO 8601 ones; binary columns must hold UTF-8.
A column JSON cannot hold (a union, an interval, a date or time Arrow would print out of range or
wrong, a time zone Arrow cannot find) is refused naming the file and the column, never written.
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

#: Days from 1970-01-01 to 0000-01-01 and to 10000-01-01: the years RFC 3339 and ISO 8601 text
#: holds in four digits. Arrow prints dates beyond them as "<value out of range: N>", or wrapped
#: round to a wrong year.
_FIRST_DAY, _END_DAY = -719528, 2932897
#: Ticks per second of each time unit.
_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
_DAY = 86400


class NotJson(Exception):
    """A column JSON text cannot hold, by its type or a value (the message names the column); ``json_lines``
    names the file."""


def json_lines(table: pa.Table | pa.RecordBatch, shown: str) -> Iterator[memoryview]:
    """The rows of ``table`` as JSON objects, one per line, in buffers of about a batch each;
    ``shown`` names the output in the UsageError that refuses a column JSON cannot hold."""
    try:
        yield from _json_lines(table)
    except NotJson as e:
        raise UsageError(f"{shown}: {e}") from None


def check_json_columns(shown: str, schema: pa.Schema) -> None:
    """Refuse, before anything is read, a column whose type JSON cannot hold (a union, an interval,
    an unknown time zone), naming it: the writer would refuse it only once the rows are shuffled."""
    for field in schema:
        try:
            empty = pa.nulls(1, field.type)
        except pa.ArrowException:
            continue  # a type Arrow makes no nulls of is left to the writer
        try:
            json_values(empty, field.name)
        except NotJson as e:
            raise UsageError(f"{shown}: {e}") from None


def _json_lines(table: pa.Table | pa.RecordBatch) -> Iterator[memoryview]:
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
    if isinstance(t, pa.BaseExtensionType):
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
        text = _whole_with_point(wide, text)
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        text = _quote(arr.cast(pa.large_string()))
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        try:
            text = _quote(arr.cast(pa.large_binary()).cast(pa.large_string()))
        except pa.ArrowInvalid:
            raise NotJson(f"column {quote_arg(name)} holds binary data that is not UTF-8; it cannot be written as JSON") from None
    elif pa.types.is_duration(t):
        text = arr.cast(pa.int64()).cast(pa.string())
    elif pa.types.is_timestamp(t):
        per_day = _DAY * _PER_SECOND[t.unit]
        # A time zone moves the date printed by less than a day either way: near the edges, checked on the text.
        near = per_day if t.tz else 0
        span = _check_range(arr, name, _FIRST_DAY * per_day - near, _END_DAY * per_day + near, "timestamp")
        edge = span is not None and (span[0] < _FIRST_DAY * per_day + near or span[1] >= _END_DAY * per_day - near)
        try:
            local = arr.cast(pa.string())
        except pa.ArrowInvalid:
            raise NotJson(
                f"column {quote_arg(name)} has time zone {quote_arg(t.tz)}, which is not in the time zone database; "
                "it cannot be written as JSON"
            ) from None
        if t.tz and edge:
            _check_years(local, arr, name)
        # RFC 3339: "T" between date and time, and a colon in the offset ("+01:00").
        text = pc.replace_substring(local, " ", "T", max_replacements=1)
        text = _quote(pc.replace_substring_regex(text, r"([+-]\d\d)(\d\d)$", r"\1:\2"))
    elif pa.types.is_date(t):
        per_day = 1 if pa.types.is_date32(t) else _DAY * 1000
        _check_range(arr, name, _FIRST_DAY * per_day, _END_DAY * per_day, "date")
        text = _quote(arr.cast(pa.string()))
    elif pa.types.is_time(t):
        _check_range(arr, name, 0, _DAY * _PER_SECOND[t.unit], "time of day")
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
        raise NotJson(f"column {quote_arg(name)} of type {t} cannot be written as JSON")
    if arr.null_count or text.null_count:
        text = pc.if_else(pc.and_(arr.is_valid(), text.is_valid()), _large(text), _text("null"))
    return _large(text)


def _whole_with_point(values: pa.Array, text: pa.Array) -> pa.Array:
    """``text`` (Arrow's texts of the floats ``values``) with ``.0`` after a whole number written in
    digits alone: Arrow writes 1.0 as "1", which read back makes the column integers; ``json.dumps``
    writes "1.0" (and "1e+20" as Arrow does). Found by arithmetic and a plain substring search, not
    a regular expression over every text (a third slower on float columns)."""
    whole = pc.fill_null(pc.equal(pc.floor(values), values), False)
    if not pc.any(whole).as_py():
        return text
    digits = pc.fill_null(pc.and_(whole, pc.invert(pc.match_substring(text, "e"))), False)
    if not pc.any(digits).as_py():
        return text
    points = pc.binary_join_element_wise(pc.filter(text, digits), _text(".0"), _text(""))
    return pc.replace_with_mask(_large(text), digits, _large(points))


def _check_range(arr: pa.Array, name: str, low: int, end: int, what: str) -> tuple[int, int] | None:
    """Refuse a value of the date, time or timestamp array ``arr`` outside ``[low, end)`` in its
    own unit, which Arrow would print wrong; the least and most values (None if all are null)."""
    ticks = arr.view(pa.int32() if arr.type.bit_width == 32 else pa.int64())
    extremes = pc.min_max(ticks)
    least, most = extremes["min"].as_py(), extremes["max"].as_py()
    if least is None:
        return None
    for value in (least, most):
        if not low <= value < end:
            bounds = "00:00 to 24:00" if what == "time of day" else "the years 0000 to 9999"
            raise NotJson(
                f"column {quote_arg(name)} holds a {what} outside {bounds} ({arr.type} value {value}); "
                "it cannot be written as JSON"
            )
    return least, most


def _check_years(local: pa.Array, arr: pa.Array, name: str) -> None:
    """Refuse a timestamp whose local time, as Arrow printed it in ``local``, is not in a four-digit year."""
    good = pc.match_substring_regex(local, r"^\d{4}-")
    bad = pc.and_(pc.invert(good), local.is_valid())
    if pc.any(bad).as_py():
        value = arr.view(pa.int64()).filter(bad)[0].as_py()
        raise NotJson(
            f"column {quote_arg(name)} holds a timestamp outside the years 0000 to 9999 in its time zone "
            f"({arr.type} value {value}); it cannot be written as JSON"
        )


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
