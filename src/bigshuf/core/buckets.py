"""Pass 1's temporary bucket files: appended to (created exclusively, private, never through a link),
synced for a ``--resume`` checkpoint and taken up from one, read back and removed by pass 2."""

from __future__ import annotations

import mmap
import os
import shutil
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from ..errors import TempSpaceError
from ..quoting import quote_name
from ..storage.safefs import check_private_directory, create_exclusive, open_nofollow, own_file, sync_directory, sync_file
from ..storage.sliced import open_sliced
from ..storage.tempspace import full_disk_hint
from ..storage.threads import deferred_signals, opened, owned, signals_held
from ..storage.writeback import WriteBehind
from .bucket_groups import BucketGroups, per_group
from .parallel import settled
from .resume import crc_of
from .scatter import Scattered, temp_compressor

#: Threads fsyncing buckets before a --resume checkpoint (see ``BucketSet.sync``).
SYNC_THREADS = 16


def read_exactly(stream: Any, view: np.ndarray, path: str) -> None:
    """Read exactly ``len(view)`` bytes of the bucket file ``path`` (open as ``stream``) into ``view``."""
    got = 0
    while got < len(view):
        n = stream.readinto(view.data[got:])
        if not n:
            raise TempSpaceError(f"{quote_name(path)}: bucket file is shorter than written")
        got += n


def reopen_bucket(path: str, size: int, advice: str) -> int | None:
    """Bucket file ``path`` reopened to return to a checkpoint that counts ``size`` bytes in it
    (never through a link), or None if it is missing and the checkpoint counts none."""
    try:
        return open_nofollow(path, os.O_RDWR)
    except FileNotFoundError:
        if size:
            raise TempSpaceError(f"{quote_name(path)}: bucket missing, the checkpoint counts {size} bytes; {advice}") from None
        return None
    except OSError as e:
        raise TempSpaceError(f"{quote_name(path)}: cannot reopen this bucket: {e.strerror}; {advice}") from None


def restore_bucket(path: str, size: int, complete: bool, advice: str, crc: int | None = None) -> bool:
    """Take up bucket file ``path`` as a checkpoint that counts ``size`` bytes in it left it; return
    whether it is kept, to append to. It must be a regular file of this user, as long as the
    checkpoint says or, unless pass 1 was ``complete``, longer (cut back to it: appends follow), and
    with ``crc`` its CRC-32 where given; one the checkpoint counts empty is removed."""
    fd = reopen_bucket(path, size, advice)
    if fd is None:
        return False
    try:
        st = os.fstat(fd)
        if not size and own_file(st):
            os.unlink(path)  # a bucket -n dropped after this checkpoint was made, or written after it
            return False
        if not own_file(st):
            raise TempSpaceError(f"{quote_name(path)}: bucket is not a regular file of this user; {advice}")
        if st.st_size < size or (complete and st.st_size != size):
            raise TempSpaceError(f"{quote_name(path)}: bucket holds {st.st_size} bytes, the checkpoint says {size}; {advice}")
        if crc is not None and crc_of(fd, 0, size) != crc:
            raise TempSpaceError(f"{quote_name(path)}: bucket does not match the checkpoint's checksum; {advice}")
        if st.st_size > size:
            os.ftruncate(fd, size)
    finally:
        os.close(fd)
    return True


def append_bucket(path: str, existing: bool) -> int:
    """Bucket file ``path`` opened for appending: reopened (never through a link) if ``existing``
    (taken up from a checkpoint), else created exclusively, private."""
    flags = os.O_WRONLY | os.O_APPEND
    try:
        return open_nofollow(path, flags) if existing else create_exclusive(path, 0o600, flags)
    except OSError as e:
        raise TempSpaceError(f"{quote_name(path)}: {e.strerror}{full_disk_hint(e)}") from None


@dataclass
class BucketSet:
    """The k temporary bucket files of one external pass, with their byte and record counts.

    With a ``writer`` the writes are queued on its thread (call its ``flush`` before
    ``close``); without one they happen at once. With ``grouped``, the first ``grouped`` bytes (in
    at most ``group_parts`` parts) go to a few group files (``BucketGroups``; not with ``compress``
    nor a checkpoint to keep).
    """

    directory: str
    k: int
    writer: WriteBehind | None = None
    compress: bool = False
    fresh: bool = True
    grouped: int = 0
    group_parts: int = 0
    sizes: np.ndarray = field(init=False)
    records: np.ndarray = field(init=False)
    _files: list[BinaryIO | None] = field(init=False)
    _zstd: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.fresh:
            shutil.rmtree(self.directory, ignore_errors=True)  # leftovers of an interrupted attempt
        elif os.path.lexists(self.directory) and (problem := check_private_directory(self.directory)):
            raise TempSpaceError(f"{quote_name(self.directory)}: {problem}; cannot resume from its buckets")
        os.makedirs(self.directory, 0o700, exist_ok=True)
        self.disk = [0] * self.k  # bytes in each file (compressed or not), kept by the writer thread
        self.sizes = np.zeros(self.k, np.int64)
        self.records = np.zeros(self.k, np.int64)
        # CRC-32 of each bucket's bytes as written, checked when it is read back (isal: 25 GB/s).
        self.crcs = [0] * self.k
        self._files = [None] * self.k
        self._existing: set[int] = set()  # restored buckets, reopened rather than created
        self._dirty: set[int] = set()  # buckets written since the last ``sync``
        self._created = False  # a bucket file was created (or a restored one removed) since the last ``sync``
        self.advice = ""  # --resume: what to do about a bucket that does not hold up
        size = per_group(self.k)
        grouping = self.grouped and self.group_parts and size > 1 and not self.compress
        self.groups = BucketGroups(self.directory, self.k, size, self.grouped, self.group_parts) if grouping else None

    def path(self, j: int) -> str:
        """The file of bucket ``j``."""
        return os.path.join(self.directory, f"bucket-{j:05d}")

    def append(self, s: Scattered, keep: int | None = None) -> None:
        """Append each bucket's part of a scattered piece to its file, or its group's (one queued job
        a piece), only of the first ``keep`` buckets (``-n`` may have dropped the others since it was scattered)."""
        counts = s.counts
        if keep is not None and keep < self.k:
            counts = counts.copy()
            counts[keep:] = 0
        groups = self.groups
        if groups is not None and groups.taking and not groups.takes(int(s.byte_bounds[-1])):
            self._stop_grouping(groups)
        grouped = groups is not None and groups.taking
        group_writes = groups.plan(s.byte_bounds, counts) if groups is not None and grouped else []
        targets: list[tuple[int, BinaryIO | None, int, int]] = []
        for j in np.flatnonzero(counts).tolist():
            f = None
            if not grouped:
                f = self._files[j]
                if f is None:
                    with deferred_signals():  # Ctrl-C between the open and the keeping would leave the file open
                        f = self._files[j] = self._open(j)
                self._dirty.add(j)
            targets.append((j, f, int(s.byte_bounds[j]), int(s.byte_bounds[j + 1])))
        self.sizes += np.where(counts > 0, np.diff(s.byte_bounds), 0)
        self.records += counts

        frames = s.frames
        compressor = self._compressor() if frames is None else None
        crcs, disk, taken = self.crcs, self.disk, s.crcs
        from isal.isal_zlib import crc32, crc32_combine

        def write(data: memoryview) -> None:
            for j, f, lo, hi in targets:
                part = data[lo:hi] if frames is None else memoryview(frames[j])
                crcs[j] = crc32(part, crcs[j]) if taken is None else crc32_combine(crcs[j], taken[j], hi - lo)
                if f is None:
                    continue  # written with its group, below
                if compressor is not None:
                    part = memoryview(compressor.compress(part))
                disk[j] += len(part)
                try:
                    while part:
                        part = part[f.write(part) :]
                except OSError as e:
                    raise TempSpaceError(f"{quote_name(self.path(j))}: write error: {e.strerror}{full_disk_hint(e)}") from None
            for g, lo, hi, gf in group_writes:
                assert groups is not None
                groups.write(g, gf, data[lo:hi])

        data = s.data
        if self.writer is None:
            write(data)
        else:  # the bytes it holds until written bound the writer's queue: the frames', once compressed
            self.writer.submit_job(lambda: write(data), len(data) if frames is None else sum(map(len, frames)), may_inline=True)

    def _stop_grouping(self, groups: BucketGroups) -> None:
        """The group files are full: close them once their queued writes are done (waited for, once
        a level), before the buckets' own files, which take the later parts, need their descriptors."""
        if self.writer is not None:
            self.writer.flush()
        groups.close()

    def early(self, j: int) -> int:
        """Bytes of bucket ``j`` in its group file (before those in its own file)."""
        return 0 if self.groups is None else int(self.groups.early[j])

    def mappable(self, j: int) -> bool:
        """Whether bucket ``j`` is one file of its raw bytes, which ``map`` can map."""
        return not self.compress and not self.early(j)

    def _compressor(self) -> Any:
        """With ``compress``, a zstd level-1 compressor: every part becomes one frame."""
        if not self.compress:
            return None
        if self._zstd is None:
            self._zstd = temp_compressor()
        return self._zstd

    def state(self) -> dict[str, list[int]]:
        """Sizes, record counts, CRCs and file sizes once queued writes are done (a checkpoint)."""
        return {
            "sizes": self.sizes.tolist(), "records": self.records.tolist(),
            "crcs": list(self.crcs), "disk": list(self.disk),
        }

    def restore(self, state: dict[str, list[int]], consumed: int, complete: bool) -> None:
        """Return to a (validated) checkpoint: each bucket file not yet ``consumed`` by pass 2
        must be as ``restore_bucket`` takes it up; its CRC is checked when it is read."""
        self.sizes[:] = state["sizes"]
        self.records[:] = state["records"]
        self.crcs[:] = state["crcs"]
        self.disk[:] = state["disk"]
        self._existing.update(j for j in range(consumed, self.k) if restore_bucket(self.path(j), self.disk[j], complete, self.advice))
        self._created = True  # a removed file's entry: the directory is synced at the next sync

    def _open(self, j: int) -> BinaryIO:
        """Bucket ``j``'s file for appending: reopened (never through a link) if restored, else created exclusively."""
        fd = append_bucket(self.path(j), j in self._existing)
        self._created |= j not in self._existing
        return open_sliced(fd, "ab", 0)

    def sync(self) -> None:
        """Make the buckets written since the last call durable (for a checkpoint that counts them).

        The fsyncs run on up to 16 threads: the file system commits them together, 20x faster
        here than one after another (150 buckets: 0.04 s against 0.4-0.8 s).
        """
        files = [(j, f) for j in sorted(self._dirty) if (f := self._files[j]) is not None]

        def sync_one(item: tuple[int, BinaryIO]) -> None:
            """fsync one bucket file, naming it if that fails."""
            try:
                sync_file(item[1].fileno())
            except OSError as e:
                raise TempSpaceError(f"{quote_name(self.path(item[0]))}: write error: {e.strerror}") from None

        if files:
            with ThreadPoolExecutor(min(SYNC_THREADS, len(files))) as pool:
                with signals_held(), deferred_signals():  # the pool's threads leave Ctrl-C to the main thread
                    syncs = [pool.submit(sync_one, item) for item in files]
                for done in syncs:
                    settled(done)
        self._dirty.clear()
        if self._created:
            sync_directory(self.directory)
            self._created = False

    def drop_after(self, last: int) -> None:
        """Forget buckets past ``last``: ``-n`` will never reach them. Their files go now, unless a
        ``--resume`` checkpoint (``advice`` set) may still count them: the last one saved was made
        before this cut, and a run resumed from it needs them; they go with the job's directory,
        or when a later checkpoint that counts them empty is resumed (``restore``)."""
        if self.writer is not None:
            self.writer.flush()
        for j in range(last + 1, self.k):
            f = self._files[j]
            if f is not None:
                self._files[j] = None
                try:
                    f.close()
                except OSError:
                    pass  # what it could not write (a full disk) is dropped with it
            if (f is not None or j in self._existing) and not self.advice:
                self._unlink(j)
                self._created = True  # the unlink is synced with the directory
            self._existing.discard(j)
            self._dirty.discard(j)
            self.sizes[j] = self.records[j] = 0
            self.disk[j] = 0
        if self.groups is not None:
            self.groups.drop_after(last)

    def _unlink(self, j: int) -> None:
        """Remove bucket ``j``'s file."""
        try:
            os.unlink(self.path(j))
        except OSError as e:
            raise TempSpaceError(f"{quote_name(self.path(j))}: cannot remove this temporary bucket: {e.strerror}") from None

    def close(self) -> None:
        """Flush and close every bucket file (and group file)."""
        if self.groups is not None:
            self.groups.close()
        for j, f in enumerate(self._files):
            if f is not None:
                try:
                    f.close()
                except OSError as e:
                    raise TempSpaceError(f"{quote_name(self.path(j))}: write error: {e.strerror}{full_disk_hint(e)}") from None
                self._files[j] = None

    def open(self, j: int) -> Any:
        """Bucket ``j``'s file opened for reading (never through a link), decompressed as it is read
        if the buckets are compressed."""
        raw = owned(lambda: open(self._open_regular(j), "rb", buffering=0))
        if not self.compress:
            return raw
        from ..storage.decoding import open_reader

        return open_reader(raw, "zstd", self.path(j))

    def read_into(self, j: int, buf: np.ndarray) -> np.ndarray:
        """Load bucket ``j`` (its bytes in its group file, then its own file's, decompressed if need
        be) into the front of ``buf``; return that view."""
        size, early = int(self.sizes[j]), self.early(j)
        view = buf[:size]
        if early:
            assert self.groups is not None
            self.groups.read(j, view[:early])
        if size > early:
            with self.open(j) as stream:
                if not self.compress and (held := os.fstat(stream.fileno()).st_size) != size - early:
                    raise self._corrupt(j, f"{held} bytes where pass 1 wrote {size - early}", own=True)
                read_exactly(stream, view[early:], self.path(j))
        self.check(j, view)
        return view

    def map(self, j: int) -> np.ndarray:
        """Uncompressed bucket ``j`` (``mappable``) mapped read-only and checked against its CRC (none mapped if empty).

        Pass 2 shuffles from the page cache's own pages: reading copied them into a buffer, and
        that copy was a quarter of a run's CPU time (issue 14). MAP_POPULATE builds the page
        tables now, on the caller's thread (a worker's, reading ahead). The file is refused
        unless it is a regular file of exactly the size written: a page past its end would be
        SIGBUS. The mapping goes when the last view of it does.
        """
        size = int(self.sizes[j])
        if not size:
            view = np.empty(0, np.uint8)
        else:
            with opened(lambda: self._open_regular(j)) as fd:
                try:
                    st = os.fstat(fd)
                    if st.st_size != size:
                        raise self._corrupt(j, f"{st.st_size} bytes where pass 1 wrote {size}")
                    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
                    view = np.frombuffer(mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ), np.uint8)
                except OSError as e:
                    raise TempSpaceError(f"{quote_name(self.path(j))}: cannot map this temporary bucket: {e.strerror}") from None
        self.check(j, view)
        return view

    def _open_regular(self, j: int) -> int:
        """Bucket ``j``'s file opened read-only, refused unless it is a regular file: a FIFO planted
        in its place would block the open or the read for ever, a directory fail with no name."""
        try:
            fd = open_nofollow(self.path(j))
        except OSError as e:
            advice = f"; {self.advice}" if self.advice else ""
            raise TempSpaceError(f"{quote_name(self.path(j))}: cannot open this temporary bucket: {e.strerror}{advice}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise self._corrupt(j, "not a regular file", own=True)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def check(self, j: int, data: np.ndarray) -> None:
        """Raise if bucket ``j`` read back as ``data`` differs from what was written (CRC-32)."""
        from isal.isal_zlib import crc32

        if crc32(data.data) != self.crcs[j]:
            raise self._corrupt(j, "checksum mismatch")

    def check_count(self, j: int, found: int) -> None:
        """Raise if bucket ``j`` read back holds ``found`` records where pass 1 (or the checkpoint
        of an interrupted run, which plans the output's files by them) counted another number."""
        if found != int(self.records[j]):
            raise self._corrupt(j, f"{found} records where {int(self.records[j])} were written")

    def _corrupt(self, j: int, why: str, own: bool = False) -> TempSpaceError:
        """The error for bucket ``j`` found not to hold what pass 1 wrote (``why``), naming its group
        file if it has bytes there (unless the fault is its ``own`` file's)."""
        where = self.path(j)
        if self.groups is not None and self.early(j) and not own:
            group = f"{self.groups.path(j // self.groups.size)} (bucket {j})"
            where = group if self.early(j) == int(self.sizes[j]) else f"{group} or {where}"
        return TempSpaceError(f"{where}: temporary bucket is corrupt ({why}); {self.advice or 'its disk may be failing'}")

    def check_file(self, j: int) -> None:
        """Stream bucket ``j``'s file through the checksum (before a recursive pass re-reads it); a
        bucket begun in a group file is written whole to its own instead, checked as it is copied."""
        from isal.isal_zlib import crc32

        if self.early(j):
            self._write_whole(j)
            return
        crc, size = 0, 0
        with self.open(j) as stream:
            while chunk := stream.read(1 << 20):
                crc = crc32(chunk, crc)
                size += len(chunk)
        if crc != self.crcs[j] or size != self.sizes[j]:
            raise self._corrupt(j, "checksum mismatch")

    def _write_whole(self, j: int) -> None:
        """Bucket ``j``'s bytes in its group file, then its own file's, written to a new file that
        takes the place of its own (a deeper level reads a bucket as one file), checked against its
        CRC as they are copied."""
        from isal.isal_zlib import crc32

        assert self.groups is not None
        whole = self.path(j) + "-whole"
        try:
            out = owned(lambda: open_sliced(create_exclusive(whole, 0o600, os.O_WRONLY), "wb", 0))
        except OSError as e:
            raise TempSpaceError(f"{quote_name(whole)}: {e.strerror}{full_disk_hint(e)}") from None
        crc = 0
        with out:
            def write(data: memoryview) -> None:
                nonlocal crc
                crc = crc32(data, crc)
                try:
                    while data:
                        data = data[out.write(data) :]
                except OSError as e:
                    raise TempSpaceError(f"{quote_name(whole)}: write error: {e.strerror}{full_disk_hint(e)}") from None

            self.groups.copy(j, write)
            if self.sizes[j] > self.early(j):
                with self.open(j) as stream:
                    while True:
                        try:
                            chunk = stream.read(1 << 20)
                        except OSError as e:
                            raise TempSpaceError(f"{quote_name(self.path(j))}: read error: {e.strerror}") from None
                        if not chunk:
                            break
                        write(memoryview(chunk))
        if crc != self.crcs[j]:
            raise self._corrupt(j, "checksum mismatch")
        os.replace(whole, self.path(j))
        self.disk[j] = int(self.sizes[j])
        self.groups.early[j] = 0

    def remove(self, j: int) -> None:
        """Delete bucket ``j``'s file once it has been consumed, and group files no later bucket needs."""
        try:
            os.unlink(self.path(j))
        except FileNotFoundError:
            pass
        if self.groups is not None:
            self.groups.forget(j)
