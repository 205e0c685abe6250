"""The summary line names records as the format does: samples, documents, rows or records."""

from __future__ import annotations

import re
from pathlib import Path

import bigshuf
from bigshuf.engines.dask.driver import shuffle as dask_shuffle
from bigshuf.progress import summary
from helpers import make_records, make_table, write_records
from test_megatron import make_docs, write_dataset
from test_webdataset import make_samples, make_tar, run


def test_each_format_counts_its_own_unit_in_the_summary(tmp_path: Path) -> None:
    """Library runs: tar samples, Megatron documents, table rows and lines each say their own word,
    and ``check_permutation`` counts them in it too."""
    import pyarrow.parquet as pq

    make_tar(tmp_path / "in.tar", make_samples(7, 1))
    write_dataset(tmp_path / "corpus", make_docs(9, 2))
    pq.write_table(make_table(11), tmp_path / "in.parquet")
    write_records(tmp_path / "in.txt", make_records(13, 3))
    runs = {
        "in.tar": ("out.tar", "7 samples"), "corpus": ("out", "9 documents"),
        "in.parquet": ("out.parquet", "11 rows"), "in.txt": ("out.txt", "13 records"),
    }
    for source, (target, said) in runs.items():
        stats = bigshuf.shuffle(str(tmp_path / source), str(tmp_path / target), seed=1)
        assert summary(stats).startswith(f"{said}, "), (source, summary(stats))
        if source != "in.parquet":  # tables are checked with --verify, not compared
            got_in, got_out = bigshuf.check_permutation(tmp_path / source, tmp_path / target)
            assert got_in == got_out and str(got_in).startswith(f"{said}, "), (source, str(got_in))  # --check-permutation's word


def test_the_dask_engine_counts_in_the_formats_word_too(tmp_path: Path) -> None:
    """The Dask engine's summary counts rows, samples, documents and (for lines) records."""
    import pyarrow.parquet as pq
    from concurrent.futures import ThreadPoolExecutor

    pq.write_table(make_table(11), tmp_path / "in.parquet")
    write_records(tmp_path / "in.txt", make_records(13, 3))
    make_tar(tmp_path / "in.tar", make_samples(7, 1))
    with ThreadPoolExecutor(2) as runner:
        rows = dask_shuffle([str(tmp_path / "in.parquet")], str(tmp_path / "out.parquet"), seed=1, runner=runner)
        lines = dask_shuffle([str(tmp_path / "in.txt")], str(tmp_path / "out.txt"), seed=1, runner=runner)
        samples = dask_shuffle([str(tmp_path / "in.tar")], str(tmp_path / "out.tar"), seed=1, runner=runner)
        documents = dask_shuffle([str(write_dataset(tmp_path / "corpus", make_docs(9, 2)))], str(tmp_path / "out"), seed=1, runner=runner)
    assert summary(rows).startswith("11 rows, ") and summary(lines).startswith("13 records, ")
    assert summary(samples).startswith("7 samples, ") and summary(documents).startswith("9 documents, ")


def test_the_command_line_summary_of_tars_counts_samples(tmp_path: Path) -> None:
    """--progress on a tar run ends with one line counting samples."""
    make_tar(tmp_path / "in.tar", make_samples(5, 4))
    code, _, err = run(["--progress", "--seed", "1", tmp_path / "in.tar", "-o", tmp_path / "out.tar"], tmp_path)
    assert code == 0, err
    last = err.decode().split("\n")[-2].split("\r")[-1]
    assert re.fullmatch(r"bigshuf: 5 samples, .* in 1 pass, .*", last), last
