"""Record fingerprints: --verify during a shuffle and --check-permutation after the fact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bigshuf
import bigshuf.gather
from bigshuf.fingerprint import fingerprint
from bigshuf.records import RecordFormat, find_offsets

from helpers import make_records, write_records


def fp_of(records: list[bytes]):
    data = np.frombuffer(b"".join(r + b"\n" for r in records), np.uint8)
    return fingerprint(data, find_offsets(data, RecordFormat()))


def test_fingerprint_ignores_order_and_sees_every_change() -> None:
    records = make_records(2000, seed=1, min_len=2) + [b"", b""]
    base = fp_of(records)
    assert fp_of(list(reversed(records))) == base
    assert base.records == 2002
    changed = {
        "dropped": records[1:],
        "doubled": records + records[:1],
        "byte altered": [records[0][:-1] + bytes([records[0][-1] ^ 1])] + records[1:],
        "bytes swapped in a record": [records[5][1:2] + records[5][:1] + records[5][2:]] + records[:5] + records[6:],
        "byte moved between records": [records[0] + records[1][:1], records[1][1:]] + records[2:],
    }
    for what, other in changed.items():
        assert fp_of(other) != base, what


@pytest.mark.parametrize("memory", ["64M", "16K", "2K"])
def test_verify_passes_on_every_path(tmp_path: Path, memory: str) -> None:
    src = write_records(tmp_path / "in", make_records(3000, seed=2))
    bigshuf.shuffle(src, tmp_path / "out", memory=memory, seed=1, verify=True, tmp_dir=tmp_path)
    bigshuf.shuffle(src, str(tmp_path / "s") + "/", memory=memory, seed=1, verify=True, shards=3,
                    compress="zstd", tmp_dir=tmp_path)
    assert len(os.listdir(tmp_path / "s")) == 3


def test_verify_catches_a_lost_record_and_keeps_the_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_records(tmp_path / "in", make_records(500, seed=3))
    target = tmp_path / "out"
    target.write_bytes(b"old\n")
    real = bigshuf.gather.emit_in_order

    def lossy(arr, order, emit, per_chunk):  # a gather bug that drops the first record
        real(arr, order[1:], emit, per_chunk)

    monkeypatch.setattr(bigshuf.gather, "emit_in_order", lossy)
    with pytest.raises(bigshuf.OutputError, match="verification failed"):
        bigshuf.shuffle(src, target, seed=1, verify=True)
    assert target.read_bytes() == b"old\n"
    assert sorted(os.listdir(tmp_path)) == ["in", "out"]


def test_verify_refuses_samples(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in", make_records(10, seed=4))
    with pytest.raises(bigshuf.UsageError, match="verify="):
        bigshuf.shuffle(src, tmp_path / "out", head_count=3, verify=True)


def test_check_permutation_across_shards_and_codecs(tmp_path: Path) -> None:
    records = make_records(4000, seed=5)
    a = write_records(tmp_path / "a", records[:1500])
    b = write_records(tmp_path / "b", records[1500:])
    outdir = tmp_path / "o"
    bigshuf.shuffle([a, b], str(outdir) + "/", memory="16K", seed=2, shards=4, compress="gzip", tmp_dir=tmp_path)
    shards = sorted(outdir.iterdir())
    fin, fout = bigshuf.check_permutation([a, b], shards)
    assert fin == fout and fin.records == 4000
    fin, fout = bigshuf.check_permutation([a], shards)
    assert fin != fout


def test_check_permutation_command(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in", make_records(1000, seed=6))
    out = tmp_path / "out"
    bigshuf.shuffle(src, out, seed=3)
    cmd = [sys.executable, "-m", "bigshuf", "--check-permutation", str(src), "--against", str(out)]
    ok = subprocess.run(cmd, capture_output=True)
    assert (ok.returncode, ok.stdout) == (0, b"") and b"same records: 1000 records" in ok.stderr
    out.write_bytes(out.read_bytes()[:-5] + b"XXXX\n")
    bad = subprocess.run(cmd, capture_output=True)
    assert bad.returncode == 1 and b"records differ" in bad.stderr


@pytest.mark.parametrize("compress_temp", [False, True])
def test_a_corrupt_bucket_is_an_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compress_temp: bool) -> None:
    import bigshuf.scatter

    src = write_records(tmp_path / "in", make_records(3000, seed=7))
    real_close = bigshuf.scatter.BucketSet.close

    def close_then_damage(self):  # flip one byte of bucket 0 once pass 1 has written it
        real_close(self)
        if not compress_temp and os.path.exists(self.path(0)) and self.sizes[0] and not getattr(self, "_hit", False):
            self._hit = True
            with open(self.path(0), "r+b") as f:
                first = f.read(1)
                f.seek(0)
                f.write(bytes([first[0] ^ 0x20]))
        elif compress_temp and os.path.exists(self.path(0)) and not getattr(self, "_hit", False):
            self._hit = True
            size = os.path.getsize(self.path(0))
            with open(self.path(0), "r+b") as f:  # garble the middle of the compressed frames
                f.seek(size // 2)
                f.write(b"\xff" * 16)

    monkeypatch.setattr(bigshuf.scatter.BucketSet, "close", close_then_damage)
    target = tmp_path / "out"
    with pytest.raises(bigshuf.BigShufError, match="bucket-00000"):
        bigshuf.shuffle(src, target, memory="16K", seed=1, tmp_dir=tmp_path, compress_temp=compress_temp)
    assert not target.exists()
