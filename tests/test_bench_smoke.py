"""Smoke tests: the benchmarks' ``--quick`` modes run every tool, check their outputs and clean up."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"
BENCH_PARQUET = BENCH.with_name("bench_parquet.py")
BENCH_SHARDS = BENCH.with_name("bench_shards.py")


@pytest.mark.slow
def test_bench_quick_runs_every_tool(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--sizes", "3M", "--scratch", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    tools = ["| cp |", "(in memory) |", "| bigshuf -S 4M |", "| bigshuf -S 4M (pipe) |"] + (["| shuf |"] if shutil.which("shuf") else [])
    # terashuf runs when it is on PATH (its buffer is --limit, 4 MiB), and is otherwise skipped with a note.
    tools += ["| terashuf MEMORY=0.00390625 |"] if shutil.which("terashuf") else ["- terashuf not found"]
    for tool in tools:
        assert tool in proc.stdout, f"{tool!r} missing from:\n{proc.stdout}"
    assert "NOT A PERMUTATION" not in proc.stdout
    assert list(tmp_path.iterdir()) == [], "the scratch directory was not removed"


@pytest.mark.skipif(not all(shutil.which(t) for t in ("zstd", "gzip", "shuf", "split")), reason="needs zstd, gzip, shuf, split")
def test_bench_shards_runs_every_row_on_gzip_inputs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH_SHARDS), "--size", "2M", "--inputs", "3", "--codec", "gzip", "--reps", "1",
         "--against", f"again={sys.executable}", "--scratch", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0] for row in rows] == [
        "| gzip -dc > /dev/null", "| gzip -dc, shuf, split -n r/32 --filter=zstd",
        "| bigshuf -S 256M 3 .gz in, 32 .zst shards", "| bigshuf -S 256M -j1 3 .gz in, 32 .zst shards",
        "| bigshuf (again) -S 256M 3 .gz in, 32 .zst shards", "| bigshuf (again) -S 256M -j1 3 .gz in, 32 .zst shards",
        "| bigshuf -S 256M plain in, 32 .zst shards",
    ]
    assert list(tmp_path.iterdir()) == [], "the scratch directory was not removed"


def test_bench_variants_and_terashuf_rows(tmp_path: Path) -> None:
    """Each --variant repeats every bigshuf row with its arguments (--no-sync runs, an unknown option fails);
    --terashuf runs a filter with MEMORY=--limit in GiB, SEED=1 and TMPDIR in the scratch directory."""
    scratch = tmp_path / "scratch"
    fake = tmp_path / "terashuf"  # stands in for terashuf: checks its environment, then copies stdin to stdout
    fake.write_text(
        "#!/bin/sh\n"
        f'case "$MEMORY $SEED $TMPDIR" in "0.00390625 1 {scratch}/"*) exec cat ;; esac\n'
        "exit 3\n"
    )
    fake.chmod(0o755)
    proc = subprocess.run(
        [
            sys.executable, str(BENCH), "--quick", "--sizes", "4K", "--corpora", "short", "--scratch", str(scratch),
            "--variant", "nosync=--no-sync", "--variant", "bad=--no-such-option", "--terashuf", str(fake),
        ],
        check=False, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 1, proc.stderr
    rows = {line.split(" | ")[3]: line.split(" | ") for line in proc.stdout.splitlines() if line.startswith("| short")}
    for row in ("bigshuf -S 1M (in memory)", "bigshuf -S 4M", "bigshuf -S 4M (pipe)"):
        assert rows[row][-1] == rows[f"{row} nosync"][-1] == "ok |", proc.stdout
        assert rows[f"{row} bad"][-1] == "exit 1 |", proc.stdout
    assert rows["terashuf MEMORY=0.00390625"][-2:] == ["1.00", "ok |"], proc.stdout
    assert float(rows["cp"][-2]) > 0, proc.stdout  # the × terashuf column
    assert list(scratch.iterdir()) == [], "the scratch directory was not removed"


@pytest.mark.slow
def test_bench_parquet_quick_runs_every_tool(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH_PARQUET), "--quick", "--scratch", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    rows = ["| cp -r |", "| bigshuf -S 16M |", "(in memory) |", "| pyarrow read_table + take |"]
    rows += ["| duckdb ORDER BY random() |"] if importlib.util.find_spec("duckdb") else []
    rows += ["| polars collect + sample(shuffle) |"] if importlib.util.find_spec("polars") else []
    for row in rows:
        assert row in proc.stdout, f"{row!r} missing from:\n{proc.stdout}"
    assert "not a permutation" not in proc.stdout and "does not match" not in proc.stdout
    assert list(tmp_path.iterdir()) == [], "the scratch directory was not removed"


def test_kernel_time_quick_runs(tmp_path: Path) -> None:
    """Three variants of kernel_time.py at 8M (every variant took 12 s, too long for the suite)."""
    variants = ["baseline", "fresh", "copy-cfr"]
    proc = subprocess.run(
        [sys.executable, str(BENCH.with_name("kernel_time.py")), "--quick", "--size", "8M", "--scratch", str(tmp_path),
         "--variants", ",".join(variants)],
        check=False, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    for row in variants:
        assert f"| {row} |" in proc.stdout, f"{row!r} missing from:\n{proc.stdout}"
    assert list(tmp_path.iterdir()) == [], "the scratch directory was not removed"


def test_bench_formats_small_runs_every_row(tmp_path: Path) -> None:
    """bench_formats.py on 2 MiB corpora, once: every row runs, every check holds, nothing is left."""
    proc = subprocess.run(
        [sys.executable, str(BENCH.with_name("bench_formats.py")), "--size", "2M", "--shards", "2", "--reps", "1",
         "--limit", "1M", "--scratch", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    for row in ["| tar -cf of the members |", "| bigshuf -S 1M |", "| cp .bin .idx |", "(in memory) |"]:
        assert proc.stdout.count(row) >= 1, f"{row!r} missing from:\n{proc.stdout}"
    assert proc.stdout.count("| ok |") == 8, proc.stdout
    assert list(tmp_path.iterdir()) == [], "the scratch directory was not removed"
