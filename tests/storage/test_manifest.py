"""--manifest and --check-manifest: the manifest against the files actually written on every path,
the check catching a changed, missing or extra record, a hostile manifest refused without writing,
and a kill at any step of the commit of splits and manifest leaving the old set or the new."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import make_records, split_records, write_records

import bigshuf
from bigshuf.core import plan
from bigshuf.core.fingerprint import fingerprint_records
from bigshuf.core.records import RecordFormat
from bigshuf.storage.tempspace import remove_dead_outputs

PATHS = [("64M", None, 1), ("16K", None, 2), ("4K", 2, 3)]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "bigshuf", *args], capture_output=True, timeout=120, env={**os.environ, **(env or {})}
    )


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (relative name -> bytes)."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("memory,cap,passes", PATHS)
def test_the_manifest_describes_the_files_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory: str, cap: int | None, passes: int
) -> None:
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    a = write_records(tmp_path / "a", make_records(2000, seed=1))
    b = write_records(tmp_path / "b", make_records(1000, seed=2), final_sep=False)  # a separator is added on reading
    out = tmp_path / "out"
    stats = bigshuf.shuffle(
        [a, b], str(out / "{split}" / "p{}.txt"), memory=memory, seed=6, tmp_dir=tmp_path,
        split="valid=0.1,train=rest", shard_records=1000, manifest=tmp_path / "m.json",
    )
    assert stats.passes == passes if passes < 3 else stats.passes >= 3
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["version"] == bigshuf.__version__ and doc["seed"] == 6 and doc["sources"] is None
    assert [(i["path"], i["records"], i["bytes"], i["size"]) for i in doc["inputs"]] == [
        (str(a), 2000, a.stat().st_size, a.stat().st_size), (str(b), 1000, b.stat().st_size + 1, b.stat().st_size),
    ]
    assert doc["inputs"][0]["mtime"] == a.stat().st_mtime_ns / 1e9
    assert doc["records_read"] == doc["records_written"] == 3000
    listed = [(o["split"], o["path"], o["records"]) for o in doc["outputs"]]
    assert listed == [
        ("valid", "out/valid/p0.txt", 300), ("train", "out/train/p0.txt", 1000),
        ("train", "out/train/p1.txt", 1000), ("train", "out/train/p2.txt", 700),
    ]
    fmt = RecordFormat(10, 1)
    for o in doc["outputs"]:
        data = (tmp_path / o["path"]).read_bytes()
        fp = fingerprint_records(bigshuf.api.np.frombuffer(data, bigshuf.api.np.uint8), fmt)
        assert o["file_bytes"] == len(data) == o["bytes"] and len(split_records(data)) == o["records"]
        assert o["fingerprint"] == {"records": fp.records, "bytes": fp.bytes, "digest": f"{fp.digest:016x}"}
    proc = cli("--check-manifest", str(tmp_path / "m.json"))
    assert proc.returncode == 0 and proc.stderr.count(b"\n") == 1 and b"4 output file(s) match" in proc.stderr, proc.stderr


def test_a_compressed_single_output_with_a_header_and_no_seed(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(b"h\n" + b"".join(b"%d\n" % i for i in range(500)))
    bigshuf.shuffle(src, tmp_path / "o.csv.gz", header=1, manifest=tmp_path / "m.json")
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["seed"] is None and doc["inputs"][0]["records"] == 500
    assert [(o["path"], o["records"], o["file_bytes"]) for o in doc["outputs"]] == [("o.csv.gz", 500, (tmp_path / "o.csv.gz").stat().st_size)]
    assert bigshuf.api.check_manifest(tmp_path / "m.json")[0] == []
    assert oct((tmp_path / "m.json").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


@pytest.mark.parametrize("kind", ["lines", "parquet rows", "dask"])
def test_the_manifest_entropy_reruns_a_run_without_a_seed(tmp_path: Path, kind: str) -> None:
    """A run without --seed (or with --random-source) recorded "seed": null and no way to rerun it
    (found by a new-user test); its entropy, given as --seed, writes the same files byte for byte."""
    from concurrent.futures import ThreadPoolExecutor

    if kind == "parquet rows":
        import pyarrow as pa
        import pyarrow.parquet as pq

        src = tmp_path / "in.parquet"
        pq.write_table(pa.table({"id": list(range(3000)), "text": [f"row {i}" for i in range(3000)]}), src)
        suffix = ".parquet"
    else:
        src = write_records(tmp_path / "in.txt", make_records(3000, seed=9))
        suffix = ".txt"
    (tmp_path / "random").write_bytes(bytes(range(256)) * 16)
    with ThreadPoolExecutor(2) as runner:
        extra = {"engine": "dask", "scheduler": runner} if kind == "dask" else {}
        written = {}
        for run, given in (("fresh", {}), ("source", {"random_source": tmp_path / "random"})):
            out = tmp_path / run
            bigshuf.shuffle(src, f"{out}/", memory="64K", shards=3, manifest=out / "m.json", tmp_dir=tmp_path, **given, **extra)
            entropy = json.loads((out / "m.json").read_text())["entropy"]
            assert isinstance(entropy, str) and entropy.isdigit()
            again = tmp_path / f"{run}-again"
            bigshuf.shuffle(src, f"{again}/", memory="64K", shards=3, manifest=again / "m.json", tmp_dir=tmp_path, seed=int(entropy), **extra)
            assert json.loads((again / "m.json").read_text())["entropy"] == entropy
            files = sorted(p.name for p in out.iterdir() if p.name != "m.json")
            assert files == [f"part-0000{i}{suffix}" for i in range(3)]
            assert [(out / f).read_bytes() for f in files] == [(again / f).read_bytes() for f in files]
            written[run] = (out / files[0]).read_bytes()
    assert written["fresh"] != written["source"]


def test_a_header_of_lines_is_named_so_and_an_older_manifest_read_as_it_was_written(tmp_path: Path) -> None:
    """``--header=N`` now keeps N lines whatever ``--lines-per-record``; a manifest written before
    said ``"header": N`` meaning N records. New manifests say ``header_lines``, and an older one
    is checked as its run wrote it (read as lines, a header of 1 record of 2 lines left a line of
    the header counted as a record)."""
    src = tmp_path / "in.txt"
    src.write_bytes(b"h1\nh2\n" + b"".join(b"%d\n" % i for i in range(400)))
    out, manifest = tmp_path / "o.txt", tmp_path / "m.json"
    bigshuf.shuffle(src, out, header=2, lines_per_record=2, seed=3, manifest=manifest)
    assert out.read_bytes().startswith(b"h1\nh2\n")
    doc = json.loads(manifest.read_text())
    assert doc["format"] == {
        "separator": 10, "lines_per_record": 2, "header_lines": 2, "header_sha256": hashlib.sha256(b"h1\nh2\n").hexdigest(),
    }
    assert bigshuf.api.check_manifest(manifest)[0] == []
    doc["format"] = {"separator": 10, "lines_per_record": 2, "header": 1}  # as the older version wrote it
    manifest.write_text(json.dumps(doc))
    assert bigshuf.api.check_manifest(manifest)[0] == []


@pytest.mark.parametrize("change", [b"ID,TEXT\n", b"9999,xx\n"])
def test_a_changed_header_fails_the_check(tmp_path: Path, change: bytes) -> None:
    """Found by attack: neither the fingerprint nor the byte counts cover the header, so a header
    rewritten at the same length (or made a data-like line) passed ``--check-manifest``, which
    ``--check-permutation`` refuses. The manifest now keeps the header's SHA-256, checked in
    every output (splits and shards); older manifests without it still check."""
    src = tmp_path / "h.csv"
    src.write_bytes(b"id,text\n" + b"".join(b"%d,x\n" % i for i in range(100)))
    manifest = tmp_path / "o" / "m.json"
    bigshuf.shuffle(src, str(tmp_path / "o" / "{split}-{:02d}.csv"), header=1, seed=1, split="a=0.5,b=rest", shard_records=30, manifest=manifest)
    assert bigshuf.api.check_manifest(manifest)[0] == []
    victim = tmp_path / "o" / "b-01.csv"
    data = victim.read_bytes()
    assert data.startswith(b"id,text\n") and len(change) == len(b"id,text\n")
    victim.write_bytes(change + data[len(change):])  # the same size on disk
    assert bigshuf.api.check_manifest(manifest)[0] == [f"{victim}: its header (first 1 line) differs from the one the run wrote"]
    doc = json.loads(manifest.read_text())
    del doc["format"]["header_sha256"]  # as a manifest written before it was kept
    manifest.write_text(json.dumps(doc))
    assert bigshuf.api.check_manifest(manifest)[0] == []


def test_a_manifest_whose_header_key_counted_lines_still_checks(tmp_path: Path) -> None:
    """Between efd96e5 and 6ac9325 the manifest said ``"header": N`` meaning N lines (the review
    found 6ac9325's own manifests refused: read as records, a header line was left over)."""
    src = tmp_path / "in.txt"
    src.write_bytes(b"h1\n" + b"".join(b"%d\n" % i for i in range(400)))
    out, manifest = tmp_path / "o.txt", tmp_path / "m.json"
    bigshuf.shuffle(src, out, header=1, lines_per_record=2, seed=3, manifest=manifest)
    doc = json.loads(manifest.read_text())
    doc["format"] = {"separator": 10, "lines_per_record": 2, "header": 1}  # as 6ac9325 wrote it
    manifest.write_text(json.dumps(doc))
    assert bigshuf.api.check_manifest(manifest)[0] == []
    out.write_bytes(out.read_bytes().replace(b"\n1\n", b"\nx\n"))  # and a changed record is still found
    assert "records differ" in bigshuf.api.check_manifest(manifest)[0][0]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _made(tmp_path: Path) -> Path:
    """A run with splits and a manifest in ``tmp_path/out``; returns the manifest."""
    src = write_records(tmp_path / "in", make_records(300, seed=3))
    (tmp_path / "out").mkdir()
    bigshuf.shuffle(src, str(tmp_path / "out" / "{split}.txt"), seed=1, split="a=100,b=rest", manifest=tmp_path / "out" / "m.json")
    return tmp_path / "out" / "m.json"


def test_check_manifest_names_each_problem(tmp_path: Path) -> None:
    manifest = _made(tmp_path)
    a, b = tmp_path / "out" / "a.txt", tmp_path / "out" / "b.txt"
    records = split_records(a.read_bytes())
    a.write_bytes(b"\n".join([records[0] + b"!", *records[1:]]) + b"\n")  # one record longer
    b.write_bytes(b.read_bytes() + b"extra\n")  # one record more
    proc = cli("--check-manifest", str(manifest))
    lines = [line.split(str(tmp_path / "out") + "/")[1] for line in proc.stderr.decode().splitlines()]
    size_a, size_b = a.stat().st_size, b.stat().st_size
    assert proc.returncode == 1 and lines == [
        f"a.txt: {size_a} bytes on disk, the manifest says {size_a - 1}",
        f"a.txt: {size_a} bytes of records, the manifest says {size_a - 1}",
        f"b.txt: {size_b} bytes on disk, the manifest says {size_b - 6}",
        "b.txt: 201 records, the manifest says 200",
    ], lines
    a.unlink()
    b.write_bytes(b"".join(sorted(line + b"\n" for line in split_records(b.read_bytes())[:-1])))  # its records, re-ordered
    proc = cli("--check-manifest", str(manifest))
    lines = proc.stderr.decode().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].endswith("a.txt: No such file or directory"), lines


class _AppendInPass2(bigshuf.progress.Progress):
    """Appends ``extra`` to ``path`` as pass 2 starts: the inputs are read by then."""

    def __init__(self, path: Path, extra: bytes) -> None:
        self.path, self.extra = path, extra

    def start(self, description: str, total: int | None) -> None:
        if description.startswith("pass 2") and self.extra:
            with open(self.path, "ab") as f:
                f.write(self.extra)
            self.extra = b""


@pytest.mark.parametrize("kind", ["lines", "rows", "megatron", "dask", "dask megatron"])
def test_an_input_appended_to_after_it_was_read_is_listed_as_read(tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by a new-user test: the manifest took each input's size and mtime once the run had ended,
    so a file appended to in pass 2 (its records read, the new ones not) was listed at its new size
    beside the bytes read. It is listed as it was read (on Dask, a dataset named relatively too:
    found by review)."""
    if kind.startswith("dask"):
        pytest.importorskip("distributed")
    if kind.endswith("megatron"):
        from formats.test_megatron import make_docs, write_dataset

        write_dataset(tmp_path / "in", make_docs(400, seed=2))
        monkeypatch.chdir(tmp_path)
        src, grown = Path("in"), tmp_path / "in.bin"
        options: dict[str, Any] = {"output": str(tmp_path / "out" / "all")}
        if kind == "dask megatron":
            options["engine"] = "dask"
    else:
        src = grown = tmp_path / "in.jsonl"
        src.write_bytes(b"".join(b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * 40) for i in range(3000)))
        options = {"output": str(tmp_path / "out" / ("all.parquet" if kind == "rows" else "all.jsonl"))}
        if kind == "dask":
            options["engine"] = "dask"
    before = grown.stat()
    (tmp_path / "out").mkdir()
    manifest = tmp_path / "out" / "m.json"
    progress = _AppendInPass2(grown, b"0" * 64 if kind.endswith("megatron") else b'{"n": "late"}\n')
    bigshuf.shuffle(src, memory="64K", seed=1, manifest=manifest, tmp_dir=tmp_path, progress=progress, **options)
    assert grown.stat().st_size == before.st_size + len(b"0" * 64 if kind.endswith("megatron") else b'{"n": "late"}\n')
    (entry,) = json.loads(manifest.read_text())["inputs"]
    assert (entry["path"], entry["size"], entry["mtime"]) == (str(grown), before.st_size, before.st_mtime_ns / 1e9)


def test_check_manifest_given_twice_is_refused(tmp_path: Path) -> None:
    """Found by a new-user test: the last of two ``--check-manifest`` was checked, the first not at
    all, so a bad manifest given first passed (exit 0), as ``--manifest`` given twice is refused."""
    good = _made(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"{}")
    assert cli("--check-manifest", str(bad)).returncode == 1
    proc = cli("--check-manifest", str(bad), "--check-manifest", str(good))
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, b"", b"bigshuf: multiple --check-manifest options specified\n")


def test_check_manifest_names_options_as_its_caller_spells_them(tmp_path: Path) -> None:
    """A shard cut inside a record of 4 lines: the command line said ``(lines_per_record=)``, the
    library's spelling; and the library's summary said the files match beside its problems (found by review)."""
    src = write_records(tmp_path / "in", [b"%d" % i for i in range(40)])
    manifest = tmp_path / "ml" / "m.json"
    proc = cli(str(src), "--lines-per-record", "4", "--seed", "1", "--shard-records", "3", "-o", f"{tmp_path}/ml/", "--manifest", str(manifest))
    assert proc.returncode == 0, proc.stderr
    shard = tmp_path / "ml" / "part-00000"
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size - 3)
    proc = cli("--check-manifest", str(manifest))
    assert proc.returncode == 1
    assert b"left over after the last whole record of 4 lines (--lines-per-record)\n" in proc.stderr
    problems, summary = bigshuf.api.check_manifest(manifest)
    assert any(p.endswith("(lines_per_record=)") for p in problems)
    assert summary == f"{len(problems)} problem(s) in the output files {manifest} lists"


def test_a_changed_record_of_the_same_length_is_caught_by_the_fingerprint(tmp_path: Path) -> None:
    manifest = _made(tmp_path)
    a = tmp_path / "out" / "a.txt"
    data = a.read_bytes()
    a.write_bytes(data.replace(b":", b";", 1))
    proc = cli("--check-manifest", str(manifest))
    assert proc.returncode == 1 and proc.stderr.count(b"\n") == 1, proc.stderr
    assert b"a.txt: records differ from those the manifest lists" in proc.stderr


@pytest.mark.parametrize("tamper,message", [
    (lambda d: d.update(outputs="x"), "'outputs' is not a list"),
    (lambda d: d["outputs"][0].update(records=-1), "output 0 needs path"),
    (lambda d: d["outputs"][0].update(path=7), "output 0 needs path"),
    (lambda d: d["outputs"][0].update(path="/etc/passwd"), "output 0 needs path (relative to the manifest)"),
    (lambda d: d["outputs"][0]["fingerprint"].update(digest="zz"), "output 0 needs path"),
    (lambda d: d.update(bigshuf_manifest=2), "no 'bigshuf_manifest': 1"),
    (lambda d: d.update(format={"separator": 65, "lines_per_record": 1, "header_lines": 0}), "'format' needs"),
    (lambda d: d.update(format={"separator": 10, "lines_per_record": 2, "header_lines": "x", "header": 0}), "'format' needs"),
    (lambda d: d.update(format={"separator": 10, "lines_per_record": 2, "header_lines": None, "header": 1}), "'format' needs"),
    # Fields no output file is checked against were taken as written (found by an attack run).
    (lambda d: d.update(bigshuf_manifest=True), "no 'bigshuf_manifest': 1"),
    (lambda d: d.update(head_count="x"), "'head_count' is not a count"),
    (lambda d: d.update(seed=-1), "'seed' is not a count"),
    (lambda d: d.update(unique="x"), "'unique' is not true or false"),
    (lambda d: d.update(repeat=1), "'repeat' is not true or false"),
    (lambda d: d.update(sources="x"), "'sources' is not a list"),
    (lambda d: d.update(split=3), "'split' is not text"),
])
def test_a_malformed_manifest_is_one_line(tmp_path: Path, tamper: object, message: str) -> None:
    manifest = _made(tmp_path)
    doc = json.loads(manifest.read_text())
    tamper(doc)  # type: ignore[operator]
    manifest.write_text(json.dumps(doc))
    with pytest.raises(bigshuf.InputError, match="not a valid bigshuf manifest: " + re.escape(message)):
        bigshuf.api.check_manifest(manifest)


def test_a_malformed_manifest_is_one_line_on_the_command_line(tmp_path: Path) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text('{"bigshuf_manifest": 1, "kind": "lines", "outputs": []}')
    proc = cli("--check-manifest", str(manifest))
    assert proc.returncode == 1 and proc.stderr == f"bigshuf: {manifest}: not a valid bigshuf manifest: 'format' needs separator 0 or 10, lines_per_record and header_lines (and header_sha256 as 64 hex digits, if given)\n".encode()
    manifest.write_text("[1, 2")
    proc = cli("--check-manifest", str(manifest))
    assert proc.returncode == 1 and proc.stderr.count(b"\n") == 1 and b"not a bigshuf manifest" in proc.stderr
    # Found by an attack: arrays nested 100,000 deep were an internal RecursionError, a number of
    # 5000 digits leaked Python's own message, a directory was "3: Is a directory".
    for text in ("[" * 100_000 + "]" * 100_000, '{"records_written": ' + "9" * 5000 + "}"):
        manifest.write_text(text)
        proc = cli("--check-manifest", str(manifest))
        assert proc.returncode == 1 and proc.stderr == f"bigshuf: {manifest}: not a bigshuf manifest: a value too large or nested too deeply\n".encode()
    proc = cli("--check-manifest", str(tmp_path))
    assert proc.returncode == 1 and proc.stderr == f"bigshuf: {tmp_path}: Is a directory\n".encode()
    # Bytes that are not UTF-8 were said to be "a value too large or nested too deeply" (found by attack).
    manifest.write_bytes(b"\xff\xff")
    proc = cli("--check-manifest", str(manifest))
    assert proc.returncode == 1 and proc.stderr == f"bigshuf: {manifest}: not a bigshuf manifest: not UTF-8 text\n".encode()


def test_a_manifest_checked_through_a_link_to_it_reads_the_files_beside_it(tmp_path: Path) -> None:
    # Found by a new-user test: `ln -s out/m.json latest.json; bigshuf --check-manifest latest.json`
    # looked for the outputs beside the link (a.txt: No such file or directory), or checked a file of
    # that name there; the paths are relative to the manifest.
    manifest = _made(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.txt").write_bytes(b"not the output\n")
    (elsewhere / "latest.json").symlink_to(manifest)
    proc = cli("--check-manifest", str(elsewhere / "latest.json"))
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr
    assert proc.stderr.decode().startswith(f"bigshuf: 2 output file(s) match {elsewhere / 'latest.json'}: ")
    assert bigshuf.api.check_manifest(elsewhere / "latest.json")[0] == []


def test_a_hostile_manifest_reads_only_regular_files_it_names_and_writes_nothing(tmp_path: Path) -> None:
    manifest = _made(tmp_path)
    doc = json.loads(manifest.read_text())
    os.mkfifo(tmp_path / "fifo")  # would block a reader for ever
    os.symlink("/etc/passwd", tmp_path / "link")
    entry = doc["outputs"][0]
    doc["outputs"] = [
        dict(entry, path="../fifo"), dict(entry, path="../link"), dict(entry, path="../../../../../../../../dev/zero"),
        dict(entry, path="a.txt"), dict(entry, path="./a.txt"),
    ]
    manifest.write_text(json.dumps(doc))
    before = {p: p.lstat().st_mtime_ns for p in tmp_path.rglob("*")}
    proc = cli("--check-manifest", str(manifest))
    lines = proc.stderr.decode().splitlines()
    assert proc.returncode == 1
    assert "fifo: not a regular file" in lines[0]
    assert "link: not a regular file (a symbolic link)" in lines[1]
    assert "/dev/zero: not a regular file" in lines[2]
    assert "a.txt: listed twice" in lines[3]
    assert "its outputs list 400 records, but it says 300 were written" in lines[4]  # the second a.txt not counted
    assert {p: p.lstat().st_mtime_ns for p in tmp_path.rglob("*")} == before


@pytest.mark.parametrize("args,message", [
    (["--manifest", "m.json"], "--manifest needs -o naming files"),
    (["--manifest", "m.json", "-o", "s3://bucket/o", "--engine", "dask"], "--engine=dask writes --manifest only with local outputs"),
    (["--manifest", "s3://bucket/m.json", "-o", "o", "--engine", "dask"],
     "s3://bucket/m.json: --engine=dask writes --manifest to a local file, committed with the outputs"),
    (["--manifest", "s3://bucket/m.json", "-o", "o"], "s3://bucket/m.json: --manifest is written to a local file, on every engine"),
    (["--manifest", "o", "-o", "o"], "the manifest would be written over an output"),
])
def test_manifest_refusals_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str) -> None:
    """A URL manifest is refused, not written under ``./s3:/`` (made as a missing directory, it was)."""
    monkeypatch.chdir(tmp_path)
    src = write_records(tmp_path / "in", make_records(10, seed=1))
    proc = cli(str(src), *(str(tmp_path / a) if a in ("m.json", "o") else a for a in args))
    assert proc.returncode == 1 and proc.stderr.count(b"\n") == 1 and message.encode() in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


@pytest.mark.parametrize("args,given", [
    (["-o", "other.txt"], "--output"),
    (["--dry-run"], "--dry-run"),
    (["-n", "5"], "--head-count"),
    (["--source", "a=in"], "--source"),
    (["-z"], "--zero-terminated"),
    (["--check-permutation", "--against", "o.txt"], None),
])
def test_check_manifest_refuses_what_it_would_ignore(tmp_path: Path, args: list[str], given: str | None) -> None:
    """Like GNU tools given two modes: one line, nothing checked or written (these were silently ignored)."""
    src = write_records(tmp_path / "in", make_records(10, seed=1))
    assert cli(str(src), "-o", str(tmp_path / "o.txt"), "--manifest", str(tmp_path / "m.json")).returncode == 0
    before = snapshot(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "bigshuf", "--check-manifest", "m.json", *args], capture_output=True, cwd=tmp_path, timeout=120)
    want = (
        f"bigshuf: --check-manifest cannot be combined with {given}: it only checks the outputs the manifest lists (it takes -S)\n"
        if given else "bigshuf: --check-manifest cannot be combined with --check-permutation: choose one check\n"
    )
    assert (proc.returncode, proc.stdout, proc.stderr.decode()) == (1, b"", want)
    assert snapshot(tmp_path) == before and not (tmp_path / "other.txt").exists()
    if given == "--output":  # what it takes
        assert cli("--check-manifest", str(tmp_path / "m.json"), "-S", "1M", "-q").returncode == 0


def test_a_kill_at_every_commit_step_leaves_the_old_splits_and_manifest_or_the_new(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in", make_records(300, seed=5))
    out = tmp_path / "out"
    out.mkdir()
    args = ["--split", "a=0.5,b=rest", "-o", str(out / "{split}.txt"), "--manifest", str(out / "m.json"), str(src)]
    assert cli("--seed", "1", *args).returncode == 0
    old = snapshot(out)
    assert cli("--seed", "2", *args).returncode == 0
    new = snapshot(out)
    assert old != new and sorted(old) == sorted(new) == ["a.txt", "b.txt", "m.json"]
    outcomes = []
    for step in range(1, 30):
        for name, data in old.items():
            (out / name).write_bytes(data)
        proc = cli("--seed", "2", *args, env={"BIGSHUF_TEST_KILL_AT": str(step)})
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        remove_dead_outputs(str(out))
        now = snapshot(out)
        assert now in (old, new), f"step {step}"
        assert [n for n in os.listdir(out) if n.startswith(".")] == []
        outcomes.append("new" if now == new else "old")
    else:
        pytest.fail("the commit never completed")
    # Steps: journal, 3 backups, 3 renames, directory sync, 3 backup removals, journal removal;
    # from the journal on, the next run finishes the commit (the old set comes back only from a failure).
    assert len(outcomes) >= 12 and snapshot(out) == new
    assert cli("--check-manifest", str(out / "m.json")).returncode == 0


def test_a_failed_rename_mid_commit_puts_the_old_splits_and_manifest_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_records(tmp_path / "in", make_records(300, seed=5))
    out = tmp_path / "out"
    out.mkdir()
    kwargs = dict(split="a=0.5,b=rest", manifest=out / "m.json")
    bigshuf.shuffle(src, str(out / "{split}.txt"), seed=1, **kwargs)  # type: ignore[arg-type]
    old = snapshot(out)
    real = os.rename

    def failing(a: str, b: str) -> None:
        if str(b).endswith("m.json") and ".bigshuf-tmp" in str(a):
            raise OSError(28, "No space left on device")
        real(a, b)

    monkeypatch.setattr(os, "rename", failing)
    with pytest.raises(bigshuf.OutputError, match="the old files were put back"):
        bigshuf.shuffle(src, str(out / "{split}.txt"), seed=2, **kwargs)  # type: ignore[arg-type]
    assert snapshot(out) == old and [n for n in os.listdir(out) if n.startswith(".")] == []


@pytest.mark.parametrize("memory,passes", [("64M", 1), ("64K", 2)])
def test_parquet_rows_split_sharded_with_a_manifest(tmp_path: Path, memory: str, passes: int) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"a": list(range(3000)), "b": [f"row {i}" * (i % 7) for i in range(3000)]})
    src = tmp_path / "t.parquet"
    pq.write_table(table, src, row_group_size=500)
    bigshuf.shuffle(src, tmp_path / "plain.parquet", memory=memory, seed=3, tmp_dir=tmp_path)
    stats = bigshuf.shuffle(
        src, str(tmp_path / "out" / "{split}-{}.parquet"), memory=memory, seed=3, tmp_dir=tmp_path,
        split="valid=0.1,train=rest", shard_records=1000, manifest=tmp_path / "m.json",
    )
    assert stats.passes == passes
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["kind"] == "rows" and doc["inputs"][0]["records"] == 3000 and doc["records_written"] == 3000
    names = ["valid-0", "train-0", "train-1", "train-2"]
    assert [(o["path"], o["records"]) for o in doc["outputs"]] == [
        (f"out/{n}.parquet", c) for n, c in zip(names, [300, 1000, 1000, 700])
    ]
    parts = [pq.read_table(tmp_path / "out" / f"{n}.parquet") for n in names]
    assert pa.concat_tables(parts).equals(pq.read_table(tmp_path / "plain.parquet"))
    assert bigshuf.api.check_manifest(tmp_path / "m.json")[0] == []
    changed = parts[1].set_column(0, "a", pa.array([-1] + parts[1].column("a").to_pylist()[1:]))
    pq.write_table(changed, tmp_path / "out" / "train-0.parquet")
    problems, _summary = bigshuf.api.check_manifest(tmp_path / "m.json")
    assert [p.split("/out/")[1].split(":")[0] for p in problems] == ["train-0.parquet"] * 2  # written again: its size changed too
    assert "bytes on disk" in problems[0] and "records differ from those the manifest lists" in problems[1]


def test_a_row_output_whose_schema_differs_from_its_siblings_is_a_problem(tmp_path: Path) -> None:
    """Found by attack: a shard whose column was renamed in place (``text`` to ``TEXT``, the same
    size) passed ``--check-manifest``: the row fingerprint hashes values by their kind of type, not
    the column names, units or scales. Every output of a run has its schema: one that differs from
    the first output's is named."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"id": list(range(900)), "text": [f"row {i}" for i in range(900)]})
    pq.write_table(table, tmp_path / "t.parquet")
    bigshuf.shuffle(tmp_path / "t.parquet", str(tmp_path / "out" / "{}.parquet"), seed=3, shard_records=300, manifest=tmp_path / "m.json")
    assert bigshuf.api.check_manifest(tmp_path / "m.json")[0] == []
    shard = tmp_path / "out" / "1.parquet"
    shard.write_bytes(shard.read_bytes().replace(b"text", b"TEXT"))
    assert pq.read_schema(shard).names == ["id", "TEXT"]
    problems, _summary = bigshuf.api.check_manifest(tmp_path / "m.json")
    assert problems == [f"{shard}: schema does not match {tmp_path / 'out' / '0.parquet'}: column 'text' is missing"], problems
    # The first output changed is named too, not the others for differing from it (found by review).
    shard.write_bytes(shard.read_bytes().replace(b"TEXT", b"text"))
    first = tmp_path / "out" / "0.parquet"
    first.write_bytes(first.read_bytes().replace(b"text", b"TEXT"))
    problems, _summary = bigshuf.api.check_manifest(tmp_path / "m.json")
    assert problems == [f"{first}: schema does not match {shard}: column 'text' is missing"], problems


def test_rows_written_as_json_lines_refuse_a_manifest(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "t.parquet")
    with pytest.raises(bigshuf.UsageError, match="manifest=: rows written as JSON Lines cannot be checked"):
        bigshuf.shuffle(tmp_path / "t.parquet", tmp_path / "o.jsonl", manifest=tmp_path / "m.json")


def test_a_replaced_manifest_keeps_its_mode_and_group(tmp_path: Path) -> None:
    """A 0600 manifest replaced by a rerun became 0644 (the umask's), while the shards beside it
    keep the files' they replace, as shuf's ``-o`` does (found by attack)."""
    src = tmp_path / "in.txt"
    src.write_bytes(b"".join(b"%d\n" % i for i in range(100)))
    manifest = tmp_path / "o" / "m.json"
    bigshuf.shuffle(src, f"{tmp_path / 'o'}/", seed=1, shards=2, manifest=manifest)
    os.chmod(manifest, 0o600)
    group = 1 if os.geteuid() == 0 else os.getgid()
    os.chown(manifest, -1, group)
    bigshuf.shuffle(src, f"{tmp_path / 'o'}/", seed=2, shards=2, manifest=manifest)
    st = os.stat(manifest)
    assert (st.st_mode & 0o7777, st.st_gid) == (0o600, group)
    assert json.loads(manifest.read_bytes())["outputs"]


@pytest.mark.parametrize("kind", ["lines", "tars", "dask"])
def test_a_directory_read_back_skips_the_manifest_written_into_it(tmp_path: Path, kind: str) -> None:
    """``--manifest out/manifest.json`` beside the shards, then ``bigshuf out/``: the manifest's
    pretty-printed JSON lines were shuffled in among the records (exit 0), and beside tar shards
    the directory was refused as holding line files and tars. The manifest is skipped; a user's
    own ``manifest.json`` of records, and a manifest named as a file, are still read."""
    import io
    import tarfile

    src = tmp_path / "src"
    src.mkdir()
    if kind == "tars":
        for i in range(3):
            with tarfile.open(src / f"t{i}.tar", "w") as tar:
                info = tarfile.TarInfo(f"s{i}.txt")
                info.size = 2
                tar.addfile(info, io.BytesIO(b"%d\n" % i))
    else:
        (src / "a.txt").write_bytes(b"".join(b"%d\n" % i for i in range(20)))
    out = tmp_path / "out"
    engine = ["--engine", "dask"] if kind == "dask" else []
    done = cli(str(src) + "/", "--shards", "2", "-o", f"{out}/", "--manifest", str(out / "manifest.json"), "--seed", "1", *engine)
    assert done.returncode == 0, done.stderr
    again = tmp_path / ("again.tar" if kind == "tars" else "again.txt")
    done = cli(f"{out}/", "-o", str(again), "--seed", "1", *engine)
    assert (done.returncode, done.stderr) == (0, b""), done.stderr
    if kind == "tars":
        with tarfile.open(again) as tar:
            assert sorted(tar.getnames()) == ["s0.txt", "s1.txt", "s2.txt"]
        return
    assert sorted(again.read_bytes().splitlines()) == sorted(b"%d" % i for i in range(20))
    assert b"bigshuf_manifest" in cli(str(out / "manifest.json")).stdout  # named as a file, it is data
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_bytes(b'{"bigshuf_manifest": 1}\n{"t": 2}\n')  # JSON Lines: records
    assert sorted(cli(f"{data}/").stdout.splitlines()) == [b'{"bigshuf_manifest": 1}', b'{"t": 2}']
