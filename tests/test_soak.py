"""Many runs back to back in one process leak no file descriptors, threads or temporary files."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import bigshuf

from helpers import make_records, write_records


def test_back_to_back_runs_leak_nothing(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in", make_records(2000, seed=1))
    temp = tmp_path / "t"
    temp.mkdir()
    shards = str(tmp_path / "shards") + "/"

    def one_round(i: int) -> None:
        bigshuf.shuffle(src, tmp_path / "out", memory="16K", seed=i, tmp_dir=temp)  # external
        bigshuf.shuffle(src, tmp_path / "out.zst", seed=i)  # in memory, compressed
        bigshuf.shuffle(src, shards, memory="16K", seed=i, shards=3, tmp_dir=temp, compress_temp=True)
        with pytest.raises(bigshuf.InputError, match="missing: No such file or directory"):
            bigshuf.shuffle([src, tmp_path / "missing"], tmp_path / "out", memory="16K", tmp_dir=temp)

    one_round(0)  # imports and lazily created objects settle first
    fds = len(os.listdir("/proc/self/fd"))
    threads = threading.active_count()
    for i in range(1, 15):
        one_round(i)
    assert len(os.listdir("/proc/self/fd")) == fds
    assert threading.active_count() == threads
    assert os.listdir(temp) == []
    assert sorted(os.listdir(tmp_path)) == ["in", "out", "out.zst", "shards", "t"]
