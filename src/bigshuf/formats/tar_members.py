"""Tar members read from a stream, header by header: checksums, numeric fields, pax and GNU extension
headers, and the member types a shuffle of WebDataset samples keeps (regular files), skips
(directories, comment-only pax global headers) or refuses, each with one line naming the file and
member; every size a header claims is checked against what the stream can hold before anything is
allocated or read. ``tar_input`` groups the members into samples.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ..errors import InputError
from .tar_keys import shown

#: A tar block: headers and data padding come in these.
BLOCK = 512

#: Member types holding a regular file's bytes (regular, old-style regular, contiguous).
REGULAR = (b"0", b"\0", b"7")
DIRECTORY = b"5"
#: Extension headers that describe the member after them.
PAX, GNU_LONG_NAME, GNU_LONG_LINK = b"x", b"L", b"K"
PAX_GLOBAL = b"g"
#: Types refused with their name in the message.
SPECIAL = {
    b"1": "a hard link", b"2": "a symbolic link", b"3": "a character device", b"4": "a block device",
    b"6": "a FIFO", b"S": "a GNU sparse file", b"M": "a multi-volume continuation", b"V": "a volume label",
}

#: How much of each input a read asks for at once while skipping data it does not keep.
SKIP_CHUNK = 1 << 20

#: The most an extension header (pax ``x`` or ``g``, GNU ``L`` or ``K``) may claim: it is read whole
#: into memory, and what it holds (a path, a link name, times, owners, a few attributes) takes a
#: few KB at most (Linux paths: 4 KiB; an extended attribute: 64 KiB). A larger claim is taken for
#: corruption or a bomb (a 94-byte gzip can claim a 2 GiB header) rather than allocated.
EXTENSION_CAP = 1 << 20



def looks_like_tar(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes, at least 512) starts with a ustar header whose checksum holds."""
    return len(head) >= BLOCK and head[257:262] == b"ustar" and _checksum_ok(head[:BLOCK])


def _checksum_ok(header: bytes) -> bool:
    """Whether a header's stored checksum matches its bytes (summed as unsigned or, as some old tars did, signed)."""
    try:
        stored = int(header[148:156].replace(b"\0", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    unsigned = sum(header) - sum(header[148:156]) + 8 * 32
    if stored == unsigned:
        return True
    signed = unsigned - 256 * sum(1 for b in header[:148] + header[156:] if b > 127)
    return stored == signed


def _number(field: bytes) -> int | None:
    """A header's numeric field: octal digits, or GNU base-256 (top bit set); None if malformed or negative."""
    if field[:1] and field[0] & 0x80:
        if field[0] == 0xFF:
            return None
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.replace(b"\0", b" ").strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        return None


#: A header's numeric fields besides size and checksum. Python's tarfile parses them too, and one it
#: cannot parse ends its reading of the tar there without an error: WebDataset, reading through it,
#: would silently drop that sample and every later one.
NUMBER_FIELDS = (("mode", 100, 108), ("uid", 108, 116), ("gid", 116, 124), ("mtime", 136, 148), ("devmajor", 329, 337), ("devminor", 337, 345))


#: What tar writers put in a numeric field (octal digits, spaces, a NUL and anything after it): read
#: as tarfile reads it without decoding.
_PLAIN_NUMBER = re.compile(rb" *[0-7]* *(?:\0[\s\S]*)?")


def _unreadable_number(header: bytes) -> str | None:
    """The first of ``NUMBER_FIELDS`` Python's tarfile cannot read as a number (base-256 from a
    first byte 0x80 or 0xff, else ASCII octal up to the first NUL, spaces around it), or None."""
    plain = _PLAIN_NUMBER.fullmatch
    if (
        plain(header, 100, 108) and plain(header, 108, 116) and plain(header, 116, 124) and plain(header, 136, 148)
        and plain(header, 329, 337) and plain(header, 337, 345)
    ):
        return None  # the usual header (NUMBER_FIELDS written out: a third of the checksum's time)
    for field, start, end in NUMBER_FIELDS:
        value = header[start:end]
        if value[0] in (0x80, 0xFF):
            continue
        text = value.split(b"\0", 1)[0]
        try:
            int(text.decode("ascii").strip() or "0", 8)
        except ValueError:
            return field
    return None


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    """A pax extended header's ``LENGTH KEY=VALUE\\n`` records, or raise ValueError if malformed."""
    out: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.index(b" ", pos)
        length = _digits(data[pos:space])
        record = data[space + 1 : pos + length]
        if length <= space - pos or not record.endswith(b"\n") or b"=" not in record:
            raise ValueError("malformed pax record")
        key, _, value = record[:-1].partition(b"=")
        out[key] = value
        pos += length
    return out


def _digits(text: bytes) -> int:
    """A pax decimal number (a record's length, a size): ASCII digits only (``int`` would take
    ``+5``, ``-5`` or ``5_0``), else ValueError."""
    if not (text.isdigit() and text.isascii()):
        raise ValueError("not a decimal number")
    return int(text)


def _padded(size: int) -> int:
    """A member's data size rounded up to whole blocks."""
    return -(-size // BLOCK) * BLOCK


class _Members:
    """Iterates one tar stream's regular members: their raw header blocks (extension headers
    included), path and data size; the caller reads each one's data with ``read_data`` (or skips
    it with ``skip_data``) before the next. Directories and comment-only pax global headers are
    skipped; truncation, bad checksums, oversized claims and refused types raise. ``size``: the
    stream's length when known (a plain regular file), against which every claimed size is checked."""

    def __init__(self, stream: Any, path: str, size: int | None = None) -> None:
        self.stream = stream  # a binary stream with readinto
        self.path = path
        self.size = size
        self.offset = 0  # bytes of the decompressed stream consumed
        self._unread = 0  # data bytes of the last member the caller has not read yet

    def _read(self, view: memoryview, what: str) -> None:
        """Fill ``view`` from the stream, or raise: the archive ends inside ``what``."""
        got = 0
        while got < len(view):
            n = self.stream.readinto(view[got:])
            if not n:
                raise InputError(f"{self.path}: truncated tar: ends inside {what} at byte {self.offset + got}")
            got += n
        self.offset += got

    def _bytes(self, n: int, what: str) -> bytes:
        """The next ``n`` bytes of the stream."""
        buf = bytearray(n)
        self._read(memoryview(buf), what)
        return bytes(buf)

    def read_data(self, view: memoryview) -> None:
        """Read the current member's padded data into ``view``."""
        self._read(view, "a member's data")
        self._unread = 0

    def skip_data(self) -> None:
        """Read past the current member's padded data."""
        self._skip(_padded(self._unread), "a member's data")
        self._unread = 0

    def _skip(self, n: int, what: str) -> None:
        """Read past ``n`` bytes."""
        scratch = memoryview(bytearray(min(n, SKIP_CHUNK)))
        while n:
            step = min(n, len(scratch))
            self._read(scratch[:step], what)
            n -= step

    def _claim(self, length: int, what: str | bytes, at: int) -> None:
        """Refuse a header at byte ``at`` whose data (``length`` bytes, padded) runs past the end of a
        plain file: nothing is allocated or read for a size the file cannot hold. ``what``: the
        header's kind, or a member's name (escaped only for the message)."""
        if self.size is not None and self.offset + _padded(length) > self.size:
            if isinstance(what, bytes):
                what = f"member {shown(what)}"
            raise InputError(
                f"{self.path}: truncated or corrupt tar: {what} at byte {at} claims {length} bytes of data, "
                f"and the file has {self.size - self.offset} left"
            )

    def _extension(self, length: int, kind: bytes, at: int) -> bytes:
        """An extension header's padded data (``length`` bytes claimed, at most ``EXTENSION_CAP``), read whole."""
        what = "pax global header" if kind == PAX_GLOBAL else "extension header"
        self._claim(length, what, at)
        if length > EXTENSION_CAP:
            raise InputError(
                f"{self.path}: corrupt tar: {what} at byte {at} claims {length} bytes, more than the "
                f"{EXTENSION_CAP >> 20} MiB bigshuf reads for one (paths, link names and attributes take a few KB)"
            )
        return self._bytes(_padded(length), f"a {what}" if kind == PAX_GLOBAL else f"an {what}")

    def __iter__(self) -> Iterator[tuple[bytes, bytes, int]]:
        """Yield ``(raw headers, path, size)`` of each regular member."""
        raw = b""
        name: bytes | None = None
        size: int | None = None
        sparse: bytes | None = None  # a member's pax records say it is sparse: its real name (b"" if they give none)
        while True:
            assert not self._unread, "a member's data was not read"
            at = self.offset
            header = bytearray(BLOCK)
            got = self.stream.readinto(memoryview(header))
            if got == 0 and not raw:
                if self.offset == 0:
                    raise InputError(f"{self.path}: empty file, not a tar archive")
                return  # no end-of-archive marker: GNU tar, tarfile and WebDataset read such a tar whole too
            if got < BLOCK:
                rest = memoryview(header)[got:]
                self.offset += got
                self._read(rest, "a header")
            else:
                self.offset += BLOCK
            block = bytes(header)
            if block == bytes(BLOCK) and not raw:
                self._check_end()
                return
            if not _checksum_ok(block):
                raise InputError(f"{self.path}: corrupt tar header at byte {at} (checksum mismatch)")
            unreadable = _unreadable_number(block)
            if unreadable is not None:
                raise InputError(f"{self.path}: corrupt tar header at byte {at} (bad {unreadable} field)")
            kind = block[156:157]
            length = _number(block[124:136])
            if length is None:
                raise InputError(f"{self.path}: corrupt tar header at byte {at} (bad size field)")
            if kind in (PAX, GNU_LONG_NAME, GNU_LONG_LINK):
                padded = self._extension(length, kind, at)
                raw += block + padded
                # Several extension headers before one member: the first to give a name or a
                # size wins, as in tarfile (so WebDataset), whose outer header is applied last.
                if kind == GNU_LONG_NAME:
                    name = padded[:length].split(b"\0", 1)[0] if name is None else name
                elif kind == PAX:
                    try:
                        records = _pax_records(padded[:length])
                        name = records.get(b"path") if name is None else name
                        size = _digits(records[b"size"]) if size is None and b"size" in records else size
                    except ValueError:
                        raise InputError(f"{self.path}: corrupt pax header at byte {at}") from None
                    if any(k.startswith(b"GNU.sparse.") for k in records):
                        sparse = records.get(b"GNU.sparse.name", b"")
                continue
            if kind == PAX_GLOBAL:
                self._global_header(length, at)
                continue
            own = _header_name(block)  # the header's own path, whatever the extension headers say
            member = name if name is not None else own
            if name is None and _foreign_prefix(block):
                raise InputError(
                    f"{self.path}: member {shown(member)} at byte {at}: its header is not POSIX ustar and holds bytes in the "
                    "prefix field, which GNU tar reads as times and tarfile (so WebDataset) as the start of its path; "
                    "recreate the tar (tar --format=posix)"
                )
            if kind == b"\0" and member.endswith(b"/") != own.endswith(b"/"):
                raise InputError(
                    f"{self.path}: member {shown(member)} at byte {at}: an old-style member that GNU tar reads as a "
                    "directory and tarfile (so WebDataset) as a file, or the other way round; recreate the tar"
                )
            length = length if size is None else size
            raw += block
            if sparse is not None:
                raise InputError(
                    f"{self.path}: member {shown(sparse or member)} is a sparse file (GNU.sparse pax records, stored as "
                    f"{shown(member)}); only regular files and directories are shuffled: recreate the tar without --sparse"
                )
            if kind in SPECIAL:
                raise InputError(f"{self.path}: member {shown(member)} is {SPECIAL[kind]}; only regular files and directories are shuffled")
            if kind not in REGULAR and kind != DIRECTORY:
                raise InputError(
                    f"{self.path}: member {shown(member)} has unknown type '{shown(kind)}'; "
                    "only regular files and directories are shuffled"
                )
            if kind != DIRECTORY and not (kind == b"\0" and member.endswith(b"/")):
                self._claim(length, member, at)
                self._unread = length
                yield raw, member, length
            # A directory: GNU tar, tarfile and WebDataset read the next header right after its own,
            # whatever size it claims (data there is read as members, not skipped and lost).
            raw, name, size, sparse = b"", None, None, None

    def _global_header(self, length: int, at: int) -> None:
        """Read a pax global header (``g``): one holding only ``comment`` records (``git archive``
        writes the commit's id) is dropped, as it applies to nothing; any other setting would apply to
        every later member, which a shuffle reorders, so it is refused."""
        try:
            records = _pax_records(self._extension(length, PAX_GLOBAL, at)[:length])
        except ValueError:
            raise InputError(f"{self.path}: corrupt pax global header at byte {at}") from None
        if set(records) - {b"comment"}:
            raise InputError(
                f"{self.path}: pax global header at byte {at}: its settings apply to every later member, "
                "which a shuffle reorders; recreate the tar without it"
            )

    def _check_end(self) -> None:
        """After the end-of-archive marker: only zeros may follow (another archive's members would be lost)."""
        while chunk := self.stream.read(SKIP_CHUNK):
            if chunk.count(0) != len(chunk):
                raise InputError(
                    f"{self.path}: data after the end-of-archive marker at byte {self.offset} "
                    "(concatenated archives?); only the first archive would be read"
                )
            self.offset += len(chunk)


#: The magic of a POSIX ustar header (its version, "00", follows): the one whose prefix field every reader joins to the name.
POSIX_MAGIC = b"ustar\0"


def _header_name(block: bytes) -> bytes:
    """A header's own path: its name field, after the prefix field in POSIX ustar headers."""
    name = block[:100].split(b"\0", 1)[0]
    prefix = block[345:500].split(b"\0", 1)[0]
    return prefix + b"/" + name if prefix and block[257:263] == POSIX_MAGIC else name


def _foreign_prefix(block: bytes) -> bool:
    """Whether a header that is not POSIX ustar holds bytes where POSIX keeps the prefix: GNU tar reads
    them as times (``tar -G``) or nothing, tarfile (so WebDataset) as the start of the member's path."""
    return block[257:263] != POSIX_MAGIC and block[345:500].split(b"\0", 1)[0] != b""
