"""Smoke test: ``benchmarks/bench.py --quick`` runs every tool, checks its outputs and cleans up."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


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
