"""File-system primitives that never follow a planted symlink and make data durable before it counts.

Every temporary or output file bigshuf creates goes through :func:`create_exclusive`
(``O_CREAT|O_EXCL|O_NOFOLLOW``: a name that already exists, link or not, is never opened),
and every rename that publishes data is preceded by :func:`sync_file` and followed by
:func:`sync_directory`, so a machine crash leaves either the old file or the whole new one.
"""

from __future__ import annotations

import errno
import os
import stat

from .threads import descriptor

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def create_exclusive(path: str, mode: int = 0o600, flags: int = os.O_RDWR) -> int:
    """A new file at ``path`` opened with ``flags``; fails (FileExistsError) if anything is there,
    a symlink included. ``mode`` is applied with ``fchmod`` on the descriptor, never by path."""
    fd = descriptor(lambda: os.open(path, flags | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode))
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to descriptor ``fd``, however short each ``write`` comes back."""
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


#: Why a file cannot be created in a directory of procfs, whose O_CREAT fails with ENOENT (not a missing name).
NO_NEW_FILES = "its file system does not allow new files"

_file_systems: dict[tuple[int, int], str] | None = None


def creation_reason(directory: str, e: OSError) -> str:
    """Why a file or directory could not be created in ``directory`` (error ``e``): ENOENT from a
    directory that is there is a file system that creates none (``/proc``), not a missing name."""
    if e.errno == errno.ENOENT and os.path.isdir(directory):
        return NO_NEW_FILES
    return e.strerror or str(e)


def file_system(st: os.stat_result) -> str:
    """The type of the file system of the file of status ``st`` ("proc", "ext4"), by its device's
    entry in ``/proc/self/mountinfo``, read once; "" where there is none."""
    global _file_systems
    if _file_systems is None:
        _file_systems = {}
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
                for line in f:
                    fields, _, rest = line.partition(" - ")
                    major, _, minor = (fields.split()[2:3] or [""])[0].partition(":")
                    if major.isdigit() and minor.isdigit() and rest:
                        _file_systems[(int(major), int(minor))] = rest.split()[0]
        except OSError:
            pass
    return _file_systems.get((os.major(st.st_dev), os.minor(st.st_dev)), "")


def creation_problem(directory: str) -> str | None:
    """Why a file could not be created in ``directory`` (a read-only file system, no permission, one
    that creates no files: procfs, and sysfs, which refuses with EACCES), found without creating one
    (``--dry-run``); None if nothing says it could not."""
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return os.strerror(errno.EROFS)
        kind = file_system(os.stat(directory))
    except OSError as e:
        return e.strerror
    if kind == "proc":
        return NO_NEW_FILES
    if kind == "sysfs":
        return os.strerror(errno.EACCES)
    effective = os.access in os.supports_effective_ids  # as the process creates files: its effective ids
    return None if os.access(directory, os.W_OK | os.X_OK, effective_ids=effective) else os.strerror(errno.EACCES)


def open_nofollow(path: str, flags: int = os.O_RDONLY) -> int:
    """An existing file opened without following a symlink at its last component (ELOOP if it is
    one), nor waiting for a writer if it is a FIFO planted there (O_NONBLOCK: no effect on a regular
    file); the caller refuses what is not a regular file."""
    return descriptor(lambda: os.open(path, flags | os.O_NONBLOCK | _NOFOLLOW | _CLOEXEC))


def foreign_entry(path: str) -> str | None:
    """Why what stands at ``path`` may not be replaced by a file bigshuf writes (a symbolic link, a
    device, a FIFO...), or None if nothing is there or it is a regular file."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None  # nothing there (or nothing this user can see): creating it is checked later
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if stat.S_ISDIR(mode):
        return os.strerror(errno.EISDIR)
    return "is not a regular file (a device, FIFO or socket)"


def written_in_place(st: os.stat_result) -> bool:
    """Whether ``-o`` writes into this file as it is, rather than renaming a new one over it: a
    device, FIFO or socket, or a deleted file reached through ``/proc/PID/fd`` (a memfd, an
    unlinked file), which has no name left to rename onto."""
    if stat.S_ISDIR(st.st_mode):
        return False
    return not stat.S_ISREG(st.st_mode) or st.st_nlink == 0


def current_umask() -> int:
    """The process's umask, read from ``/proc/self/status`` (Linux 4.7 and later): reading it with
    ``os.umask`` sets it to something else for a moment, in which another thread of a library
    caller's program creating a file would get that mode. Elsewhere, ``os.umask`` it is."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o077)  # the narrowest mode meanwhile, never a wider one
    os.umask(umask)
    return umask


def take_attributes(fd: int, target: str) -> None:
    """Give the new file ``fd`` what the ``target`` it will replace keeps when shuf writes it in
    place: its permission bits (less set-user-ID and, if group-executable, set-group-ID, which the
    kernel clears on a write by a process that is not privileged), group (and, for root, owner),
    access ACL and user extended attributes; a new target's mode as ``open`` would make it (0666
    less the umask). Not kept: ``chattr`` flags, and other namespaces' attributes (SELinux labels)."""
    try:
        st = os.stat(target)
        mode = st.st_mode & 0o7777
        if os.geteuid() != 0:
            mode &= ~stat.S_ISUID
            if mode & stat.S_IXGRP:
                mode &= ~stat.S_ISGID
        try:
            os.fchown(fd, st.st_uid if os.geteuid() == 0 else -1, st.st_gid)
        except PermissionError:
            pass  # a group this user is not in: the new file keeps this user's
    except FileNotFoundError:
        _as_created(fd, target)
        return
    os.fchmod(fd, mode)
    _take_extended_attributes(fd, target, mode)


#: The access ACL's attribute: with it, a mode's group bits are the ACL's mask, not the group's own.
ACCESS_ACL = "system.posix_acl_access"

#: A directory's default ACL's attribute: a file created in it takes it as its access ACL.
DEFAULT_ACL = "system.posix_acl_default"

#: ACL entry tags (``linux/posix_acl.h``) whose permissions the mode a file is created with limits.
_OWNER, _GROUP_OWNER, _MASK, _OTHERS = 0x01, 0x04, 0x10, 0x20


def _as_created(fd: int, target: str) -> None:
    """Give the new file ``fd`` the mode, and ACL, that ``open(target, O_CREAT, 0o666)`` would: its
    directory's default ACL limited to read and write where it has one (the umask does not apply
    then), else 0666 less the umask. (The temporary file, created 0600, took the ACL at 0600.)"""
    try:
        default = os.getxattr(os.path.dirname(target) or ".", DEFAULT_ACL)
    except OSError:
        default = b""  # none, or a file system without ACLs
    acl = _created_acl(default)
    if acl is not None:
        try:
            os.setxattr(fd, ACCESS_ACL, acl)  # (the kernel sets the mode's bits from it)
            return
        except OSError:
            pass
    os.fchmod(fd, 0o666 & ~current_umask())


def _created_acl(default: bytes) -> bytes | None:
    """The access ACL a file created with mode 0666 takes from the ``default`` ACL (the kernel's
    xattr form: a version, then tag, permissions and id of each entry), as the kernel masks it
    (``posix_acl_create_masq``): the owner's, others' and the mask's (or, with no mask, the owning
    group's) permissions less execute; None if ``default`` is empty or not an ACL of that form."""
    if len(default) < 4 or (len(default) - 4) % 8 or int.from_bytes(default[:4], "little") != 2:
        return None
    entries = [bytearray(default[i : i + 8]) for i in range(4, len(default), 8)]
    tags = [int.from_bytes(e[:2], "little") for e in entries]
    limited = {_OWNER, _OTHERS, _MASK if _MASK in tags else _GROUP_OWNER}
    for entry, tag in zip(entries, tags):
        if tag in limited:
            entry[2:4] = (int.from_bytes(entry[2:4], "little") & 0o6).to_bytes(2, "little")
    return default[:4] + b"".join(entries)


def _take_extended_attributes(fd: int, target: str, mode: int) -> None:
    """Copy ``target``'s access ACL and ``user.`` attributes to ``fd`` (as far as the file system
    lets: one it does not take is skipped), and drop an access ACL ``fd`` took from its directory's
    default ACL where ``target`` has none. An ACL that cannot be copied leaves the new file no group
    access: its mode's group bits were the ACL's mask, wider than the group's own may be."""
    try:
        names = os.listxattr(target)
    except OSError:
        return  # no extended attributes here (or the target went)
    if ACCESS_ACL not in names:  # one the new file took from its directory's default ACL would widen FILE's access
        try:
            os.removexattr(fd, ACCESS_ACL)
            os.fchmod(fd, mode)
        except OSError:
            pass  # (none to remove)
    for name in names:
        if name != ACCESS_ACL and not name.startswith("user."):
            continue
        try:
            os.setxattr(fd, name, os.getxattr(target, name))
        except OSError:
            if name == ACCESS_ACL:
                os.fchmod(fd, mode & ~0o070)


def sync_file(fd: int) -> None:
    """Flush a file's data and metadata to stable storage (a no-op where the file cannot be synced)."""
    try:
        os.fsync(fd)
    except OSError as e:
        # Pipes, sockets and some character devices cannot be synced; that is not a failure.
        if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise


def sync_directory(path: str) -> None:
    """Make the entries of directory ``path`` (a rename, a create, an unlink) durable.

    A directory one may write but not read (mode 0333) cannot be opened to sync: every file
    system is synced instead (``sync``), rather than failing a run whose output is in place."""
    try:
        fd = descriptor(lambda: os.open(path or ".", os.O_RDONLY | _DIRECTORY | _CLOEXEC))
    except PermissionError:
        os.sync()
        return
    try:
        sync_file(fd)
    finally:
        os.close(fd)


def make_private_directory(path: str) -> None:
    """Create directory ``path`` with mode 0700 (FileExistsError if anything is there)."""
    os.mkdir(path, 0o700)
    fd = descriptor(lambda: os.open(path, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC))
    try:
        os.fchmod(fd, 0o700)  # a umask never widens the mode, but an odd one may narrow it
    finally:
        os.close(fd)


def make_private_directories(path: str) -> None:
    """Create directory ``path`` and its missing parents, each with mode 0700 (``os.makedirs`` gives
    the parents the umask's mode, 0755); one another process made meanwhile is taken as it is."""
    missing = []
    while path and not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for directory in reversed(missing):
        try:
            make_private_directory(directory)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise


def own_file(st: os.stat_result) -> bool:
    """Whether ``st`` (of ``lstat`` or ``fstat``) is a regular file this user owns: one bigshuf may
    have made, and so may reuse or remove; a link or another user's file never is."""
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()


def check_private_directory(path: str) -> str | None:
    """Why an existing ``path`` is not a directory this user alone owns and controls, or None if it is."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, not by this user"
    if st.st_mode & 0o077:
        return f"is accessible to other users (mode {st.st_mode & 0o777:o})"
    return None
