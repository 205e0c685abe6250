"""storage/sinks, directly: shard names and suffixes, the output codec, the atomic file sink
(invisible until commit, private, never through a symlink, nothing left on abort, an existing
target replaced whole), ``Output`` splitting records across shards, and the output checks made
before any input is read.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from bigshuf.errors import BigShufError, OutputError, UsageError
from bigshuf.formats.detect import line_shard_suffix
from bigshuf.storage.commit import OutputFiles
from bigshuf.storage.output import Output
from bigshuf.storage.shards import check_output_directory, make_directories, shard_names
from bigshuf.storage.sinks import AtomicFileSink, output_codec
from bigshuf.storage.sliced import WRITE_SLICE
from helpers import count_sliced_writes, write_records
from bigshuf.storage.writeback import WriteBehind


def listing(directory: Path) -> list[str]:
    """Every name in ``directory``, hidden ones included."""
    return sorted(os.listdir(directory))


def exact(message: str) -> str:
    """A ``pytest.raises(match=...)`` pattern for exactly ``message``."""
    return "^" + re.escape(message) + "$"


@pytest.fixture
def writer() -> Iterator[WriteBehind]:
    """A write-behind thread for ``Output``, closed after the test."""
    w = WriteBehind(1 << 20)
    yield w
    w.close()


# --- names -----------------------------------------------------------------------------------


def test_shard_names_in_a_directory_take_the_codec_suffix() -> None:
    """``DIR/part-NNNNN`` plus the canonical suffix of the chosen codec (none for plain)."""
    assert shard_names("out", 3, None, True) == ["out/part-00000", "out/part-00001", "out/part-00002"]
    assert shard_names("out", 2, ("zstd", 5), True) == ["out/part-00000.zst", "out/part-00001.zst"]
    assert shard_names("out", 1, ("gzip", None), True) == ["out/part-00000.gz"]
    assert shard_names("out", 1, ("none", None), True) == ["out/part-00000"]


def test_shard_names_in_a_directory_prefer_the_given_suffix() -> None:
    """A ``suffix`` (the record kind, e.g. ``.jsonl.gz``) replaces the codec's."""
    assert shard_names("d", 2, ("zstd", None), True, suffix=".jsonl.gz") == ["d/part-00000.jsonl.gz", "d/part-00001.jsonl.gz"]


def test_shard_names_from_a_pattern() -> None:
    """A pattern is formatted with the shard number; the suffix comes from the pattern, not the codec."""
    assert shard_names("x/part-{:05d}.txt", 3, ("zstd", None), False) == [
        "x/part-00000.txt", "x/part-00001.txt", "x/part-00002.txt",
    ]
    assert shard_names("s{}.gz", 2, None, False) == ["s0.gz", "s1.gz"]
    assert len(shard_names("p{:05d}", 100000, None, False)) == 100000


def test_one_shard_needs_no_pattern() -> None:
    """With one shard a plain name is already a distinct name."""
    assert shard_names("out.txt", 1, None, False) == ["out.txt"]


def test_several_shards_with_no_pattern_are_refused() -> None:
    """No field: the message says a directory or a pattern is needed, in the caller's words."""
    with pytest.raises(UsageError) as info:
        shard_names("out.txt", 2, None, False)
    assert info.value.cli_message() == (
        "2 shards need -o to be a directory or a pattern with {}, like out/part-{:05d}.jsonl"
    )
    assert "output=" in str(info.value)


def test_a_field_that_cannot_number_shards_is_named() -> None:
    """A field whose format gives every shard the same name is quoted back."""
    with pytest.raises(UsageError) as info:
        shard_names("out-{!r:.0}.txt", 3, None, False)
    assert info.value.cli_message() == "3 shards: '{!r:.0}' in -o 'out-{!r:.0}.txt' cannot number shards; use {} or {:05d}"


@pytest.mark.parametrize(
    "pattern,why",
    [
        ("out/{x}.txt", ": its one field is the shard number, {} or {:05d}; "),
        ("out/{1}.txt", ": its one field is the shard number, {} or {:05d}; "),
        ("out/{}-{}.txt", ": its one field is the shard number, {} or {:05d}; "),
        ("out/{0.x}.txt", ": its one field is the shard number, {} or {:05d}; "),  # was an internal error (AttributeError)
        ("out/{0[1]}.txt", ": its one field is the shard number, {} or {:05d}; "),  # was an internal error (TypeError)
        ("out/{0.bit_length}", ": its one field is the shard number, {} or {:05d}; "),  # named files after a method's address
        ("out/{:q}.txt", " (Unknown format code 'q' for object of type 'int'); "),
        ("out/{.txt", " (expected '}' before end of string); "),
        ("out/w-{:>{w}}.txt", ": its one field is the shard number, {} or {:05d}; "),  # was an internal error (KeyError)
        ("out/w-{:>{}}.txt", ": its one field is the shard number, {} or {:05d}; "),
    ],
)
def test_an_invalid_pattern_is_refused(pattern: str, why: str) -> None:
    """A pattern str.format cannot fill is a usage error naming the pattern, what is wrong with it and an example."""
    with pytest.raises(UsageError) as info:
        shard_names(pattern, 2, None, False)
    assert info.value.cli_message() == f"--shards: -o '{pattern}' is not a valid pattern{why}use e.g. out/part-{{:05d}}.jsonl"


def test_shard_names_and_their_missing_directories(tmp_path: Path) -> None:
    """``shard_names`` names the files; ``make_directories`` creates their directories (returning
    them, to be removed if the run fails), but not the files."""
    paths = shard_names(str(tmp_path / "a" / "b" / "part-{}.txt"), 2, None, False)
    assert paths == [str(tmp_path / "a" / "b" / "part-0.txt"), str(tmp_path / "a" / "b" / "part-1.txt")]
    assert make_directories(paths) == [str(tmp_path / "a"), str(tmp_path / "a" / "b")]
    assert listing(tmp_path / "a" / "b") == []


def test_shard_names_treat_a_trailing_slash_as_a_directory(tmp_path: Path) -> None:
    """``DIR/`` is a directory to be made, and its files get ``part-NNNNN``."""
    paths = shard_names(str(tmp_path / "new") + "/", 2, ("xz", None), True)
    assert [os.path.basename(p) for p in paths] == ["part-00000.xz", "part-00001.xz"]
    assert make_directories(paths) == [str(tmp_path / "new")]


@pytest.mark.parametrize(
    "inputs, compress, expected",
    [
        (["a.jsonl", "dir/b.jsonl"], None, ".jsonl"),
        (["a.jsonl.gz", "B.JSONL.GZ"], None, ".jsonl.gz"),
        (["a.txt.zstd"], None, ".txt.zst"),  # the codec's canonical suffix
        (["a.jsonl", "b.jsonl.zst"], None, ".jsonl"),  # codecs differ: plain
        (["a.jsonl.gz"], ("zstd", 3), ".jsonl.zst"),  # --compress wins
        (["a.jsonl.gz"], ("none", None), ".jsonl"),
        (["a.csv", "b.tsv"], None, None),  # kinds differ
        (["a.dat"], None, None),  # not a line-file kind
        (["noext"], None, None),
    ],
)
def test_line_shard_suffix(inputs: list[str], compress: tuple[str, int | None] | None, expected: str | None) -> None:
    """Shards take the inputs' common record kind and, unless ``--compress`` says otherwise, their codec."""
    assert line_shard_suffix(inputs, compress) == expected


def test_output_codec_from_flag_or_suffix() -> None:
    """``--compress`` wins (``none`` meaning plain); else the output's suffix; stdout is plain."""
    assert output_codec("x.gz", ("zstd", 7)) == ("zstd", 7)
    assert output_codec("x.gz", ("none", None)) is None
    assert output_codec("x.jsonl.GZ", None) == ("gzip", None)
    assert output_codec("x.zstd", None) == ("zstd", None)
    assert output_codec("x.bz2", None) == ("bzip2", None)
    assert output_codec("x.txt", None) is None
    assert output_codec(None, None) is None
    assert output_codec(None, ("xz", 1)) == ("xz", 1)


# --- AtomicFileSink -----------------------------------------------------------------------------


def test_nothing_is_visible_at_the_target_until_commit(tmp_path: Path) -> None:
    """Written data sits in a hidden, private temporary file; commit renames it into place and
    leaves nothing else behind (the run's lock goes too)."""
    target = tmp_path / "out.txt"
    sink = AtomicFileSink(str(target), None, sync=False)
    sink.write(b"hello ")
    sink.write(memoryview(b"world\n"))
    assert not target.exists()
    temps = [n for n in listing(tmp_path) if n.endswith(".bigshuf-tmp")]
    assert len(temps) == 1 and temps[0].startswith(".out.txt.")
    st = os.lstat(tmp_path / temps[0])
    assert stat.S_ISREG(st.st_mode) and st.st_mode & 0o777 == 0o600 and st.st_uid == os.geteuid()
    sink.commit()
    assert target.read_bytes() == b"hello world\n"
    assert listing(tmp_path) == ["out.txt"]
    assert sink.bytes_written == 12


def test_a_new_file_gets_the_umask_mode(tmp_path: Path) -> None:
    """A new target ends with 0666 less the umask, like any file the user creates."""
    old = os.umask(0o027)
    try:
        sink = AtomicFileSink(str(tmp_path / "new"), None, sync=False)
        sink.commit()
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "new").st_mode & 0o7777 == 0o640


def test_the_umask_is_read_without_being_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading the umask with ``os.umask`` set it to 0 for a moment, where another thread of a
    library caller's program creating a file got mode 0666 (found by attack): it is read from /proc."""
    import bigshuf
    from bigshuf.storage import safefs

    old = os.umask(0o027)
    try:
        calls: list[int] = []
        real = os.umask
        monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or real(mask))
        assert safefs.current_umask() == 0o027
        write_records(tmp_path / "in.txt", [b"a", b"b"])
        bigshuf.shuffle(tmp_path / "in.txt", tmp_path / "new.txt", seed=1)
        assert calls == []
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "new.txt").st_mode & 0o7777 == 0o640


def test_commit_replaces_an_existing_target_whole(tmp_path: Path) -> None:
    """The old file stays intact until commit; then the name points to a new inode, with the old
    permission bits, and other hard links to the old file keep the old bytes."""
    target = tmp_path / "out"
    target.write_bytes(b"old\n")
    os.chmod(target, 0o604)
    os.link(target, tmp_path / "other-link")
    inode = os.stat(target).st_ino
    sink = AtomicFileSink(str(target), None, sync=False)
    sink.write(b"new\n" * 1000)
    sink.finish()
    assert target.read_bytes() == b"old\n" and os.stat(target).st_ino == inode
    sink.publish()
    assert target.read_bytes() == b"new\n" * 1000
    st = os.stat(target)
    assert st.st_ino != inode and st.st_mode & 0o7777 == 0o604
    assert (tmp_path / "other-link").read_bytes() == b"old\n"
    assert listing(tmp_path) == ["other-link", "out"]


def test_abort_leaves_no_file_and_the_target_untouched(tmp_path: Path) -> None:
    """A failed run removes its temporary file and lock; an existing target keeps its bytes and inode."""
    target = tmp_path / "out"
    target.write_bytes(b"keep me\n")
    inode = os.stat(target).st_ino
    sink = AtomicFileSink(str(target), None, sync=False)
    sink.write(b"partial")
    sink.abort()
    assert listing(tmp_path) == ["out"]
    assert target.read_bytes() == b"keep me\n" and os.stat(target).st_ino == inode


def test_abort_of_a_new_output_leaves_the_directory_empty(tmp_path: Path) -> None:
    """No target, no temporary file, no lock after an abort."""
    sink = AtomicFileSink(str(tmp_path / "out.gz"), ("gzip", 1), sync=False)
    sink.write(b"x" * 100)
    sink.abort()
    assert listing(tmp_path) == []


def test_a_compressed_sink_writes_a_valid_stream_even_when_empty(tmp_path: Path) -> None:
    """A gzip sink's file decompresses to what was written; an empty one is still a gzip file."""
    import gzip

    for name, data in (("full.gz", b"abc\n" * 50), ("empty.gz", b"")):
        sink = AtomicFileSink(str(tmp_path / name), ("gzip", 6), sync=False)
        if data:
            sink.write(data)
        sink.commit()
        assert gzip.decompress((tmp_path / name).read_bytes()) == data


@pytest.mark.parametrize("codec", [None, ("gzip", 1)])
def test_a_sink_writes_in_slices_and_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec: tuple[str, int] | None) -> None:
    """No write call reaching the file is longer than ``WRITE_SLICE`` (the kernel would take large
    page-cache folios, slow to touch on some VMs), and the file holds every byte in order."""
    import gzip

    calls = count_sliced_writes(monkeypatch)
    data = os.urandom(5 * WRITE_SLICE + 7)  # incompressible: gzip's output is as long
    sink = AtomicFileSink(str(tmp_path / "out"), codec, sync=False)
    for part in (b"head\n", memoryview(data), data[:3]):
        sink.write(part)
    sink.commit()
    stored = (tmp_path / "out").read_bytes()
    assert (stored if codec is None else gzip.decompress(stored)) == b"head\n" + data + data[:3]
    assert len(calls) > 5 and max(calls) <= WRITE_SLICE and sum(calls) == len(stored)


@pytest.mark.parametrize("seek", [False, True])
def test_sliced_writes_end_at_slice_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seek: bool) -> None:
    """Each write call ends by the next multiple of ``WRITE_SLICE`` in the file, wherever the file
    is written from (appended to at an odd size, or moved by ``seek``): a call across a boundary
    would take two half-filled page-cache folios. Every byte lands where it should."""
    from bigshuf.storage.sliced import open_sliced

    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    f = open_sliced(os.open(path, os.O_WRONLY | (0 if seek else os.O_APPEND)), "wb" if seek else "ab", 0)
    start = 5 if seek else 100
    if seek:
        f.seek(start)
    calls = count_sliced_writes(monkeypatch)
    data = os.urandom(3 * WRITE_SLICE + 7)
    view = memoryview(data)
    while view:
        view = view[f.write(view) :]
    f.close()
    assert path.read_bytes() == b"x" * start + data
    ends = [start + sum(calls[: i + 1]) for i in range(len(calls))]
    assert calls[0] == WRITE_SLICE - start and all(end % WRITE_SLICE == 0 for end in ends[:-1])


@pytest.mark.parametrize("sync", [True, False])
def test_a_synced_output_is_sent_to_disk_as_it_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sync: bool) -> None:
    """A file that will be synced asks the kernel to write back each stretch of whole pages once
    written (so the final fsync has little left to wait for), from a thread stopped at commit;
    one that will not be synced asks nothing. The file holds every byte either way."""
    import threading

    from bigshuf.storage import sliced

    asked: list[tuple[int, int]] = []
    monkeypatch.setattr(sliced, "WRITEBACK_EVERY", 3 * WRITE_SLICE)
    monkeypatch.setattr(sliced, "_writeback_call", lambda: lambda fd, offset, nbytes: asked.append((offset, nbytes)))
    data = os.urandom(10 * WRITE_SLICE + 5)
    sink = AtomicFileSink(str(tmp_path / "out"), None, sync=sync)
    sink.write(b"x" * 5)
    sink.write(memoryview(data))
    sink.commit()
    assert (tmp_path / "out").read_bytes() == b"x" * 5 + data
    assert not [t for t in threading.enumerate() if t.name == "bigshuf-writeback"]
    if not sync:
        assert asked == []
        return
    assert len(asked) == 3 and asked[0][0] == 0
    for (offset, nbytes), (following, _) in zip(asked, asked[1:] + [(None, 0)]):
        assert offset % 4096 == 0 and nbytes % 4096 == 0 and nbytes >= 3 * WRITE_SLICE - 4096
        assert following is None or following == offset + nbytes


def test_early_writeback_is_a_real_call_on_linux(tmp_path: Path) -> None:
    """``sync_file_range`` is found (Linux) and accepts a range of a file being written."""
    from bigshuf.storage.sliced import _writeback_call

    with open(tmp_path / "f", "wb") as f:
        f.write(b"a" * 8192)
        f.flush()
        _writeback_call()(f.fileno(), 0, 8192)
        os.fsync(f.fileno())


def test_a_file_left_open_at_exit_does_not_hang_the_interpreter(tmp_path: Path) -> None:
    """Found in review: an early-writeback file still open when Python exits, its buffer flushed
    by the finalizer, started its writeback thread then, and no thread can start at exit: the
    process hung for ever. It must exit with every byte written (only the hint is dropped)."""
    import subprocess
    import sys

    script = f"""
import os
from bigshuf.storage import sliced
sliced.WRITEBACK_EVERY = 1 << 16
fd = os.open({str(tmp_path / "f")!r}, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
f = sliced.open_sliced(fd, "wb", 1 << 20, writeback=True)
f.write(b"a" * (5 << 16))  # held in the buffer until the file is flushed, at exit
"""
    done = subprocess.run([sys.executable, "-c", script], timeout=30, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "f").read_bytes() == b"a" * (5 << 16)


def test_a_symlink_at_the_temporary_name_is_never_followed(tmp_path: Path) -> None:
    """A link planted at the name the sink will use makes it fail; the link's target is not touched."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    files = OutputFiles(sync=False)
    target = str(tmp_path / "out")
    temp = files.temp_name(target)  # the name the sink will ask for
    os.symlink(victim, temp)
    with pytest.raises(OutputError, match=exact(f"{target}: File exists")):
        AtomicFileSink(target, None, files=files)
    files.discard()  # not ours: left alone
    files.release()
    assert victim.read_bytes() == b"precious\n"
    assert os.path.islink(temp)
    assert not os.path.lexists(target)


def test_a_symlink_at_the_target_is_replaced_not_written_through(tmp_path: Path) -> None:
    """At this level the target name itself is replaced: a link there is swapped for the new file,
    and the file it pointed to keeps its bytes (``open_output`` resolves links before this)."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    target = tmp_path / "out"
    os.symlink(victim, target)
    sink = AtomicFileSink(str(target), None, sync=False)
    sink.write(b"new\n")
    sink.commit()
    assert not target.is_symlink() and target.read_bytes() == b"new\n"
    assert victim.read_bytes() == b"precious\n"


def test_a_sink_in_a_missing_directory_names_the_output(tmp_path: Path) -> None:
    """Claiming the directory fails with one line naming the directory that is missing."""
    missing = tmp_path / "nope"
    with pytest.raises(OutputError, match=exact(f"{missing}: cannot create a file: No such file or directory")):
        AtomicFileSink(str(missing / "out"), None, "given-name")
    assert listing(tmp_path) == []


# --- Output with shards -------------------------------------------------------------------------


def records(n: int, start: int = 0) -> list[bytes]:
    """``n`` numbered lines, each with its newline."""
    return [b"record %d\n" % i for i in range(start, start + n)]


def emit_in_chunks(out: Output, recs: list[bytes], chunk: int) -> None:
    """Emit ``recs`` as Arrow binary arrays of ``chunk`` records."""
    for i in range(0, len(recs), chunk):
        out.emit(pa.array(recs[i : i + chunk], pa.binary()))


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_shards_concatenate_to_the_emitted_order(tmp_path: Path, writer: WriteBehind, chunk: int) -> None:
    """Shard i of N holds records [i*m//N, (i+1)*m//N): counts differ by at most one and the files,
    in order, are the emitted records, whatever the chunking."""
    recs = records(23)
    out = Output(str(tmp_path / "shards") + "/", writer, shards=4, sync=False)
    out.begin(len(recs))
    emit_in_chunks(out, recs, chunk)
    out.commit()
    names = [f"part-0000{i}" for i in range(4)]
    assert listing(tmp_path / "shards") == names
    parts = [(tmp_path / "shards" / n).read_bytes() for n in names]
    assert b"".join(parts) == b"".join(recs)
    assert [p.count(b"\n") for p in parts] == [5, 6, 6, 6]
    assert out.bytes_written == len(b"".join(recs))


def test_empty_shards_are_written_with_the_header(tmp_path: Path, writer: WriteBehind) -> None:
    """More shards than records: every shard file exists, each starting with the header."""
    recs = records(2)
    out = Output(str(tmp_path / "s-{}.csv"), writer, shards=5, header=b"h1,h2\n", sync=False)
    out.begin(len(recs))
    emit_in_chunks(out, recs, 2)
    out.commit()
    parts = [(tmp_path / f"s-{i}.csv").read_bytes() for i in range(5)]
    assert all(p.startswith(b"h1,h2\n") for p in parts)
    assert b"".join(p[len(b"h1,h2\n") :] for p in parts) == b"".join(recs)
    assert sorted(len(p) > len(b"h1,h2\n") for p in parts) == [False, False, False, True, True]
    assert listing(tmp_path) == [f"s-{i}.csv" for i in range(5)]


def test_zero_records_still_make_every_shard(tmp_path: Path, writer: WriteBehind) -> None:
    """An empty input gives N empty shard files, not none."""
    out = Output(str(tmp_path / "d") + "/", writer, shards=3, sync=False)
    out.begin(0)
    out.commit()
    assert [(tmp_path / "d" / f"part-0000{i}").read_bytes() for i in range(3)] == [b""] * 3


def test_compressed_shards_each_hold_a_whole_stream(tmp_path: Path, writer: WriteBehind) -> None:
    """Each shard of a compressed output decompresses on its own to its share of the records."""
    import gzip

    recs = records(10)
    out = Output(str(tmp_path / "z") + "/", writer, shards=2, compress=("gzip", 1), sync=False)
    out.begin(len(recs))
    emit_in_chunks(out, recs, 4)
    out.commit()
    parts = [gzip.decompress((tmp_path / "z" / f"part-0000{i}.gz").read_bytes()) for i in range(2)]
    assert parts == [b"".join(recs[:5]), b"".join(recs[5:])]


def test_an_aborted_sharded_output_leaves_nothing(tmp_path: Path, writer: WriteBehind) -> None:
    """Abort midway: no shard, no temporary file, no lock, and the directories it made are gone."""
    out = Output(str(tmp_path / "a" / "b" / "part-{}"), writer, shards=3, sync=False)
    recs = records(30)
    out.begin(len(recs))
    emit_in_chunks(out, recs[:15], 5)
    writer.flush()
    assert (tmp_path / "a" / "b").is_dir()
    out.abort()
    assert listing(tmp_path) == []


def test_an_aborted_sharded_output_keeps_old_shards(tmp_path: Path, writer: WriteBehind) -> None:
    """Existing shards keep their bytes when a run writing over them fails."""
    (tmp_path / "p0").write_bytes(b"old 0\n")
    (tmp_path / "p1").write_bytes(b"old 1\n")
    out = Output(str(tmp_path / "p{}"), writer, shards=2, sync=False)
    recs = records(4)
    out.begin(len(recs))
    emit_in_chunks(out, recs, 4)
    writer.flush()
    out.abort()
    assert listing(tmp_path) == ["p0", "p1"]
    assert (tmp_path / "p0").read_bytes() == b"old 0\n" and (tmp_path / "p1").read_bytes() == b"old 1\n"


def test_shards_need_an_output_name(writer: WriteBehind) -> None:
    """--shards writing to standard output is refused with the settings to change."""
    with pytest.raises(UsageError) as info:
        Output(None, writer, shards=2)
    assert info.value.cli_message() == "--shards needs -o naming a directory or a pattern like out/part-{:05d}.jsonl"


# --- check_output_directory ---------------------------------------------------------------------


def test_stdout_and_a_writable_new_file_pass(tmp_path: Path) -> None:
    """Nothing to refuse: stdout, ``-``, a new file in an existing directory; no file is left behind."""
    check_output_directory(None, None)
    check_output_directory("-", None)
    check_output_directory(str(tmp_path / "new.txt"), None)
    check_output_directory(str(tmp_path / "part-{}.txt"), 3)
    assert listing(tmp_path) == []


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    """A single output in a directory that does not exist: the message names the output."""
    target = str(tmp_path / "missing" / "out.txt")
    with pytest.raises(OutputError, match=exact(f"{target}: No such file or directory")):
        check_output_directory(target, None)


def test_a_directory_as_a_single_output_is_refused(tmp_path: Path) -> None:
    """``-o DIR`` without --shards is refused as GNU words it."""
    with pytest.raises(OutputError, match=exact(f"{tmp_path}: Is a directory")):
        check_output_directory(str(tmp_path), None)


def test_a_file_as_a_shard_directory_is_refused(tmp_path: Path) -> None:
    """``-o FILE/`` with --shards: the file is not a directory."""
    (tmp_path / "file").write_bytes(b"")
    target = str(tmp_path / "file") + "/"
    with pytest.raises(OutputError, match=exact(f"{target}: Not a directory")):
        check_output_directory(target, 2)


def test_a_file_in_the_middle_of_a_shard_pattern_is_refused(tmp_path: Path) -> None:
    """A pattern whose directory would have to be made under a regular file: its first shard is
    refused as open(2) refuses it."""
    (tmp_path / "file").write_bytes(b"")
    target = str(tmp_path / "file" / "sub" / "p{}")
    with pytest.raises(OutputError, match=exact(f"{tmp_path / 'file' / 'sub' / 'p0'}: Not a directory")):
        check_output_directory(target, 2)


def test_a_symlink_to_a_missing_directory_is_refused(tmp_path: Path) -> None:
    """A link at the output name is resolved: its target's directory must exist."""
    link = tmp_path / "out"
    os.symlink(tmp_path / "gone" / "file", link)
    with pytest.raises(OutputError, match=exact(f"{link}: No such file or directory")):
        check_output_directory(str(link), None)


def test_two_shards_resolving_to_one_file_are_refused(tmp_path: Path) -> None:
    """A link making shard 1 the same file as shard 0 would lose one of them: refused up front
    (as any symlink at a shard's name is)."""
    shards = tmp_path / "s"
    shards.mkdir()
    (shards / "part-00000").write_bytes(b"zero\n")
    os.symlink("part-00000", shards / "part-00001")
    with pytest.raises(OutputError) as info:
        check_output_directory(str(shards), 3)
    assert str(info.value).startswith(f"{shards / 'part-00001'} (from {shards}): is a symbolic link;")
    assert (shards / "part-00000").read_bytes() == b"zero\n"


def test_a_pattern_with_dot_dot_onto_one_file_is_refused(tmp_path: Path) -> None:
    """'..' in a pattern can also put two shards on one name."""
    (tmp_path / "d").mkdir()
    target = str(tmp_path / "d" / "{}" / ".." / "x")
    (tmp_path / "d" / "0").mkdir()
    (tmp_path / "d" / "1").mkdir()
    with pytest.raises(OutputError, match="shards 0 and 1 would both be written to"):
        check_output_directory(target, 2)


def test_a_name_too_long_is_refused(tmp_path: Path) -> None:
    """A file name longer than the file system takes is refused before any input is read."""
    target = str(tmp_path / ("x" * 300))
    with pytest.raises(OutputError, match=exact(f"{target}: File name too long")):
        check_output_directory(target, None)


def test_a_directory_in_place_of_a_shard_is_refused(tmp_path: Path) -> None:
    """A shard name held by a directory cannot be replaced by a file."""
    (tmp_path / "p1").mkdir()
    with pytest.raises(OutputError, match=exact(f"{tmp_path / 'p1'}: Is a directory")):
        check_output_directory(str(tmp_path / "p{}"), 2)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_directory_is_refused(tmp_path: Path) -> None:
    """A directory the user cannot create files in is refused with the reason."""
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        with pytest.raises(OutputError, match=exact(f"{locked}/out: cannot create a file in {locked}: Permission denied")):
            check_output_directory(str(locked / "out"), None)
    finally:
        os.chmod(locked, 0o700)


def test_a_pattern_giving_a_nul_byte_is_a_usage_error(tmp_path: Path) -> None:
    """``-o 'p{:c}' --shards 2`` names shard 0 ``p\\0``, which no file system takes: refused as a user error."""
    with pytest.raises(BigShufError):
        check_output_directory(str(tmp_path / "p{:c}"), 2)


def test_an_abort_that_cannot_remove_its_temporary_file_does_not_hide_the_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its directory made read-only during the run, the abort's unlink raised PermissionError, which
    replaced the error that ended the run ("cannot commit: Permission denied") in the one line the
    user saw, and the run's lock was not let go (found by review)."""
    sink = AtomicFileSink(str(tmp_path / "out.txt"), None, sync=False)
    sink.write(b"a\n")
    unlink = os.unlink

    def refused(path: str, *args: object, **kwargs: object) -> None:
        if path == sink.tmp_path:
            raise PermissionError(13, "Permission denied", path)
        unlink(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "unlink", refused)
    sink.abort()  # (it raised)
    monkeypatch.undo()
    assert [n for n in os.listdir(tmp_path) if n.endswith(".lock")] == []
