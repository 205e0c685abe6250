"""Putting finished output files in place so that no kill, crash or failed rename loses data.

A run names its temporary outputs after a random run id and holds a lock file,
``.bigshuf-ID.lock``, in every output directory it writes to, so a later run can tell a live
run's temporary files from a dead one's without holding a descriptor per file.

Several files (``--shards``) are committed through a journal, ``.bigshuf-ID.commit`` in each
directory they go to, written and synced before anything is touched: it lists every temporary file,
its target, a backup name and the temporary file's inode. Existing targets are hard-linked to
their backups, then the temporary files are renamed over the targets, then the directories are
synced and the backups and the journal removed. A failed link or rename puts every old file back;
a kill leaves the journal, and the next run that touches the directory finishes the commit
(every new file is complete by then) or, if a temporary file has gone, puts the old files back.
SIGINT, SIGTERM and SIGHUP are held for the length of a commit. A commit, and the finishing of a
killed run's, holds an exclusive ``flock`` on each directory it renames into, so that two runs
writing one directory put their files in place one after the other, never interleaved.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import json
import os
import re
import signal
import stat
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from ..errors import OutputError
from ..quoting import quote_name
from .safefs import create_exclusive, creation_reason, foreign_entry, open_nofollow, own_file, sync_directory, sync_file, write_all
from .threads import deferred_signals, descriptor

#: A run id: 12 hex digits, in every name a run gives its files in an output directory.
_ID = r"[0-9a-f]{12}"
TEMP_NAME = re.compile(rf"\..*\.({_ID})(?:-[0-9]+)?\.bigshuf-(?:tmp|old)", re.DOTALL)
LOCK_NAME = re.compile(rf"\.bigshuf-({_ID})\.lock(?:\.new)?")
#: A ``--resume`` job's temporary output, named after the job (``formats.resumable``), not the run.
RESUME_TEMP_NAME = re.compile(r"\..*\.bigshuf-resume-[0-9a-f]{16}(?:-[0-9]+)?\.bigshuf-tmp", re.DOTALL)
JOURNAL_NAME = re.compile(rf"\.bigshuf-({_ID})\.commit")

#: Tests only: ``K`` or ``K:SIGNAL`` sends SIGNAL (default SIGKILL) to the run at commit step K.
TEST_KILL_VARIABLE = "BIGSHUF_TEST_KILL_AT"

#: A journal larger than this is not one bigshuf wrote (about 300 bytes a file, 10 million files).
MAX_JOURNAL = 4 << 30


def run_id_of(name: str) -> str | None:
    """The run id in a file name bigshuf gives an output directory's temporary files, else None."""
    for pattern in (TEMP_NAME, LOCK_NAME, JOURNAL_NAME):
        m = pattern.fullmatch(name)  # a whole name: '$' would also take one ending in a newline
        if m:
            return m.group(1)
    return None


def new_run_id() -> str:
    """A fresh run id, random so that no other user can predict the names a run will create."""
    return os.urandom(6).hex()


def name_max(directory: str) -> int:
    """The longest file name, in bytes, that ``directory``'s file system takes."""
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def refuse_shared_name(finals: Iterable[str], untouched: str) -> None:
    """Refuse two of a run's files bound for one name, the second replacing the first: past the
    names checked before pass 1, open-ended shards may meet. ``untouched`` says what was not done."""
    seen: set[str] = set()
    for final in finals:
        if final in seen:
            raise OutputError(f"{quote_name(final)}: two of this run's files would be written to it; {untouched}")
        seen.add(final)


def creation_error(directory: str, output: str | None, e: OSError) -> OutputError:
    """The refusal of an output whose ``directory`` takes no new file (error ``e``), naming ``output``
    if given, for the reason ``creation_reason`` gives (``-o /proc/version`` was told "No such file or directory")."""
    why = creation_reason(directory, e)
    if output is None:
        return OutputError(f"{quote_name(directory)}: cannot create a file: {why}")
    return OutputError(f"{quote_name(output)}: cannot create a file in {quote_name(directory)}: {why}")


def backup_name(temp: str) -> str:
    """Where the old file a temporary file replaces is kept during a commit."""
    return temp[: -len("tmp")] + "old"


class OutputFiles:
    """One run's files in its output directories: the run id, a lock per directory, the commit."""

    def __init__(self, sync: bool = True) -> None:
        self.id = new_run_id()
        self.sync = sync
        self._present: dict[str, dict[str, int]] = {}  # directory: name: inode, as the run started (``note_present``)
        self._locks: dict[str, int] = {}
        self._temps: list[str] = []  # every temporary name handed out, created or about to be
        self.committed = False  # every file is in place
        self.journaled = False  # a commit failed half-way and could not be undone: its journal needs the files
        self._step = 0
        hook = os.environ.get(TEST_KILL_VARIABLE, "")
        number, _, sig = hook.partition(":")
        self._kill_at = int(number) if number.isascii() and number.isdigit() else 0
        self._kill_with: int = getattr(signal, f"SIG{sig.upper()}", signal.SIGKILL) if sig else signal.SIGKILL

    def claim(self, directory: str, output: str | None = None) -> None:
        """Hold this run's lock in ``directory`` (once): created, locked, then given its name,
        so that a cleaner never finds it unlocked while the run lives. A failure names ``output``
        (as ``-o`` gave it) if given, else the directory."""
        if directory in self._locks:
            return
        lock = os.path.join(directory, f".bigshuf-{self.id}.lock")
        # Signals held until the lock is recorded for ``release``: a Ctrl-C between the steps left
        # the ``.lock.new`` or the ``.lock`` behind.
        with deferred_signals():
            try:
                fd = create_exclusive(lock + ".new", 0o600, os.O_RDONLY)
            except OSError as e:
                raise creation_error(directory, output, e) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.rename(lock + ".new", lock)
            except OSError as e:
                os.close(fd)
                _unlink(lock + ".new")
                raise creation_error(directory, output, e) from None
            self._locks[directory] = fd

    def temp_name(self, final: str, index: int | None = None) -> str:
        """The temporary name of ``final`` (shard ``index``) in its directory, its lock claimed;
        a long name is cut so the temporary name fits the file system."""
        directory, base = os.path.split(final)
        self.claim(directory)
        tag = self.id if index is None else f"{self.id}-{index}"
        suffix = f".{tag}.bigshuf-tmp"
        room = name_max(directory) - 1 - len(suffix)
        temp = os.path.join(directory, "." + os.fsdecode(os.fsencode(base)[:room]) + suffix)
        self._temps.append(temp)
        return temp

    def discard(self) -> None:
        """Remove every temporary file of this run not put in place, including one a signal
        caught between its creation and its sink's bookkeeping (only this user's regular files);
        none after a commit left to its journal, which the next run finishes with them."""
        if self.journaled:
            return
        for temp in self._temps:
            try:
                st = os.lstat(temp)
                if own_file(st):
                    os.unlink(temp)
            except OSError:
                pass  # gone already, or not ours to remove

    def release(self) -> None:
        """Remove this run's locks (its temporary files are gone or renamed by now), with signals held:
        a handler raising between two of them left the rest open."""
        with deferred_signals():
            for directory, fd in self._locks.items():
                try:
                    os.unlink(os.path.join(directory, f".bigshuf-{self.id}.lock"))
                except OSError:
                    pass
                os.close(fd)
            self._locks.clear()

    def step(self) -> None:
        """Count a step of a commit (the test hook may end the process here)."""
        self._step += 1
        if self._step == self._kill_at:
            os.kill(os.getpid(), self._kill_with)

    def commit(self, moves: list[tuple[str, str]], absent: Sequence[str] = ()) -> None:
        """Rename every finished, synced ``(temporary, target)`` over its target, all or none, and
        let go of the run's locks; a signal meanwhile takes effect once all that is done. Each
        ``absent`` path (the shard after a split's last) must not be there once the targets'
        directories are locked: another run may have put it there since this one checked. Where its
        directory was remembered as the run started (``note_present``: shards counted only at the
        end), the file that was there then is an earlier run's, left in place."""
        with directories_locked(os.path.dirname(final) for _, final in moves):
            ours = {os.path.realpath(final) for _, final in moves}
            for path in absent:
                if self._new_since_start(path) and os.path.realpath(path) not in ours:  # ({:.0e}: shard 11 is named as 10)
                    raise OutputError(
                        f"{quote_name(path)}: appeared while this run was writing (another run's shard?) and would be left "
                        "beside the new shards; nothing was replaced"
                    )
            with deferred_signals():
                self._commit(moves)
                self.committed = True
                self.release()

    def note_present(self, directories: Iterable[str]) -> None:
        """Remember each file in ``directories`` (their real paths) as this run starts: one there at the
        commit may be an earlier run's, where a file made or replaced since is another run's."""
        for directory in directories:
            try:
                with os.scandir(directory) as entries:
                    self._present[directory] = {entry.name: entry.inode() for entry in entries}
            except OSError:
                self._present[directory] = {}  # not there yet: anything in it at the commit is new

    def _new_since_start(self, path: str) -> bool:
        """Whether ``path`` is there and is not the file it was as this run started (``note_present``;
        in a directory not remembered, any file there is new)."""
        try:
            inode = os.lstat(path).st_ino
        except OSError:
            return False
        return self._present.get(os.path.realpath(os.path.dirname(path) or "."), {}).get(os.path.basename(path)) != inode

    def _commit(self, moves: list[tuple[str, str]]) -> None:
        refuse_shared_name((final for _, final in moves), "nothing was replaced")
        for directory in dict.fromkeys(os.path.dirname(final) or os.curdir for _, final in moves):
            if not os.access(directory, os.R_OK):
                # (mode 0333) The next run there could not find this commit's journal, were it killed,
                # and would write over its half: the journal is read back by listing the directory.
                raise OutputError(
                    f"{quote_name(directory)}: cannot commit: {os.strerror(errno.EACCES)} (this user cannot list it, so a "
                    "killed commit there could not be found again); nothing was replaced"
                )
        # Every directory the commit renames into holds the run's lock and a copy of its journal,
        # so that a killed commit is found, and shown to be this user's, from whichever of them the
        # next run tidies first (a --resume job's temporary files carry no run id to show it).
        directories = _distinct_directories(os.path.dirname(final) for _, final in moves)
        for directory in directories:
            self.claim(directory)
        journals = [os.path.join(directory, f".bigshuf-{self.id}.commit") for directory in directories]
        journal = journals[0]  # (the copy being written, for a failure that names no file)
        entries: list[dict[str, Any]] = []
        created: list[str] = []
        try:
            for temp, final in moves:
                # "target": the file the new one replaces, so a file put there after a kill is told from it.
                entries.append({"temp": temp, "final": final, "backup": backup_name(temp), "ino": os.lstat(temp).st_ino, "target": _inode(final)})
            text = json.dumps({"bigshuf_commit": 1, "files": entries}).encode()
            for copy in journals:
                journal = copy
                fd = create_exclusive(copy, 0o600, os.O_WRONLY)
                created.append(copy)
                try:
                    write_all(fd, text)
                    if self.sync:
                        sync_file(fd)
                finally:
                    os.close(fd)
                if self.sync:
                    sync_directory(os.path.dirname(copy))
        except OSError as err:
            for copy in created:
                _unlink(copy)
            raise OutputError(f"{quote_name(err.filename or journal)}: cannot commit: {err.strerror}; nothing was replaced") from None
        self.step()
        backed: list[dict[str, Any]] = []
        for entry in entries:
            why = foreign_entry(entry["final"])  # a link or device planted since the checks is never renamed over
            try:
                if why is not None:
                    raise OSError(0, why)
                os.link(entry["final"], entry["backup"], follow_symlinks=False)
            except FileNotFoundError:
                continue  # a new file: nothing to keep
            except OSError as err:
                for b in backed:
                    _unlink(b["backup"])
                for copy in journals:
                    _unlink(copy)
                raise OutputError(f"{quote_name(entry['final'])}: cannot be replaced: {err.strerror}; nothing was replaced") from None
            entry["kept"] = True
            backed.append(entry)
            self.step()
        moved: list[dict[str, Any]] = []
        for entry in entries:
            try:
                os.rename(entry["temp"], entry["final"])
            except OSError as err:
                self._roll_back(moved, backed, journals, f"{entry['final']}: {err.strerror}")
            moved.append(entry)
            self.step()
        if self.sync:
            for directory in dict.fromkeys(os.path.dirname(entry["final"]) for entry in entries):
                sync_directory(directory)
            self.step()
        for entry in backed:
            _unlink(entry["backup"])
            self.step()
        for copy in journals:
            _unlink(copy)
        self.step()

    def _roll_back(self, moved: list[dict[str, Any]], backed: list[dict[str, Any]], journals: list[str], why: str) -> NoReturn:
        """A rename failed: put back the old files of those already renamed (``moved``) from their
        backups (made for ``backed``), remove the other backups, then report ``why``."""
        try:
            for e in reversed(moved):
                if e.get("kept"):
                    os.rename(e["backup"], e["final"])
                else:
                    os.unlink(e["final"])
        except OSError as err:
            self.journaled = True
            raise CommitInterrupted(
                f"{why}; putting the old files back failed too ({quote_name(e['final'])}: {err.strerror}): "
                f"{quote_name(journals[0])} records the commit, and the next run writing there finishes or undoes it"
            ) from None
        for e in backed:
            _unlink(e["backup"])
        for copy in journals:
            _unlink(copy)
        raise OutputError(f"{why}; the old files were put back")


class CommitInterrupted(OutputError):
    """A commit failed half-way and could not be undone: its journal and temporary files stay."""


#: Seconds a commit waits for another's lock on a directory (a commit holds it for milliseconds)
#: before it goes on without it: a lock held for longer is not a commit's (``flock DIR command``).
LOCK_WAIT = 10.0


@contextmanager
def directories_locked(directories: Iterable[str]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on each of ``directories``, waiting for any other commit there
    to end. They are locked in the order of their inodes, each once whatever its name, so two runs
    never wait on each other. A file system that cannot lock a directory is written unlocked, as
    is one whose lock stays taken past ``LOCK_WAIT`` (a caller's own, never released meanwhile)."""
    held: dict[tuple[int, int], tuple[int, str]] = {}
    try:
        for directory in dict.fromkeys(d or os.curdir for d in directories):
            try:
                fd = descriptor(functools.partial(os.open, directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            except OSError:
                continue  # the rename into it fails and says why
            try:
                st = os.fstat(fd)
            except BaseException:  # (a signal handler's exception: not held yet, so closed here)
                os.close(fd)
                raise
            if (st.st_dev, st.st_ino) in held:
                os.close(fd)  # the same directory by another name
            else:
                held[st.st_dev, st.st_ino] = fd, directory
        deadline = time.monotonic() + LOCK_WAIT
        for key in sorted(held):
            fd, directory = held[key]
            while not _locked(fd):
                if time.monotonic() >= deadline:
                    print(
                        f"bigshuf: note: {quote_name(directory)}: locked by another process for over {LOCK_WAIT:g} s; "
                        "files put in place there without waiting", file=sys.stderr,
                    )
                    break
                time.sleep(0.005)
        yield
    finally:
        for fd, _directory in held.values():
            os.close(fd)


def _distinct_directories(directories: Iterable[str]) -> list[str]:
    """``directories`` in order, each once whatever its name (a directory that cannot be reached is
    kept: its rename fails and says why)."""
    seen: set[tuple[int, int]] = set()
    out: list[str] = []
    for directory in dict.fromkeys(directories):
        try:
            st = os.stat(directory or os.curdir)
        except OSError:
            out.append(directory)
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            out.append(directory)
    return out


def _locked(fd: int) -> bool:
    """Take ``fd``'s exclusive flock if it is free (True also where the file system cannot lock it:
    NFS takes a directory's flock as a write lock, which a read-only descriptor cannot hold)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        pass
    return True


def _unlink(path: str) -> None:
    """Remove ``path`` if it is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _read_journal(path: str) -> list[dict[str, Any]] | None:
    """The entries of a journal this user's bigshuf wrote, validated; an empty list if it was cut
    short (its run was killed writing it, before touching any file); None if it is not one.

    Owning the file is not enough: another user can rename a file this user's run wrote (with
    text they chose) into a directory they own. So every file an entry names must carry the
    journal's run id, beside its target, and every target lie in the journal's directory or in
    one holding a file of that run's, which no other user can place where this user's files are.
    """
    fd = open_nofollow(path)
    try:
        st = os.fstat(fd)
        if not own_file(st) or not stat.S_ISREG(st.st_mode) or st.st_size > MAX_JOURNAL:
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            text = f.read()
    finally:
        os.close(fd)
    home, name = os.path.split(path)
    journal_id = JOURNAL_NAME.fullmatch(name)
    if journal_id is None:
        return None
    run = journal_id.group(1)
    try:
        data = json.loads(text)
    except RecursionError:  # nested past the parser's depth: not a journal bigshuf wrote
        return None
    except ValueError:
        # Cut short: a prefix of what bigshuf writes. Nothing is renamed before it is whole,
        # unless it was cut afterwards (a power loss under --no-sync): then a backup tells.
        if not b'{"bigshuf_commit": 1, "files": ['.startswith(text[:32]):
            return None
        if _backups_of(home, run):
            raise _CutAfterStart
        return []
    files = data.get("files") if isinstance(data, dict) and data.get("bigshuf_commit") == 1 else None
    if not isinstance(files, list):
        return None
    homes: dict[str, bool] = {}
    for e in files:
        if not (
            isinstance(e, dict) and all(isinstance(e.get(k), str) for k in ("temp", "final", "backup"))
            and isinstance(e.get("ino"), int) and os.path.isabs(e["final"])
            and (e.get("target") is None or (isinstance(e["target"], int) and not isinstance(e["target"], bool)))
        ):
            return None
        directory, temp = os.path.split(e["temp"])
        named = TEMP_NAME.fullmatch(temp)
        ours = (named is not None and named.group(1) == run) or RESUME_TEMP_NAME.fullmatch(temp) is not None
        # Only this run's (or its --resume job's) temporary files beside their own target are ever renamed or removed.
        if (
            directory != os.path.dirname(e["final"]) or not ours
            or not temp.endswith(".bigshuf-tmp") or e["backup"] != backup_name(e["temp"])
        ):
            return None
        if directory not in homes:
            homes[directory] = _same_directory(directory, home) or _holds_run_files(directory, run, name)
    untraced = next((d for d, traced in homes.items() if not traced), None)
    if untraced is not None:
        raise _Untraced(untraced)
    return files


class _Untraced(Exception):
    """A journal names a directory that holds no file of its run: not even its copy of the journal,
    which every directory of a commit that began holds until the commit has ended. So the run was
    killed while writing its copies (or removing them, once done), and that directory was tidied
    since: nothing is left to do, and nothing is done but removing the journal."""


class _CutAfterStart(Exception):
    """A journal cut short although its commit had begun: which files moved is lost with it."""


def _backups_of(directory: str, run: str) -> bool:
    """Whether ``directory`` holds a backup (``.bigshuf-old``) made by run ``run``'s commit."""
    names = _run_files(directory, run)
    return names is None or any(name.endswith(".bigshuf-old") for name in names)  # (unreadable: not taken as cut short)


def _same_directory(a: str, b: str) -> bool:
    """Whether the paths ``a`` and ``b`` name one directory."""
    try:
        x, y = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (x.st_dev, x.st_ino) == (y.st_dev, y.st_ino)


def _holds_run_files(directory: str, run: str, journal: str) -> bool:
    """Whether ``directory`` holds a file of run ``run``'s, a regular file of this user's: its lock
    (a run claims every directory it writes to, and a killed run leaves its locks), its copy of the
    commit's ``journal`` or, those gone with that directory tidied first, a temporary file or backup
    of its commit."""
    return any(_own_regular(os.path.join(directory, name)) for name in [journal, *(_run_files(directory, run) or ())])


def _run_files(directory: str, run: str) -> list[str] | None:
    """The names in ``directory`` of run ``run``'s files, its journal aside; None if it cannot be read."""
    try:
        names = os.listdir(directory)
    except OSError:
        return None
    return [name for name in names if run_id_of(name) == run and not JOURNAL_NAME.fullmatch(name)]


def _own_regular(path: str) -> bool:
    """Whether ``path`` (not followed) is a regular file of this user's."""
    try:
        return own_file(os.lstat(path))
    except OSError:
        return False


def _inode(path: str) -> int | None:
    """The inode of the regular file at ``path`` (not followed), or None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_ino if stat.S_ISREG(st.st_mode) else None


def _untouched(entry: dict[str, Any]) -> bool:
    """Whether a journal entry's target is still the file the commit was to replace (``target``), or
    gone: not a file put there since, nor a copy. A journal of an older bigshuf names no target: its
    backup's file stands for it (a target killed before it was backed up cannot be told from another)."""
    final = _inode(entry["final"])
    if final is None:
        return True
    if "target" in entry:
        return bool(final == entry["target"])
    backup = _inode(entry["backup"])
    return backup is None or backup == final


def _known(entry: dict[str, Any]) -> bool:
    """Whether a journal entry's files are as its commit left them, so old can be told from new: its
    new file still a temporary one or in place (its ``ino``), or its target untouched. Not so once
    the files were copied (new inode numbers)."""
    return entry["ino"] in (_inode(entry["temp"]), _inode(entry["final"])) or _untouched(entry)


def recover(journal: str) -> tuple[str, list[str]]:
    """Finish, or else undo, the commit a killed run left in ``journal`` (its lock is held by the
    caller); return what was done, in words, and the targets it put in place or back (none if
    it did nothing to them)."""
    try:
        entries = _read_journal(journal)
    except _CutAfterStart:
        return (
            f"{quote_name(journal)}: a killed run's commit journal, cut short after its commit began; left alone "
            f"with the old files it kept (.bigshuf-old beside it): put them back by hand if the new ones are not whole"
        ), []
    except _Untraced as untraced:
        os.unlink(journal)
        return (
            f"removed {quote_name(journal)}, a killed run's commit journal whose commit had not begun or had ended "
            f"(nothing of that run is left in {quote_name(str(untraced))})"
        ), []
    if entries is None:
        return f"{quote_name(journal)}: not a commit journal of this user's bigshuf; left alone", []
    if not entries:
        os.unlink(journal)
        return f"removed {quote_name(journal)}, cut short by a kill before the commit began", []
    # Under the lock of every directory it renames into, as a commit is made.
    with directories_locked([os.path.dirname(journal), *(os.path.dirname(e["final"]) for e in entries)]):
        forward = all(_inode(e["final"]) == e["ino"] or (_inode(e["temp"]) == e["ino"] and _untouched(e)) for e in entries)
        if not forward and not all(_known(e) for e in entries):
            kept = any(_inode(e["backup"]) is not None for e in entries)
            return (
                f"{quote_name(journal)}: a killed run's commit journal whose files are not the ones it recorded (copied "
                "or restored since?); left alone with its files"
                + (" and the old files it kept (.bigshuf-old beside them): put them back by hand where the new ones are not wanted" if kept else "")
            ), []
        if forward:
            for e in entries:
                if _inode(e["temp"]) == e["ino"]:
                    os.rename(e["temp"], e["final"])
            for directory in dict.fromkeys(os.path.dirname(e["final"]) for e in entries):
                sync_directory(directory)
            done = f"finished the commit of {len(entries)} file(s) that a killed run began"
        else:
            for e in entries:
                if _inode(e["final"]) == e["ino"]:
                    if _inode(e["backup"]) is not None:
                        os.rename(e["backup"], e["final"])
                    else:
                        os.unlink(e["final"])
                if _inode(e["temp"]) == e["ino"]:
                    os.unlink(e["temp"])
            done = f"undid the commit of {len(entries)} file(s) that a killed run began (a new file was missing, or a target replaced since)"
        for e in entries:
            # Forward, every backup is an old file replaced; undone, one left is a second name of its target.
            if _inode(e["backup"]) is not None and (forward or _inode(e["backup"]) == _inode(e["final"])):
                os.unlink(e["backup"])
        home, name = os.path.split(journal)
        for directory in dict.fromkeys(os.path.dirname(e["final"]) for e in entries):
            copy = os.path.join(directory, name)
            if not _same_directory(directory, home) and _own_regular(copy):
                os.unlink(copy)  # the same journal's copy there (its directory was shown to be the run's)
        os.unlink(journal)
    return f"{done} ({quote_name(journal)})", [e["final"] for e in entries]
