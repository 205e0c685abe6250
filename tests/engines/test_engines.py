"""Engines as plug-ins and the one frozen request: the registry loads engines lazily, refusals come
from ``Engine.supports`` with one message for the library and the command line, and
``bigshuf.shuffle(engine="dask")`` writes what ``--engine=dask`` writes for the same seed.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import bigshuf
from bigshuf import cli
from bigshuf.engines import base
from bigshuf.engines.base import Engine, register_engine
from bigshuf.errors import UsageError
from bigshuf.progress import Progress
from bigshuf.request import Request, ShuffleStats
from bigshuf.storage.sources import BytesSource
from helpers import assert_permutation, make_records, write_records

#: Generous bound for one command that starts a local Dask cluster (a few seconds).
TIMEOUT = 180


def test_engines_are_imported_when_first_chosen(tmp_path: Path) -> None:
    """``import bigshuf`` imports no engine; a request for Dask imports its plug-in, not Dask."""
    path = write_records(tmp_path / "a.txt", [b"1", b"2"])
    code = (
        "import sys, bigshuf\n"
        "loaded = lambda: sorted(m for m in sys.modules if m.startswith(('bigshuf.engines.', 'dask', 'distributed')))\n"
        "print(loaded())\n"
        "from bigshuf.request import Request\n"
        f"Request.build({str(path)!r})\n"
        f"Request.build({str(path)!r}, engine='dask', seed=1)\n"
        "print(loaded())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.splitlines() == [
        "[]", "['bigshuf.engines.base', 'bigshuf.engines.cluster', 'bigshuf.engines.local']",
    ]


def test_an_unknown_engine_names_the_choices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_records(tmp_path / "a.txt", [b"1"])
    with pytest.raises(UsageError) as caught:
        bigshuf.shuffle(path, engine="spark")
    assert str(caught.value) == "invalid engine= value: 'spark'; choose local or dask"
    assert cli.main(["--engine=spark", str(path)]) == 1
    assert capsys.readouterr().err == "bigshuf: invalid --engine value: 'spark'; choose local or dask\n"


class _Reverse(Engine):
    """A toy engine: writes the input's lines in reverse order, and refuses ``header``."""

    name = "reverse"

    def supports(self, request: Request) -> str | None:
        return "reverse: no header" if request.header else None

    def run(self, request: Request, progress: Progress) -> ShuffleStats:
        assert isinstance(request.inputs[0], str) and request.output is not None
        lines = Path(request.inputs[0]).read_bytes().splitlines(keepends=True)
        Path(request.output).write_bytes(b"".join(reversed(lines)))
        return ShuffleStats(len(lines), sum(map(len, lines)), 0, 1, 0.0)


def test_a_registered_engine_is_chosen_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "_ENGINES", dict(base._ENGINES))
    register_engine("reverse", _Reverse)
    with pytest.raises(ValueError, match="already registered"):
        register_engine("reverse", "somewhere:Else")
    path = write_records(tmp_path / "a.txt", [b"1", b"2", b"3"])
    stats = bigshuf.shuffle(path, tmp_path / "out.txt", engine="reverse")
    assert (tmp_path / "out.txt").read_bytes() == b"3\n2\n1\n" and stats.records == 3
    with pytest.raises(UsageError, match="^reverse: no header$"):
        bigshuf.shuffle(path, tmp_path / "out.txt", engine="reverse", header=1)
    with pytest.raises(UsageError, match="choose local, dask or reverse$"):
        bigshuf.shuffle(path, engine="nope")
    register_engine("broken", "bigshuf.errors:UsageError")
    with pytest.raises(TypeError, match="is not an Engine class"):
        bigshuf.shuffle(path, engine="broken")


#: Each refusal: command-line words, the library's call (inputs, keyword arguments), the CLI message.
REFUSALS: list[tuple[list[str], Any, dict[str, Any], str]] = [
    (["-r", "a.txt"], "a.txt", {"repeat": True}, "--engine=dask does not support --repeat"),
    (["--header=1", "a.txt"], "a.txt", {"header": 1}, "--engine=dask does not support --header"),
    (["--lines-per-record=2", "a.txt"], "a.txt", {"lines_per_record": 2}, "--engine=dask does not support --lines-per-record"),
    (["--resume", "--seed=1", "a.txt"], "a.txt", {"resume": True, "seed": 1}, "--engine=dask does not support --resume"),
    (["--compress-temp", "a.txt"], "a.txt", {"compress_temp": True}, "--engine=dask does not support --compress-temp"),
    (["--schema=a:int64", "a.txt"], "a.txt", {"schema": "a:int64"}, "--engine=dask does not support --schema"),
    (["-e", "x", "y"], BytesSource("-e", b"x\ny\n"), {}, "--engine=dask does not support -e"),
    (["-i", "1-5"], (1, 5), {}, "--engine=dask does not support -i"),
]


@pytest.mark.parametrize("argv,inputs,settings,message", REFUSALS, ids=[r[3].split()[-1] for r in REFUSALS])
def test_dask_refusals_read_the_same_from_the_library_and_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    argv: list[str], inputs: Any, settings: dict[str, Any], message: str,
) -> None:
    write_records(tmp_path / "a.txt", [b"x"])
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--engine=dask", *argv]) == 1
    assert capsys.readouterr().err == f"bigshuf: {message}\n"
    with pytest.raises(UsageError) as caught:
        if isinstance(inputs, tuple):
            bigshuf.shuffle_range(*inputs, engine="dask", **settings)
        else:
            bigshuf.shuffle(inputs, engine="dask", **settings)
    assert caught.value.cli_message() == message
    # The library's words are its own: the keyword argument, not the flag.
    assert str(caught.value).startswith("engine='dask' does not support ") and "--" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


@pytest.mark.parametrize(
    "argv,settings,message",
    [
        (["--scheduler=tcp://127.0.0.1:1"], {"scheduler": "tcp://127.0.0.1:1"}, "--scheduler needs --engine=dask"),
        (["--temp-url=/tmp"], {"temp_url": "/tmp"}, "--temp-url needs --engine=dask"),
        (["-o", "s3://bucket/out.txt"], {"output": "s3://bucket/out.txt"},
         "s3://bucket/out.txt: this engine writes local files; write to URLs with --engine=dask"),
        (["--manifest", "s3://bucket/m.json"], {"manifest": "s3://bucket/m.json"},
         "s3://bucket/m.json: --manifest is written to a local file, on every engine"),
    ],
)
def test_local_refusals_read_the_same_from_the_library_and_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str],
    settings: dict[str, Any], message: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # where a URL taken for a local path would land
    path = write_records(tmp_path / "a.txt", [b"x"])
    assert cli.main([*argv, str(path)]) == 1
    assert capsys.readouterr().err == f"bigshuf: {message}\n"
    with pytest.raises(UsageError) as caught:
        bigshuf.shuffle(path, **settings)
    assert caught.value.cli_message() == message


def test_file_urls_name_local_outputs_on_the_local_engine_as_on_dask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """``-o file:///...`` and ``--manifest file:///...`` are the local files they name, on the local
    engine as on the Dask engine (the local engine refused both as URLs, while it read ``file://``
    inputs); the bytes are those written to the plain paths."""
    monkeypatch.chdir(tmp_path)
    records = make_records(200)
    path = write_records(tmp_path / "a.txt", records)
    url = f"file://{tmp_path}"
    assert cli.main([str(path), "--seed", "3", "-o", f"{url}/u.txt", "--manifest", f"{url}/u.json"]) == 0
    assert capsys.readouterr().err == ""
    assert cli.main([str(path), "--seed", "3", "-o", "p.txt"]) == 0
    assert (tmp_path / "u.txt").read_bytes() == (tmp_path / "p.txt").read_bytes()
    assert_permutation((tmp_path / "u.txt").read_bytes(), records)
    assert bigshuf.check_manifest(tmp_path / "u.json")[0] == []
    bigshuf.shuffle(path, f"{url}/lib.txt", seed=3, manifest=f"{url}/lib.json")
    assert (tmp_path / "lib.txt").read_bytes() == (tmp_path / "p.txt").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "lib.json", "lib.txt", "p.txt", "u.json", "u.txt"]


def _corrupt_input(tmp_path: Path, kind: str) -> str:
    """A small input of ``kind`` damaged past its first header, the operand that names it."""
    import io
    import tarfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    if kind == "tar":
        with tarfile.open(tmp_path / "a.tar", "w") as tar:
            for i in range(20):
                data = f"{i}".encode()
                info = tarfile.TarInfo(f"s{i:03d}.txt")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        whole = (tmp_path / "a.tar").read_bytes()
        (tmp_path / "a.tar").write_bytes(whole[: 512 * 7 + 100])
        return "a.tar"
    table = pa.table({"x": list(range(1000))})
    if kind == "parquet":
        pq.write_table(table, tmp_path / "a.parquet")
        whole = (tmp_path / "a.parquet").read_bytes()
        (tmp_path / "a.parquet").write_bytes(whole[:200] + bytes(100) + whole[300:])
        return "a.parquet"
    with pa.ipc.new_file(tmp_path / "a.arrow", table.schema) as writer:
        writer.write_table(table)
    whole = (tmp_path / "a.arrow").read_bytes()
    (tmp_path / "a.arrow").write_bytes(whole[:200] + b"\xff" * 8 + whole[208:])  # the batch's message
    return "a.arrow"


@pytest.mark.parametrize("kind", ["tar", "parquet", "arrow"])
def test_a_damaged_input_fails_the_dask_plan_as_it_fails_the_local_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], kind: str,
) -> None:
    """``--engine=dask --dry-run`` of a tar, Parquet or Arrow file damaged in its first records fails
    its inputs check with the local plan's line (it said ok, and the run then refused the file)."""
    monkeypatch.chdir(tmp_path)
    name = _corrupt_input(tmp_path, kind)
    assert cli.main(["--dry-run", name, "-o", "out"]) == 1
    local = capsys.readouterr()
    failed = [line for line in local.out.splitlines() if line.startswith("failed: inputs: ")]
    assert len(failed) == 1 and name in failed[0], local.out
    assert cli.main(["--engine=dask", "--dry-run", name, "-o", "out"]) == 1
    dask = capsys.readouterr()
    assert failed[0] in dask.out.splitlines(), dask.out
    assert dask.err == local.err
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_the_library_runs_dask_as_the_command_line_does(tmp_path: Path) -> None:
    """``engine="dask"`` with tasks in this process writes the bytes ``--engine=dask`` writes on a
    cluster, for the same seed, and not those of the local engine (another plan of buckets)."""
    pytest.importorskip("distributed")
    records = make_records(1500, 3, max_len=60)
    path = write_records(tmp_path / "in.txt", records)
    temp = tmp_path / "temp"
    temp.mkdir()
    with ThreadPoolExecutor(2) as pool:
        stats = bigshuf.shuffle(path, tmp_path / "lib.txt", engine="dask", scheduler=pool, memory="16K", seed=7, tmp_dir=temp)
    assert stats.records == 1500 and stats.buckets > 1 and stats.passes >= 2
    proc = subprocess.run(
        [sys.executable, "-m", "bigshuf", "--engine=dask", "-S", "16K", "--seed=7", "-T", str(temp), str(path),
         "-o", str(tmp_path / "cli.txt")],
        capture_output=True, timeout=TIMEOUT,
    )
    assert (proc.returncode, proc.stderr) == (0, b"")
    library = (tmp_path / "lib.txt").read_bytes()
    assert library == (tmp_path / "cli.txt").read_bytes()
    assert_permutation(library, records)
    bigshuf.shuffle(path, tmp_path / "local.txt", memory="16K", seed=7, tmp_dir=temp)
    assert (tmp_path / "local.txt").read_bytes() != library  # equal with odds 1/1500!
    assert list(temp.iterdir()) == []


def test_a_request_is_frozen_and_resolved(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write_records(tmp_path / "data" / "b.txt", [b"2"])
    write_records(tmp_path / "data" / "a.txt", [b"1"])
    request = Request.build(tmp_path / "data", tmp_path / "out.parquet", memory="1M", seed=3)
    assert request.inputs == (str(tmp_path / "data" / "a.txt"), str(tmp_path / "data" / "b.txt"))
    assert (request.output, request.memory, request.seed, request.engine) == (str(tmp_path / "out.parquet"), 1 << 20, 3, "local")
    assert request.family == "table"  # a .parquet output: rows, read as JSON Lines
    assert Request.build(tmp_path / "data").memory is None  # the engine's default
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.seed = 4  # type: ignore[misc]


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"seed": "1"}, "seed must be an integer, not str '1'"),
        ({"verify": True, "head_count": 5}, "verify=True checks whole shuffles; it cannot check a sample (head_count=) or repeat=True"),
        ({"shards": 2, "repeat": True}, "shards= needs head_count= with repeat=True (shards split a known number of records)"),
        ({"schema": "a:int64"}, "row_group_size=, schema= and output_format= apply to Parquet and Arrow data (inputs, or output= FILE.parquet)"),
        ({"resume": True}, "resume=True needs seed= (or random_source=): a resumed run must draw the same numbers"),
        ({"engine": "dask", "repeat": True}, "engine='dask' does not support repeat=True"),
        ({"scheduler": 3}, "scheduler must be an address (str) or an object with submit() (a Dask client), not int 3"),
    ],
)
def test_settings_are_refused_when_the_request_is_built(tmp_path: Path, settings: dict[str, Any], message: str) -> None:
    path = write_records(tmp_path / "a.txt", [b"1"])
    with pytest.raises(UsageError) as caught:
        Request.build(path, tmp_path / "out.txt", **settings)
    assert str(caught.value) == message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_an_unknown_setting_is_a_type_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="^shuffle\\(\\) got an unexpected keyword argument 'colour'$"):
        Request.build(tmp_path / "a.txt", colour="blue")
    # plan_shuffle's own name, not none (found by a review of the library).
    with pytest.raises(TypeError, match="^plan_shuffle\\(\\) got an unexpected keyword argument 'progress'$"):
        bigshuf.plan_shuffle(tmp_path / "a.txt", progress=None)
