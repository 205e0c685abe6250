"""WebDataset tar shards read from fsspec URLs, described by a manifest, checked by
``check_permutation``, deduplicated with ``--unique`` and mixed from weighted sources."""

from __future__ import annotations

from pathlib import Path

import pytest

import bigshuf
from bigshuf.errors import InputError, OutputError, UsageError
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


def test_a_manifest_lists_each_tar_and_checks_against_it(tmp_path: Path) -> None:
    """--manifest for tar shards: each input's samples and bytes as read, each shard's samples,
    bytes and fingerprint (of the samples' blocks as copied); --check-manifest and
    check_permutation read tars as samples, and find a changed byte."""
    import json

    from bigshuf.api import check_manifest

    paths, every = shards(tmp_path, count=2, per=25)
    gz = paths[1].with_name("in-01.tar.gz")
    gz.write_bytes(compress("gzip", paths[1].read_bytes()))
    inputs = [paths[0], gz]
    (tmp_path / "t").mkdir()
    stats = bigshuf.shuffle(
        inputs, f"{tmp_path / 'out'}/", shard_records=20, manifest=tmp_path / "m.json", memory="64K", seed=3,
        tmp_dir=tmp_path / "t", sync=False,
    )
    assert stats.records == 50 and stats.passes == 2
    doc = json.loads((tmp_path / "m.json").read_text())
    assert (doc["kind"], doc["format"], doc["records_written"]) == ("samples", {"samples": "tar"}, 50)
    sample_bytes = [sum(len(m[7]) for s in every[i * 25 : i * 25 + 25] for m in s) for i in range(2)]
    for entry, path, data in zip(doc["inputs"], inputs, sample_bytes):
        assert entry["path"] == str(path) and entry["records"] == 25
        assert data < entry["bytes"] <= paths[0].stat().st_size * 2  # member data plus headers and padding
    outs = sorted((tmp_path / "out").iterdir())
    assert [o["records"] for o in doc["outputs"]] == [20, 20, 10]
    assert [o["path"] for o in doc["outputs"]] == [f"out/{p.name}" for p in outs]
    assert sum(o["bytes"] for o in doc["outputs"]) == sum(e["bytes"] for e in doc["inputs"])
    problems, summary = check_manifest(tmp_path / "m.json")
    assert problems == [] and summary.endswith(f"3 output file(s) match {tmp_path / 'm.json'}: 50 samples, {sum(e['bytes'] for e in doc['inputs'])} bytes")
    fp_in, fp_out = bigshuf.check_permutation(inputs, outs)
    assert fp_in == fp_out and fp_in.records == 50
    # One byte of one member's data changed: the sizes hold, the fingerprints do not.
    data = bytearray(outs[1].read_bytes())
    data[512 + 3] ^= 1
    outs[1].write_bytes(bytes(data))
    problems, _ = check_manifest(tmp_path / "m.json")
    assert len(problems) == 1 and problems[0].startswith(f"{outs[1]}: records differ from those the manifest lists")
    fp_in, fp_out = bigshuf.check_permutation(inputs, outs)
    assert fp_in != fp_out and (fp_in.records, fp_in.bytes) == (fp_out.records, fp_out.bytes)
    outs[2].write_bytes(outs[2].read_bytes()[:1000])
    problems, _ = check_manifest(tmp_path / "m.json")
    assert any(p.startswith(f"{outs[2]}: truncated") for p in problems), problems


def test_check_permutation_of_tars_refuses_what_it_cannot_compare(tmp_path: Path) -> None:
    paths, _ = shards(tmp_path, count=1, per=3)
    (tmp_path / "l.txt").write_bytes(b"a\n")
    with pytest.raises(UsageError, match=r"in-00.tar is a tar archive and .*l.txt is not: check_permutation\(\) compares samples of tars"):
        bigshuf.check_permutation(paths, tmp_path / "l.txt")
    with pytest.raises(UsageError, match=r"^zero_terminated=True, lines_per_record= and header= apply to lines, not to samples of tars$"):
        bigshuf.check_permutation(paths, paths, zero_terminated=True)
    refused(tmp_path, paths, f"{paths[0]}: the manifest would be written over an input", manifest=paths[0], error=OutputError)
    code, _, err = run(["--check-permutation", paths[0], "--against", paths[0]], tmp_path)
    assert (code, err.split(b":")[:2]) == (0, [b"bigshuf", b" same records"])
