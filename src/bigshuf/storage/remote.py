"""Files named by fsspec URLs (``s3://``, ``gs://``, ``memory://``, ``file://``) or local paths.

The Dask engine's tasks run on other machines, so every input, temporary object and output
is named by a string that any worker can open; these helpers turn such names into an fsspec
filesystem, expand globs, read byte ranges and write whole objects atomically.
"""

from __future__ import annotations

import errno
import glob
import os
import posixpath
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..errors import BigShufError, InputError, OutputError, UsageError, interruption, option
from ..quoting import quote_name
from .safefs import create_exclusive, make_private_directories
from .sources import changed, resized

#: Protocols whose stores publish an object only when its upload completes, so a plain write
#: is already all-or-nothing; elsewhere objects are written under a temporary name and moved.
ATOMIC_PUT = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "az", "abfss"})

#: Bytes read from the start of every input to recognise a compressed one (``codecs.detect``).
HEAD_BYTES = 16


def is_url(name: str) -> bool:
    """Whether ``name`` carries a protocol (``s3://...``) rather than being a local path."""
    return "://" in name


def is_remote(name: str) -> bool:
    """Whether ``name`` is read through fsspec: a URL that is not also a local path."""
    return is_url(name) and not os.path.exists(name)


def canonical(name: str) -> str:
    """The name every worker can open: URLs as given, local paths made absolute."""
    return name if is_url(name) else os.path.abspath(name)


def filesystem(name: str) -> tuple[Any, str]:
    """The fsspec filesystem and the path within it for a URL or local path (a path as it is: fsspec
    would read ``x::y.txt`` as a chain of two URLs)."""
    import fsspec.core

    if not is_url(name):
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem(), os.path.abspath(name)
    try:
        fs, path = fsspec.core.url_to_fs(name)
    except ValueError as e:
        raise UsageError(f"{quote_name(name)}: {e}") from None
    except ImportError as e:
        raise UsageError(f"{quote_name(name)}: this protocol needs a package that is not installed: {e}") from None
    return fs, path


def local_output(name: str | None) -> str | None:
    """An output named by a ``file://`` URL as the local path it is, so that it is written, checked and
    committed as one (written in place through fsspec, it went into a directory of its name, beside
    stale shards, or failed at the end for a missing directory); other names as given."""
    if name is not None and name.startswith("file:///"):
        return name[len("file://") :]
    return name


def join(base: str, *parts: str) -> str:
    """``base/part/...`` for a URL or a local path."""
    return posixpath.join(base, *parts) if is_url(base) else os.path.join(base, *parts)


def _protocol(fs: Any) -> str:
    """The filesystem's main protocol name (fsspec gives a string or a tuple of aliases)."""
    return str(fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0])


def _local(fs: Any) -> bool:
    return _protocol(fs) in ("file", "local")


def local_paths(name: str) -> list[str]:
    """The local files an input name stands for: a path itself; a ``file://`` URL's path (a glob
    expanded); nothing for a URL of another store (or when fsspec is not installed)."""
    if not is_url(name):
        return [name]
    try:
        fs, path = filesystem(name)
    except (UsageError, ImportError):
        return []
    if not _local(fs):
        return []
    if any(c in path for c in "*?[") and not fs.exists(path):
        return sorted(fs.glob(path))
    return [path]


@dataclass(frozen=True)
class RemoteFile:
    """One input: its name as workers open it, its size on storage and its codec (None: plain)."""

    name: str
    size: int
    codec: str | None


def file_info(fs: Any, path: str, shown: str, of: str = "") -> dict[str, Any]:
    """``fs.info(path)``; a missing or unreadable file is an InputError naming ``shown`` (``of``: whose file it is)."""
    try:
        info: dict[str, Any] = fs.info(path)
    except FileNotFoundError:
        raise InputError(f"{quote_name(shown)}: No such file or directory{of}") from None
    except OSError as e:
        raise InputError(f"{quote_name(shown)}: {e.strerror or e}{of}") from None
    return info


def stamp(name: str) -> tuple[int, int] | None:
    """What says a local input file is unchanged: its size and modification time (``(-1, 0)`` if it is
    gone); None for a URL's object, which a store replaces whole (and asking every one again costs a
    request each)."""
    if is_url(name):
        return None
    try:
        st = os.stat(name)
    except OSError:
        return -1, 0
    return st.st_size, st.st_mtime_ns


def changed_input(files: Sequence[RemoteFile], before: Sequence[tuple[int, int] | None], shown: Sequence[str]) -> InputError | None:
    """The refusal of the first of the local ``files`` (named ``shown`` in messages) that is not as it
    was when listed (its size then) and stamped (``before``); None if none changed."""
    for f, then, name in zip(files, before, shown):
        now = stamp(f.name)
        if then is None or now is None:
            continue
        if now != then or now[0] != f.size:
            return changed(quote_name(name), resized(f.size, now[0]))
    return None


def regular_file_size(url: str, shown: str, of: str = "") -> int:
    """The size of the regular file (object) ``url``, named ``shown`` in messages (``of``: whose it is)."""
    info = file_info(*filesystem(url), shown, of)
    if info.get("type") != "file":
        raise InputError(f"{quote_name(shown)}: not a regular file{of}")
    return int(info["size"])


def expand_inputs(names: list[str]) -> list[RemoteFile]:
    """Every input file, globs (``s3://bucket/in/*.zst``) expanded in sorted order, with sizes and codecs."""
    from .codecs import detect

    found: list[tuple[str, Any, str, int, str]] = []  # URL, filesystem, path in it, size, name shown
    for name in names:
        if name == "-":
            raise UsageError(f"{option('dask')} cannot read standard input; name input files or URLs")
        fs, path = filesystem(canonical(name))
        matches = [path]
        if any(c in path for c in "*?[") and not fs.exists(path):
            matches = sorted(fs.glob(path))
            if not matches:
                raise InputError(f"{quote_name(name)}: No such file or directory")
        for match in matches:
            info = file_info(fs, match, name)
            if info.get("type") == "directory":
                raise InputError(f"{quote_name(name)}: read error: Is a directory")
            if info.get("type") != "file":  # a FIFO, a device, /dev/stdin: no byte ranges to hand to tasks
                raise InputError(f"{quote_name(name)}: not a regular file: {option('dask')} reads files and URLs by byte ranges")
            url = match if _local(fs) else fs.unstrip_protocol(match)
            found.append((url, fs, match, int(info["size"]), name if match == path else url))
    # Read every head in one batch per filesystem: concurrent requests on object stores.
    heads: dict[str, bytes] = {}
    by_fs: dict[int, tuple[Any, list[tuple[str, str, str]]]] = {}
    for url, fs, path, _size, shown in found:
        by_fs.setdefault(id(fs), (fs, []))[1].append((url, path, shown))
    for fs, items in by_fs.values():
        paths = [p for _, p, _ in items]
        try:
            blobs = fs.cat_ranges(paths, [0] * len(paths), [HEAD_BYTES] * len(paths))
        except OSError as e:
            raise InputError(f"{items[0][2]}: {e.strerror or e}") from None
        heads.update((url, bytes(_range_read(shown, blob))) for (url, _, shown), blob in zip(items, blobs))
    return [RemoteFile(url, size, detect(heads[url])) for url, _fs, _path, size, _shown in found]


def read_exactly(name: str, start: int, buf: memoryview) -> None:
    """Fill ``buf`` with the bytes of ``name`` from ``start``; a short file is an input error."""
    fs, path = filesystem(name)
    try:
        with fs.open(path, "rb", cache_type="none") as f:
            f.seek(start)
            got = 0
            while got < len(buf):
                n = f.readinto(buf[got:])
                if not n:  # shorter than when it was planned: say what is known of its size now
                    raise changed(quote_name(name), f"at most {start + got} bytes now, {start + len(buf)} needed")
                got += n
    except FileNotFoundError:
        raise InputError(f"{quote_name(name)}: No such file or directory") from None
    except OSError as e:
        raise InputError(f"{quote_name(name)}: read error: {e.strerror or e}") from None


def read_ranges(ranges: list[tuple[str, int, int]]) -> list[bytes]:
    """The bytes ``[lo, hi)`` of each ``(name, lo, hi)``, fetched concurrently where the store allows."""
    if not ranges:
        return []
    fs, _ = filesystem(ranges[0][0])
    paths = [filesystem(name)[1] for name, _, _ in ranges]
    try:
        blobs = fs.cat_ranges(paths, [lo for _, lo, _ in ranges], [hi for _, _, hi in ranges])
    except OSError as e:
        raise InputError(f"{ranges[0][0]}: temporary data unreadable: {e.strerror or e}") from None
    return [bytes(_range_read(name, b, "temporary data unreadable: ")) for (name, _, _), b in zip(ranges, blobs)]


def _range_read(name: str, blob: object, what: str = "") -> bytes:
    """A range fsspec's ``cat_ranges`` read of ``name``: it hands back a failure (a file this user
    may not read, one that shrank) in the range's place rather than raising it."""
    if isinstance(blob, BaseException):
        why = blob.strerror if isinstance(blob, OSError) and blob.strerror else str(blob) or type(blob).__name__
        raise InputError(f"{quote_name(name)}: {what}{why}")
    assert isinstance(blob, (bytes, bytearray, memoryview))
    return bytes(blob)


def open_input(name: str) -> BinaryIO:
    """A binary stream of the whole of ``name``."""
    fs, path = filesystem(name)
    try:
        return fs.open(path, "rb")  # type: ignore[no-any-return]
    except FileNotFoundError:
        raise InputError(f"{quote_name(name)}: No such file or directory") from None
    except OSError as e:
        raise InputError(f"{quote_name(name)}: {e.strerror or e}") from None


def write_whole(name: str, write: Callable[[BinaryIO], None]) -> None:
    """Create or replace the object ``name`` with what ``write`` writes, all or nothing.

    Object stores publish an upload only when it completes (a failed one is discarded);
    other filesystems get a temporary name renamed over the target. Readers therefore see
    the old object, the new one or none, never a part, and a retried task just writes again.
    """
    fs, path = filesystem(name)
    try:
        if _protocol(fs) in ATOMIC_PUT:
            f = fs.open(path, "wb")
            try:
                write(f)
            except BaseException:
                f.discard()
                raise
            f.close()
            return
        if _local(fs):
            _write_local(path, local_part_name(path, uuid.uuid4().hex[:12]), write)
            return
        tmp = f"{path}.{uuid.uuid4().hex[:12]}.part"
        try:
            fs.makedirs(fs._parent(path), exist_ok=True)
            with fs.open(tmp, "wb") as f:
                write(f)
            fs.mv(tmp, path)
        except BaseException:
            try:
                fs.rm(tmp)
            except (FileNotFoundError, OSError):
                pass
            raise
    except OSError as e:
        if e.filename or e.errno not in WRITE_ERRORS:
            raise  # named already, or not the write's (a read in ``write``, a connection refused)
        # A failed write (a full disk) names no file: the object it was for is named instead.
        raise OSError(e.errno, e.strerror, name) from None


def local_part_name(path: str, tag: str) -> str:
    """The temporary name ``write_whole`` writes local file ``path`` under: ``.TAG.part.`` before its
    base name, so that a part of a run's temporary file (``.NAME.ID-i.bigshuf-tmp``) still ends as
    that name does, and the next run tidying the directory removes it once that run is gone (a
    worker killed while writing one left ``NAME.TAG.part``, which nothing removed)."""
    directory, base = os.path.split(path)
    return os.path.join(directory, f".{tag}.part.{base}")


def local_parts(path: str) -> list[str]:
    """What stands at any ``local_part_name`` of local file ``path``, whatever its tag."""
    directory, base = os.path.split(path)
    return glob.glob(local_part_name(os.path.join(glob.escape(directory), glob.escape(base)), "*"))


def _write_local(path: str, tmp: str, write: Callable[[BinaryIO], None]) -> None:
    """``write_whole`` on a local file: the temporary file created as every other bigshuf file is
    (exclusively, never through a symlink, mode 0600) and renamed over ``path``; removed if anything
    fails. It stays private: the engine's local files are temporary ones (scratch, or shards the
    commit gives their targets' attributes), and the umask's mode left them readable until then.
    So do the directories it makes: a task finishing after the run's clean-up made the removed
    prefix again, readable by all (the outputs' directories are made before any task writes)."""
    make_private_directories(os.path.dirname(path))
    fd = create_exclusive(tmp, 0o600, os.O_WRONLY)
    try:
        with os.fdopen(fd, "wb", closefd=False) as f:
            write(f)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass  # renamed, or never made
        raise
    finally:
        os.close(fd)


#: Errors only a write gives (a full disk, a quota, a file too large): those naming no file are the object's.
WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def remove_tree(name: str) -> None:
    """Remove ``name`` and everything under it, if it exists (cleanup never raises: a store's own
    errors, which are not OSErrors, neither; they would hide the error that led to the cleanup)."""
    try:
        fs, path = filesystem(name)
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except Exception:
        pass


def remove(name: str) -> None:
    """Remove the object ``name`` if it exists (cleanup never raises, as ``remove_tree``)."""
    try:
        fs, path = filesystem(name)
        fs.rm(path)
    except Exception:
        pass


def move(src: str, dst: str) -> None:
    """Put ``src`` at ``dst``: a rename on local disks, a server-side copy and delete on object stores."""
    fs, src_path = filesystem(src)
    _, dst_path = filesystem(dst)
    try:
        fs.mv(src_path, dst_path)
    except OSError as e:
        raise OutputError(f"{quote_name(dst)}: {e.strerror or e}") from None


class URLSource:
    """An input named by an fsspec URL (``s3://``, ``https://``, ``memory://``), read on this
    machine by the local engine; compressed objects are decompressed as local files are."""

    def __init__(self, remote: RemoteFile) -> None:
        self.name = remote.name
        self.remote = remote
        self._raw: BinaryIO | None = None

    def size(self) -> int | None:
        """The object's size when it is plain; None when compressed (only reading tells)."""
        return None if self.remote.codec is not None else self.remote.size

    def disk_size(self) -> int:
        """Bytes of the object as stored (compressed or not), for progress and planning."""
        return self.remote.size

    def position(self) -> int:
        """Bytes of the stored object consumed so far (0 if not open)."""
        if self._raw is None or self._raw.closed:
            return 0
        return int(self._raw.tell())

    def open(self) -> BinaryIO:
        """The object's bytes, decompressed."""
        from .decoding import decompressing

        self._raw = open_input(self.name)
        return decompressing(self._raw, self.name)


def url_sources(names: list[str]) -> list[URLSource]:
    """The inputs named by URLs (globs expanded, in sorted order), for the local engine.

    fsspec is an optional dependency: without it the error says how to get it.
    """
    try:
        import fsspec  # noqa: F401
    except ImportError:
        raise UsageError(
            f"{names[0]}: reading URLs needs fsspec: pip install 'bigshuf[dask]' (or fsspec and the "
            "protocol's package, such as s3fs)"
        ) from None
    return [URLSource(remote) for remote in listed_inputs(names)]


def listed_inputs(names: list[str]) -> list[RemoteFile]:
    """``expand_inputs``, a store's own errors said as ``store_errors`` says them."""
    with store_errors(names[0]):
        return expand_inputs(names)


@contextmanager
def store_errors(name: str, writing: bool = False) -> Iterator[None]:
    """A store's own errors (botocore's missing credentials, aiohttp's refused connection, a
    read-only protocol's NotImplementedError), which are not OSErrors, as an InputError naming the
    input ``name`` as any failed read is (``writing``: an OutputError naming the output)."""
    try:
        yield
    except BigShufError:
        raise
    except Exception as e:
        if (interrupted := interruption(e)) is not None:
            raise interrupted from None  # Ctrl-C while the protocol's modules loaded
        if writing:
            raise OutputError(f"{quote_name(name)}: cannot write: {str(e) or type(e).__name__}") from None
        raise InputError(f"{quote_name(name)}: cannot read: {str(e) or type(e).__name__}") from None
