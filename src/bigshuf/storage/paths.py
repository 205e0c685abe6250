"""Where an output name lands: the file the kernel would open for it, found before anything is written.

``os.path.realpath`` and ``abspath`` read ``..`` as text where a part is missing or a link
(``missing/../x`` is not ``x`` to open(2), and ``link/..`` is the parent of the link's
target), so a commit renaming onto their answer could replace a file GNU shuf never touches.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat

#: Symbolic links Linux follows in one path before ELOOP (MAXSYMLINKS).
MOST_LINKS = 40


def real_directory(name: str) -> str:
    """The real path directory ``name`` has once bigshuf has made its missing parts (as ``mkdir -p``
    would): each existing part resolved as the kernel resolves it (links followed, ``..`` the parent
    of where a link leads), each missing one a directory to be made, out of which a later ``..``
    comes back. Raises OSError as stat(2) does on a part that exists but cannot be passed through."""
    current = os.path.realpath(os.sep if name.startswith(os.sep) else os.curdir)
    made: list[str] = []  # directories still to be made, under ``current``
    for part in name.split(os.sep):
        if part in ("", os.curdir):
            continue
        if part == os.pardir:
            if made:
                made.pop()
            else:
                current = os.path.dirname(current)  # ``current`` holds no link: its parent is textual
            continue
        if made:
            made.append(part)
            continue
        step = os.path.join(current, part)
        try:
            os.stat(os.path.join(step, ""))  # the kernel's lookup: a searchable directory, links followed
        except FileNotFoundError:
            if os.path.islink(step):  # a link to a directory not there (yet: one made earlier in this name may be it)
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), step) from None
            made.append(part)
            continue
        current = os.path.realpath(step) if os.path.islink(step) else step  # (``current`` is real already)
    return os.path.join(current, *made)


def generated_path(name: str, directories: dict[str, str] | None = None) -> str:
    """Where a file whose name bigshuf makes (a shard, a split, the manifest) is put: its directory's
    real path joined to its own name, so a symlink at that name is never written through.
    ``directories`` keeps the directories resolved so far, for many names checked at one moment."""
    head, tail = os.path.split(name)
    if directories is None:
        return os.path.join(real_directory(head or os.curdir), tail)
    if head not in directories:
        directories[head] = real_directory(head or os.curdir)
    return os.path.join(directories[head], tail)


def followed_path(name: str) -> str:
    """The file open(2) with O_CREAT writes for ``-o name`` (as GNU shuf does): ``name``'s existing
    directory resolved as the kernel resolves it, then each symbolic link at the last part followed.
    Raises OSError with open(2)'s error where the kernel would refuse a directory on the way."""
    for _ in range(MOST_LINKS + 1):
        head, tail = os.path.split(name)
        head = head or os.curdir
        os.stat(os.path.join(head, ""))  # ENOENT for missing/.., ENOTDIR for file/.., as open(2)
        path = os.path.join(os.path.realpath(head), tail)
        try:
            text = os.readlink(path)
        except OSError:
            return path  # not a link: the file itself, or a new one
        name = os.path.join(os.path.dirname(path), text)
    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), name)


def own_descriptor(name: str) -> int | None:
    """The descriptor N of this process that ``-o name`` reaches when it leads, through symbolic
    links (``/dev/stdout``, ``/dev/fd/N``), to ``/proc/self/fd/N`` and N is open for writing on a
    regular file that has a name (a deleted one is reopened and written in place, as GNU shuf does);
    else None. Such an output is written through N at its offset, as standard output is, rather than
    replaced by rename: the shell holding N (``{ ...; bigshuf -o /dev/stdout; echo done; } > log``)
    writes on after it into the same file, not into a deleted one."""
    ours = _OWN_FD_DIRECTORY.fullmatch
    for _ in range(MOST_LINKS + 1):
        head, tail = os.path.split(name)
        try:
            path = os.path.join(os.path.realpath(head or os.curdir), tail)
        except (OSError, ValueError):
            return None
        found = ours(os.path.dirname(path))
        if found is not None and int(found.group(1)) == os.getpid() and tail.isdigit() and tail.isascii():
            try:
                return int(tail) if _named_file_for_writing(int(tail)) else None
            except (OSError, OverflowError):
                return None
        try:
            text = os.readlink(path)
        except (OSError, ValueError):
            return None
        name = os.path.join(os.path.dirname(path), text)
    return None


def _named_file_for_writing(fd: int) -> bool:
    """Whether descriptor ``fd`` is open for writing (not O_DIRECT) on a regular file with a name (links left)."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink == 0:
        return False
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    # O_DIRECT takes only aligned writes: such a file is replaced, as before (and as GNU shuf reopens it).
    return flags & os.O_ACCMODE != os.O_RDONLY and not flags & getattr(os, "O_DIRECT", 0)


#: A process's directory of descriptors as ``realpath`` gives it (``/proc/self`` resolved to its pid).
_OWN_FD_DIRECTORY = re.compile(r"/proc/([0-9]+)(?:/task/[0-9]+)?/fd")


class LiteralName(str):
    """A file's name that is never read as a glob pattern: one a ``--files-from`` list gives, or a
    ``pathlib.Path`` (a ``str`` operand may be a pattern, as in Hugging Face ``data_files``)."""
