"""Parquet and Arrow datasets: rows permuted exactly, on every path, with nested and null columns."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from itertools import permutations
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import bigshuf
from bigshuf.core import plan
from bigshuf.errors import InputError, OutputError, TempSpaceError, UsageError
from bigshuf.formats.rowhash import row_fingerprint
from bigshuf.formats.table_input import TableInput
from bigshuf.formats.tables import TableBuckets, row_sizes

from helpers import cut_stream, make_table, measure_table_buckets, run_child, temp_leftovers
from test_uniformity import assert_uniform


def write_parquet(path: Path, table: pa.Table, row_group_size: int = 1000) -> Path:
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def read_rows(paths: list[Path]) -> pa.Table:
    """The rows of output files, concatenated in order."""
    tables = []
    for p in paths:
        if p.suffix == ".arrow":
            with pa.memory_map(str(p)) as f:
                tables.append(pa.ipc.open_file(f).read_all())
        else:
            tables.append(pq.read_table(p))
    return pa.concat_tables(tables)


def assert_row_permutation(got: pa.Table, expected: pa.Table) -> None:
    """Same rows, byte for byte (as a multiset), in a different order when there are enough."""
    assert got.num_rows == expected.num_rows
    assert row_fingerprint(got) == row_fingerprint(expected)
    if "id" in expected.column_names:
        assert got.sort_by("id").equals(expected.sort_by("id").cast(got.schema))
        if got.num_rows > 20:
            assert got["id"].to_pylist() != expected["id"].to_pylist()


@pytest.fixture
def table() -> pa.Table:
    return make_table(3000)


@pytest.mark.parametrize("memory,passes", [("64M", {1}), ("64K", {2})])
def test_parquet_rows_permuted(tmp_path: Path, table: pa.Table, memory: str, passes: set[int]) -> None:
    src = write_parquet(tmp_path / "in.parquet", table)
    out = tmp_path / "out.parquet"
    stats = bigshuf.shuffle(src, out, memory=memory, seed=1, tmp_dir=tmp_path)
    assert stats.passes in passes and stats.records == table.num_rows
    got = pq.read_table(out)
    assert_row_permutation(got, table)
    assert got.schema.metadata[b"origin"] == b"bigshuf tests"
    assert got.schema.field("cat").type == table.schema.field("cat").type
    assert temp_leftovers(tmp_path) == sorted(["in.parquet", "out.parquet"])


def test_recursive_path(tmp_path: Path, table: pa.Table, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan, "MAX_BUCKETS", 2)
    src = write_parquet(tmp_path / "in.parquet", table)
    out = tmp_path / "out.parquet"
    stats = bigshuf.shuffle(src, out, memory="64K", seed=2, tmp_dir=tmp_path)
    assert stats.passes > 2
    assert_row_permutation(pq.read_table(out), table)


def test_same_seed_same_output_and_seeds_differ(tmp_path: Path, table: pa.Table) -> None:
    src = write_parquet(tmp_path / "in.parquet", table)
    runs = []
    for seed in (5, 5, 6):
        out = tmp_path / f"out{len(runs)}.parquet"
        bigshuf.shuffle(src, out, memory="64K", seed=seed, tmp_dir=tmp_path)
        runs.append(pq.read_table(out)["id"].to_pylist())
    assert runs[0] == runs[1] != runs[2]


def test_arrow_files_directory_and_shards(tmp_path: Path, table: pa.Table) -> None:
    data = tmp_path / "data"
    (data / "year=2024").mkdir(parents=True)
    write_parquet(data / "a.parquet", table.slice(0, 1000))
    write_parquet(data / "year=2024" / "b.parquet", table.slice(1000, 1000))
    with pa.OSFile(str(data / "c.arrow"), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table.slice(2000), max_chunksize=300)
    (data / "_SUCCESS").write_bytes(b"")
    out = tmp_path / "out"
    bigshuf.shuffle(data, f"{out}/", memory="64K", seed=3, shards=4, tmp_dir=tmp_path)
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"part-{i:05d}.parquet" for i in range(4)]
    counts = [pq.ParquetFile(f).metadata.num_rows for f in files]
    assert max(counts) - min(counts) <= 1
    assert_row_permutation(read_rows(files), table)


def test_arrow_output_and_row_group_size(tmp_path: Path, table: pa.Table) -> None:
    src = write_parquet(tmp_path / "in.parquet", table)
    out = tmp_path / "out.parquet"
    bigshuf.shuffle(src, out, memory="64K", seed=4, row_group_size=700, compress="snappy", tmp_dir=tmp_path)
    meta = pq.ParquetFile(out).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [700] * 4 + [200]
    assert meta.row_group(0).column(0).compression == "SNAPPY"
    arrow = tmp_path / "out.arrow"
    bigshuf.shuffle(out, arrow, seed=4, row_group_size=1000, tmp_dir=tmp_path)
    with pa.memory_map(str(arrow)) as f:
        reader = pa.ipc.open_file(f)
        assert [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)] == [1000] * 3
    assert_row_permutation(read_rows([arrow]), table)


def test_parquet_default_compression_is_zstd(tmp_path: Path, table: pa.Table) -> None:
    src = write_parquet(tmp_path / "in.parquet", table)
    out = tmp_path / "out.parquet"
    bigshuf.shuffle(src, out, seed=1)
    assert pq.ParquetFile(out).metadata.row_group(0).column(0).compression == "ZSTD"


@pytest.mark.parametrize("memory", ["64M", "64K"])
def test_head_count_samples_rows(tmp_path: Path, table: pa.Table, memory: str) -> None:
    src = write_parquet(tmp_path / "in.parquet", table)
    out = tmp_path / "out.parquet"
    stats = bigshuf.shuffle(src, out, memory=memory, seed=7, head_count=50, tmp_dir=tmp_path)
    got = pq.read_table(out)
    assert stats.records == got.num_rows == 50
    ids = got["id"].to_pylist()
    assert len(set(ids)) == 50
    assert got.sort_by("id").equals(table.take(sorted(ids)).cast(got.schema))


def test_duplicate_rows_kept_as_multiset(tmp_path: Path) -> None:
    base = pa.table({"v": pa.array([1, 1, 1, 2, None] * 200, pa.int64()), "s": ["a", "a", "b", "", None] * 200})
    src = write_parquet(tmp_path / "in.parquet", base, row_group_size=77)
    out = tmp_path / "out.parquet"
    bigshuf.shuffle(src, out, memory="8K", seed=1, tmp_dir=tmp_path, verify=True)
    got = pq.read_table(out)
    assert Counter(zip(*got.to_pydict().values())) == Counter(zip(*base.to_pydict().values()))
    assert row_fingerprint(got) == row_fingerprint(base)


def test_verify_catches_an_altered_row(tmp_path: Path, table: pa.Table, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_parquet(tmp_path / "in.parquet", table)
    out = tmp_path / "out.parquet"
    append = TableBuckets.append

    def alter_first_id(self: TableBuckets, scattered: pa.RecordBatch, counts: np.ndarray) -> None:
        ids = scattered.column(0).to_numpy().copy()
        ids[0] += 1
        changed = pa.RecordBatch.from_arrays([pa.array(ids), *scattered.columns[1:]], schema=scattered.schema)
        append(self, changed, counts)

    monkeypatch.setattr(TableBuckets, "append", alter_first_id)
    n = table.num_rows
    rows_shape = rf"^verification failed: read {n} rows \(digest [0-9a-f]{{16}}\), wrote {n} rows \(digest [0-9a-f]{{16}}\); output not put in place$"
    with pytest.raises(OutputError, match=rows_shape):
        bigshuf.shuffle(src, out, memory="64K", seed=1, tmp_dir=tmp_path, verify=True)
    assert not out.exists()
    assert temp_leftovers(tmp_path) == ["in.parquet"]


def test_bucket_missing_rows_is_detected(tmp_path: Path, table: pa.Table, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_parquet(tmp_path / "in.parquet", table)
    append = TableBuckets.append

    def lose_first_row(self: TableBuckets, scattered: pa.RecordBatch, counts: np.ndarray) -> None:
        append(self, scattered.slice(1), counts - (np.arange(len(counts)) == np.flatnonzero(counts)[0]))

    monkeypatch.setattr(TableBuckets, "append", lose_first_row)
    with pytest.raises(TempSpaceError, match="temporary bucket holds"):
        bigshuf.shuffle(src, tmp_path / "out.parquet", memory="64K", seed=1, tmp_dir=tmp_path)
    assert temp_leftovers(tmp_path) == ["in.parquet"]


def test_buckets_are_private_and_created_exclusively(tmp_path: Path, table: pa.Table, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: a table run's bucket directory took the umask's mode (0755) and Arrow opened
    each bucket by name, truncating and following whatever was there. The directory is now 0700,
    each bucket 0600 and made exclusively, as every other temporary file is."""
    old = os.umask(0o022)
    try:
        buckets = TableBuckets(str(tmp_path / "b"), 3, table.schema, False, 1 << 16)
        buckets.close()
        assert (tmp_path / "b").stat().st_mode & 0o777 == 0o700
        assert sorted(p.stat().st_mode & 0o777 for p in (tmp_path / "b").iterdir()) == [0o600] * 3
    finally:
        os.umask(old)
    real = TableBuckets.path

    def at_a_link(self: TableBuckets, j: int) -> str:
        """Bucket 1's name already taken by a symlink to a file of the user's."""
        path = real(self, j)
        if j == 1 and not os.path.lexists(path):
            os.symlink(tmp_path / "precious", path)
        return path

    (tmp_path / "precious").write_bytes(b"keep")
    monkeypatch.setattr(TableBuckets, "path", at_a_link)
    with pytest.raises(TempSpaceError, match="cannot create temporary buckets"):
        TableBuckets(str(tmp_path / "c"), 3, table.schema, False, 1 << 16)
    assert (tmp_path / "precious").read_bytes() == b"keep"


def test_buckets_replace_what_an_interrupted_attempt_left(tmp_path: Path, table: pa.Table) -> None:
    """A --resume --unique job of Parquet or Megatron input killed after a hash bucket was split in
    pass 1 left that level's directory; every rerun failed "cannot create temporary buckets: File
    exists" and the job could never finish (attack). The level is made again, as line buckets are."""
    left = tmp_path / "unique-10"
    left.mkdir(mode=0o700)
    (left / "00000.arrows").write_bytes(b"half a stream")
    (left / "00007.arrows").write_bytes(b"of a larger attempt")
    buckets = TableBuckets(str(left), 2, table.schema, False, 1 << 16)
    buckets.append(table.to_batches()[0], np.array([table.num_rows, 0]))
    buckets.close()
    assert sorted(os.listdir(left)) == ["00000.arrows", "00001.arrows"]
    assert sum(b.num_rows for b in buckets.batches(0)) == table.num_rows


def test_a_worker_thread_arrow_cannot_start_is_not_blamed_on_the_file(tmp_path: Path) -> None:
    """Under ``ulimit -v`` Arrow's JSON reader failed to start a worker thread, and the run said
    "data.jsonl: corrupt or unreadable JSON Lines input (Unknown error: Failed to launch worker
    thread ...)" (attack); it is the failure to start a thread, which the command words as such."""
    from bigshuf.formats.table_input import TableInput

    def failing() -> Iterator[pa.RecordBatch]:
        raise pa.ArrowException("Unknown error: Failed to launch worker thread: Resource temporarily unavailable")
        yield  # (a generator)

    with pytest.raises(RuntimeError, match="^can't start new thread$"):
        list(TableInput(str(tmp_path / "data.jsonl"), "jsonl")._guarded(failing()))


def _canonical_extension_table(kind: str) -> pa.Table:
    """100 rows of one of Arrow's own extension types (not ``pa.ExtensionType`` subclasses)."""
    if kind == "json":
        return pa.table({"c": pa.array(['{"a":1}', "[2]", None, '"x"'] * 25, pa.json_())})
    if kind == "tensor":
        storage = pa.array([[i, i + 1, i + 2, i + 3] for i in range(100)], pa.list_(pa.int32(), 4))
        return pa.table({"c": pa.ExtensionArray.from_storage(pa.fixed_shape_tensor(pa.int32(), [2, 2]), storage)})
    opaque = pa.opaque(pa.binary(), "geometry", "vendor")
    return pa.table({"c": pa.ExtensionArray.from_storage(opaque, pa.array([b"%d" % i for i in range(100)]))})


@pytest.mark.parametrize("kind", ["json", "tensor", "opaque"])
@pytest.mark.parametrize("memory", ["64M", "8K"])
def test_arrows_own_extension_types_are_shuffled(tmp_path: Path, kind: str, memory: str) -> None:
    """Found by attack: Arrow's canonical extension types (arrow.json, fixed_shape_tensor, opaque)
    derive from ``pa.BaseExtensionType``, not ``pa.ExtensionType``: sizing their rows raised a bare
    ValueError ("internal error"). They are shuffled as their storage, their type kept."""
    table = _canonical_extension_table(kind)
    src = tmp_path / "in.arrow"
    with pa.ipc.new_file(src, table.schema) as writer:
        writer.write_table(table)
    out = tmp_path / "out.arrow"
    bigshuf.shuffle(src, out, memory=memory, seed=1, verify=True, tmp_dir=tmp_path)
    got = pa.ipc.open_file(out).read_all()
    assert got.schema == table.schema
    storage = [c.storage for c in got.column("c").chunks]
    assert sorted(map(str, (v for c in storage for v in c.to_pylist()))) == sorted(map(str, table.column("c").chunks[0].storage.to_pylist()))
    bigshuf.shuffle(src, tmp_path / "u.arrow", memory=memory, seed=1, unique=True, tmp_dir=tmp_path)
    assert pa.ipc.open_file(tmp_path / "u.arrow").read_all().num_rows == len({str(v) for v in table.column("c").chunks[0].storage.to_pylist()})


def test_parquet_to_jsonl_and_back(tmp_path: Path, table: pa.Table) -> None:
    src = write_parquet(tmp_path / "in.parquet", table.drop_columns(["cat", "when"]))
    jsonl = tmp_path / "rows.jsonl.gz"
    bigshuf.shuffle(src, jsonl, memory="64K", seed=1, tmp_dir=tmp_path)
    import gzip

    lines = gzip.decompress(jsonl.read_bytes()).decode().splitlines()
    rows = [json.loads(line) for line in lines]
    assert sorted(r["id"] for r in rows) == list(range(table.num_rows))
    by_id = {r["id"]: r for r in rows}
    expected = table.drop_columns(["cat", "when"]).to_pylist()
    assert all(by_id[r["id"]] == r for r in expected)
    back = tmp_path / "back.parquet"
    schema = "id:int64,text:string"
    simple = tmp_path / "simple.jsonl"
    simple.write_text("".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in rows))
    bigshuf.shuffle(simple, back, memory="64K", seed=2, schema=schema, tmp_dir=tmp_path)
    got = pq.read_table(back)
    assert got.schema.field("id").type == pa.int64()
    assert_row_permutation(got, table.select(["id", "text"]))
    inferred = tmp_path / "inferred.parquet"
    bigshuf.shuffle(jsonl, inferred, seed=3, tmp_dir=tmp_path)
    assert sorted(pq.read_table(inferred)["id"].to_pylist()) == list(range(table.num_rows))


def test_jsonl_with_changing_types_suggests_schema(tmp_path: Path, run_cli) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"a": 1}\n' * 20000 + '{"a": "text"}\n')
    code, _, err = run_cli([src, "-o", tmp_path / "out.parquet", "-S", "64K", "-T", tmp_path])
    assert code == 1
    assert err.count(b"\n") == 1 and b"in.jsonl" in err and b"--schema" in err, err
    assert temp_leftovers(tmp_path) == ["in.jsonl"]


def test_schema_mismatch_names_file_and_column(tmp_path: Path, table: pa.Table, run_cli) -> None:
    a = write_parquet(tmp_path / "a.parquet", table)
    b = write_parquet(tmp_path / "b.parquet", table.set_column(6, "maybe", table["maybe"].cast(pa.int64())))
    c = write_parquet(tmp_path / "c.parquet", table.drop_columns(["lists"]))
    code, _, err = run_cli([a, b, "-o", tmp_path / "out.parquet"])
    assert code == 1
    assert err == f"bigshuf: {b}: schema does not match {a}: column 'maybe' is int64 here, int16 there\n".encode()
    code, _, err = run_cli([a, c, "-o", tmp_path / "out.parquet"])
    assert code == 1 and b"column 'lists' is missing" in err
    assert temp_leftovers(tmp_path) == ["a.parquet", "b.parquet", "c.parquet"]


def test_corrupt_files_are_one_line_errors(tmp_path: Path, table: pa.Table, run_cli) -> None:
    good = write_parquet(tmp_path / "good.parquet", table)
    data = good.read_bytes()
    (tmp_path / "trunc.parquet").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.parquet").write_bytes(b"not parquet at all\n")
    # Damage the middle of the column data: the footer still reads, a page does not.
    damaged = bytearray(data)
    middle = len(data) // 3
    damaged[middle : middle + 400] = bytes(400)
    (tmp_path / "pages.parquet").write_bytes(bytes(damaged))
    for name, words in (
        ("trunc.parquet", b"not a readable Parquet file"),
        ("text.parquet", b"not a Parquet file"),
        ("pages.parquet", b"pages.parquet: "),
    ):
        code, _, err = run_cli([tmp_path / name, "-o", tmp_path / "out.parquet", "-S", "64K", "-T", tmp_path])
        assert code == 1, name
        assert err.startswith(b"bigshuf: ") and err.count(b"\n") == 1 and words in err, err
    assert not (tmp_path / "out.parquet").exists()
    assert sorted(temp_leftovers(tmp_path)) == ["good.parquet", "pages.parquet", "text.parquet", "trunc.parquet"]
    assert (tmp_path / "good.parquet").read_bytes() == data


@pytest.mark.parametrize("kind", ["parquet", "arrow", "stream"])
def test_a_table_on_standard_input_is_refused_not_shuffled_as_lines(tmp_path: Path, table: pa.Table, run_cli, kind: str) -> None:
    """``bigshuf < t.parquet`` (or an Arrow file or IPC stream, piped or not) cut the file's bytes
    at newline bytes and wrote them, exit 0, where a tar on standard input is refused (found by attack)."""
    import subprocess
    import sys

    import pyarrow.ipc as ipc

    path = tmp_path / f"t.{kind}"
    if kind == "parquet":
        pq.write_table(table, path)
    else:
        with (ipc.new_file if kind == "arrow" else ipc.new_stream)(path, table.schema) as writer:
            writer.write_table(table)
    noun = {"parquet": "a Parquet file", "arrow": "an Arrow file", "stream": "an Arrow IPC stream"}[kind]
    message = f"bigshuf: standard input holds {noun}: name the file(s) (tables are read from files)\n".encode()
    assert run_cli(["-o", "out.txt"], input=path.read_bytes(), cwd=tmp_path) == (1, b"", message)
    with open(path, "rb") as f:
        proc = subprocess.run([sys.executable, "-m", "bigshuf"], stdin=f, capture_output=True, timeout=60, cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, b"", message)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    # Also a small one (the check waited for 512 bytes), after --header's lines, or through a pipe by another name.
    small = tmp_path / f"small.{kind}"
    if kind == "parquet":
        pq.write_table(table.slice(0, 2), small)
    else:
        with (ipc.new_file if kind == "arrow" else ipc.new_stream)(small, table.schema) as writer:
            writer.write_table(table.slice(0, 0))
    assert run_cli([], input=small.read_bytes(), cwd=tmp_path) == (1, b"", message)
    assert run_cli(["--header=1"], input=path.read_bytes(), cwd=tmp_path) == (1, b"", message)
    piped = message.replace(b"standard input", b"/dev/stdin")
    assert run_cli(["/dev/stdin"], input=path.read_bytes(), cwd=tmp_path) == (1, b"", piped)
    (tmp_path / small.name).unlink()


@pytest.mark.parametrize("size", [9, 4096])
def test_lines_that_merely_start_like_a_table_are_still_lines(tmp_path: Path, run_cli, size: int) -> None:
    """Text starting with PAR1 or ARROW1 (plain, gzip'd, NUL-separated) and lines starting with an
    IPC stream's continuation marker are lines, as for shuf, short or long (the first check took
    any 512 bytes starting with PAR1 for Parquet: found by review)."""
    import gzip

    for start in (b"PAR1 is the first paragraph", b"ARROW1 flies", b"\xff\xff\xff\xffab"):
        data = (start + b"\n" + b"".join(b"%d\n" % i for i in range(size // 4)))[:size].rstrip(b"\n") + b"\n"
        for args, given in (([], data), (["-z"], data.replace(b"\n", b"\0")), ([], gzip.compress(data))):
            code, out, err = run_cli(["--seed=1", *args], input=given, cwd=tmp_path)
            sep = b"\0" if args else b"\n"
            assert (code, err) == (0, b""), (start, args, err)
            assert sorted(out.split(sep)) == sorted(data.replace(b"\n", sep).split(sep)), (start, args)
        named = tmp_path / "text.dat"
        named.write_bytes(data)
        code, out, err = run_cli(["--seed=1", str(named)], cwd=tmp_path)
        assert (code, err) == (0, b"") and sorted(out.splitlines()) == sorted(data.splitlines()), start


@pytest.mark.parametrize("size", ["0", "-1", str(2**63), str(2**64)])
def test_a_row_group_size_out_of_range_is_refused_before_reading(tmp_path: Path, table: pa.Table, run_cli, size: str) -> None:
    """A size of 2**63 or more passed the checks and failed in Arrow's writer once every row was
    read: "internal error: OverflowError", and an OverflowError from the library (found by attack)."""
    pq.write_table(table, tmp_path / "t.parquet")
    code, out, err = run_cli(["t.parquet", f"--row-group-size={size}", "-o", "o.parquet"], cwd=tmp_path)
    assert (code, out, err) == (1, b"", f"bigshuf: invalid --row-group-size value: '{size}'\n".encode())
    with pytest.raises(UsageError, match=f"invalid row_group_size= value: .{size}.$"):
        bigshuf.shuffle(tmp_path / "t.parquet", tmp_path / "o.parquet", row_group_size=int(size))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]
    bigshuf.shuffle(tmp_path / "t.parquet", tmp_path / "o.parquet", seed=1, row_group_size=2**63 - 1)
    assert pq.read_table(tmp_path / "o.parquet").num_rows == table.num_rows


def test_schema_from_an_ipc_stream_and_a_corrupt_schema_file_in_one_line(tmp_path: Path, table: pa.Table, run_cli) -> None:
    """``--schema`` took the schema of Parquet and Arrow files but called an Arrow IPC stream (the
    Hugging Face ``.arrow``, read as an input) "not a Parquet or Arrow file"; and a corrupt Parquet
    footer's message ended in Arrow's own newline, two lines on stderr (found by attack)."""
    import pyarrow.ipc as ipc

    (tmp_path / "in.jsonl").write_bytes(b'{"id": 1, "name": "a"}\n{"id": 2, "name": "b"}\n')
    schema = pa.schema([("id", pa.int32()), ("name", pa.large_string())])
    with ipc.new_stream(tmp_path / "s.arrow", schema) as writer:
        writer.write_table(pa.table({"id": pa.array([], pa.int32()), "name": pa.array([], pa.large_string())}))
    assert run_cli(["in.jsonl", "--schema", "s.arrow", "-o", "o.parquet"], cwd=tmp_path)[0] == 0
    assert pq.read_schema(tmp_path / "o.parquet").remove_metadata() == schema
    pq.write_table(table, tmp_path / "t.parquet")
    data = bytearray((tmp_path / "t.parquet").read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    data[-8 - footer : -8] = np.random.default_rng(0).integers(0, 256, footer, np.uint8).tobytes()
    (tmp_path / "bad.parquet").write_bytes(bytes(data))
    code, out, err = run_cli(["in.jsonl", "--schema", "bad.parquet", "-o", "o2.parquet"], cwd=tmp_path)
    assert (code, out) == (1, b"") and err.startswith(b"bigshuf: bad.parquet: cannot read its schema: ") and err.count(b"\n") == 1, err
    assert not (tmp_path / "o2.parquet").exists()


@pytest.mark.parametrize("args,message", [
    (["t.parquet", "--schema", "id:int64", "-o", "o.parquet"],
     "--schema types JSON Lines read as rows; t.parquet is a table whose columns have their types already"),
    (["t.parquet", "--row-group-size=7", "-o", "o.jsonl"],
     "--row-group-size applies to Parquet and Arrow output; rows written as JSON Lines have no row groups"),
    (["t.parquet", "--row-group-size=7", "--output-format=jsonl", "-o", "o.txt"],
     "--row-group-size applies to Parquet and Arrow output; rows written as JSON Lines have no row groups"),
])
def test_a_table_option_that_would_do_nothing_is_refused(tmp_path: Path, table: pa.Table, run_cli, args: list[str], message: str) -> None:
    """``--schema`` with Parquet inputs and ``--row-group-size`` with a JSON Lines output were ignored,
    exit 0, the run not what was asked (found by attack)."""
    pq.write_table(table, tmp_path / "t.parquet")
    assert run_cli(args, cwd=tmp_path) == (1, b"", f"bigshuf: {message}\n".encode())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]


def test_json_lines_are_cut_into_blocks_in_few_reads_however_long_a_line() -> None:
    """A line longer than a block was read 64 KiB at a time and the whole line joined again after
    each read: quadratic, 8 s for one 40 MB line into Parquet (found by attack). The blocks are
    whole lines, together the input; the reads grow with the line."""
    import io

    from bigshuf.formats.table_input import _line_blocks

    lines = [b'{"a": 1}\n', b'{"t": "' + b"y" * (40 << 20) + b'"}\n', b'{"a": 3}\n' * 5000, b'{"a": 4}']
    data = b"".join(lines)

    class Counted(io.BytesIO):
        reads = 0

        def read(self, n: int | None = -1) -> bytes:
            Counted.reads += 1
            return super().read(n)

    blocks = list(_line_blocks(Counted(data), 8 << 20, "in.jsonl"))
    assert b"".join(blocks) == data
    assert all(b.endswith(b"\n") for b in blocks[:-1]) and blocks[-1].endswith(b'{"a": 4}')
    assert Counted.reads < 40, Counted.reads  # it was 515
    with pytest.raises(InputError, match="a JSON line is longer than 8388608 bytes"):
        list(_line_blocks(io.BytesIO(b"x" * (9 << 20)), 1 << 20, "in.jsonl"))


def test_a_value_its_schema_type_cannot_hold_is_named(tmp_path: Path, run_cli) -> None:
    """A time32[s] of more than a day, typed by ``--schema``, was "the lines from 1 hold 3 objects in
    3 lines, or text that is not UTF-8", neither of which was the matter (found by attack)."""
    (tmp_path / "in.jsonl").write_bytes(b'{"t": 5}\n{"t": 90000}\n{"t": 7}\n')
    code, out, err = run_cli(["in.jsonl", "--schema", "t:time32[s]", "-o", "o.parquet"], cwd=tmp_path)
    assert (code, out) == (1, b"")
    assert err == b"bigshuf: in.jsonl: the lines from 1: time32[s] 90000 is not within the acceptable range of [0, 86400) s\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
    # A type --schema gives that Arrow reads from strings: said so, not "changed from string to number".
    code, out, err = run_cli(["in.jsonl", "--schema", "t:timestamp[ms]", "-o", "o.parquet"], cwd=tmp_path)
    assert (code, out, err) == (1, b"", b"bigshuf: in.jsonl: line 1: field 't' holds a number, but --schema makes it timestamp[ms], read from a JSON string\n")


def test_options_that_need_lines_are_refused(tmp_path: Path, table: pa.Table) -> None:
    src = write_parquet(tmp_path / "in.parquet", table)
    for kwargs in ({"zero_terminated": True}, {"repeat": True}, {"header": 1}, {"lines_per_record": 2}):
        with pytest.raises(UsageError, match="not available for Parquet"):
            bigshuf.shuffle(src, tmp_path / "out.parquet", **kwargs)
    with pytest.raises(UsageError, match="compress="):
        bigshuf.shuffle(src, tmp_path / "out.parquet", compress="bzip2")
    lines = tmp_path / "lines.txt"
    lines.write_text("a\nb\n")
    with pytest.raises(UsageError, match="cannot be shuffled together"):
        bigshuf.shuffle([src, lines], tmp_path / "out.parquet")
    with pytest.raises(UsageError, match="row_group_size="):
        bigshuf.shuffle(lines, tmp_path / "out.txt", row_group_size=10)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(InputError, match="holds no .parquet"):
        bigshuf.shuffle(tmp_path / "empty_dir", tmp_path / "o.parquet")


def test_cli_stdout_and_empty_output(tmp_path: Path, table: pa.Table, run_cli) -> None:
    src = write_parquet(tmp_path / "in.parquet", table)
    code, stdout, _ = run_cli([src, "--seed", "1"])
    assert code == 0 and stdout.startswith(b"PAR1")
    assert_row_permutation(pq.read_table(pa.BufferReader(stdout)), table)
    out = tmp_path / "out.parquet"
    assert run_cli([src, "-n", "0", "-o", out])[0] == 0
    empty = pq.read_table(out)
    assert empty.num_rows == 0 and empty.schema.names == table.schema.names


# Uniformity: 4 rows, every ordering equally likely on each path (as tests/test_uniformity.py
# does for lines). 300-byte rows: at 1 KiB 4 do not fit in memory, and with 2 buckets a bucket of 3 recurses.
TABLE_PATHS = [("in-memory", "64M", None), ("external", "1K", None), ("recursive", "1K", 2)]


@pytest.mark.parametrize("label,memory,cap", TABLE_PATHS)
def test_row_orders_equally_likely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, memory: str, cap: int | None) -> None:
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    rows = pa.table({"id": pa.array(range(4), pa.int64()), "pad": ["p" * 300] * 4})
    src = write_parquet(tmp_path / "in.parquet", rows)
    out = tmp_path / "out.arrow"
    counts: Counter = Counter()
    passes: Counter = Counter()
    for seed in range(24 * 30):
        stats = bigshuf.shuffle(src, out, memory=memory, seed=seed, tmp_dir=tmp_path)
        counts[tuple(read_rows([out])["id"].to_pylist())] += 1
        passes[stats.passes] += 1
    assert_uniform(counts, list(permutations(range(4))), label)
    if label == "in-memory":
        assert set(passes) == {1}
    elif label == "external":
        assert min(passes) == 2
    else:
        assert max(passes) > 2


def test_samples_and_shards_uniform(tmp_path: Path) -> None:
    rows = pa.table({"id": pa.array(range(5), pa.int64()), "pad": ["p" * 300] * 5})
    src = write_parquet(tmp_path / "in.parquet", rows)
    pairs: Counter = Counter()
    firsts: Counter = Counter()
    for seed in range(600):
        out = tmp_path / "s.parquet"
        bigshuf.shuffle(src, out, memory="1K", seed=seed, head_count=2, tmp_dir=tmp_path, sync=False)
        pairs[tuple(pq.read_table(out)["id"].to_pylist())] += 1
        shards = tmp_path / f"sh{seed}"
        bigshuf.shuffle(src, f"{shards}/", memory="1K", seed=seed, shards=2, tmp_dir=tmp_path, sync=False)
        firsts[pq.read_table(shards / "part-00001.parquet")["id"][0].as_py()] += 1
    assert_uniform(pairs, list(permutations(range(5), 2)), "-n 2")
    assert_uniform(firsts, list(range(5)), "first row of shard 2")


# The same over what the tests above leave out: JSON Lines read as rows into Parquet, and Arrow IPC
# files and streams as inputs. 3 rows of 300 bytes: at 1 KiB they do not fit, and in 2 buckets (a bucket of 2
# fits and is permuted in pass 2, so a bias there shows in 120 runs; of 3, scattered again). 20 runs an order
# expected (the external path's runs are slow: the fewest the per-order checks allow).
THREE_ROWS = pa.table({"id": pa.array(range(3), pa.int64()), "pad": ["p" * 300] * 3})


def _three_row_orders(src: Path, out: Path, memory: str, **options: object) -> tuple[Counter[tuple[int, ...]], Counter[int]]:
    """Orders of ``THREE_ROWS`` (from ``src``) written to ``out`` (Parquet) by seeds 0-119, each run's
    rows checked to be the multiset; and the passes the runs took. Buckets: 2 a level."""
    counts: Counter[tuple[int, ...]] = Counter()
    passes: Counter[int] = Counter()
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(plan, "MAX_BUCKETS", 2)
        for seed in range(6 * 20):
            stats = bigshuf.shuffle(src, out, memory=memory, seed=seed, tmp_dir=out.parent, sync=False, **options)  # type: ignore[arg-type]
            got = pq.read_table(out)
            assert_row_permutation(got, THREE_ROWS)
            counts[tuple(got["id"].to_pylist())] += 1
            passes[stats.passes] += 1
    return counts, passes


@pytest.mark.parametrize("label,memory,name,fmt", [
    ("in-memory, -o out.parquet", "64M", "out.parquet", None), ("external, --output-format parquet", "1K", "out.rows", "parquet"),
])
def test_json_lines_into_parquet_row_orders_equally_likely(tmp_path: Path, label: str, memory: str, name: str, fmt: str | None) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(row) + "\n" for row in THREE_ROWS.to_pylist()))
    counts, passes = _three_row_orders(src, tmp_path / name, memory, output_format=fmt)
    assert_uniform(counts, list(permutations(range(3))), label)
    assert (set(passes) == {1}) if memory == "64M" else (min(passes) == 2), passes


@pytest.mark.parametrize("kind,memory", [("file", "64M"), ("stream", "1K")])
def test_arrow_input_row_orders_equally_likely(tmp_path: Path, kind: str, memory: str) -> None:
    """An Arrow IPC file in memory and an IPC stream (Hugging Face's .arrow) through buckets, a row a batch."""
    src = tmp_path / "in.arrow"
    with pa.OSFile(str(src), "wb") as f, (pa.ipc.new_file if kind == "file" else pa.ipc.new_stream)(f, THREE_ROWS.schema) as w:
        w.write_table(THREE_ROWS, max_chunksize=1)
    counts, passes = _three_row_orders(src, tmp_path / "out.parquet", memory)
    assert_uniform(counts, list(permutations(range(3))), f"Arrow {kind} input")
    assert (set(passes) == {1}) if memory == "64M" else (min(passes) == 2), passes


def test_compressed_temp_buckets_row_orders_equally_likely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--compress-temp`` on the external path: the buckets are zstd-compressed IPC streams (their
    files smaller than the same run's without it), and every order as likely."""
    src = write_parquet(tmp_path / "in.parquet", THREE_ROWS)
    on_disk = measure_table_buckets(monkeypatch)
    bigshuf.shuffle(src, tmp_path / "plain.parquet", memory="1K", seed=0, tmp_dir=tmp_path, sync=False)
    bigshuf.shuffle(src, tmp_path / "plain.parquet", memory="1K", seed=0, tmp_dir=tmp_path, sync=False, compress_temp=True)
    plain, compressed = on_disk[0], on_disk[-1]
    assert compressed < plain, (compressed, plain)
    counts, passes = _three_row_orders(src, tmp_path / "out.parquet", "1K", compress_temp=True)
    assert_uniform(counts, list(permutations(range(3))), "compressed temporary buckets")
    assert min(passes) == 2, passes


def test_jsonl_from_standard_input(tmp_path: Path, run_cli) -> None:
    rows = b"".join(b'{"id": %d, "text": "line %d"}\n' % (i, i) for i in range(500))
    out = tmp_path / "out.parquet"
    code, _, err = run_cli(["-o", out, "--seed", "1", "--schema", "id:int64,text:string,extra:double"], input=rows)
    assert code == 0, err
    got = pq.read_table(out)
    assert got.schema.names == ["id", "text", "extra"] and got["extra"].null_count == 500
    assert sorted(got["id"].to_pylist()) == list(range(500))
    code, _, err = run_cli(["-o", out], input=b"")
    assert code == 1 and err == b"bigshuf: -: no JSON rows to infer the columns from; give them with --schema\n"
    assert run_cli(["-o", out, "--schema", "id:int64"], input=b"")[0] == 0
    assert pq.read_table(out).num_rows == 0
    code, _, err = run_cli(["--check-permutation", out, "--against", out])
    assert code == 1 and b"--verify" in err


def test_same_rows_same_output_whatever_the_layout(tmp_path: Path, table: pa.Table) -> None:
    """Batches are cut by row sizes, so row groups and file splits do not change the draws."""
    outputs = []
    for name, group in (("rg10", 10), ("rg700", 700)):
        src = write_parquet(tmp_path / f"{name}.parquet", table, row_group_size=group)
        out = tmp_path / f"{name}.out.parquet"
        bigshuf.shuffle(src, out, memory="64K", seed=5, tmp_dir=tmp_path)
        outputs.append(pq.read_table(out)["id"].to_pylist())
    data = tmp_path / "split"
    data.mkdir()
    write_parquet(data / "a.parquet", table.slice(0, 1234), row_group_size=100)
    with pa.OSFile(str(data / "b.arrow"), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table.slice(1234), max_chunksize=37)
    bigshuf.shuffle(data, tmp_path / "split.out.parquet", memory="64K", seed=5, tmp_dir=tmp_path)
    outputs.append(pq.read_table(tmp_path / "split.out.parquet")["id"].to_pylist())
    assert outputs[0] == outputs[1] == outputs[2]


def test_skewed_row_sizes_keep_batches_and_groups_small(tmp_path: Path) -> None:
    """Small rows first, big ones later: batches and row groups are cut by bytes, not by a row count from the start."""
    rows = pa.table({"id": pa.array(range(3000)), "text": ["s"] * 1000 + ["x" * 20000] * 2000})
    src = write_parquet(tmp_path / "in.parquet", rows, row_group_size=500)
    out = tmp_path / "out.parquet"
    bigshuf.shuffle(src, out, memory="4M", seed=1, tmp_dir=tmp_path)
    meta = pq.ParquetFile(out).metadata
    group_bytes = max(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    assert meta.num_rows == 3000 and group_bytes < 2 << 20
    assert sorted(pq.read_table(out)["id"].to_pylist()) == list(range(3000))


def test_a_row_larger_than_the_limit_allows_is_refused_where_it_is_read(tmp_path: Path, run_cli) -> None:
    """A row the external path could never place (past ``plan.largest_record``) is refused once read, in
    one line naming its file and row, with nothing written or left behind; one at the bound is shuffled.
    Before, the run scattered it 17 times, past -S, and failed naming no file."""
    most = plan.block_budget(64 << 10) - plan.META_PER_RECORD  # 49128: a string row takes 5 bytes besides its own
    small = pa.table({"s": [f"row {i}" for i in range(3000)]})
    write_parquet(tmp_path / "a.parquet", small)
    write_parquet(tmp_path / "fits.parquet", pa.table({"s": ["x" * (most - 5), "y"]}))
    bigshuf.shuffle([str(tmp_path / "a.parquet"), str(tmp_path / "fits.parquet")], str(tmp_path / "ok.parquet"), memory="64K", seed=1)
    assert pq.read_table(tmp_path / "ok.parquet").num_rows == 3002
    write_parquet(tmp_path / "b.parquet", pa.table({"s": ["y", "z", "x" * (most - 4), "w"]}))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    code, out, err = run_cli([tmp_path / "a.parquet", tmp_path / "b.parquet", "-o", tmp_path / "o.parquet", "-S", "64K", "-T", tmp])
    assert (code, out) == (1, b"")
    assert err == (
        f"bigshuf: {tmp_path}/b.parquet: row 2 takes {most + 1} bytes, more than the {most} bytes a row may take "
        "at this memory limit; raise -S\n"
    ).encode(), err
    assert not (tmp_path / "o.parquet").exists() and temp_leftovers(tmp) == []
    with pytest.raises(InputError, match=r"b\.parquet: row 2 takes 49129 bytes, .* raise memory=$"):
        bigshuf.shuffle([str(tmp_path / "b.parquet"), str(tmp_path / "a.parquet")], str(tmp_path / "o.parquet"), memory="64K")


def test_arrow_streams_views_and_dictionaries(tmp_path: Path) -> None:
    # Hugging Face datasets write .arrow files in the IPC stream format.
    hf = pa.table({"text": [f"doc {i}" for i in range(300)], "id": pa.array(range(300))})
    with pa.OSFile(str(tmp_path / "data-00000-of-00001.arrow"), "wb") as f, pa.ipc.new_stream(f, hf.schema) as w:
        w.write_table(hf, max_chunksize=64)
    out = tmp_path / "hf.parquet"
    bigshuf.shuffle(tmp_path / "data-00000-of-00001.arrow", out, memory="8K", seed=1, tmp_dir=tmp_path)
    assert_row_permutation(pq.read_table(out), hf)
    # String views (Polars' default) are read as large strings, which every kernel takes.
    views = pa.table({"id": pa.array(range(300)), "text": pa.array([f"v{i}" for i in range(300)], pa.string_view())})
    with pa.OSFile(str(tmp_path / "views.arrow"), "wb") as f, pa.ipc.new_file(f, views.schema) as w:
        w.write_table(views)
    bigshuf.shuffle(tmp_path / "views.arrow", tmp_path / "views.out.parquet", memory="8K", seed=1, tmp_dir=tmp_path)
    got = pq.read_table(tmp_path / "views.out.parquet")
    assert got.schema.field("text").type == pa.large_string()
    assert sorted(got["text"].to_pylist()) == sorted(views["text"].to_pylist())
    # Each bucket has its own dictionary: an Arrow file output gets the values instead.
    cats = pa.table({"id": pa.array(range(2000)), "c": pa.array([f"c{i % 7}" for i in range(2000)]).dictionary_encode()})
    src = write_parquet(tmp_path / "cats.parquet", cats, row_group_size=100)
    bigshuf.shuffle(src, tmp_path / "cats.arrow", memory="64K", seed=1, tmp_dir=tmp_path)
    got = read_rows([tmp_path / "cats.arrow"])
    assert got.schema.field("c").type == pa.string()
    assert got.sort_by("id").equals(cats.cast(got.schema))


@pytest.mark.parametrize("batches", [0, 1, 4])
def test_an_arrow_stream_cut_between_batches_is_refused(tmp_path: Path, run_cli, batches: int) -> None:  # type: ignore[no-untyped-def]
    """A stream without its end-of-stream marker (a writer killed between batches, as a killed
    ``datasets`` job leaves one) was read as a shorter valid stream: exit 0 with the rows it held."""
    table = pa.table({"id": pa.array(range(300)), "text": [f"doc {i}" for i in range(300)]})
    cut_stream(tmp_path / "cut.arrow", table, batches)
    code, out, err = run_cli(["--seed", "1", "cut.arrow", "-o", "out.parquet"], cwd=tmp_path)
    assert (code, out) == (1, b"")
    assert err == (
        b"bigshuf: cut.arrow: corrupt Arrow IPC stream: it ends without its end-of-stream marker (cut short after a record batch)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.arrow"]
    # The whole stream, its marker in place (or in the 4-byte form of Arrow before 0.15), is read.
    data = cut_stream(tmp_path / "cut.arrow", table, None)
    (tmp_path / "old.arrow").write_bytes(data[:-8] + bytes(4))
    for name in ("cut.arrow", "old.arrow"):
        bigshuf.shuffle(tmp_path / name, tmp_path / "out.parquet", seed=1)
        assert_row_permutation(pq.read_table(tmp_path / "out.parquet"), table)


def test_an_arrow_stream_cut_after_a_dictionary_is_refused(tmp_path: Path) -> None:
    """A stream cut after a delta dictionary, before the batch using it, was read as whole: the check
    took any bytes after the last batch for the end-of-stream marker (found by review)."""
    schema = pa.schema([("id", pa.int64()), ("c", pa.dictionary(pa.int32(), pa.string()))])
    batches = [
        pa.record_batch([pa.array([1, 2]), pa.DictionaryArray.from_arrays(pa.array([0, 1], pa.int32()), pa.array(["a", "b"]))], schema=schema),
        pa.record_batch([pa.array([3, 4]), pa.DictionaryArray.from_arrays(pa.array([2, 0], pa.int32()), pa.array(["a", "b", "c"]))], schema=schema),
    ]
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema, options=pa.ipc.IpcWriteOptions(emit_dictionary_deltas=True)) as w:
        for batch in batches:
            w.write_batch(batch)
    data = sink.getvalue().to_pybytes()
    ends, kinds = [], []
    with pa.BufferReader(data) as f:
        messages = pa.ipc.MessageReader.open_stream(f)
        for _ in range(5):
            kinds.append(messages.read_next_message().type)
            ends.append(f.tell())
    assert kinds == ["schema", "dictionary", "record batch", "dictionary", "record batch"]
    (tmp_path / "cut.arrows").write_bytes(data[: ends[3]])
    with pytest.raises(InputError, match="cut.arrows'?: corrupt Arrow IPC stream: it ends without its end-of-stream marker"):
        bigshuf.shuffle(tmp_path / "cut.arrows", tmp_path / "out.parquet", seed=1)
    (tmp_path / "whole.arrows").write_bytes(data)
    bigshuf.shuffle(tmp_path / "whole.arrows", tmp_path / "out.parquet", seed=1)
    assert sorted(pq.read_table(tmp_path / "out.parquet")["id"].to_pylist()) == [1, 2, 3, 4]


def test_more_files_than_open_file_limit(tmp_path: Path, run_cli) -> None:
    import resource
    import subprocess
    import sys

    data = tmp_path / "many"
    data.mkdir()
    for i in range(300):
        pq.write_table(pa.table({"id": [i]}), data / f"p{i:05d}.parquet")
    out = tmp_path / "out.parquet"

    def few_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))

    proc = subprocess.run(
        [sys.executable, "-m", "bigshuf", str(data), "-o", str(out)], capture_output=True, preexec_fn=few_files, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(pq.read_table(out)["id"].to_pylist()) == list(range(300))


def test_output_format_and_refused_suffixes(tmp_path: Path, table: pa.Table, run_cli) -> None:
    src = write_parquet(tmp_path / "in.parquet", table.select(["id", "text"]))
    code, stdout, err = run_cli([src, "--output-format", "jsonl", "-n", "3", "--seed", "1"])
    assert code == 0, err
    assert [set(json.loads(line)) for line in stdout.splitlines()] == [{"id", "text"}] * 3
    code, _, err = run_cli([src, "-o", tmp_path / "out.csv"])
    assert code == 1 and b"Parquet, Arrow or JSON Lines" in err
    code, _, err = run_cli([src, "-o", tmp_path / "out.parquet", "--compress", "zstd:99"])
    assert code == 1 and err == b"bigshuf: --compress: zstd level must be an integer from 0 to 22 (got 'zstd:99')\n"
    assert temp_leftovers(tmp_path) == ["in.parquet"]


def odd_columns(n: int) -> dict[str, pa.Array]:
    """``n`` rows of every column type Arrow can take rows of that the other tests do not cover:
    sparse and dense unions (which Parquet cannot store), a list view, a map, a fixed-size list, a
    large list, a struct of lists, decimal256, a duration and the null type."""
    kinds = pa.array([i % 3 for i in range(n)], pa.int8())
    ints, texts = pa.array(range(n), pa.int64()), pa.array(["u" * (i % 9) + str(i) for i in range(n)])
    floats = pa.array([i / 4 for i in range(n)])
    counts = [sum(1 for j in range(i) if j % 3 == k) for i, k in enumerate(kinds.to_pylist())]
    dense_children = [pa.array([v for v, k in zip(c.to_pylist(), kinds.to_pylist()) if k == i]) for i, c in
                      enumerate([ints, texts, floats])]
    return {
        "sparse": pa.UnionArray.from_sparse(kinds, [ints, texts, floats]),
        "dense": pa.UnionArray.from_dense(kinds, pa.array(counts, pa.int32()), dense_children),
        "view": pa.array([None if i % 10 == 4 else list(range(i % 5)) for i in range(n)], pa.list_view(pa.int16())),
        "map": pa.array([[(str(i), i)] * (i % 3) for i in range(n)], pa.map_(pa.string(), pa.int64())),
        "fixed": pa.array([[i, -i, 2 * i] for i in range(n)], pa.list_(pa.int32(), 3)),
        "large": pa.array([[str(i)] * (i % 4) for i in range(n)], pa.large_list(pa.string())),
        "struct": pa.array([{"xs": [i] * (i % 3), "s": str(i)} for i in range(n)]),
        "dec": pa.array([Decimal(i) / 100 for i in range(n)], pa.decimal256(40, 2)),
        "took": pa.array(range(n), pa.duration("ms")),
        "nothing": pa.nulls(n),
    }


def write_arrow(path: Path, table: pa.Table, chunk: int) -> Path:
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table, max_chunksize=chunk)
    return path


@pytest.mark.parametrize("memory,passes", [("64M", 1), ("64K", 2)])
def test_union_and_other_column_types_are_shuffled(tmp_path: Path, memory: str, passes: int) -> None:
    """Regression: a union column made row sizing raise ValueError (an internal error); list views
    and the null type did too. Unions go through Arrow IPC only: Parquet cannot store them."""
    columns = odd_columns(1200)
    table = pa.table({"id": pa.array(range(1200)), **columns})
    src = write_arrow(tmp_path / "in.arrow", table, 97)
    bigshuf.shuffle(src, tmp_path / "v.arrow", memory=memory, seed=1, tmp_dir=tmp_path, verify=True)
    stats = bigshuf.shuffle(src, tmp_path / "out.arrow", memory=memory, seed=1, tmp_dir=tmp_path)
    assert stats.passes == passes
    got = read_rows([tmp_path / "out.arrow"])
    assert got.schema.equals(table.schema)
    assert got.sort_by("id").equals(table) and got["id"].to_pylist() != table["id"].to_pylist()
    assert got.equals(read_rows([tmp_path / "v.arrow"]))  # --verify checked the same rows
    plain = table.drop_columns(["sparse", "dense"])
    src = write_parquet(tmp_path / "in.parquet", plain, row_group_size=97)
    stats = bigshuf.shuffle(src, tmp_path / "out.parquet", memory=memory, seed=1, tmp_dir=tmp_path, verify=True)
    assert stats.passes == passes
    assert_row_permutation(pq.read_table(tmp_path / "out.parquet"), pq.read_table(src))
    assert temp_leftovers(tmp_path) == ["in.arrow", "in.parquet", "out.arrow", "out.parquet", "v.arrow"]


def test_union_rows_are_sized_by_the_value_they_hold() -> None:
    """A dense union's row: its type code, offset and the child value it points to; a sparse one's:
    its type code and every child's slot. Sliced arrays count their own rows (pyarrow's
    ``type_codes`` and ``offsets`` ignore a slice's offset)."""
    kinds = pa.array([0, 0, 1, 1, 0, 1], pa.int8())
    dense = pa.UnionArray.from_dense(kinds, pa.array([0, 1, 0, 1, 2, 2], pa.int32()),
                                     [pa.array([10, 11, 12]), pa.array(["a", "bbbbbb", "c"])])
    sparse = pa.UnionArray.from_sparse(kinds, [pa.array(range(6)), pa.array(["a", "b", "c", "dddddd", "e", "f"])])
    assert row_sizes(pa.record_batch([dense], ["u"])).tolist() == [14, 14, 11, 16, 14, 11]
    assert row_sizes(pa.record_batch([dense.slice(2, 3)], ["u"])).tolist() == [11, 16, 14]
    assert row_sizes(pa.record_batch([sparse], ["u"])).tolist() == [15] * 3 + [20] + [15] * 2
    assert row_sizes(pa.record_batch([sparse.slice(2, 3)], ["u"])).tolist() == [15, 20, 15]
    assert row_fingerprint(pa.record_batch([dense.slice(2, 3)], ["u"])) == row_fingerprint(
        pa.record_batch([dense.take([2, 3, 4])], ["u"])
    )


def test_columns_arrow_cannot_take_are_refused_before_reading(tmp_path: Path, run_cli) -> None:
    """Run-end encoded columns (at any depth), and views inside a union or list view (which cannot be
    cast to plain strings): one line naming the file and the column, no output, nothing left."""
    n = 50
    runs = pa.RunEndEncodedArray.from_arrays(pa.array(range(1, n + 1), pa.int32()), pa.array(range(n)))
    views = pa.array([str(i) for i in range(n)], pa.string_view())
    cases = {
        "runs": (pa.StructArray.from_arrays([runs], ["r"]), "it is run-end encoded"),
        "u": (pa.UnionArray.from_sparse(pa.array([1] * n, pa.int8()), [pa.array(range(n)), views]), "it holds a string or binary view inside a union"),
    }
    for name, (column, why) in cases.items():
        src = write_arrow(tmp_path / f"{name}.arrow", pa.table({"id": range(n), name: column}), 20)
        code, out, err = run_cli([src, "-o", tmp_path / "out.arrow", "-T", tmp_path])
        assert code == 1 and out == b""
        assert err.startswith(f"bigshuf: {src}: column '{name}' cannot be shuffled: {why}".encode()), err
        assert err.count(b"\n") == 1
    # A union shuffles, but Parquet cannot store one: refused before reading, not once the rows are shuffled.
    src = write_arrow(tmp_path / "union.arrow", pa.table({"id": range(n), "sparse": odd_columns(n)["sparse"]}), 20)
    code, out, err = run_cli([src, "-o", tmp_path / "out.parquet", "-T", tmp_path])
    assert code == 1 and out == b""
    assert err.startswith(f"bigshuf: {tmp_path / 'out.parquet'}: column 'sparse' of type sparse_union".encode()), err
    assert err.endswith(b"cannot be written as Parquet; write Arrow IPC (--output-format=arrow or an .arrow name)\n")
    assert temp_leftovers(tmp_path) == ["runs.arrow", "u.arrow", "union.arrow"]
    # The dry run said "ok", and the Dask engine ran pass 1 before failing with Arrow's words and
    # "'standard output'" (found by attack): both refuse it as the local run does.
    for argv in ([src, "--dry-run"], ["--engine=dask", src], ["--engine=dask", src, "--dry-run"]):
        code, out, err = run_cli([*argv, "--shards", "2", "-o", f"{tmp_path}/sh/", "--output-format", "parquet", "-T", tmp_path])
        assert code == 1, argv
        assert f"{tmp_path}/sh/: column 'sparse' of type sparse_union".encode() in (err if "--dry-run" not in argv else out), (argv, out, err)
    assert temp_leftovers(tmp_path) == ["runs.arrow", "u.arrow", "union.arrow"]


@pytest.mark.parametrize("kind", ["parquet", "arrow", "arrow stream"])
@pytest.mark.parametrize("engine", ["local", "dask"])
def test_a_column_name_that_is_not_utf8_is_refused(tmp_path: Path, kind: str, engine: str, run_cli) -> None:
    """A file whose column name is not UTF-8 (bytes swapped in its schema, as a fuzzer did) was an
    internal UnicodeDecodeError, not naming the file, from the CLI and the library alike."""
    table = pa.table({"zzzzzz": [1, 2, 3], "s": ["a", "b", "c"]})
    good = tmp_path / "good"
    if kind == "parquet":
        pq.write_table(table, good)
    elif kind == "arrow":
        with pa.ipc.new_file(good, table.schema) as w:
            w.write_table(table)
    else:
        with pa.ipc.new_stream(good, table.schema) as w:
            w.write_table(table)
    bad = tmp_path / f"bad.{'parquet' if kind == 'parquet' else 'arrow'}"
    bad.write_bytes(good.read_bytes().replace(b"zzzzzz", b"\xff\xfe\xfd\xfc\xfb\xfa"))
    code, out, err = run_cli([bad.name, "-o", "o.parquet", "--engine", engine], cwd=tmp_path)
    assert (code, out) == (1, b"") and err.count(b"\n") == 1, err
    assert err.startswith(f"bigshuf: {bad.name}: ".encode()) and b"a column's name is not UTF-8 text" in err
    with pytest.raises(InputError, match="a column's name is not UTF-8 text"):
        bigshuf.shuffle(bad, tmp_path / "o.parquet", seed=1, engine=engine)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([bad.name, "good"])


@pytest.mark.parametrize("kind", ["parquet", "arrow"])
def test_a_schema_file_whose_column_name_is_not_utf8_is_refused(tmp_path: Path, kind: str, run_cli) -> None:
    """``--schema FILE`` read a schema whose name is not UTF-8 into an internal UnicodeDecodeError (found by review)."""
    table = pa.table({"zzzzzz": [1]})
    good = tmp_path / "good"
    if kind == "parquet":
        pq.write_table(table, good)
    else:
        with pa.ipc.new_file(good, table.schema) as w:
            w.write_table(table)
    (tmp_path / f"bad.{kind}").write_bytes(good.read_bytes().replace(b"zzzzzz", b"\xffzzzzz"))
    (tmp_path / "x.jsonl").write_bytes(b'{"zzzzzz": 1}\n')
    assert run_cli(["x.jsonl", "--schema", f"bad.{kind}", "-o", "o.parquet"], cwd=tmp_path) == (
        1, b"", f"bigshuf: bad.{kind}: cannot read its schema: a column's name is not UTF-8 text\n".encode()
    )


def test_a_directory_saved_by_hugging_face_datasets_is_its_rows(tmp_path: Path) -> None:
    """``Dataset.save_to_disk`` writes Arrow streams beside ``dataset_info.json`` and ``state.json``,
    which made the directory one of both tables and line files, refused (found by a new user); that
    metadata is left out beside tables, on both engines. JSON Lines beside them are still refused."""
    saved = tmp_path / "saved"
    saved.mkdir()
    table = pa.table({"id": list(range(40)), "text": [f"t{i}" for i in range(40)]})
    for i, part in enumerate((table.slice(0, 25), table.slice(25))):
        with pa.ipc.new_stream(saved / f"data-0000{i}-of-00002.arrow", table.schema) as writer:
            writer.write_table(part)
    (saved / "dataset_info.json").write_text('{"features": {}}\n')
    (saved / "state.json").write_text('{"_data_files": []}\n')
    bigshuf.shuffle(saved, tmp_path / "out.parquet", seed=1)
    got = pq.read_table(tmp_path / "out.parquet")
    assert sorted(got.column("id").to_pylist()) == list(range(40)) and got.column("id").to_pylist() != list(range(40))
    # A DatasetDict: dataset_dict.json beside the splits' directories; the splits' rows all together.
    (tmp_path / "dd").mkdir()
    os.rename(saved, tmp_path / "dd" / "train")
    (tmp_path / "dd" / "dataset_dict.json").write_text('{"splits": ["train"]}\n')
    bigshuf.shuffle(tmp_path / "dd", tmp_path / "dd.parquet", seed=1)
    assert pq.read_table(tmp_path / "dd.parquet").equals(got)
    # Found by review: a state.json away from the tables is data, as before (so here a mixed directory).
    (tmp_path / "dd" / "notes").mkdir()
    (tmp_path / "dd" / "notes" / "state.json").write_text('{"id": 1}\n')
    with pytest.raises(UsageError, match="holds both"):
        bigshuf.shuffle(tmp_path / "dd", tmp_path / "again.parquet", seed=1)


def test_restored_row_buckets_sync_their_directory_after_removing_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Taking up a checkpoint removes the file of a bucket it counts empty (rows scattered after it):
    the next ``sync`` makes that removal durable, as it does for line buckets."""
    import bigshuf.formats.arrow_resume as arrow_resume

    batch = pa.RecordBatch.from_pydict({"x": pa.array(range(6), pa.int64())})
    buckets = arrow_resume.ResumableTableBuckets(str(tmp_path / "b"), 2, batch.schema, False, 1 << 20, fresh=True)
    buckets.append(batch, np.array([6, 0]))
    buckets.sync()
    state = buckets.state()
    buckets.append(batch, np.array([0, 6]))  # after the checkpoint: bucket 1's file is made
    buckets.close()
    assert os.path.exists(buckets.path(1)) and state["disk"][1] == 0
    synced: list[str] = []
    monkeypatch.setattr(arrow_resume, "sync_directory", synced.append)
    again = arrow_resume.ResumableTableBuckets(str(tmp_path / "b"), 2, batch.schema, False, 1 << 20, fresh=False)
    again.restore(state, consumed=0, complete=False)
    assert not os.path.exists(again.path(1)) and os.path.getsize(again.path(0)) == state["disk"][0]
    again.sync()
    assert synced == [str(tmp_path / "b")]


def _changed_during_a_run(tmp_path: Path, victim: Path, inputs: list[Path], output: Path, change: str) -> subprocess.CompletedProcess[str]:
    """A run over ``inputs`` at ``-S 1M`` in a child process, ``victim`` changed once its second batch
    of rows is read: ``cut`` to 1000 bytes, ``touch``ed (a rewrite of the same size), ``replaced``
    by a copy of itself renamed over its name, or ``moved`` to another name."""
    (tmp_path / "tmp").mkdir()
    return run_child(f"""
import os, shutil, sys
from bigshuf.cli import main
from bigshuf.formats import table_input
made = table_input.TableInput._guarded
def reading(self, batches):
    for n, batch in enumerate(made(self, batches)):
        if n == 1 and self.path == {str(victim)!r}:
            if {change!r} == "cut":
                os.truncate(self.path, 1000)
            elif {change!r} == "touch":
                os.utime(self.path, ns=(1, 1))
            elif {change!r} == "moved":
                os.rename(self.path, self.path + ".moved")
            else:
                shutil.copy(self.path, self.path + ".new")
                os.rename(self.path + ".new", self.path)
        yield batch
table_input.TableInput._guarded = reading
sys.exit(main([*{[str(p) for p in inputs]!r}, "-o", {str(output)!r}, "-S", "1M", "-T", {str(tmp_path / "tmp")!r}, "--seed", "1"]))
""")


@pytest.mark.parametrize("change", ["moved", "replaced"])
@pytest.mark.parametrize("kind", ["parquet", "arrow", "stream"])
def test_a_table_renamed_while_it_is_read_is_read_whole(tmp_path: Path, kind: str, change: str) -> None:
    """The name of a table moved away, or another file renamed over it, while a run reads it: the open
    file is read whole, as a line file is, and the run succeeds (the first check of tables refused
    it as gone; found by review)."""
    table = pa.table({"x": np.arange(300_000), "s": [f"v{i}" for i in range(300_000)]})
    path = _table_file(tmp_path, kind, table)
    done = _changed_during_a_run(tmp_path, path, [path], tmp_path / "out.parquet", change)
    assert (done.returncode, done.stderr) == (0, "")
    got = pq.read_table(tmp_path / "out.parquet")
    assert sorted(got.column("x").to_pylist()) == list(range(300_000))
    assert temp_leftovers(tmp_path / "tmp") == []


def _table_file(tmp_path: Path, kind: str, table: pa.Table) -> Path:
    """``table`` written as a Parquet file, an Arrow IPC file or an Arrow IPC stream, in 5,000-row parts."""
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / f"t.{'parquet' if kind == 'parquet' else 'arrow'}"
    if kind == "parquet":
        write_parquet(path, table, 5000)
    else:
        with pa.OSFile(str(path), "wb") as f, (pa.ipc.new_file if kind == "arrow" else pa.ipc.new_stream)(f, table.schema) as w:
            for batch in table.to_batches(max_chunksize=5000):
                w.write_batch(batch)
    return path


@pytest.mark.parametrize("change,why", [
    ("cut", r"size \d+ bytes when opened, 1000 now"),
    ("touch", r"modified, its size still \d+ bytes"),
])
@pytest.mark.parametrize("kind", ["parquet", "arrow", "stream"])
def test_a_table_changed_while_it_is_read_is_refused(tmp_path: Path, kind: str, change: str, why: str) -> None:
    """A Parquet or Arrow file changed by another process while a run reads it: an Arrow IPC file
    was mapped, and one cut short ended the run by SIGBUS (-7), its temporary directory left; one
    rewritten in place, or replaced, was shuffled as whatever it then held, exit 0, where the rows
    had been planned from what it held before (a line file is refused). Now: one line, exit 1."""
    table = pa.table({"x": np.arange(300_000), "s": [f"v{i}" for i in range(300_000)]})
    path = _table_file(tmp_path, kind, table)
    done = _changed_during_a_run(tmp_path, path, [path], tmp_path / "out.parquet", change)
    assert done.returncode == 1, (done.returncode, done.stderr[-800:])
    assert re.fullmatch(rf"bigshuf: .*t\.(parquet|arrow): file changed while being read \({why}\)\n", done.stderr), done.stderr
    assert not (tmp_path / "out.parquet").exists()
    assert temp_leftovers(tmp_path / "tmp") == []


@pytest.mark.parametrize("kind", ["parquet", "arrow", "stream"])
def test_a_table_replaced_after_it_was_planned_is_refused(tmp_path: Path, kind: str) -> None:
    """Another file renamed over a table's name between its rows being counted and read: the plan was
    made from the old one, so the reading refuses the new one as changed (before: shuffled as it)."""
    path = _table_file(tmp_path, kind, pa.table({"x": np.arange(10_000)}))
    table = TableInput(str(path), kind)
    other = _table_file(tmp_path / "other", kind, pa.table({"x": np.arange(20_000)}))
    os.rename(other, path)
    with pytest.raises(InputError, match=r"t\.(parquet|arrow): file changed while being read \(another file now has its name\)$"):
        for _batch in table.batches(1 << 20):
            pass


class _AppendOnFirstUpdate(bigshuf.progress.Progress):
    """Appends a JSON line to ``path`` at the first progress a run reports: while it reads the file."""

    def __init__(self, path: Path) -> None:
        self.path: Path | None = path

    def update(self, nbytes: int) -> None:
        if self.path is not None:
            with open(self.path, "ab") as f:
                f.write(b'{"x": -1}\n')
            self.path = None


@pytest.mark.parametrize("memory", ["64M", "256K"])
def test_json_lines_read_as_rows_changed_while_read_are_refused(tmp_path: Path, memory: str) -> None:
    """Found while fixing the manifest's sizes: JSON Lines read as rows (into Parquet) took a line
    appended while the file was read, exit 0, where the same file shuffled as lines is refused; and
    one changed after the run planned it (before it was read) was read as it then stood."""
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(b'{"x": %d}\n' % i for i in range(40_000)))
    (tmp_path / "t").mkdir()
    with pytest.raises(InputError, match=r"in\.jsonl: file changed while being read \(size \d+ bytes when opened, \d+ now"):
        bigshuf.shuffle(src, tmp_path / "o.parquet", memory=memory, seed=1, tmp_dir=tmp_path / "t", progress=_AppendOnFirstUpdate(src))
    assert not (tmp_path / "o.parquet").exists()
    assert temp_leftovers(tmp_path / "t") == []
    planned = TableInput(str(src), "jsonl")
    with open(src, "ab") as f:
        f.write(b'{"x": -2}\n')
    with pytest.raises(InputError, match=r"in\.jsonl: file changed while being read"):
        for _batch in planned.batches(1 << 20):
            pass


@pytest.mark.parametrize("lines", [b'{"x": 1}\n' * 20_000, b'{"x": 1}\n[2]\n'], ids=["rows", "an array"])
def test_json_lines_read_as_rows_from_a_named_pipe(tmp_path: Path, lines: bytes) -> None:
    """Found by review: held to its status as a file is, a FIFO of JSON Lines was refused as
    "changed while being read" (each write moves its time), and so was one whose real error was
    a line that is not an object. A FIFO is read as it comes, as standard input is."""
    fifo = tmp_path / "f.jsonl"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", 'cat > "$1"', "sh", str(fifo)], stdin=subprocess.PIPE)
    proc = subprocess.Popen([sys.executable, "-m", "bigshuf", "--seed", "1", str(fifo), "-o", str(tmp_path / "o.parquet")],
                            stderr=subprocess.PIPE)
    assert writer.stdin is not None
    writer.stdin.write(lines)
    writer.stdin.close()
    writer.wait(timeout=60)
    err = proc.communicate(timeout=60)[1]
    if lines.count(b"\n") == 20_000:
        assert (proc.returncode, err) == (0, b"")
        assert pq.read_table(tmp_path / "o.parquet").num_rows == 20_000
    else:
        assert (proc.returncode, err) == (1, f"bigshuf: {fifo}: line 2 is not a JSON object (it is an array)\n".encode())


@pytest.mark.parametrize("memory", ["256K", "512K", "1M", "2M"])
def test_a_unique_plan_takes_the_runs_path(tmp_path: Path, memory: str) -> None:
    """``--dry-run --unique`` of rows that fit in memory once but not beside their unique copy said
    "in memory, 1 pass" where the run took a dedup pass and buckets (found by review, for Megatron
    documents too); the plan now takes the path the run takes (its bucket counts are estimates here:
    the rows' sizes are sampled)."""
    path = write_parquet(tmp_path / "q.parquet", pa.table({"x": np.arange(8000) % 6000, "s": [f"v{i % 6000}" for i in range(8000)]}))
    options = {"memory": memory, "unique": True, "seed": 1, "tmp_dir": str(tmp_path)}
    planned = bigshuf.plan_shuffle([str(path)], str(tmp_path / "o.parquet"), **options)
    stats = bigshuf.shuffle([str(path)], str(tmp_path / "o.parquet"), **options)
    assert (planned.in_memory, planned.passes) == (stats.passes == 1, stats.passes), planned.render()
    assert (stats.buckets == 0) == planned.in_memory
    assert sorted(pq.read_table(tmp_path / "o.parquet").column("x").to_pylist()) == list(range(6000))
