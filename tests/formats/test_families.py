"""A family of records added by registration alone (``formats.registry``): detection, the request's
checks, --dry-run on both engines and both engines' runs read the family's entry, with no edit to
the driver, the engines, the command line or the request.

The toy family holds lines in files named ``.toy`` (or starting ``TOY1``): its run, checks and Dask
kind are the lines', so its outputs must be the lines' outputs, byte for byte, seed for seed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import bigshuf
from bigshuf.engines.dask.lines import Lines
from bigshuf.engines.dask.prepared import Inputs
from bigshuf.formats import detect, registry
from bigshuf.request import Request
from helpers import assert_permutation, split_records


def toy_inputs(operands: registry.Operands) -> bool:
    """The toy family's detection: a local input named as the toy format, or named as none and starting with its magic."""
    return any(detect.data_kind(p) == "toy" or (detect.data_kind(p) is None and detect.sniff_kind(p) == "toy") for p in operands.paths)


class ToyKind(Lines):
    """The toy family on the Dask engine: lines, claimed by the toy format's suffix."""

    @classmethod
    def claims(cls, inputs: Inputs) -> bool:
        return any(detect.data_kind(f.name) == "toy" for f in inputs.files)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The toy format and its family registered for one test (removed after it)."""
    monkeypatch.setitem(registry.FORMATS, "toy", registry.FileFormat("toy", "toy", (".toy",), ((0, b"TOY1"),), holds_rows=False))
    monkeypatch.setitem(registry.FAMILIES, "toy", registry.Family(
        "toy", "bigshuf.formats.line_run:LineRun", "bigshuf.request:check_line_settings", f"{__name__}:toy_inputs",
        f"{__name__}:ToyKind", input_unit="toy shard", files_words="toy shards",
    ))


def _inputs(directory: Path, suffix: str) -> list[str]:
    """Two small files of distinct lines (the second starting with the toy magic), named with ``suffix``."""
    directory.mkdir()
    a, b = directory / f"a{suffix}", directory / f"b{suffix}"
    a.write_bytes(b"".join(b"a%d\n" % i for i in range(30)))
    b.write_bytes(b"TOY1\n" + b"".join(b"b%d\n" % i for i in range(20)))
    return [str(a), str(b)]


def test_a_registered_family_is_detected_planned_and_run_by_both_engines(tmp_path: Path, toy: None) -> None:
    """Detection by suffix and magic, the family's checks and plan words, and both engines' runs,
    whose outputs are those of the same lines named ``.txt``, seed for seed."""
    toys, texts = _inputs(tmp_path / "toy", ".toy"), _inputs(tmp_path / "txt", ".txt")
    unnamed = tmp_path / "toy" / "c"
    unnamed.write_bytes(b"TOY1\nc\n")
    assert detect.data_kind(toys[0]) == "toy" and detect.sniff_kind(str(unnamed)) == "toy"
    assert Request.build(toys).family == "toy" and Request.build([str(unnamed)]).family == "toy"
    assert Request.build(texts).family == registry.LINES
    with pytest.raises(bigshuf.UsageError, match=r"holds both line files \(.*a\.txt\) and toy shards"):
        (tmp_path / "txt" / "d.toy").write_bytes(b"d\n")
        Request.build([str(tmp_path / "txt")])
    with pytest.raises(bigshuf.UsageError, match=r"^row_group_size=, schema= and output_format= apply to Parquet"):
        bigshuf.shuffle(toys, row_group_size=5)  # the lines' checks, named by the family
    for engine in ("local", "dask"):
        planned = bigshuf.plan_shuffle(toys, tmp_path / f"p-{engine}.txt", engine=engine)
        assert planned.ok and planned.records == 51, planned.render()
        assert dict(planned.lines)["inputs"].startswith("2 toy shards, "), planned.render()
    with ThreadPoolExecutor(2) as runner:
        for engine, options in (("local", {}), ("dask", {"scheduler": runner})):
            for seed in (1, 2):
                out, want = tmp_path / f"{engine}-{seed}.toy.out", tmp_path / f"{engine}-{seed}.txt.out"
                stats = bigshuf.shuffle(toys, out, engine=engine, seed=seed, tmp_dir=tmp_path, sync=False, **options)
                bigshuf.shuffle(texts, want, engine=engine, seed=seed, tmp_dir=tmp_path, sync=False, **options)
                assert stats.records == 51 and out.read_bytes() == want.read_bytes()
                assert_permutation(out.read_bytes(), split_records(Path(toys[0]).read_bytes() + Path(toys[1]).read_bytes()))
