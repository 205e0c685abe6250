"""The files bigshuf names itself (shards, splits, the manifest) never replace or write through
what the user did not mean to give it: an input, a symbolic link, a device or a FIFO. Each case
was found by an attack on the training-mix options (a manifest naming an input overwrote it; a
planted symlink or /dev/null at a shard's or the manifest's name was renamed over or written
through); each is refused before any input is read, with one line and nothing left behind.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import bigshuf
from bigshuf.errors import OutputError
from bigshuf.storage.commit import OutputFiles
from bigshuf.storage.safefs import create_exclusive

ROOT = os.geteuid() == 0
DATA = b"".join(b"%d\n" % i for i in range(200))


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """``python -m bigshuf ARGS`` run in ``cwd``."""
    return subprocess.run([sys.executable, "-m", "bigshuf", *args], capture_output=True, timeout=120, cwd=cwd)


def snapshot(root: Path) -> dict[str, tuple[str, bytes]]:
    """Every entry under ``root``: its kind and, for files, its bytes (symlinks: their target)."""
    out: dict[str, tuple[str, bytes]] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path).encode())
        elif path.is_file():
            out[rel] = ("file", path.read_bytes())
        elif path.is_dir():
            out[rel] = ("dir", b"")
        else:
            out[rel] = ("other", b"%d" % path.lstat().st_mode)
    return out


def refused(tmp_path: Path, args: list[str], message: str) -> str:
    """Run ``args`` in ``tmp_path``: exit 1, one line naming ``message``, nothing written or
    changed (``--dry-run``: its plan ends in the failed check); returns the line."""
    before = snapshot(tmp_path)
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    err = done.stderr.decode()
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert done.stdout == b"" if "--dry-run" not in args else done.stdout.decode().endswith("failed: output: " + err.removeprefix("bigshuf: "))
    assert snapshot(tmp_path) == before
    return err


@pytest.mark.parametrize("how", ["same name", "symlink", "hard link", "with splits", "in a source", "dry run"])
def test_a_manifest_naming_an_input_is_refused(tmp_path: Path, how: str) -> None:
    (tmp_path / "in.txt").write_bytes(DATA)
    manifest = "in.txt"
    if how == "symlink":
        os.symlink("in.txt", tmp_path / "m.json")
        manifest = "m.json"
    elif how == "hard link":
        os.link(tmp_path / "in.txt", tmp_path / "m.json")
        manifest = "m.json"
    args = {
        "with splits": ["in.txt", "--split", "a=0.5,b=rest", "-o", "o/{split}.txt"],
        "in a source": ["--source", "s=in.txt", "--rate", "s=2", "-o", "out.txt"],
        "dry run": ["in.txt", "-o", "out.txt", "--dry-run"],
    }.get(how, ["in.txt", "-o", "out.txt"])
    refused(tmp_path, [*args, "--manifest", manifest, "--seed", "1"], "the manifest would be written over an input (in.txt)")


def test_a_manifest_inside_an_input_directory_that_would_be_read_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jsonl").write_bytes(b'{"a": 1}\n{"a": 2}\n')
    (tmp_path / "data" / "manifest.json").write_bytes(b'{"a": 3}\n')
    refused(tmp_path, ["data", "-o", "out.jsonl", "--manifest", "data/manifest.json"], "over an input")


@pytest.mark.parametrize("where", ["shard", "split", "manifest"])
@pytest.mark.parametrize("what", ["symlink", "fifo", "device"])
def test_a_link_fifo_or_device_at_a_generated_name_is_refused(tmp_path: Path, where: str, what: str) -> None:
    if what == "device" and not ROOT:
        pytest.skip("making a device node needs root")
    (tmp_path / "in.txt").write_bytes(DATA)
    (tmp_path / "victim.txt").write_bytes(b"keep me\n")
    (tmp_path / "o").mkdir()
    name = {"shard": "o/part-00001.txt", "split": "o/b.txt", "manifest": "o/m.json"}[where]
    if what == "symlink":
        os.symlink("../victim.txt", tmp_path / name)
    elif what == "fifo":
        os.mkfifo(tmp_path / name)
    else:
        os.mknod(tmp_path / name, 0o600 | 0o020000, os.makedev(1, 3))  # a character device: /dev/null's numbers
    layout = {
        "shard": ["--shards", "2", "-o", "o/"],
        "split": ["--split", "a=0.5,b=rest", "-o", "o/{split}.txt"],
        "manifest": ["-o", "out.txt", "--manifest", "o/m.json"],
    }[where]
    why = "is a symbolic link" if what == "symlink" else "is not a regular file"
    assert why in refused(tmp_path, ["in.txt", "--seed", "3", *layout], name)
    assert (tmp_path / "victim.txt").read_bytes() == b"keep me\n"


@pytest.mark.parametrize("how", ["manifest", "split", "manifest dry run", "manifest dot", "split dot"])
def test_a_manifest_or_split_name_ending_in_a_slash_never_replaces_the_file_without_it(tmp_path: Path, how: str) -> None:
    """``--manifest keep/`` and ``-o 'keep{split}/'`` name directories; bigshuf dropped the slash
    and replaced the files ``keep`` and ``keepa`` (exit 0), where ``-o keep/`` is refused as GNU
    refuses it: "Is a directory"."""
    (tmp_path / "in.txt").write_bytes(DATA)
    (tmp_path / "keep").write_bytes(b"keep me\n")
    (tmp_path / "keepa").write_bytes(b"keep me too\n")
    args = {
        "manifest": ["-o", "out.txt", "--manifest", "keep/"],
        "split": ["--split", "a=0.5,b=rest", "-o", "keep{split}/"],
        "manifest dry run": ["-o", "out.txt", "--manifest", "keep/", "--dry-run"],
        "manifest dot": ["-o", "out.txt", "--manifest", "keep/."],
        "split dot": ["--split", "a=0.5,b=rest", "-o", "keep{split}/."],
    }[how]
    name = ("keepa/" if how.startswith("split") else "keep/") + ("." if how.endswith("dot") else "")
    why = "Not a directory" if how.endswith("dot") else "Is a directory"  # as open(2) says of "file/."
    if how == "split":  # refused before any name is looked at: a directory for each split holds shards
        name, why = "keep{split}/", "names a directory for each split, but no shard option is given"
        assert f"-o '{name}' {why}" in refused(tmp_path, ["in.txt", "--seed", "2", *args], name)
        return
    assert f"{name}: {why}" in refused(tmp_path, ["in.txt", "--seed", "2", *args], name)


@pytest.mark.parametrize("how", ["output", "manifest", "split", "shards"])
def test_a_name_through_a_linked_directory_lands_where_the_kernel_puts_it(tmp_path: Path, how: str) -> None:
    """``lnk/../keep`` is ``keep`` beside the directory ``lnk`` points to (the kernel follows the
    link before ``..``). ``-o`` wrote there, but the manifest and split names were resolved as
    text and replaced ``./keep`` and ``./keepa``."""
    (tmp_path / "in.txt").write_bytes(DATA)
    (tmp_path / "other" / "a").mkdir(parents=True)
    (tmp_path / "lnk").symlink_to("other/a")
    for name in ("keep", "keepa", "keepb"):
        (tmp_path / name).write_bytes(b"keep me\n")
    args, written = {
        "output": (["-o", "lnk/../keep"], ["keep"]),
        "manifest": (["-o", "out.txt", "--manifest", "lnk/../keep"], ["keep"]),
        "split": (["--split", "a=0.5,b=rest", "-o", "lnk/../keep{split}"], ["keepa", "keepb"]),
        "shards": (["--shards", "2", "-o", "lnk/../keep{}"], ["keep0", "keep1"]),
    }[how]
    proc = cli("in.txt", "--seed", "4", *args, cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert all((tmp_path / name).read_bytes() == b"keep me\n" for name in ("keep", "keepa", "keepb"))
    assert sorted(os.listdir(tmp_path / "other")) == sorted(["a", *written])
    if how != "manifest":
        got = b"".join((tmp_path / "other" / name).read_bytes() for name in written)
        assert sorted(got.splitlines()) == sorted(DATA.splitlines())


@pytest.mark.parametrize("name", ["keep/../keep", "lnk/missing/../../keep"])
def test_a_manifest_through_a_missing_or_file_part_is_refused_or_made(tmp_path: Path, name: str) -> None:
    """A generated name's directory resolves as ``mkdir -p`` and then open(2) would: the missing
    ``other/a/missing`` is made and ``../..`` from it is ``other`` (read as text it was ``.``, and
    ``./keep`` was replaced); a file where a directory is needed is refused."""
    (tmp_path / "in.txt").write_bytes(DATA)
    (tmp_path / "other" / "a").mkdir(parents=True)
    (tmp_path / "lnk").symlink_to("other/a")
    (tmp_path / "keep").write_bytes(b"keep me\n")
    proc = cli("in.txt", "-o", "out.txt", "--manifest", name, cwd=tmp_path)
    assert (tmp_path / "keep").read_bytes() == b"keep me\n"
    if name.startswith("keep/"):
        assert (proc.returncode, proc.stderr) == (1, f"bigshuf: {name}: Not a directory\n".encode())
    else:
        assert (proc.returncode, proc.stderr) == (0, b"")
        assert (tmp_path / "other" / "a" / "missing").is_dir()
        assert (tmp_path / "other" / "keep").read_bytes().startswith(b"{")


@pytest.mark.parametrize("case", ["manifest over a shard", "manifest over -o", "two shards on one file", "manifest over an input"])
def test_dot_dot_out_of_a_directory_to_be_made_is_resolved_through_links(tmp_path: Path, case: str) -> None:
    """``d/missing/../../L`` (L a link to ``d/e``) comes back out of the directory bigshuf makes to
    ``.``, then through L: the kernel writes in ``d/e``. The rest of the name was read as text
    (``./L``), so the checks comparing real paths missed that the manifest or a second shard named
    a file already written, or an input; the run exited 0 with a shard, the output or the input
    replaced by the manifest, or one shard renamed over the other (5 of 10 records lost)."""
    (tmp_path / "in").write_bytes(b"".join(b"%d\n" % i for i in range(10)))
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "L").symlink_to("d/e")
    (tmp_path / "d" / "e" / "data").write_bytes(b"keep me\n")
    args, why = {
        "manifest over a shard": (["in", "-o", "d/e/p-{}", "--shards", "2", "--manifest", "d/missing/../../L/p-1"],
                                  "d/missing/../../L/p-1: the manifest would be written over an output"),
        "manifest over -o": (["in", "-o", "d/e/data", "--manifest", "missing/../L/data"],
                             "missing/../L/data: the manifest would be written over an output"),
        "two shards on one file": (["in", "-o", "d/{}/../../L/p", "--shards", "2"],
                                   f"d/{{}}/../../L/p: shards 0 and 1 would both be written to {tmp_path.resolve()}/d/e/p"),
        "manifest over an input": (["d/e/data", "-o", "out", "--manifest", "missing/../L/data"],
                                   "missing/../L/data: the manifest would be written over an input (d/e/data)"),
    }[case]
    before = snapshot(tmp_path)
    proc = cli("--seed", "1", *args, cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, b"", f"bigshuf: {why}\n".encode())
    assert snapshot(tmp_path) == before


def test_the_manifest_needs_outputs_that_are_files(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_bytes(DATA)
    refused(tmp_path, ["in.txt", "-o", "/dev/stdout", "--manifest", "m.json"], "--manifest needs -o naming regular files")
    refused(tmp_path, ["in.txt", "-o", "out.txt", "--manifest", "/dev/stdout"], "/dev/stdout")


def test_a_symlink_planted_at_a_target_after_the_checks_is_never_renamed_over(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep me\n")
    final = tmp_path / "part-00000.txt"
    os.symlink(victim, final)
    files = OutputFiles(sync=False)
    temp = files.temp_name(str(final), 0)
    fd = create_exclusive(temp)
    os.write(fd, b"new\n")
    os.close(fd)
    with pytest.raises(OutputError, match="is a symbolic link; nothing was replaced"):
        files.commit([(temp, str(final))])
    assert os.readlink(final) == str(victim) and victim.read_bytes() == b"keep me\n"
    files.discard()
    files.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00000.txt", "victim.txt"]


def test_the_library_refuses_a_manifest_over_an_input_on_the_dask_engine(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    src = tmp_path / "in.txt"
    src.write_bytes(DATA)
    with ThreadPoolExecutor(2) as runner, pytest.raises(OutputError, match="over an input"):
        bigshuf.shuffle(str(src), str(tmp_path / "out.txt"), manifest=str(src), engine="dask", scheduler=runner, tmp_dir=str(tmp_path))
    assert src.read_bytes() == DATA and not (tmp_path / "out.txt").exists()


def test_a_link_to_a_directory_not_there_yet_is_refused_on_the_way(tmp_path: Path) -> None:
    """``dl -> nd/sub``, missing until bigshuf makes ``nd/sub`` for the same name: ``..`` after it was
    read as leaving a directory to be made, where the kernel goes to ``nd``; the manifest named
    shard 0's file unseen and replaced it, exit 0 (found by review). A link to a missing
    directory on the way is refused, as open(2) refuses it before anything is made."""
    (tmp_path / "in.txt").write_bytes(DATA)
    (tmp_path / "dl").symlink_to("nd/sub")
    before = snapshot(tmp_path)
    proc = cli("in.txt", "-o", "nd/sub/../../dl/../", "--shards", "2", "--seed", "1", "--manifest", "nd/part-00000.txt", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (1, b"bigshuf: nd/sub/../../dl/../part-00000.txt: No such file or directory\n")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "case,args,message",
    [
        ("splits a and a1", ["--split", "a=0.5,a1=rest", "--shard-records", "2", "-o", "{split}{}.txt", "--manifest", "m.json"],
         "would both be written to"),
        ("a pattern's precision", ["--shard-records", "1", "-o", "e/p-{:.0e}.txt"], "cannot number shards"),
        ("manifest over shard 3", ["--shard-records", "30", "-o", "mo/", "--manifest", "mo/part-00003.txt"],
         "the manifest would be written over an output"),
        ("manifest over a named shard", ["--shard-size", "1", "-o", "mo/p{}.txt", "--manifest", "mo/p99.txt"],
         "the manifest would be written over an output"),
    ],
)
def test_open_ended_shards_never_share_a_name(tmp_path: Path, case: str, args: list[str], message: str) -> None:
    """With --shard-records or --shard-size the shard count is known only at the end: split a's
    shard 10 and split a1's shard 0 (both a10.txt), shards 10 and 11 of {:.0e}, or a manifest at
    shard 3's name, were written over each other (20 or more records lost, exit 0). Refused at once."""
    (tmp_path / "in.txt").write_bytes(DATA)
    (tmp_path / "e").mkdir()
    (tmp_path / "mo").mkdir()
    refused(tmp_path, ["in.txt", "--seed", "1", *args], message)


def test_a_commit_of_two_files_onto_one_name_replaces_nothing(tmp_path: Path) -> None:
    """The last guard, for names past those checked before pass 1: two of a run's files bound for
    one name are refused at the commit, before anything is renamed."""
    final = tmp_path / "out.txt"
    final.write_bytes(b"old\n")
    files = OutputFiles(sync=False)
    temps = [files.temp_name(str(final), i) for i in range(2)]
    for i, temp in enumerate(temps):
        Path(temp).write_bytes(b"new %d\n" % i)
    with pytest.raises(OutputError, match="two of this run's files would be written to it; nothing was replaced"):
        files.commit([(temps[0], str(final)), (temps[1], str(final))])
    files.discard()
    files.release()
    assert final.read_bytes() == b"old\n" and sorted(os.listdir(tmp_path)) == ["out.txt"]


@pytest.mark.parametrize("what", ["directory", "symlink"])
def test_what_lies_at_a_probed_name_the_run_never_reaches_is_left_alone(tmp_path: Path, what: str) -> None:
    """The names of the first thousand open-ended shards are compared, but only the first two
    (and one past any width) are checked as files: a directory or a link at part-00600, which a
    run of 3 shards never writes, refused the run (review of the probe)."""
    (tmp_path / "in.txt").write_bytes(b"".join(b"%d\n" % i for i in range(30)))
    (tmp_path / "o").mkdir()
    if what == "directory":
        (tmp_path / "o" / "part-00600.txt").mkdir()
    else:
        os.symlink("elsewhere", tmp_path / "o" / "part-00600.txt")
    done = cli("in.txt", "--seed", "1", "--shard-records", "10", "-o", "o/", cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    assert sorted(os.listdir(tmp_path / "o")) == ["part-00000.txt", "part-00001.txt", "part-00002.txt", "part-00600.txt"]


def _input_directory(tmp_path: Path, tars: bool) -> None:
    """``d/`` holding three records: a gzipped JSON Lines file, or three one-member tars."""
    import gzip
    import io
    import tarfile

    (tmp_path / "d").mkdir()
    if not tars:
        (tmp_path / "d" / "x.jsonl.gz").write_bytes(gzip.compress(b'{"t":"a"}\n{"t":"b"}\n{"t":"c"}\n'))
        return
    for i in range(3):
        with tarfile.open(tmp_path / "d" / f"t{i}.tar", "w") as tar:
            info = tarfile.TarInfo(f"s{i}.txt")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"%d\n" % i))


@pytest.mark.parametrize("case", ["same", "tars", "symlink", "inside", "split", "one file", "dask", "dry run"])
def test_outputs_into_an_input_directory_beside_its_files_are_refused(tmp_path: Path, case: str) -> None:
    """Found by a new-user test: ``bigshuf d/ --shards 2 -o d/`` exited 0 with the shards beside the
    records they hold, and the next read of ``d/`` took both copies. Outputs in an input directory
    (by any name), or below it, are refused while a file read there is not replaced by one of them."""
    _input_directory(tmp_path, case == "tars")
    (tmp_path / "l").symlink_to("d")
    out = {"symlink": "l/", "inside": "d/new/"}.get(case, "d/")
    layout = {
        "split": ["--split", "a=1,b=rest", "-o", "l/../d/{split}.jsonl.gz"], "one file": ["-o", "d/all.jsonl"],
    }.get(case, ["--shards", "2", "-o", out])
    extra = {"dask": ["--engine", "dask"], "dry run": ["--dry-run"]}.get(case, [])
    before = snapshot(tmp_path)
    done = cli("d/", *layout, "--seed", "1", *extra, cwd=tmp_path)
    err = done.stderr.decode()
    assert done.returncode == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    left = "d/t0.tar" if case == "tars" else "d/x.jsonl.gz"
    # (the Dask engine names the file as it opens it: absolute)
    assert re.match(rf"bigshuf: {re.escape(layout[-1])}: writes into the input directory d/, where (/.*/)?{left} is not replaced", err), err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("case", [
    "hidden subdirectory", "a file of the directory", "a file onto itself", "the directory onto itself", "a name no read takes",
])
def test_outputs_beside_inputs_not_read_back_still_work(tmp_path: Path, case: str) -> None:
    """What a directory's read does not take back stays allowed: shards in a subdirectory it skips
    (``_out``), shards beside an input named as a file, ``-o`` onto its own input (as GNU shuf), and
    a directory whose every file an output replaces (its one file, here; resharding in place), and
    a file of no data suffix, which a directory's read skips."""
    _input_directory(tmp_path, False)
    args = {
        "hidden subdirectory": ["d/", "--shards", "2", "-o", "d/_out/"],
        "a file of the directory": ["d/x.jsonl.gz", "--shards", "2", "-o", "d/"],
        "a file onto itself": ["d/x.jsonl.gz", "-o", "d/x.jsonl.gz"],
        "the directory onto itself": ["d/", "-o", "d/x.jsonl.gz"],
        "a name no read takes": ["d/", "-o", "d/shuffled"],
    }[case]
    done = cli(*args, "--seed", "1", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, b"")
    # (what a later read of d/ takes: the shards beside x.jsonl.gz too, never those in _out/)
    copies = 2 if case == "a file of the directory" else 1
    assert sorted(cli("d/", cwd=tmp_path).stdout.splitlines()) == sorted([b'{"t":"a"}', b'{"t":"b"}', b'{"t":"c"}'] * copies)
