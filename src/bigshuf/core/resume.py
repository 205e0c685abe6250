"""``--resume``: the job's lock, its inputs' identities, and its output temp files reopened and
checked, so that a resumed run trusts nothing it finds on disk (the checkpoint file itself is
``checkpoint``'s).

A job's files are named by its output; its key, made of its inputs' paths, its output, its seed and
options (not ``-T``), is kept in its checkpoint, so a rerun of the output with other options is
refused rather than started beside the checkpoint. Its lock is a file beside the output, so two
runs for one output exclude each other whatever ``-T`` each was given, and it is taken before
anything else of the job is touched. The checkpoint
(``state.json``) and the buckets live in a private directory under ``-T``; the output's
temporary files beside the output. Whatever is read back is validated: every field of the
checkpoint, each input's size, modification time and sampled content, each file's size and
CRC-32. A mismatch is a one-line refusal naming the directory to remove.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
from typing import Any, NamedTuple

from ..errors import InputError, OutputError, option
from .checkpoint import advice, open_failure
from ..quoting import quote_name
from ..storage.safefs import create_exclusive, open_nofollow, own_file, sync_directory, sync_file
from ..storage.threads import descriptor

#: Content check of an input: this many blocks of ``SAMPLE_BYTES`` (the first, the last, and
#: evenly spaced ones between), hashed with the file's size. About 1 MiB read per input.
SAMPLES = 16
SAMPLE_BYTES = 1 << 16
class JobLock:
    """The exclusive ``flock`` of one ``--resume`` job, on a file beside its output.

    The file holds the holder's pid and checkpoint directory, so a second run of the job can say
    which run it collides with. It is removed on release (while still locked); a run that opened
    it just before finds the name gone or pointing elsewhere after its ``flock`` and starts over.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1

    def acquire(self, holder: str) -> None:
        """Take the lock and record ``holder`` in it; refuse if another run holds it."""
        while self._fd < 0:
            try:
                fd = create_exclusive(self.path)
            except FileExistsError:
                try:
                    fd = open_nofollow(self.path, os.O_RDWR)
                except FileNotFoundError:
                    continue  # released and removed in between
                except OSError as e:
                    raise OutputError(f"{quote_name(self.path)}: cannot open this {option('resume')} job's lock: {open_failure(e)}") from None
            except OSError as e:
                raise OutputError(f"{quote_name(self.path)}: cannot create this {option('resume')} job's lock: {e.strerror}") from None
            try:
                if self._take(fd, holder):
                    self._fd = fd
            finally:
                if self._fd != fd:
                    os.close(fd)

    def _take(self, fd: int, holder: str) -> bool:
        """Lock ``fd``; False if its name was removed or replaced meanwhile (try again)."""
        st = os.fstat(fd)
        if not own_file(st):
            raise OutputError(f"{quote_name(self.path)}: is not a lock file this user made; remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise OutputError(f"{quote_name(self.path)}: cannot lock: {e.strerror}") from None
            other = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "a run that is starting"
            raise OutputError(
                f"{quote_name(self.path)}: this {option('resume')} job is already running ({other}); wait for it or stop it"
            ) from None
        try:
            now = os.lstat(self.path)
        except FileNotFoundError:
            return False
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return False
        if st.st_nlink != 1:
            # Another name of a file (a hard link planted at the lock's name): its data is not ours
            # to overwrite. The name goes, and a lock file of our own is made in its place.
            try:
                os.unlink(self.path)
            except OSError as e:
                raise OutputError(f"{quote_name(self.path)}: is another name of a file (a hard link), which cannot be removed: {e.strerror}; remove it") from None
            return False
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode() + b"\n", 0)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # locked by this run: no other holds it (as ``release`` removes it)
            raise OutputError(f"{quote_name(self.path)}: cannot write this {option('resume')} job's lock: {e.strerror}") from None
        return True

    def release(self) -> None:
        """Remove the lock file and let the lock go."""
        if self._fd >= 0:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = -1

def content_check(path: str, size: int) -> str:
    """A hash of ``path``'s size and sampled content: the whole file when small, else
    ``SAMPLES`` blocks of ``SAMPLE_BYTES`` from its start to its end. Catches a rewritten input
    whose size and modification time were put back, at the cost of a few reads."""
    h = hashlib.sha256(b"%d:" % size)
    fd = descriptor(lambda: os.open(path, os.O_RDONLY))
    try:
        if size <= SAMPLES * SAMPLE_BYTES:
            starts = [0]
            length = size
        else:
            starts = [i * (size - SAMPLE_BYTES) // (SAMPLES - 1) for i in range(SAMPLES)]
            length = SAMPLE_BYTES
        for start in starts:
            got = 0
            while got < length:
                chunk = os.pread(fd, length - got, start + got)
                if not chunk:
                    break
                h.update(chunk)
                got += len(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()[:32]


def input_identity(paths: list[str]) -> list[list[Any]]:
    """Path, size, modification time and content check of every input, to refuse changed inputs."""
    out: list[list[Any]] = []
    for path in paths:
        try:
            st = os.stat(path)
            check = content_check(path, st.st_size) if stat.S_ISREG(st.st_mode) else ""
            out.append([path, st.st_size, st.st_mtime_ns, check])
        except OSError as e:
            raise InputError(f"{quote_name(path)}: {e.strerror}") from None
    return out


def crc_of(fd: int, start: int, end: int, crc: int = 0) -> int:
    """CRC-32 of ``fd``'s bytes ``[start, end)``, continuing ``crc``; ValueError if the file ends first."""
    from isal.isal_zlib import crc32

    while start < end:
        chunk = os.pread(fd, min(1 << 22, end - start), start)
        if not chunk:
            raise ValueError("file ends early")
        crc = crc32(chunk, crc)
        start += len(chunk)
    return crc

class ResumePoint(NamedTuple):
    """Where an output temp file stood at the checkpoint: its ``size`` and the ``crc`` of those bytes;
    a ``finished`` file must be exactly that long, the current one may have grown since."""

    size: int
    crc: int
    finished: bool


def open_output_temp(path: str, at: ResumePoint | None, directory: str, final: str | None = None) -> int:
    """The ``--resume`` output temp file ``path``, opened read-write at its end.

    Fresh (``at`` None): a leftover of an earlier attempt of this job (a regular file of this
    user: the job's lock is held) is removed, anything else refused, and the file is created
    exclusively. Resumed: the file must be there, a regular file of this user, at least as long as
    the checkpoint says (exactly, if finished) with the CRC-32 it recorded; what follows is cut off.
    A temp file the run's commit had already renamed to ``final`` is made again from it (see
    ``_from_committed``).
    """
    if at is None:
        if refuse_foreign_temp(path):
            os.unlink(path)
        return create_exclusive(path)
    try:
        fd = open_nofollow(path, os.O_RDWR)
    except FileNotFoundError:
        taken = None if final is None else _from_committed(path, final, at)
        if taken is None:
            raise OutputError(f"{quote_name(path)}: missing, though the checkpoint in {quote_name(directory)} counts {at.size} bytes in it; "
                              f"{advice(directory)}") from None
        fd = taken
    except OSError as e:
        raise OutputError(f"{quote_name(path)}: cannot reopen ({open_failure(e)}); {advice(directory)}") from None
    try:
        st = os.fstat(fd)
        if final is not None and own_file(st) and stat.S_ISREG(st.st_mode) and st.st_size < at.size:
            taken = _from_committed(path, final, at, replace=True)  # a copy back that a kill cut short
            if taken is not None:
                os.close(fd)
                fd, st = taken, os.fstat(taken)
        problem = None
        if not own_file(st):
            problem = "is not a file this user made"
        elif st.st_size < at.size or (at.finished and st.st_size != at.size):
            problem = f"holds {st.st_size} bytes, the checkpoint says {at.size}"
        elif crc_of(fd, 0, at.size) != at.crc:
            problem = "does not match the checkpoint's checksum"
        if problem is not None:
            raise OutputError(f"{quote_name(path)}: {problem}; {advice(directory)}")
        if st.st_size > at.size:
            os.ftruncate(fd, at.size)
        os.lseek(fd, at.size, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _from_committed(temp: str, final: str, at: ResumePoint, replace: bool = False) -> int | None:
    """A run stopped after its commit renamed ``temp`` to ``final`` but before it removed its
    checkpoint: ``temp`` made again (exclusively, synced) from the ``at.size`` bytes of ``final``
    the checkpoint counts, if ``final`` is this user's regular file holding them (their CRC-32);
    else None. The resumed run then writes what follows and commits again, as it would have.
    ``replace``: the ``temp`` there (such a copy, cut short) is removed first."""
    try:
        src = open_nofollow(final)
    except OSError:
        return None
    try:
        if not holds(src, at):
            return None
        if replace:
            os.unlink(temp)
        fd = create_exclusive(temp)
        try:
            done = 0
            while done < at.size:
                try:
                    copied = os.copy_file_range(src, fd, at.size - done, done, done)
                except OSError as e:
                    if e.errno not in (errno.ENOSYS, errno.EXDEV, errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    chunk = os.pread(src, min(1 << 22, at.size - done), done)  # a file system without it
                    copied = os.pwrite(fd, chunk, done) if chunk else 0
                if not copied:
                    raise OSError(errno.EIO, f"{final} ended while it was copied")
                done += copied
            sync_file(fd)
            sync_directory(os.path.dirname(temp) or os.curdir)
        except BaseException:
            os.close(fd)
            os.unlink(temp)
            raise
        return fd
    finally:
        os.close(src)


def holds(fd: int, at: ResumePoint) -> bool:
    """Whether ``fd`` is this user's regular file starting with the ``at.size`` bytes whose CRC-32 ``at`` counts."""
    st = os.fstat(fd)
    try:
        return stat.S_ISREG(st.st_mode) and own_file(st) and st.st_size >= at.size and crc_of(fd, 0, at.size) == at.crc
    except ValueError:  # shorter than it said a moment ago
        return False


def refuse_foreign_temp(path: str) -> bool:
    """Refuse a symbolic link or anything but a file of this user at output temp name ``path``;
    True if such a file (a leftover of this job) is there, False if nothing is."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not own_file(st):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a file this user made"
        raise OutputError(f"{quote_name(path)}: already exists and is {kind}; remove it")
    return True


def refuse_foreign_temps(directories: list[str], tag: str) -> None:
    """Before any input is read: refuse what another user planted at a name this job's output temp
    files take in ``directories`` (``.NAME.{tag}.bigshuf-tmp``), rather than after pass 1."""
    suffix = f".{tag}.bigshuf-tmp"
    for directory in dict.fromkeys(directories):
        try:
            names = [n for n in os.listdir(directory) if n.startswith(".") and n.endswith(suffix)]
        except (FileNotFoundError, NotADirectoryError):
            continue  # made by the run, nothing planted in it yet
        except OSError as e:
            raise OutputError(f"{quote_name(directory)}: cannot list: {e.strerror}") from None
        for name in sorted(names):
            refuse_foreign_temp(os.path.join(directory, name))


class FileCheck:
    """Size and CRC-32 of one output temp file as of the last checkpoint; ``advance`` extends both
    over what was written since and fsyncs it, so a checkpoint never counts data not on disk."""

    def __init__(self, path: str, at: ResumePoint | None = None) -> None:
        self.path = path
        self.size = 0 if at is None else at.size
        self.crc = 0 if at is None else at.crc
        self._synced = at is not None  # a new file's directory entry is not durable yet
        self._final = at is not None and at.finished

    def advance(self, size: int | None) -> list[int]:
        """``[size, crc]`` once the file is synced up to ``size`` (None: it is finished, all of it)."""
        if self._final or (size == self.size and self._synced):
            return [self.size, self.crc]
        fd = open_nofollow(self.path)
        try:
            end = os.fstat(fd).st_size if size is None else size
            self.crc = crc_of(fd, self.size, end, self.crc)
            self.size = end
            sync_file(fd)
        finally:
            os.close(fd)
        if not self._synced:
            sync_directory(os.path.dirname(self.path))
            self._synced = True
        self._final = size is None
        return [self.size, self.crc]
