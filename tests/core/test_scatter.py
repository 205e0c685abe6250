"""core/scatter and core/buckets, directly: pieces cover a block exactly at record boundaries, scattering puts
every record in exactly one bucket (or drops it past ``keep``), and bucket files hold what was
appended, are checked on reading back, and survive a checkpoint and restore.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest

from bigshuf.core.buckets import BucketSet
from bigshuf.core.scatter import Scattered, copy_runs, iter_pieces, scatter_piece, scatter_records
from bigshuf.errors import TempSpaceError
from bigshuf.core.records import RecordFormat, find_offsets
from bigshuf.storage.sliced import WRITE_SLICE
from helpers import count_sliced_writes
from bigshuf.storage.writeback import WriteBehind

LINES = RecordFormat()


def block_of(records: list[bytes], sep: bytes = b"\n") -> np.ndarray:
    """``records`` each ended by ``sep``, as a uint8 block."""
    return np.frombuffer(b"".join(r + sep for r in records), np.uint8).copy()


def lines(n: int, seed: int = 0, max_len: int = 40) -> list[bytes]:
    """``n`` numbered records of random printable bytes, no newline inside."""
    rng = np.random.default_rng(seed)
    return [b"%d:" % i + bytes(rng.integers(33, 127, int(rng.integers(0, max_len)), dtype=np.uint8)) for i in range(n)]


def records_of(data: bytes | memoryview) -> list[bytes]:
    """The newline-ended records of ``data``, without their newlines."""
    raw = bytes(data)
    assert raw == b"" or raw.endswith(b"\n")
    return raw.split(b"\n")[:-1]


def scattered(recs: list[bytes], k: int, seed: int = 1, keep: int | None = None) -> Scattered:
    """The records ``recs`` scattered whole into ``k`` buckets."""
    block = block_of(recs)
    return scatter_piece(block, find_offsets(block, LINES), np.random.default_rng(seed), k, k if keep is None else keep)


def buckets_of(s: Scattered) -> list[list[bytes]]:
    """The records of each bucket of a scattered piece."""
    data = bytes(s.data)
    return [records_of(data[int(s.byte_bounds[j]) : int(s.byte_bounds[j + 1])]) for j in range(len(s.counts))]


# --- iter_pieces ----------------------------------------------------------------------------


@pytest.mark.parametrize("max_bytes, max_records", [(64, 1000), (1000, 3), (50, 4), (1 << 20, 1 << 20), (1, 1)])
def test_pieces_cover_the_block_exactly_at_record_boundaries(max_bytes: int, max_records: int) -> None:
    """Pieces, concatenated, are the block; each is whole records within both bounds (a record
    longer than ``max_bytes`` alone excepted); the offsets describe the piece."""
    recs = lines(300, max_len=60)
    block = block_of(recs)
    pieces = list(iter_pieces(block, LINES, max_bytes, max_records))
    assert b"".join(p.tobytes() for p, _ in pieces) == block.tobytes()
    got: list[bytes] = []
    for piece, offsets in pieces:
        n = len(offsets) - 1
        assert offsets[0] == 0 and offsets[-1] == len(piece) and n >= 1
        assert piece[-1] == ord("\n")
        assert n <= max_records
        assert len(piece) <= max_bytes or n == 1
        got += [piece[offsets[i] : offsets[i + 1] - 1].tobytes() for i in range(n)]
    assert got == recs


def test_a_record_longer_than_the_piece_size_is_a_piece_of_its_own() -> None:
    """A 500-byte record with 64-byte pieces comes out whole, between its neighbours."""
    recs = [b"a", b"L" * 500, b"b", b"c"]
    pieces = [p.tobytes() for p, _ in iter_pieces(block_of(recs), LINES, 64, 100)]
    assert pieces == [b"a\n", b"L" * 500 + b"\n", b"b\nc\n"]


def test_pieces_respect_record_groups() -> None:
    """With 4-line records (FASTQ), pieces end only after whole groups of lines."""
    fmt = RecordFormat(group=4)
    recs = [b"@r%d\nACGT\n+\nIIII" % i for i in range(50)]
    block = block_of(recs)
    pieces = list(iter_pieces(block, fmt, 70, 1000))
    assert b"".join(p.tobytes() for p, _ in pieces) == block.tobytes()
    for piece, offsets in pieces:
        assert piece.tobytes().count(b"\n") == 4 * (len(offsets) - 1)
        assert piece.tobytes().startswith(b"@r")


def test_an_empty_block_has_no_pieces() -> None:
    """Nothing to split: no piece, not an empty one."""
    assert list(iter_pieces(np.empty(0, np.uint8), LINES, 64, 10)) == []


# --- scatter_piece --------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 7, 256, 257, 1000])
def test_every_record_lands_in_exactly_one_bucket(k: int) -> None:
    """The buckets hold the records as a multiset; counts and byte bounds agree with them (both
    id widths: up to 256 buckets and beyond)."""
    recs = lines(3000, seed=k)
    s = scattered(recs, k)
    buckets = buckets_of(s)
    assert Counter(r for b in buckets for r in b) == Counter(recs)
    assert s.counts.tolist() == [len(b) for b in buckets]
    assert s.byte_bounds[0] == 0 and s.byte_bounds[-1] == len(s.data)
    assert np.all(np.diff(s.byte_bounds) >= 0)
    assert len(s.data) == len(block_of(recs))
    assert np.count_nonzero(s.counts) > 1


def test_records_keep_their_input_order_within_a_bucket() -> None:
    """Pass 1 only regroups: each bucket's records are in the order they came."""
    recs = lines(500)
    position = {r: i for i, r in enumerate(recs)}
    for bucket in buckets_of(scattered(recs, 5)):
        assert [position[r] for r in bucket] == sorted(position[r] for r in bucket)


def test_buckets_from_keep_on_are_dropped() -> None:
    """With ``keep``, buckets ``>= keep`` are empty and the kept ones are exactly as without it."""
    recs = lines(1000)
    full = scattered(recs, 8, seed=3)
    kept = scattered(recs, 8, seed=3, keep=3)
    assert kept.counts[3:].tolist() == [0] * 5
    assert kept.counts[:3].tolist() == full.counts[:3].tolist()
    assert buckets_of(kept)[:3] == buckets_of(full)[:3]
    assert buckets_of(kept)[3:] == [[]] * 5
    assert len(kept.data) == int(full.byte_bounds[3]) == int(kept.byte_bounds[-1])


def test_scattering_is_determined_by_the_stream() -> None:
    """The same stream gives the same buckets; another stream gives others."""
    recs = lines(400)
    assert buckets_of(scattered(recs, 6, seed=9)) == buckets_of(scattered(recs, 6, seed=9))
    assert buckets_of(scattered(recs, 6, seed=9)) != buckets_of(scattered(recs, 6, seed=10))


def test_int64_offsets_and_empty_records() -> None:
    """Offsets given as int64, and records that are only a separator, scatter like any other."""
    recs = [b""] * 50 + [b"x"] * 50
    block = block_of(recs)
    s = scatter_piece(block, find_offsets(block, LINES).astype(np.int64), np.random.default_rng(0), 4, 4)
    assert Counter(r for b in buckets_of(s) for r in b) == Counter(recs)


# --- BucketSet ------------------------------------------------------------------------------


def appended(directory: Path, k: int, pieces: int, compress: bool = False,
             writer: WriteBehind | None = None) -> tuple[BucketSet, list[list[bytes]]]:
    """A bucket set in ``directory`` with ``pieces`` scattered pieces appended, and the records
    each bucket should hold."""
    buckets = BucketSet(str(directory), k, writer=writer, compress=compress)
    expected: list[list[bytes]] = [[] for _ in range(k)]
    for p in range(pieces):
        s = scattered(lines(200, seed=p), k, seed=100 + p)
        buckets.append(s)
        for j, recs in enumerate(buckets_of(s)):
            expected[j] += recs
    if writer is not None:
        writer.flush()
    return buckets, expected


def read_back(buckets: BucketSet, j: int) -> list[bytes]:
    """Bucket ``j``'s records as read from its file."""
    buf = np.empty(int(buckets.sizes.max()) + 1, np.uint8)
    return records_of(buckets.read_into(j, buf).tobytes())


@pytest.mark.parametrize("compress", [False, True])
def test_buckets_read_back_what_was_appended(tmp_path: Path, compress: bool) -> None:
    """Three pieces appended: each bucket reads back its records in order, and its counts agree."""
    buckets, expected = appended(tmp_path / "b", 4, 3, compress=compress)
    buckets.close()
    for j in range(4):
        assert read_back(buckets, j) == expected[j]
        if not compress:  # pass 2 maps uncompressed buckets
            assert records_of(buckets.map(j).tobytes()) == expected[j]
        assert buckets.records[j] == len(expected[j])
        assert buckets.sizes[j] == sum(len(r) + 1 for r in expected[j])
    assert sum(int(n) for n in buckets.records) == 600


def test_bucket_parts_longer_than_a_slice_are_written_in_slices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bucket's part of a piece is written ``WRITE_SLICE`` bytes a call, all of it, in order."""
    calls = count_sliced_writes(monkeypatch)
    recs = lines(300, seed=5, max_len=1000)
    buckets = BucketSet(str(tmp_path / "b"), 2)
    s = scattered(recs, 2)
    buckets.append(s)
    buckets.close()
    assert [read_back(buckets, j) for j in range(2)] == buckets_of(s)
    assert max(calls) == WRITE_SLICE and sum(calls) == len(s.data)


@pytest.mark.parametrize("compress", [False, True])
def test_parts_checksummed_and_compressed_where_scattered_make_the_same_buckets(tmp_path: Path, compress: bool) -> None:
    """Pieces whose CRCs (and, with ``--compress-temp``, frames) were made on the worker that
    scattered them leave the same files, CRCs and sizes as pieces the writing thread checksums and
    compresses itself; a compressed piece no longer holds its raw bytes while it waits."""
    made = []
    for name, on_worker in (("writer", False), ("worker", True)):
        buckets = BucketSet(str(tmp_path / name), 4, compress=compress)
        for p in range(3):
            s = scattered(lines(200, seed=p), 4, seed=100 + p)
            raw = len(s.data)
            if on_worker:
                s = s.checksummed(compress)
                assert len(s.data) == (0 if compress else raw)
            buckets.append(s)
        buckets.close()
        made.append(buckets)
    plain, expected = appended(tmp_path / "plain", 4, 3)
    plain.close()
    a, b = made
    files = [[Path(x.path(j)).read_bytes() for j in range(4)] for x in made]
    assert files[0] == files[1]
    assert (a.crcs, a.disk, a.sizes.tolist(), a.records.tolist()) == (b.crcs, b.disk, b.sizes.tolist(), b.records.tolist())
    assert [read_back(b, j) for j in range(4)] == expected
    assert (sum(a.disk) < sum(a.sizes.tolist())) == compress  # the frames, not the raw parts, were written


@pytest.mark.parametrize("compress", [False, True])
def test_the_write_behind_queue_counts_the_bytes_a_piece_holds(tmp_path: Path, compress: bool) -> None:
    """The writer's queue is bounded by the bytes its jobs hold: a piece's raw bytes, or its
    frames once compressed where it was scattered (counted as 0 bytes, they piled up unbounded)."""
    writer = WriteBehind(1 << 16)
    sizes: list[int] = []
    queue = writer.submit_job

    def counted(job: Callable[[], object], size: int, may_inline: bool = False) -> None:
        sizes.append(size)
        queue(job, size, may_inline)

    writer.submit_job = counted  # type: ignore[method-assign]
    try:
        buckets = BucketSet(str(tmp_path / "b"), 4, writer=writer, compress=compress)
        s = scattered(lines(200, seed=1), 4)
        raw = len(s.data)
        s.checksummed(compress)
        buckets.append(s)
        writer.flush()
        buckets.close()
        assert sizes == [sum(map(len, s.frames or [])) if compress else raw]
        assert 0 < sizes[0] and (sizes[0] < raw) == compress
    finally:
        writer.close()


def test_buckets_written_behind_read_back_the_same(tmp_path: Path) -> None:
    """With a write-behind thread, the files hold the same bytes once it is flushed."""
    writer = WriteBehind(1 << 16)
    try:
        buckets, expected = appended(tmp_path / "b", 5, 4, writer=writer)
        buckets.close()
        assert [read_back(buckets, j) for j in range(5)] == expected
    finally:
        writer.close()


def test_bucket_files_and_directory_are_private(tmp_path: Path) -> None:
    """The bucket directory is 0700 and every bucket file 0600, this user's, not a link."""
    buckets, _ = appended(tmp_path / "b", 3, 1)
    buckets.close()
    assert os.stat(tmp_path / "b").st_mode & 0o777 == 0o700
    for j in range(3):
        st = os.lstat(buckets.path(j))
        assert stat.S_ISREG(st.st_mode) and st.st_mode & 0o777 == 0o600 and st.st_uid == os.geteuid()


@pytest.mark.parametrize("compress", [False, True])
def test_a_corrupted_bucket_is_refused(tmp_path: Path, compress: bool) -> None:
    """One byte changed in a bucket file: reading it (whole or streamed) raises TempSpaceError."""
    buckets, expected = appended(tmp_path / "b", 2, 2, compress=compress)
    buckets.close()
    path = buckets.path(0)
    data = bytearray(Path(path).read_bytes())
    if compress:  # corrupt the content, not the frames: recompress altered data
        import io

        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(bytes(data)), read_across_frames=True)
        plain = bytearray(reader.read())
        assert len(plain) == buckets.sizes[0]
        plain[len(plain) // 2] ^= 0x01
        data = bytearray(zstandard.ZstdCompressor(level=1).compress(bytes(plain)))
    else:
        data[len(data) // 2] ^= 0x01
    Path(path).write_bytes(bytes(data))
    with pytest.raises(TempSpaceError, match=f"^{path}: temporary bucket is corrupt"):
        read_back(buckets, 0)
    if not compress:
        with pytest.raises(TempSpaceError, match=f"^{path}: temporary bucket is corrupt \\(checksum mismatch\\)"):
            buckets.map(0)
    with pytest.raises(TempSpaceError, match=f"^{path}: temporary bucket is corrupt"):
        buckets.check_file(0)
    assert read_back(buckets, 1) == expected[1]
    buckets.check_file(1)


def test_a_truncated_bucket_is_refused(tmp_path: Path) -> None:
    """A bucket file shorter than what was written is refused, not read short, and not mapped
    (a page past its end would be SIGBUS); nor is one longer, read or mapped."""
    buckets, _ = appended(tmp_path / "b", 2, 1)
    buckets.close()
    size = os.path.getsize(buckets.path(1))
    os.truncate(buckets.path(1), size - 1)
    with pytest.raises(TempSpaceError, match=f"bucket is corrupt \\({size - 1} bytes where pass 1 wrote {size}\\)"):
        read_back(buckets, 1)
    with pytest.raises(TempSpaceError, match="temporary bucket is corrupt"):
        buckets.check_file(1)
    with pytest.raises(TempSpaceError, match=f"bucket is corrupt \\({size - 1} bytes where pass 1 wrote {size}\\)"):
        buckets.map(1)
    os.truncate(buckets.path(1), size + 4096)
    with pytest.raises(TempSpaceError, match=f"bucket is corrupt \\({size + 4096} bytes where pass 1 wrote {size}\\)"):
        buckets.map(1)
    with pytest.raises(TempSpaceError, match=f"bucket is corrupt \\({size + 4096} bytes where pass 1 wrote {size}\\)"):
        read_back(buckets, 1)


def test_a_symlinked_or_special_bucket_is_not_mapped(tmp_path: Path) -> None:
    """A link in place of a bucket is not followed (even to a copy of it), a FIFO is not waited
    on, and an empty bucket is no mapping and no file opened."""
    buckets, expected = appended(tmp_path / "b", 3, 1)
    buckets.close()
    copy = tmp_path / "copy"
    copy.write_bytes(Path(buckets.path(0)).read_bytes())
    os.unlink(buckets.path(0))
    os.symlink(copy, buckets.path(0))
    with pytest.raises(TempSpaceError, match=f"^{buckets.path(0)}: cannot open this temporary bucket: Too many levels"):
        buckets.map(0)
    os.unlink(buckets.path(1))
    os.mkfifo(buckets.path(1), 0o600)
    with pytest.raises(TempSpaceError, match=f"^{buckets.path(1)}: temporary bucket is corrupt \\(not a regular file\\)"):
        buckets.map(1)
    assert records_of(buckets.map(2).tobytes()) == expected[2]
    empty = BucketSet(str(tmp_path / "e"), 2)
    assert len(empty.map(1)) == 0 and not os.path.exists(empty.path(1))


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("planted", ["fifo", "directory"])
def test_a_special_bucket_is_refused_when_read(tmp_path: Path, compress: bool, planted: str) -> None:
    """A FIFO in place of a bucket file is refused when it is read or checked, not waited on (the
    run hung for ever); a directory is refused by name (the message named file descriptor 6)."""
    buckets, expected = appended(tmp_path / "b", 2, 1, compress=compress)
    buckets.close()
    path = buckets.path(0)
    os.unlink(path)
    if planted == "fifo":
        os.mkfifo(path, 0o600)
    else:
        os.mkdir(path, 0o700)
    done = threading.Event()

    def unblock() -> None:
        """Open the FIFO's other end whenever a reader waits on it, so that a blocked read fails the test rather than hanging it."""
        while not done.wait(0.05):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass  # no reader waiting (ENXIO), or not a FIFO

    helper = threading.Thread(target=unblock)
    helper.start()
    try:
        not_regular = f"^{path}: temporary bucket is corrupt \\(not a regular file\\)"
        with pytest.raises(TempSpaceError, match=not_regular):
            read_back(buckets, 0)
        with pytest.raises(TempSpaceError, match=not_regular):
            buckets.check_file(0)
        with pytest.raises(TempSpaceError, match=not_regular):
            buckets.open(0)
    finally:
        done.set()
        helper.join()
    assert read_back(buckets, 1) == expected[1]


def test_drop_after_ignores_a_failed_close_of_a_dropped_bucket(tmp_path: Path) -> None:
    """A bucket dropped by ``-n`` whose close fails (its last bytes not written: a full disk) is
    removed all the same: what it lost is never read. The OSError came out unwrapped."""
    buckets, expected = appended(tmp_path / "b", 4, 1)
    j = next(j for j in (3, 2) if buckets._files[j] is not None)
    real = buckets._files[j]

    class FullOnClose:
        def close(self) -> None:
            real.close()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    buckets._files[j] = FullOnClose()
    buckets.drop_after(1)
    buckets.close()
    assert sorted(os.listdir(tmp_path / "b")) == ["bucket-00000", "bucket-00001"]
    assert [read_back(buckets, j) for j in range(2)] == expected[:2]


def test_drop_after_removes_the_later_buckets(tmp_path: Path) -> None:
    """Buckets past ``last`` lose their files and their counts; earlier ones are kept."""
    buckets, expected = appended(tmp_path / "b", 5, 2)
    buckets.drop_after(1)
    buckets.close()
    assert sorted(os.listdir(tmp_path / "b")) == ["bucket-00000", "bucket-00001"]
    assert buckets.records[2:].tolist() == [0, 0, 0] and buckets.sizes[2:].tolist() == [0, 0, 0]
    assert [read_back(buckets, j) for j in range(2)] == expected[:2]
    assert buckets.state()["disk"][2:] == [0, 0, 0]


def test_remove_deletes_a_consumed_bucket(tmp_path: Path) -> None:
    """``remove`` deletes the file, and a second call (or a bucket never written) is no error."""
    buckets = BucketSet(str(tmp_path / "b"), 3)
    buckets.append(scattered([b"only"], 3))
    buckets.close()
    written = int(np.flatnonzero(buckets.records)[0])
    buckets.remove(written)
    buckets.remove(written)
    buckets.remove((written + 1) % 3)
    assert os.listdir(tmp_path / "b") == []


def test_a_fresh_bucket_set_clears_leftovers(tmp_path: Path) -> None:
    """A fresh set starts from an empty directory (leftovers of an interrupted attempt go)."""
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "bucket-00000").write_bytes(b"stale\n")
    buckets = BucketSet(str(tmp_path / "b"), 2)
    assert os.listdir(tmp_path / "b") == []
    assert buckets.sizes.tolist() == [0, 0]


def test_state_and_restore_round_trip(tmp_path: Path) -> None:
    """A checkpoint restored into a new set reads back the same buckets, and appends continue them."""
    buckets, expected = appended(tmp_path / "b", 3, 2)
    buckets.sync()
    buckets.close()
    state = buckets.state()
    again = BucketSet(str(tmp_path / "b"), 3, fresh=False)
    again.restore(state, consumed=0, complete=False)
    assert again.state() == state
    assert [read_back(again, j) for j in range(3)] == expected
    extra = scattered([b"late-%d" % i for i in range(30)], 3, seed=7)
    again.append(extra)
    again.close()
    for j, recs in enumerate(buckets_of(extra)):
        assert read_back(again, j) == expected[j] + recs


def test_restore_cuts_back_what_was_written_after_the_checkpoint(tmp_path: Path) -> None:
    """Bytes appended after the checkpoint (an interrupted pass 1) are cut off on restore."""
    buckets, expected = appended(tmp_path / "b", 2, 1)
    buckets.close()
    state = buckets.state()
    with open(buckets.path(0), "ab") as f:
        f.write(b"written after the checkpoint\n")
    again = BucketSet(str(tmp_path / "b"), 2, fresh=False)
    again.restore(state, consumed=0, complete=False)
    assert os.path.getsize(again.path(0)) == state["disk"][0]
    assert read_back(again, 0) == expected[0]


def test_restore_refuses_a_missing_or_wrong_sized_bucket(tmp_path: Path) -> None:
    """A bucket the checkpoint counts must be there, and after pass 1 exactly as long."""
    buckets, _ = appended(tmp_path / "b", 2, 1)
    buckets.close()
    state = buckets.state()
    with open(buckets.path(1), "ab") as f:
        f.write(b"x")
    again = BucketSet(str(tmp_path / "b"), 2, fresh=False)
    again.advice = "start again"
    with pytest.raises(TempSpaceError, match=r"bucket holds \d+ bytes, the checkpoint says \d+; start again$"):
        again.restore(state, consumed=0, complete=True)
    os.unlink(buckets.path(0))
    with pytest.raises(TempSpaceError, match="bucket missing, the checkpoint counts"):
        BucketSet(str(tmp_path / "b"), 2, fresh=False).restore(state, consumed=0, complete=False)
    # A bucket pass 2 has consumed is not looked for.
    BucketSet(str(tmp_path / "b"), 2, fresh=False).restore(state, consumed=1, complete=False)


def test_restore_never_follows_a_symlinked_bucket(tmp_path: Path) -> None:
    """A link planted in place of a bucket is refused, and the file it names is untouched."""
    buckets, _ = appended(tmp_path / "b", 2, 1)
    buckets.close()
    state = buckets.state()
    victim = tmp_path / "victim"
    victim.write_bytes(b"v" * 100000)
    os.unlink(buckets.path(0))
    os.symlink(victim, buckets.path(0))
    with pytest.raises(TempSpaceError, match="cannot reopen this bucket"):
        BucketSet(str(tmp_path / "b"), 2, fresh=False).restore(state, consumed=0, complete=False)
    assert victim.read_bytes() == b"v" * 100000


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_restore_refuses_a_bucket_of_another_user(tmp_path: Path) -> None:
    """A bucket file another user owns is neither appended to nor removed: the checkpoint's
    buckets were this user's own, and another's file in their place is refused and kept."""
    buckets, _ = appended(tmp_path / "b", 2, 1)
    buckets.close()
    state = buckets.state()
    assert state["disk"][0] > 0
    os.chown(buckets.path(0), 65534, 65534)
    for counted in (state, {**state, "disk": [0, state["disk"][1]]}):  # counted, then counted empty (a file to remove if ours)
        again = BucketSet(str(tmp_path / "b"), 2, fresh=False)
        again.advice = "start again"
        with pytest.raises(TempSpaceError, match=r"bucket-00000: bucket is not a regular file of this user; start again$"):
            again.restore(counted, consumed=0, complete=False)
        assert os.stat(buckets.path(0)).st_size == state["disk"][0]


def test_resuming_from_a_symlinked_directory_is_refused(tmp_path: Path) -> None:
    """The bucket directory of a resumed run must be this user's own directory, not a link."""
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    os.symlink(tmp_path / "elsewhere", tmp_path / "b")
    with pytest.raises(TempSpaceError, match=f"^{tmp_path / 'b'}: is a symbolic link; cannot resume from its buckets$"):
        BucketSet(str(tmp_path / "b"), 2, fresh=False)


def test_a_checkpoint_taken_after_dropping_restored_buckets_can_be_restored(tmp_path: Path) -> None:
    """Resume, drop buckets -n no longer needs, checkpoint the completed pass 1: that checkpoint restores."""
    buckets, expected = appended(tmp_path / "b", 4, 1)
    buckets.sync()
    buckets.close()
    resumed = BucketSet(str(tmp_path / "b"), 4, fresh=False)
    resumed.restore(buckets.state(), consumed=0, complete=False)
    resumed.drop_after(1)  # before this run appended anything to buckets 2 and 3
    resumed.sync()
    resumed.close()
    again = BucketSet(str(tmp_path / "b"), 4, fresh=False)
    again.restore(resumed.state(), consumed=0, complete=True)
    assert [read_back(again, j) for j in range(2)] == expected[:2]


def test_dropping_a_restored_bucket_twice_after_appending_to_it(tmp_path: Path) -> None:
    """A restored bucket reopened by an append, dropped, then passed over by a second, lower cut:
    its file is removed once (the second cut found no file to remove and failed, in a resumed -n run)."""
    buckets, expected = appended(tmp_path / "b", 4, 1)
    buckets.sync()
    buckets.close()
    resumed = BucketSet(str(tmp_path / "b"), 4, fresh=False)
    resumed.restore(buckets.state(), consumed=0, complete=False)
    resumed.append(scattered(lines(200, seed=7), 4, seed=107))
    resumed.drop_after(2)
    resumed.drop_after(0)
    resumed.close()
    assert sorted(os.listdir(tmp_path / "b")) == [os.path.basename(resumed.path(0))]
    assert int(resumed.records[1:].sum()) == 0 and read_back(resumed, 0)[: len(expected[0])] == expected[0]


def _runs_of_the_whole_index(offsets: np.ndarray, mult: np.ndarray, most: int, cap: int) -> list[tuple[int, int, list[int]]]:
    """The runs weighted scatters were cut into when the whole index of copies was made first
    (what the seeded outputs were recorded with): cut every ``most`` copies and after the last copy
    ending by each multiple of ``cap`` bytes."""
    index = np.repeat(np.arange(len(mult)), mult)
    ends = np.cumsum(np.diff(offsets)[index])
    cuts = set(range(0, len(index), most))
    if cap and int(ends[-1]) > cap:
        cuts.update(np.searchsorted(ends, np.arange(cap, int(ends[-1]), cap), side="right").tolist())
    bounds = sorted(c for c in cuts if 0 <= c < len(index)) + [len(index)]
    return [(lo, hi, index[lo:hi].tolist()) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


def test_copy_runs_are_the_runs_of_the_whole_index() -> None:
    """``copy_runs`` makes each run's index as it is taken, and cuts where the index of every copy
    was cut (runs of copies and of bytes): the same runs over random pieces, copies (none, one,
    hundreds) and run limits, so seeded weighted outputs stay as they were."""
    meta = np.random.default_rng(0)
    compared = 0
    for trial in range(600):
        n = int(meta.integers(1, 30))
        sizes = meta.integers(1, 50, n)
        offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        mult = meta.integers(0, int(meta.choice([2, 5, 50, 400])), n).astype(np.int64)
        if not mult.sum():
            continue
        most, cap = int(meta.integers(1, 100)), int(meta.choice([0, 30, 200, 1000]))
        runs = [(lo, hi, index.tolist()) for lo, hi, index in copy_runs(offsets, mult, most, cap)]
        assert runs == _runs_of_the_whole_index(offsets, mult, most, cap), trial
        compared += 1
    assert compared > 500


def test_scatter_records_draws_copies_run_by_run() -> None:
    """``scatter_records`` with copies is ``scatter_piece`` over each run, drawing from the one
    stream; copies all of one without ``--stratify`` are the plain records (cut by count only), and
    with it each copy draws from its split's buckets."""
    meta = np.random.default_rng(1)
    piece = np.frombuffer(b"".join(b"%d-%s\n" % (i, b"x" * int(meta.integers(0, 40))) for i in range(60)), np.uint8)
    offsets = find_offsets(piece, RecordFormat(10))
    mult = meta.integers(0, 4, 60).astype(np.int64)
    k, most, cap = 5, 17, 300
    rng = np.random.default_rng(7)
    expected = [scatter_piece(piece, offsets, rng, k, k, index) for _lo, _hi, index in copy_runs(offsets, mult, most, cap)]
    assert len(expected) > 3

    def shown(parts: Iterable[Scattered]) -> list[tuple[bytes, list[int], list[int]]]:
        return [(bytes(p.data), p.byte_bounds.tolist(), p.counts.tolist()) for p in parts]

    assert shown(scatter_records(piece, offsets, np.random.default_rng(7), k, k, most, mult, cap)) == shown(expected)
    ones = np.ones(60, np.int64)
    assert shown(scatter_records(piece, offsets, np.random.default_rng(7), k, k, most, ones, cap)) == shown(
        scatter_records(piece, offsets, np.random.default_rng(7), k, k, most)
    )
    bounds, labels = np.array([0, 2, 5]), np.repeat([0, 1], [30, 30]).astype(np.int64)
    stratified = list(scatter_records(piece, offsets, np.random.default_rng(7), k, k, most, ones, cap, (bounds, labels)))
    firsts, seconds = [], []
    for p in stratified:
        data = bytes(p.data)
        firsts += [int(line.split(b"-")[0]) for line in data[: p.byte_bounds[2]].splitlines()]
        seconds += [int(line.split(b"-")[0]) for line in data[p.byte_bounds[2] :].splitlines()]
    assert sorted(firsts) == list(range(30)) and sorted(seconds) == list(range(30, 60))  # buckets [0, 2) and [2, 5)
