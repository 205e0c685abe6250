"""JSON Lines read into Parquet: bad input is one clear line naming the file, line and field, and a clean exit."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import temp_leftovers

#: A clean failure takes about a second; a run hung in Arrow's reader threads never ends.
HANG = 30


def run(args: list[str | Path], stdin: bytes = b"", cwd: Path | None = None) -> tuple[int, bytes]:
    """Exit status and stderr of ``python -m bigshuf ARGS`` (a hang fails the test)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bigshuf", *map(str, args)], input=stdin, capture_output=True, timeout=HANG, cwd=cwd
    )
    return proc.returncode, proc.stderr


def words_text(path: Path, size: int) -> Path:
    """About ``size`` bytes of lines of random lowercase words: text, not JSON."""
    rng = np.random.default_rng(5)
    data = rng.integers(97, 123, size, dtype=np.uint8)
    data[rng.integers(0, size, size // 6)] = 32
    data[rng.integers(0, size, size // 60)] = 10
    data[-1] = 10
    path.write_bytes(data.tobytes())
    return path


def test_text_into_parquet_fails_cleanly_every_time(tmp_path: Path) -> None:
    # 1ac7d16 printed the error, then died of "Fatal Python error: PyGILState_Release" or hung
    # at exit (Arrow's JSON reader threads still reading the Python stream): 3 runs of 4.
    text = words_text(tmp_path / "text.txt", 24 << 20)
    (tmp_path / "text.txt.gz").write_bytes(gzip.compress(text.read_bytes(), 1))
    for attempt in range(10):
        name = "text.txt.gz" if attempt % 5 == 4 else "text.txt"
        code, err = run([name, "-o", "t.parquet"], cwd=tmp_path)
        assert (code, err) == (1, f"bigshuf: {name}: line 1 is not JSON (Expecting value)\n".encode()), (attempt, code, err)
    assert temp_leftovers(tmp_path) == ["text.txt", "text.txt.gz"]


@pytest.mark.parametrize("source", ["pipe", "file"])
def test_numbers_are_not_json_objects(tmp_path: Path, source: str) -> None:
    # `seq 5 | bigshuf -o x.parquet` said "Column() changed from object to number in row 0".
    numbers = b"".join(b"%d\n" % i for i in range(1, 6))
    (tmp_path / "numbers.txt").write_bytes(numbers)
    args: list[str | Path] = ["-o", "x.parquet"] + (["numbers.txt"] if source == "file" else [])
    code, err = run(args, stdin=numbers if source == "pipe" else b"", cwd=tmp_path)
    name = "numbers.txt" if source == "file" else "-"
    assert (code, err) == (1, f"bigshuf: {name}: line 1 is not a JSON object (it is a number)\n".encode())
    assert temp_leftovers(tmp_path) == ["numbers.txt"]


def test_a_schema_naming_a_column_twice_is_refused(tmp_path: Path) -> None:
    """It was an internal error from Arrow (field names not matching)."""
    code, err = run(["--schema", "a:int64,b:string,a:int64", "-o", "x.parquet"], stdin=b'{"a": 1, "b": "x"}\n', cwd=tmp_path)
    assert (code, err) == (1, b"bigshuf: --schema: the column 'a' is named twice\n")
    assert temp_leftovers(tmp_path) == []


def test_a_field_missing_from_the_schema_is_named(tmp_path: Path) -> None:
    rows = b'{"id": 1, "text": "a"}\n' * 3 + b'{"id": 4, "text": "d", "lang": "en"}\n'
    code, err = run(["--schema", "id:int64,text:string", "-o", "x.parquet"], stdin=rows, cwd=tmp_path)
    assert (code, err) == (1, b"bigshuf: -: line 4 has a field 'lang' that --schema does not name\n")
    assert temp_leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "rows, message",
    [
        (b'{"a": 1}\n[1, 2]\n', "line 2 is not a JSON object (it is an array)"),
        (b'{"a": 1}\n"text"\n', "line 2 is not a JSON object (it is a string)"),
        (b'{"a": 1}\n\n{"a": true}\ntrue\n', "line 4 is not a JSON object (it is true)"),
        # A block starting with a null line crashed Arrow's reader (segfault); elsewhere it became a row of nulls.
        (b"null\n", "line 1 is not a JSON object (it is null)"),
        (b'{"a": 1}\n  null\n{"a": 2}\n', "line 2 is not a JSON object (it is null)"),
        (b'{"a": 1}\n{"a": 2\n', "line 2 is not JSON (Expecting ',' delimiter)"),
        # Arrow's reader crashed (segfault) on an array nested 100,000 deep; Python's refused it (RecursionError).
        (b'{"a": 1}\n{"a": ' + b"[" * 100000 + b"]" * 100000 + b"}\n", "line 2 is JSON nested too deeply to read"),
        (b"[" * 30000 + b"\n", "line 1 is JSON nested too deeply to read"),
        # Nested past Python's depth but with too few brackets for the guard: Arrow read it, then the
        # column's type was walked (internal error: RecursionError).
        (b'{"a": ' + b"[" * 1500 + b"]" * 1500 + b'}\n{"a": []}\n', "a column is nested too deeply to shuffle"),
        (b'{"a": 1}\n{"a": 2}\n{"a": "x"}\n', "line 3: field 'a' changed from number to string; give the column types with --schema"),
        # Arrow's reader checks neither: invalid UTF-8 was written into a Parquet file no reader
        # takes back (exit 0, --verify too); in a field name it was an internal UnicodeDecodeError.
        (b'{"a": "ok"}\n{"a": "\xff"}\n', "line 2 is not JSON (not UTF-8 text)"),
        (b'{"\xff": 1}\n', "line 1 is not JSON (not UTF-8 text)"),
        (b'{"a": {"b\xfe": 1}}\n', "line 1 is not JSON (not UTF-8 text)"),
        (b'{"a": [{"b": "x\xfe"}]}\n', "line 1 is not JSON (not UTF-8 text)"),
        # An encoded surrogate, which Python's json reads from bytes: the message named no line.
        (b'{"a": 1}\n{"a": "\xed\xa0\x80"}\n', "line 2 is not JSON (not UTF-8 text)"),
        # Two objects on one line became two rows.
        (b'{"a": 1}\n{"a": 2} {"a": 3}\n', "line 2 is not JSON (Extra data)"),
        (b'{"a": 1}{"a": 2}\n', "line 1 is not JSON (Extra data)"),
    ],
)
def test_malformed_json_lines_name_the_line(tmp_path: Path, rows: bytes, message: str) -> None:
    (tmp_path / "in.jsonl").write_bytes(rows)
    code, err = run(["in.jsonl", "-o", "x.parquet"], cwd=tmp_path)
    assert (code, err) == (1, f"bigshuf: in.jsonl: {message}\n".encode())
    assert temp_leftovers(tmp_path) == ["in.jsonl"]


def test_objects_after_json_blanks_are_read(tmp_path: Path) -> None:
    """A line may start with JSON's blanks before its object (Arrow and Python's json read
    ``\\r{...}``, `` {...}``): the count of objects against lines took only lines starting with
    ``{`` and refused such input ("hold 2 objects in 1 lines")."""
    (tmp_path / "in.jsonl").write_bytes(b'\r{"a": 1}\n {"a": 2}\n\t{"a": 3}\r\n  \n\r\n{"a": 4}')
    code, err = run(["--seed", "1", "in.jsonl", "-o", "x.parquet"], cwd=tmp_path)
    assert (code, err) == (0, b"")
    assert sorted(pq.read_table(tmp_path / "x.parquet")["a"].to_pylist()) == [1, 2, 3, 4]


def test_brackets_inside_strings_are_not_nesting(tmp_path: Path) -> None:
    """A line of 20,000 brackets in a string is parsed first by Python (it might be nested deep) and read."""
    rows = b'{"a": "' + b"[{" * 10000 + b'"}\n{"a": "x"}\n'
    (tmp_path / "in.jsonl").write_bytes(rows)
    code, err = run(["in.jsonl", "-o", "x.parquet"], cwd=tmp_path)
    assert (code, err) == (0, b"")
    assert sorted(pq.read_table(tmp_path / "x.parquet")["a"].to_pylist()) == sorted(["[{" * 10000, "x"])


def test_line_numbers_count_across_blocks(tmp_path: Path) -> None:
    # Read in blocks of 64 KiB at -S 64K: the bad lines are far past the first block.
    (tmp_path / "types.jsonl").write_bytes(b'{"a": 1}\n' * 20000 + b'{"a": "text"}\n')
    (tmp_path / "fields.jsonl").write_bytes(b'{"a": 1}\n' * 20000 + b'{"a": 2, "b": 3}\n')
    code, err = run(["-S", "64K", "types.jsonl", "-o", "x.parquet"], cwd=tmp_path)
    assert err == b"bigshuf: types.jsonl: line 20001: field 'a' changed from number to string; give the column types with --schema\n"
    code, err = run(["-S", "64K", "fields.jsonl", "-o", "x.parquet"], cwd=tmp_path)
    assert err == (b"bigshuf: fields.jsonl: line 20001 has a field 'b' that the first rows did not have; "
                   b"give the column types with --schema\n")
    assert code == 1
    # Read whole, the same field is one of the columns inferred.
    code, err = run(["--seed", "1", "fields.jsonl", "-o", "x.parquet"], cwd=tmp_path)
    assert code == 0, err
    assert pq.read_table(tmp_path / "x.parquet").schema.names == ["a", "b"]
    os.unlink(tmp_path / "x.parquet")


def test_long_lines_crlf_and_a_last_line_without_newline_read_whole(tmp_path: Path) -> None:
    # Blocks are parsed in parts at once: each part must hold the longest line.
    rng = np.random.default_rng(3)
    texts = ["x" * int(n) for n in rng.choice([5, 300, 300_000], 200)]
    lines = [b'{"i": %d, "t": "%s"}' % (i, t.encode()) for i, t in enumerate(texts)]
    (tmp_path / "in.jsonl").write_bytes(b"\r\n".join(lines))  # CRLF, no final newline
    code, err = run(["--seed", "1", "in.jsonl", "-o", "x.parquet"], cwd=tmp_path)
    assert code == 0, err
    got = pq.read_table(tmp_path / "x.parquet").to_pylist()
    assert sorted((r["i"], r["t"]) for r in got) == list(enumerate(texts))
    # At -S 64K lines are read in 64 KiB blocks, and a line over eight of them is refused.
    (tmp_path / "long.jsonl").write_bytes(b'{"t": "%s"}\n' % (b"x" * 600_000))
    code, err = run(["-S", "64K", "long.jsonl", "-o", "y.parquet"], cwd=tmp_path)
    assert (code, err) == (
        1, b"bigshuf: long.jsonl: a JSON line is longer than 524288 bytes, the most this memory limit allows; raise -S\n"
    )
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl", "long.jsonl", "x.parquet"]


@pytest.mark.parametrize("memory", ["1G", "1K"])
def test_rows_without_columns_are_refused_as_parquet_and_kept_as_arrow(tmp_path: Path, memory: str) -> None:
    """Lines of ``{}`` are rows without columns: Parquet keeps no row count without a column, so
    the file read back 0 rows of 3, with exit 0 under --verify too (found by review). Arrow IPC
    keeps them; Parquet is refused, with nothing written."""
    (tmp_path / "in.jsonl").write_bytes(b"{}\n{}\n{}\n")
    code, err = run(["-S", memory, "in.jsonl", "-o", "x.parquet", "--verify"], cwd=tmp_path)
    assert code == 1 and err.startswith(b"bigshuf: x.parquet: rows without columns") and err.count(b"\n") == 1
    assert temp_leftovers(tmp_path) == ["in.jsonl"]
    code, err = run(["-S", memory, "in.jsonl", "-o", "x.arrow"], cwd=tmp_path)
    assert (code, err) == (0, b"")
    assert pa.ipc.open_file(str(tmp_path / "x.arrow")).read_all().num_rows == 3


def test_rows_without_columns_to_standard_output_name_it_in_words() -> None:
    """Standard output is named as words, not quoted as a file named 'standard output' (found by review)."""
    proc = subprocess.run([sys.executable, "-m", "bigshuf", "--output-format", "parquet"], input=b"{}\n{}\n",
                          capture_output=True, timeout=HANG)
    assert proc.returncode == 1 and proc.stdout == b""
    assert proc.stderr.startswith(b"bigshuf: standard output: rows without columns") and proc.stderr.count(b"\n") == 1


def _arrow_file(path: Path, table: pa.Table) -> Path:
    with pa.ipc.new_file(str(path), table.schema) as writer:
        writer.write_table(table)
    return path


@pytest.mark.parametrize(
    "column,array,what",
    [
        ("d", pa.array([2**31 - 1, 0], pa.date32()), b"a date outside the years 0000 to 9999 (date32[day] value 2147483647)"),
        ("t", pa.array([2**62, 0], pa.timestamp("us", tz="UTC")), b"a timestamp outside the years 0000 to 9999"),
        ("n", pa.array([0, 2**62], pa.timestamp("us")), b"a timestamp outside the years 0000 to 9999 (timestamp[us] value 4611686018427387904)"),
        ("y", pa.array([0, 253402300800], pa.timestamp("s")), b"a timestamp outside the years 0000 to 9999 (timestamp[ms] value 253402300800000)"),
        ("k", pa.array([0, 253402300799], pa.timestamp("s", tz="+05:30")), b"a timestamp outside the years 0000 to 9999 in its time zone"),
    ],
)
def test_dates_and_times_json_text_cannot_hold_are_refused(tmp_path: Path, column: str, array: pa.Array, what: bytes) -> None:
    """Regression: a date or time Arrow prints as "<value out of range: N>", or wraps round to a
    wrong year ("17036-07-06T14:00:27Z" for a year about 148,000), was written with exit 0."""
    pq.write_table(pa.table({"id": [1, 2], column: array}), tmp_path / "dt.parquet")
    code, err = run(["--seed", "1", "dt.parquet", "-o", "dt.jsonl"], cwd=tmp_path)
    assert code == 1 and err.count(b"\n") == 1, err
    assert err.startswith(b"bigshuf: dt.jsonl: column '" + column.encode() + b"' holds " + what), err
    assert err.endswith(b"; it cannot be written as JSON\n"), err
    assert temp_leftovers(tmp_path) == ["dt.parquet"]


@pytest.mark.parametrize(
    "array,message",
    [
        (pa.array([pa.MonthDayNano([1, 2, 3])], pa.month_day_nano_interval()),
         b"bigshuf: out.jsonl: column 'c' of type month_day_nano_interval cannot be written as JSON\n"),
        (pa.array([0], pa.timestamp("us", tz="Etrope/Paris")),
         b"bigshuf: out.jsonl: column 'c' has time zone 'Etrope/Paris', which is not in the time zone database; "
         b"it cannot be written as JSON\n"),
    ],
)
def test_intervals_and_unknown_time_zones_are_refused_in_one_line(tmp_path: Path, array: pa.Array, message: bytes) -> None:
    """Regression: these were internal errors (ArrowNotImplementedError, ArrowInvalid) with a traceback hint."""
    _arrow_file(tmp_path / "in.arrow", pa.table({"c": array}))
    assert run(["in.arrow", "-o", "out.jsonl"], cwd=tmp_path) == (1, message)
    assert temp_leftovers(tmp_path) == ["in.arrow"]


def test_dates_and_timestamps_in_range_keep_their_text(tmp_path: Path) -> None:
    """Years 1 and 9999, a negative epoch and time zones are written as before the range checks, byte for byte."""
    first, last = -62135596800, 253402300799  # 0001-01-01T00:00:00, 9999-12-31T23:59:59
    table = pa.table({
        "id": [0, 1, 2],
        "d": pa.array([-719162, 2932896, -1], pa.date32()),
        "n": pa.array([first * 10**6, last * 10**6 + 999999, -1], pa.timestamp("us")),
        "u": pa.array([first * 1000, last * 1000, -1], pa.timestamp("ms", tz="UTC")),
        "p": pa.array([first, last - 3600, None], pa.timestamp("s", tz="Europe/Paris")),
        "h": pa.array([0, 86399999, None], pa.time32("ms")),
    })
    _arrow_file(tmp_path / "in.arrow", table)
    assert run(["--seed", "1", "in.arrow", "-o", "out.jsonl"], cwd=tmp_path) == (0, b"")
    assert sorted((tmp_path / "out.jsonl").read_bytes().splitlines()) == [
        b'{"id":0,"d":"0001-01-01","n":"0001-01-01T00:00:00.000000","u":"0001-01-01T00:00:00.000Z",'
        b'"p":"0001-01-01T00:09:21+00:09","h":"00:00:00.000"}',
        b'{"id":1,"d":"9999-12-31","n":"9999-12-31T23:59:59.999999","u":"9999-12-31T23:59:59.000Z",'
        b'"p":"9999-12-31T23:59:59+01:00","h":"23:59:59.999"}',
        b'{"id":2,"d":"1969-12-31","n":"1969-12-31T23:59:59.999999","u":"1969-12-31T23:59:59.999Z","p":null,"h":null}',
    ]


def test_whole_floats_are_written_as_floats_and_read_back_as_floats(tmp_path: Path) -> None:
    """A float column of whole numbers was written ``1``, ``-0``: shuffled back into Parquet (or read
    by pandas or Hugging Face) it became int64 (new-user trial). Now ``1.0`` and ``-0.0``, as
    ``json.dumps`` writes them; other floats keep Arrow's shortest form, and non-finite ones are null."""
    values = [1.0, -0.0, 2.5, 1e20, 1e-07, 123456789012.0, float("nan"), float("inf")]
    table = pa.table({
        "id": list(range(8)),
        "x": pa.array(values, pa.float64()),
        "h": pa.array(values, pa.float32()),
        "l": pa.array([[v, 3.0] for v in values], pa.list_(pa.float64())),
    })
    pq.write_table(table, tmp_path / "in.parquet")
    assert run(["--seed", "1", "in.parquet", "-o", "out.jsonl"], cwd=tmp_path) == (0, b"")
    rows = sorted((json.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()), key=lambda r: r["id"])
    texts = sorted((tmp_path / "out.jsonl").read_bytes().splitlines(), key=lambda r: json.loads(r)["id"])
    assert [r["x"] for r in rows] == [1.0, -0.0, 2.5, 1e20, 1e-07, 123456789012.0, None, None]
    assert all(type(r[c]) is float for r in rows[:6] for c in ("x", "h")) and all(type(v) is float for r in rows[:6] for v in r["l"])
    assert texts[0] == b'{"id":0,"x":1.0,"h":1.0,"l":[1.0,3.0]}' and texts[1].startswith(b'{"id":1,"x":-0.0,"h":-0.0,')
    assert run(["--seed", "1", "out.jsonl", "-o", "back.parquet"], cwd=tmp_path) == (0, b"")
    schema = pq.read_schema(tmp_path / "back.parquet")
    assert schema.field("x").type == schema.field("h").type == pa.float64() and schema.field("l").type == pa.list_(pa.float64())
    # Whole floats Arrow writes with an exponent keep it ("1e+15.0" is no JSON), in every float width.
    from bigshuf.formats.jsonl import json_values

    for width in (pa.float16(), pa.float32(), pa.float64()):
        texts_of = json_values(pa.array([1e15, 123456789012345.0, 4.0, -2.0], width), "x").to_pylist()
        assert all(isinstance(json.loads(t), float) for t in texts_of if t != "null"), (width, texts_of)
