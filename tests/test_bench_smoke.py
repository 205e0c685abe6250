"""Smoke tests: the benchmarks' ``--quick`` modes run every tool, check their outputs and clean up."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"
BENCH_PARQUET = BENCH.with_name("bench_parquet.py")


def test_bench_quick_runs_every_tool(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--scratch", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    tools = ["| cp |", "(in memory) |", "| bigshuf -S 4M |"] + (["| shuf |"] if shutil.which("shuf") else [])
    for tool in tools:
        assert tool in proc.stdout, f"{tool!r} missing from:\n{proc.stdout}"
    assert "NOT A PERMUTATION" not in proc.stdout
    assert list(tmp_path.iterdir()) == [], "the scratch directory was not removed"


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


def test_kernel_time_quick_runs_every_variant(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH.with_name("kernel_time.py")), "--quick", "--size", "8M", "--scratch", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    for row in ["baseline", "fresh", "fresh-4k", "fresh-huge", "huge", "fadvise-input", "fadvise-input-late", "fadvise-buckets", "fallocate", "pwrite", "pvec", "write2",
                "read2", "copy-rw", "copy-cfr"]:
        assert f"| {row} |" in proc.stdout, f"{row!r} missing from:\n{proc.stdout}"
    assert "| odirect |" in proc.stdout or "O_DIRECT is not supported" in proc.stdout
    assert list(tmp_path.iterdir()) == [], "the scratch directory was not removed"
