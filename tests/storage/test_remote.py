"""Whole objects written for the Dask engine's tasks: all or nothing, and a failure names the object."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import BinaryIO

import pytest

from bigshuf.errors import InputError
from bigshuf.storage import remote


def full_disk(f: BinaryIO) -> None:
    """A write that fails as a full disk does: an OSError that names no file."""
    f.write(b"part of it\n")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_local_write_names_the_object_and_leaves_nothing(tmp_path: Path) -> None:
    """A full -T failed a Dask run with 'task failed: No space left on device', naming no file;
    the error now carries the object's name, and no part of it is left."""
    name = str(tmp_path / "p1" / "000000")
    with pytest.raises(OSError) as caught:
        remote.write_whole(name, full_disk)
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, name)
    assert os.listdir(tmp_path / "p1") == []


def test_a_failed_write_that_names_its_file_keeps_its_name(tmp_path: Path) -> None:
    """An error that already names a file (here the write's own) is passed on as it is."""
    def refused(f: BinaryIO) -> None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "/elsewhere")

    with pytest.raises(FileNotFoundError) as caught:
        remote.write_whole(str(tmp_path / "obj"), refused)
    assert caught.value.filename == "/elsewhere"
    assert os.listdir(tmp_path) == []


def test_a_whole_write_replaces_the_object(tmp_path: Path) -> None:
    """A write that completes puts the object in place, replacing what was there."""
    name = tmp_path / "obj"
    name.write_bytes(b"old\n")
    remote.write_whole(str(name), lambda f: f.write(b"new\n"))
    assert name.read_bytes() == b"new\n" and os.listdir(tmp_path) == ["obj"]


@pytest.mark.parametrize("replacing", [False, True])
def test_a_local_whole_write_is_private(tmp_path: Path, replacing: bool) -> None:
    """The Dask engine's local parts and shard files were opened by fsspec as any new file, readable
    by every user (0644) while a worker wrote them, and then given the umask's mode (found by review):
    a shard's temporary file stayed readable until the commit. Now it is created exclusively and
    stays 0600; the commit gives shards their targets' attributes."""
    name = tmp_path / "obj"
    if replacing:
        name.write_bytes(b"old\n")
        os.chmod(name, 0o644)
    seen: list[int] = []

    def write(f: BinaryIO) -> None:
        (part,) = [p for p in os.listdir(tmp_path) if ".part." in p]
        seen.append(os.lstat(tmp_path / part).st_mode & 0o777)
        f.write(b"new\n")

    remote.write_whole(str(name), write)
    assert seen == [0o600]
    assert name.read_bytes() == b"new\n" and os.stat(name).st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["obj"]


@pytest.mark.parametrize("how", ["path", "file URL"])
def test_the_directories_a_local_whole_write_makes_are_private(tmp_path: Path, how: str) -> None:
    """Found by attack: after a Dask run stopped by Ctrl-C had removed its ``--temp-url`` prefix, a
    task finishing late wrote its pass-1 object and made the prefix again, 0755 under the usual
    umask (``os.makedirs``). Every directory a local write makes is 0700, as the prefix was;
    an existing one keeps its mode."""
    (tmp_path / "shared").mkdir(mode=0o755)
    os.chmod(tmp_path / "shared", 0o755)
    root = tmp_path / "shared" / "bigshuf-dask-0123456789ab"
    name = root / "p1" / "000000-000000"
    old = os.umask(0o022)
    try:
        remote.write_whole(str(name) if how == "path" else f"file://{name}", lambda f: f.write(b"records\n"))
    finally:
        os.umask(old)
    assert name.read_bytes() == b"records\n"
    assert [os.stat(d).st_mode & 0o777 for d in (tmp_path / "shared", root, root / "p1")] == [0o755, 0o700, 0o700]


class Refused(OSError):
    """An OSError whose constructor takes other arguments (as aiohttp's connection errors do)."""

    def __init__(self, host: str) -> None:
        super().__init__(errno.ECONNREFUSED, f"cannot connect to {host}")


@pytest.mark.parametrize("error", [
    Refused("store.example"),
    OSError(errno.EIO, os.strerror(errno.EIO)),
    FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT)),
])
def test_an_error_not_the_writes_own_is_passed_on_as_it_is(tmp_path: Path, error: OSError) -> None:
    """Only a write's own failure (a full disk) is renamed after the object. Rebuilt as its own
    type, an OSError with another constructor became a TypeError; and an error of a read inside
    ``write`` (an input's EIO, a bucket gone) was blamed on the object being written."""
    def failing(f: BinaryIO) -> None:
        raise error

    with pytest.raises(type(error)) as caught:
        remote.write_whole(str(tmp_path / "obj"), failing)
    assert caught.value is error
    assert os.listdir(tmp_path) == []


def test_an_unreadable_input_is_named_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Dask engine named an input it could not read by its absolute path ("/home/u/in.txt:
    Permission denied" for ``in.txt``), where the local engine and shuf name it as given."""
    from fsspec.implementations.local import LocalFileSystem

    (tmp_path / "unread.txt").write_bytes(b"a\nb\n")
    monkeypatch.chdir(tmp_path)

    def cat_ranges(self: object, paths: list[str], starts: list[int], ends: list[int], **kwargs: object) -> list[object]:
        return [PermissionError(errno.EACCES, os.strerror(errno.EACCES), p) for p in paths]

    monkeypatch.setattr(LocalFileSystem, "cat_ranges", cat_ranges)
    with pytest.raises(remote.InputError) as caught:
        remote.expand_inputs(["unread.txt"])
    assert str(caught.value) == "unread.txt: Permission denied"


@pytest.mark.parametrize("read", ["heads", "ranges"])
def test_a_range_fsspec_could_not_read_is_an_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read: str) -> None:
    """fsspec's ``cat_ranges`` hands back a failure in the range's place: an input this user may not
    read was "internal error: TypeError: cannot convert 'PermissionError' object to bytes" (Dask
    engine; the local engine on a file:// URL said "cannot read:" that)."""
    from fsspec.implementations.local import LocalFileSystem

    src = tmp_path / "unread.txt"
    src.write_bytes(b"a\nb\n")

    def cat_ranges(self: object, paths: list[str], starts: list[int], ends: list[int], **kwargs: object) -> list[object]:
        return [PermissionError(errno.EACCES, os.strerror(errno.EACCES), p) for p in paths]

    monkeypatch.setattr(LocalFileSystem, "cat_ranges", cat_ranges)
    with pytest.raises(remote.InputError, match=r"unread.txt: (temporary data unreadable: )?Permission denied$"):
        if read == "heads":
            remote.expand_inputs([str(src)])
        else:
            remote.read_ranges([(str(src), 0, 2)])


def test_a_stores_own_errors_are_one_line_naming_the_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Found by attack: on the Dask engine a missing S3 credential was ``internal error:
    NoCredentialsError`` (a botocore exception, not an OSError), and an output URL of a read-only
    protocol ``internal error: NotImplementedError``, once the whole shuffle had run; the library
    raised them as they were. Each is an Input- or OutputError naming the URL."""
    from bigshuf.errors import InputError, OutputError

    class NoCredentialsError(Exception):  # (botocore's, which is not an OSError)
        pass

    with pytest.raises(InputError, match=r"^s3://b/in\.txt: cannot read: Unable to locate credentials$"):
        with remote.store_errors("s3://b/in.txt"):
            raise NoCredentialsError("Unable to locate credentials")
    with pytest.raises(OutputError, match=r"^http://h/o\.txt: cannot write: NotImplementedError$"):
        with remote.store_errors("http://h/o.txt", writing=True):
            raise NotImplementedError()

    def listing_fails(names: list[str]) -> list[remote.RemoteFile]:
        raise NoCredentialsError("Unable to locate credentials")

    monkeypatch.setattr(remote, "expand_inputs", listing_fails)
    with pytest.raises(InputError, match=r"^s3://b/in\.txt: cannot read: Unable to locate credentials$"):
        remote.listed_inputs(["s3://b/in.txt"])


def test_cleanup_swallows_a_stores_own_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: ``remove`` and ``remove_tree`` said cleanup never raises, but caught only
    OSErrors, so a store's own error (botocore's, not an OSError) raised from a cleanup on the way
    out of a failed run, hiding the error that made it clean up."""

    class ClientError(Exception):
        """As botocore's: not an OSError."""

    class Store:
        def exists(self, path: str) -> bool:
            return True

        def rm(self, path: str, recursive: bool = False) -> None:
            raise ClientError("AccessDenied")

    monkeypatch.setattr(remote, "filesystem", lambda name: (Store(), name))
    remote.remove("s3://bucket/run/p1/0")
    remote.remove_tree("s3://bucket/run")


def test_a_file_cut_short_before_a_read_names_what_it_holds_at_most(tmp_path: Path) -> None:
    """A file cut to 100 bytes before bytes 5000-5100 were read was said to end "at byte 5000", where
    the read began; it holds at most that many now, and the read needed 5100."""
    (tmp_path / "f").write_bytes(b"x" * 100)
    with pytest.raises(InputError) as e:
        remote.read_exactly(str(tmp_path / "f"), 5000, memoryview(bytearray(100)))
    assert str(e.value).endswith("f: file changed while being read (at most 5000 bytes now, 5100 needed)")
