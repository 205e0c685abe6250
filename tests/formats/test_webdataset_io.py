"""WebDataset tar shards read from fsspec URLs, described by a manifest, checked by
``check_permutation``, deduplicated with ``--unique`` and mixed from weighted sources."""

from __future__ import annotations

from pathlib import Path

import pytest

import bigshuf
from bigshuf.errors import InputError, UsageError
from helpers import compress, temp_leftovers
from test_webdataset import as_set, make_samples, make_tar, read_samples, refused, run, shards


@pytest.fixture
def memfs() -> object:
    """fsspec's in-memory filesystem, emptied of this module's files afterwards."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    yield fs
    if fs.exists("/wds"):
        fs.rm("/wds", recursive=True)


@pytest.mark.parametrize("memory", ["64M", "64K"])
def test_tars_from_urls_shuffle_as_the_same_local_files_do(tmp_path: Path, memfs: object, memory: str) -> None:
    """memory:// tars (plain, gzip and zstd, through a glob and by name) give the bytes the same local files give."""
    paths, every = shards(tmp_path, count=3, per=30)
    names = ["a.tar", "b.tar.gz", "c.tar.zst"]
    local = []
    for path, name, codec in zip(paths, names, (None, "gzip", "zstd")):
        data = path.read_bytes() if codec is None else compress(codec, path.read_bytes())
        memfs.pipe(f"/wds/{name}", data)  # type: ignore[attr-defined]
        local.append(tmp_path / name)
        local[-1].write_bytes(data)
    (tmp_path / "t").mkdir()
    out, mine = tmp_path / "url.tar", tmp_path / "local.tar"
    options = dict(memory=memory, seed=5, tmp_dir=tmp_path / "t", sync=False, verify=True)
    stats = bigshuf.shuffle(["memory://wds/*.tar", "memory://wds/b.tar.gz", "memory://wds/c.tar.zst"], out, **options)
    bigshuf.shuffle(local, mine, **options)
    assert stats.records == 90 and stats.passes == (1 if memory == "64M" else 2)
    assert out.read_bytes() == mine.read_bytes()
    assert as_set(read_samples(out.read_bytes())) == as_set(every)
    assert temp_leftovers(tmp_path / "t") == []


def test_tar_urls_are_refused_in_one_line_where_they_cannot_be_read(tmp_path: Path, memfs: object) -> None:
    """A tar URL beside other data, a glob finding tars in a line run, a URL output, a key in two URLs:
    one line each, nothing written."""
    one = make_samples(4, 1)
    memfs.pipe("/wds/a.tar", make_tar(tmp_path / "a.tar", one).read_bytes())  # type: ignore[attr-defined]
    memfs.pipe("/wds/again.tar", (tmp_path / "a.tar").read_bytes())  # type: ignore[attr-defined]
    (tmp_path / "lines.txt").write_bytes(b"x\n")
    with pytest.raises(UsageError, match=r"^memory://wds/a.tar is a tar archive and .*lines.txt is not: shuffle WebDataset"):
        bigshuf.shuffle(["memory://wds/a.tar", tmp_path / "lines.txt"], tmp_path / "out.tar")
    with pytest.raises(UsageError, match=r"^memory:///wds/a.tar: a tar archive, found by memory://wds/\* in a run of lines; name tar URLs as tars"):
        bigshuf.shuffle("memory://wds/*", tmp_path / "out.txt")
    with pytest.raises(UsageError, match=r"^s3://b/out.tar: this engine writes local files"):
        bigshuf.shuffle("memory://wds/a.tar", "s3://b/out.tar")
    refused(tmp_path, ["memory://wds/a.tar", "memory://wds/again.tar"], "memory:///wds/again.tar: sample s/0100000 (member s/0100000.jpg) is also in memory:///wds/a.tar")  # type: ignore[list-item]
    assert not (tmp_path / "out.txt").exists()
    code, out, err = run([f"file://{tmp_path}/a.tar", "--seed", "2", "-o", "cli.tar"], tmp_path)
    assert (code, out, err) == (0, b"", b"")
    assert as_set(read_samples((tmp_path / "cli.tar").read_bytes())) == as_set(one)
    with pytest.raises(InputError, match=r"^memory://wds/none.tar: No such file or directory$"):
        bigshuf.shuffle("memory://wds/none.tar", tmp_path / "out.tar")
