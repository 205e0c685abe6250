"""The private temporary directory of one run: created under -T, checked for space, always removed.

A run holds an exclusive ``flock`` on ``lock`` inside its directory for as long as it lives, so
a later run can tell a directory left by a killed run (lock free) from a live run's (lock
held) and remove only the former.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import stat
import sys
import time
from types import TracebackType

from ..errors import TempSpaceError, option
from ..core.checkpoint import STATE_NAME
from ..core.plan import format_size
from ..quoting import quote_name
from .threads import deferred_signals, descriptor
from .safefs import check_private_directory, create_exclusive, creation_problem, creation_reason, make_private_directory, open_nofollow, own_file, sync_directory


def remove_tree(path: str) -> None:
    """Remove the directory ``path`` and everything under it, never following a link, ignoring
    errors. ``shutil.rmtree`` holds a descriptor per level; where none are left (the run failed
    for want of them, ``ulimit -n`` a few), the tree is removed again one directory at a time."""
    with deferred_signals():  # (a handler raising inside rmtree left its directory's descriptor open)
        shutil.rmtree(path, ignore_errors=True)
    if not os.path.lexists(path):
        return
    for root, dirs, files in os.walk(path, topdown=False):  # one open directory at a time; links not followed
        for name in files + dirs:
            where = os.path.join(root, name)
            try:
                os.rmdir(where) if os.path.isdir(where) and not os.path.islink(where) else os.unlink(where)
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def default_tmp_dir() -> str:
    """``$TMPDIR`` if set, else /tmp, as GNU sort."""
    return os.environ.get("TMPDIR") or "/tmp"


LOCK_NAME = "lock"

#: The name of a run's temporary directory (``TempSpace``; a Dask run's local scratch, and its
#: ``--temp-url`` prefix, which holds no lock, are ``bigshuf-dask-``): only these are ever removed as dead runs.
RUN_DIRECTORY = re.compile(r"bigshuf-(dask-)?[0-9a-f]{12}")


def run_directory_name() -> str:
    """A fresh name that ``RUN_DIRECTORY`` matches: 12 random hex digits."""
    return f"bigshuf-{os.urandom(6).hex()}"


def full_disk_hint(error: BaseException) -> str:
    """What to do when ``error`` (an OSError, or Arrow's wording of one) says the temporary disk is
    full, to append to the message; empty for any other error. Compressed inputs and pipes do not
    say their size, so only a full disk tells that their buckets do not fit."""
    text = str(error)
    if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(
        os.strerror(code) in text for code in (errno.ENOSPC, errno.EDQUOT)
    ):
        if _out_of_files(getattr(error, "filename", None)):
            return (
                f"; the temporary directory's file system is out of files (inodes): choose one with more "
                f"free inodes with {option('tmp_dir')}, or give more memory with {option('memory')} (fewer buckets)"
            )
        return (
            f"; the temporary directory is full: choose one with more space with {option('tmp_dir')}, "
            f"or use {option('compress_temp')}"
        )
    return ""


def _out_of_files(name: object) -> bool:
    """Whether the file system of the file ``name`` (an error's file being created: None for a
    write) has no file (inode) left for this user, which a create fails for as a full disk does."""
    if not isinstance(name, str):
        return False
    try:
        fs = os.statvfs(os.path.dirname(name) or os.curdir)
    except OSError:
        return False
    return fs.f_files > 0 and fs.f_favail == 0


def _tree_size(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def lock_held_elsewhere(path: str) -> bool | None:
    """Whether another process holds ``path``'s flock (None if it cannot be opened)."""
    try:
        fd = descriptor(lambda: os.open(path, os.O_RDONLY | os.O_NONBLOCK))  # (a planted FIFO must not block)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _ours(st: os.stat_result) -> bool:
    """Whether a leftover's status says this user's bigshuf may have made it (owned, not a link)."""
    return st.st_uid == os.geteuid() and not stat.S_ISLNK(st.st_mode)


def _lock_free(path: str) -> int | None:
    """``path``'s lock, taken (the descriptor), if it is this user's regular file and nobody holds it.
    A lock its run unlinked before letting go of it (the run removing its own files as it ends) is
    not taken: the run tidied up itself, and a cleaner that said it had found it dead was wrong."""
    try:
        fd = open_nofollow(path)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and _ours(st):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            now = os.lstat(path)
            if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _remove_leftover(path: str, young: float = 0.0) -> None:
    """Remove the regular file ``path`` if it is this user's (and older than ``young`` seconds), saying so."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or not _ours(st) or time.time() - st.st_mtime < young:
            return
        os.unlink(path)
    except OSError:
        return  # vanished (another cleaner), or not ours to remove
    print(f"bigshuf: removed {quote_name(path)} ({format_size(st.st_size)}), left by a run that is gone", file=sys.stderr)


def _remove_second_name(directory: str, name: str, run: str) -> None:
    """Remove ``name``, a backup's name run ``run`` gave a file and left with no journal (a probe
    killed between its link and its unlink), where it is only a second name of the file it was made
    for, still in place; one that is the only name of an old file's data stays."""
    m = re.fullmatch(rf"\.(.*)\.{run}(?:-[0-9]+)?\.bigshuf-old", name, re.DOTALL)
    if m is None:
        return
    path, target = os.path.join(directory, name), os.path.join(directory, m.group(1))
    try:
        st, of = os.lstat(path), os.lstat(target)
        if own_file(st) and (st.st_dev, st.st_ino) == (of.st_dev, of.st_ino):
            os.unlink(path)
    except OSError:
        pass  # gone, or no longer the target's (it stays)


def _clean_run(directory: str, run: str, names: list[str]) -> list[str]:
    """Tidy what run ``run`` left in ``directory`` if it is gone: finish or undo its commit, remove
    its temporary files and its lock; return the targets its commit put in place or back. Its
    lock, taken here, keeps concurrent cleaners out."""
    from .commit import recover

    lock = os.path.join(directory, f".bigshuf-{run}.lock")
    fd = _lock_free(lock)
    if fd is None and os.path.lexists(lock):
        return []  # a live run's (or not ours)
    if fd is None and os.path.lexists(lock + ".new"):
        try:
            if time.time() - os.lstat(lock + ".new").st_mtime < GRACE_SECONDS:
                return []  # a run locking its directory right now
        except OSError:
            return []
    touched: list[str] = []
    try:
        journal = f".bigshuf-{run}.commit"
        if journal in names:
            try:
                said, touched = recover(os.path.join(directory, journal))
                print(f"bigshuf: {said}", file=sys.stderr)
            except FileNotFoundError:
                pass  # its run finished it after the scan
            except OSError as e:
                print(f"bigshuf: {quote_name(os.path.join(directory, journal))}: could not finish a killed run's commit: {e.strerror}", file=sys.stderr)
                return touched
            if os.path.lexists(os.path.join(directory, journal)):
                return touched  # not a journal to act on: its files stay as they are
        for name in names:
            if name.endswith(".bigshuf-tmp"):
                _remove_leftover(os.path.join(directory, name))
            elif name.endswith(".bigshuf-old"):
                _remove_second_name(directory, name, run)
        _remove_leftover(lock + ".new", GRACE_SECONDS)
        if fd is not None:
            try:
                os.unlink(lock)
            except OSError:
                pass
        for other in dict.fromkeys(os.path.dirname(target) for target in touched):  # a split's other directories
            if os.path.realpath(other) != os.path.realpath(directory):
                _drop_dead_lock(os.path.join(other, os.path.basename(lock)))
    finally:
        if fd is not None:
            os.close(fd)
    return touched


def _drop_dead_lock(lock: str) -> None:
    """Remove the lock ``lock`` of a run that is gone, where its commit was just finished from another directory."""
    fd = _lock_free(lock)
    if fd is None:
        return
    try:
        os.unlink(lock)
    except OSError:
        pass
    finally:
        os.close(fd)


#: Seconds a file may stay unlocked while the run that made it is still starting.
GRACE_SECONDS = 10


def remove_dead_outputs(directory: str) -> list[list[str]]:
    """Tidy what killed runs left in output ``directory``, in one scan: finish or undo an
    interrupted commit, remove temporary files and locks no live run holds. Returns the targets
    of each commit finished or undone.

    It never fails a run: a file that vanishes, is another user's or is a symbolic link is
    skipped, and no link is followed. ``--resume`` files are kept for the run that resumes them.
    """
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    from .commit import run_id_of

    runs: dict[str, list[str]] = {}
    for name in names:
        if not name.startswith(".") or ".bigshuf-resume-" in name:
            continue
        run = run_id_of(name)
        if run is not None:
            runs.setdefault(run, []).append(name)
        elif name.endswith(".bigshuf-tmp"):
            # An older bigshuf's temporary file, locked by its run while it lived.
            fd = _lock_free(os.path.join(directory, name))
            if fd is not None:
                _remove_leftover(os.path.join(directory, name), GRACE_SECONDS)
                os.close(fd)
    commits = [_clean_run(directory, run, found) for run, found in runs.items()]
    return [targets for targets in commits if targets]


def _killed_while_starting(path: str) -> bool:
    """A run killed before its lock took its name leaves an empty directory or an unlocked
    ``lock.new``; after a grace period (it may be starting right now) that is dead too."""
    try:
        names = os.listdir(path)
        old = time.time() - os.lstat(path).st_mtime > GRACE_SECONDS
    except OSError:
        return False
    if not old or names not in ([], [LOCK_NAME + ".new"]):
        return False
    return not names or lock_held_elsewhere(os.path.join(path, names[0])) is False


def remove_dead_runs(parent: str) -> list[str]:
    """Remove the run directories (``bigshuf-`` and 12 hex digits) under ``parent`` whose run is gone,
    saying so on stderr.

    A directory counts as dead only if its lock file exists and can be locked now; a live
    run's directory, anything else (a user's ``bigshuf-experiments``), a symbolic link or another
    user's directory is left alone. A Dask run's local scratch (``bigshuf-dask-`` and 12 hex digits)
    is locked by its client as a local run's is. It never fails a run: what vanishes meanwhile is skipped.
    """
    removed: list[str] = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        path = os.path.join(parent, name)
        if not RUN_DIRECTORY.fullmatch(name):
            continue  # not a run's (--resume state, bigshuf-resume-*, is kept for the run that resumes it)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or not _ours(st):
            continue
        fd = _lock_free(os.path.join(path, LOCK_NAME))
        if fd is None:
            # (A Dask ``--temp-url`` prefix never has a lock: only a lock found free says a Dask run is gone.)
            unlocked = not os.path.lexists(os.path.join(path, LOCK_NAME)) and not name.startswith("bigshuf-dask-")
            if unlocked and _killed_while_starting(path):
                shutil.rmtree(path, ignore_errors=True)
                if not os.path.lexists(path):
                    removed.append(path)
                    print(f"bigshuf: removed {quote_name(path)}, left by a run that is gone", file=sys.stderr)
            continue
        try:
            size = _tree_size(path)
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)
        if not os.path.lexists(path):
            removed.append(path)
            print(f"bigshuf: removed {quote_name(path)} ({format_size(size)}), left by a run that is gone", file=sys.stderr)
    return removed


class TempSpace:
    """A ``bigshuf-*`` directory under ``parent`` that is removed on any exit from the block
    (``name``: the one a run chose, which ``RUN_DIRECTORY`` must match; else a fresh one)."""

    def __init__(self, parent: str | None, resume_name: str | None = None, name: str | None = None) -> None:
        self.parent = parent or default_tmp_dir()
        self.resume_name = resume_name
        self.name = name
        assert name is None or RUN_DIRECTORY.fullmatch(name), "a run directory's name is one a later run may clean"
        self.path = ""
        self._lock = -1

    def __enter__(self) -> TempSpace:
        check_parent(self.parent)
        remove_dead_runs(self.parent)
        if self.resume_name is not None:
            return self._enter_resumable()
        try:
            # Named before it is made, so a signal landing just after mkdir can still clean it up.
            while True:
                self.path = os.path.join(self.parent, self.name or run_directory_name())
                try:
                    os.mkdir(self.path, 0o700)
                    break
                except FileExistsError:
                    if self.name is not None:
                        self.path = ""  # another's: not ours to remove
                        raise
                    continue
            # Lock before the file takes its name, so no cleaner ever sees it unlocked.
            fresh = os.path.join(self.path, LOCK_NAME + ".new")
            self._lock = descriptor(lambda: os.open(fresh, os.O_CREAT | os.O_RDWR, 0o600))
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(fresh, os.path.join(self.path, LOCK_NAME))
        except OSError as e:
            if os.path.isdir(self.path):
                self._remove()
            why = creation_reason(self.parent, e)  # (-T /proc: ENOENT, from a directory that is there)
            raise TempSpaceError(f"{quote_name(self.parent)}: cannot create a temporary directory: {why}; choose another with {option('tmp_dir')}") from None
        except BaseException:
            # A signal (Ctrl-C, SIGTERM) landing here: __exit__ will not run, so clean up now.
            self._remove()
            raise
        return self

    def _remove(self) -> None:
        """Remove the directory and release the lock; a second signal mid-way does not stop it."""
        while True:
            try:
                if self.path:
                    remove_tree(self.path)
                if self.path and os.path.lexists(self.path) and self._lock >= 0:
                    # No descriptor left even to list it (``ulimit -n`` a few): the lock's goes first.
                    lock, self._lock = self._lock, -1  # forgotten before its close: a signal after it must not close it again
                    os.close(lock)
                    remove_tree(self.path)
                if self._lock >= 0:
                    lock, self._lock = self._lock, -1
                    os.close(lock)
                return
            except BaseException:  # noqa: BLE001 - finish the cleanup, the first exception is on its way
                continue

    def _enter_resumable(self) -> TempSpace:
        """``--resume``: a directory named by the job, kept when the run fails so a rerun continues.

        Made private (0700); an existing one must be a directory of this user that no one else
        may enter, never a symlink. Its lock is created exclusively or reopened without
        following links. The job's own lock (beside the output) is already held.
        """
        assert self.resume_name is not None
        self.path = os.path.join(self.parent, self.resume_name)
        lock = os.path.join(self.path, LOCK_NAME)
        try:
            try:
                make_private_directory(self.path)
                sync_directory(self.parent)
            except FileExistsError:
                problem = check_private_directory(self.path)
                if problem is not None:
                    raise TempSpaceError(
                        f"{quote_name(self.path)}: {problem}; it cannot hold this job's checkpoint: remove it or choose another {option('tmp_dir')}"
                    ) from None
            try:
                self._lock = create_exclusive(lock)
            except FileExistsError:
                self._lock = open_nofollow(lock, os.O_RDWR)
        except OSError as e:
            raise TempSpaceError(f"{quote_name(self.path)}: {e.strerror}; choose another directory with {option('tmp_dir')}") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock)
            self._lock = -1
            raise TempSpaceError(f"{quote_name(self.path)}: another bigshuf is running this same job") from None
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.resume_name is None or (exc_type is not None and not os.path.exists(os.path.join(self.path, STATE_NAME))):
            self._remove()  # a failed --resume run that saved no checkpoint leaves nothing to resume
        elif self._lock >= 0:
            os.close(self._lock)
            self._lock = -1

    def discard(self) -> None:
        """Remove a ``--resume`` directory once the output it was for is in place: first renamed whole
        (its lock still held) to a run directory's name, so that a run killed at any point leaves
        either all of its checkpoint, which a rerun takes up (the complete output's bytes), or a dead
        run's directory, which the next run removes (``remove_dead_runs``: its lock goes last); never
        a checkpoint file whose buckets, hash buckets or index logs are partly gone, which a rerun
        refused. Where it cannot be renamed, the checkpoint file goes last but for the lock."""
        with deferred_signals():
            gone = os.path.join(self.parent, run_directory_name())
            kept: tuple[str, ...] = (STATE_NAME, LOCK_NAME)
            try:
                if not os.path.lexists(gone):
                    os.rename(self.path, gone)
                    self.path, kept = gone, (LOCK_NAME,)
            except OSError:
                pass  # removed where it is
            try:
                names = os.listdir(self.path)
            except OSError:
                names = []
            for name in names:
                if name not in kept:
                    where = os.path.join(self.path, name)
                    try:
                        remove_tree(where) if os.path.isdir(where) and not os.path.islink(where) else os.unlink(where)
                    except OSError:
                        pass  # removed with the rest below
        self._remove()

    def check_free(self, needed: int) -> None:
        """Fail before pass 1 if the directory cannot hold ``needed`` bytes of buckets."""
        check_space(self.parent, needed, shutil.disk_usage(self.path).free)

    def check_files(self, needed: int) -> None:
        """Fail before pass 1 if the directory's file system has fewer than ``needed`` files (inodes)
        left for this user: the buckets' files would fail to be created part way through pass 1."""
        try:
            fs = os.statvfs(self.path)
        except OSError:
            return
        if fs.f_files and needed > fs.f_favail:
            raise TempSpaceError(
                f"{self.parent}: not enough free files (inodes) for the temporary buckets: need {needed}, "
                f"{fs.f_favail} left; choose another directory with {option('tmp_dir')}, or give more memory "
                f"with {option('memory')} (fewer buckets)"
            )


def check_parent(parent: str) -> None:
    """Refuse a ``-T`` that is missing or not a directory (before a run makes its directory there)."""
    if not os.path.isdir(parent):
        problem = "is not a directory" if os.path.exists(parent) else "does not exist"
        raise TempSpaceError(f"{quote_name(parent)}: temporary directory {problem}; choose another with {option('tmp_dir')}")


def check_creatable(parent: str) -> None:
    """``--dry-run``: refuse a ``-T`` a run could not make its directory in, found without trying."""
    problem = creation_problem(parent)
    if problem is not None:
        raise TempSpaceError(f"{quote_name(parent)}: cannot create a temporary directory: {problem}; choose another with {option('tmp_dir')}")


def check_range_space(
    lo: int, hi: int, head_count: int | None, limit: int, compress_temp: bool, tmp_dir: str | os.PathLike[str] | None,
) -> None:
    """Refuse at once a range (``-i LO-HI``) that must be listed and fits neither in memory nor in
    the temp space, for the run and its plan alike.

    Listing ``-i 1-18446744073709551615`` would otherwise run for ever (GNU shuf runs out of
    memory at once). The space asked for is a lower bound: the part of the range that a
    ``head_count`` keeps, at one bit per number with ``compress_temp``.
    """
    from ..core import plan
    from .sources import RangeSource

    count = hi - lo + 1
    nbytes = RangeSource(lo, hi, b"\n").listed_bytes()
    if plan.fits_in_memory(nbytes, count, limit):
        return
    kept = count if head_count is None else min(count, head_count)
    need = kept // 8 if compress_temp else nbytes * kept // count
    parent = os.fspath(tmp_dir) if tmp_dir is not None else default_tmp_dir()
    try:
        free = shutil.disk_usage(parent).free
    except OSError:
        return  # the run itself says what is wrong with the directory
    if need > free:
        raise TempSpaceError(
            f"{parent}: not enough temporary space for the {count} numbers of {lo}-{hi}: need at least "
            f"{format_size(need)} (they do not fit in memory, {format_size(limit)}), "
            f"{format_size(free)} free; take a sample with {option('head_count')} or choose another directory with {option('tmp_dir')}"
        )


def check_space(parent: str, needed: int, free: int) -> None:
    """Refuse buckets of ``needed`` bytes in ``parent`` (``-T``) with ``free`` bytes free there."""
    if free < needed:
        raise TempSpaceError(
            f"{parent}: not enough temporary space: need {format_size(needed)}, "
            f"{format_size(free)} free; choose another directory with {option('tmp_dir')}"
        )
