"""Reading WebDataset tar shards as samples: each sample is the raw tar blocks (headers, extension
headers and padded data) of consecutive members sharing a key, copied byte for byte.

The key is WebDataset's: a member's path up to the first dot of its base name (``a/000123.jpg``
and ``a/000123.seg.png`` are one sample, ``b/000123.jpg`` another). Consecutive members with one
key are one sample; a sample may not continue from one tar into the next (an error naming both).
Directory entries are skipped, as WebDataset skips them, and so is a pax global header holding
only a ``comment`` (``git archive`` writes one). Everything WebDataset would drop, merge or fail
on and that would be lost here is refused instead, one line each: links and other special
members, sparse members, members with no key or named as metadata (``__x__``), a suffix twice in
one sample, a key used by two samples anywhere in the inputs (two samples with one key that the
shuffle puts side by side are read back as one), and other pax global headers (their settings
apply to every later member, which a shuffle reorders).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Generator, Iterator
from typing import Any

import numpy as np

from ..core import plan
from ..core.fingerprint import Fingerprint, fingerprint
from ..errors import InputError, option
from ..progress import Progress
from ..storage.sources import FileSource, Source
from .tar_keys import KeyLedger, shown

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


def refuse_tar_on_stdin(head: bytes) -> None:
    """Refuse standard input that starts (``head``: its first bytes, decompressed) with a tar
    header: a line run would shuffle its bytes as text, and tar shards are read from files."""
    if looks_like_tar(head):
        raise InputError("standard input holds a tar archive: name the tar file(s) (tars are read from files)")


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


def sample_key(name: bytes) -> tuple[bytes, bytes] | None:
    """WebDataset's (key, suffix) of a member path: the path up to its base name's first dot, and
    the rest, lower-cased; None when the base name has no dot or starts with one."""
    slash = name.rfind(b"/") + 1
    dot = name.find(b".", slash)
    if dot <= slash:
        return None
    suffix = name[dot + 1 :]
    if suffix.isascii():
        return name[:dot], suffix.lower()
    # As WebDataset lower-cases it: as text (tarfile's UTF-8 names), so JPÉ is jpé.
    return name[:dot], suffix.decode("utf-8", "surrogateescape").lower().encode("utf-8", "surrogateescape")


def is_metadata(name: bytes) -> bool:
    """Whether WebDataset skips a member as metadata: its first path part starts and ends with ``__``."""
    first = name.split(b"/", 1)[0]
    return len(first) >= 4 and first.startswith(b"__") and first.endswith(b"__")


def as_source(item: str | Source) -> Source:
    """An input as a source: a local path as a ``FileSource``; a source (a URL's) as it is."""
    return FileSource(item) if isinstance(item, str) else item


class SampleReader:
    """Reads tar inputs (local paths, or sources such as URLs read through fsspec) into blocks of
    whole samples: ``(bytes, offsets, final)``, the samples of a block being
    ``bytes[offsets[i]:offsets[i+1]]``. A sample longer than the block's capacity is refused
    (naming its file and member): pass 2 must hold a bucket with it in memory."""

    def __init__(self, inputs: list[str | Source], progress: Progress, key_hash: Callable[[bytes], int] = hash) -> None:
        self.sources = [as_source(item) for item in inputs]
        self.paths = [source.name for source in self.sources]
        #: How sample keys are hashed (``tar_keys.stable_hash`` where another process compares them).
        self.key_hash = key_hash
        #: The keys of every sample read (``blocks`` fills it in), as hashes.
        self.keys = KeyLedger(self.paths, self._locate, key_hash)
        #: Each input's first and last sample key (None: it has no sample), for checks across readers.
        self.edges: list[tuple[bytes | None, bytes | None]] = []
        self.progress = progress
        #: Each input's samples and their bytes as read (filled in by ``blocks``), for a manifest.
        self.per_input: list[list[int]] = []
        #: The input (its index) of each sample of the block last handed out, for weighted sources.
        self.block_files = np.zeros(0, np.int64)

    def total_size(self) -> int | None:
        """The inputs' bytes as read, when every one is a plain (uncompressed) file or object."""
        total = 0
        for source in self.sources:
            size = source.size()
            if size is None:
                return None
            total += size
        return total

    def _locate(self, name: str, want: int) -> tuple[str, bytes, bytes]:
        """``locate_sample`` of the input called ``name``."""
        return locate_sample(self.sources[self.paths.index(name)], want)

    def blocks(self, capacity: int, first: int | None = None) -> Generator[tuple[np.ndarray, np.ndarray, bool], None, None]:
        """The inputs' samples in blocks of at most ``capacity`` bytes, reusing one buffer: a block
        is valid until the next is asked for. ``first``: the first block ends once it holds that
        many bytes (``--dry-run`` reads no more), unless it is the last."""
        buf = np.empty(capacity, np.uint8)
        ends: list[int] = []  # the ends of the whole samples in buf
        filled = 0  # bytes in buf: whole samples, then the sample being read
        last: tuple[str, bytes] | None = None  # the previous input's last sample: its file and key
        keys = self.keys = KeyLedger(self.paths, self._locate, self.key_hash)
        self.per_input = []
        self.edges = []
        files: list[int] = []  # the input of each sample ended in buf
        for index, source in enumerate(self.sources):
            path = source.name
            size = source.size()
            stream = source.open()
            keys.start_file()
            counts = [0, 0]  # this input's samples and their bytes
            self.per_input.append(counts)
            try:
                members = _Members(stream, path, size)
                key: bytes | None = None  # the sample being read
                opening: bytes | None = None  # this input's first sample's key
                suffixes: set[bytes] = set()
                reported = 0  # bytes of this input the progress has been told of
                for raw, name, size in members:
                    parsed = sample_key(name)
                    if parsed is None or is_metadata(name):
                        why = "named as WebDataset metadata" if parsed is not None else "no key (its base name has no dot)"
                        raise InputError(f"{path}: member {shown(name)} has {why}, so belongs to no sample")
                    this, suffix = parsed
                    if this != key:
                        counts[0] += 1
                        if key is None:
                            opening = this
                            if last is not None:
                                refuse_continued(path, this, last)
                        if key is not None:
                            ends.append(filled)
                            files.append(index)
                        key, suffixes = this, set()
                        keys.add(this)
                    elif suffix in suffixes:
                        raise InputError(f"{path}: member {shown(name)} repeats suffix '{shown(suffix)}' in sample {shown(key)}")
                    suffixes.add(suffix)
                    need = len(raw) + _padded(size)
                    start = ends[-1] if ends else 0
                    if first is not None and ends and ends[-1] >= first:
                        self.block_files = np.array(files, np.int64)
                        yield buf[: ends[-1]], np.array([0, *ends], np.int64), False
                        return
                    if filled + need > capacity:
                        if filled - start + need > capacity:
                            raise InputError(
                                f"{path}: sample {shown(this)} reaches {filled - start + need} bytes at member {shown(name)}, "
                                f"more than the {plan.format_size(capacity)} a sample may take at this memory limit; "
                                f"raise {option('memory')}"
                            )
                        self.block_files = np.array(files, np.int64)
                        yield buf[: ends[-1]], np.array([0, *ends], np.int64), False
                        buf[: filled - start] = buf[start:filled]
                        filled -= start
                        ends, files = [], []
                    buf[filled : filled + len(raw)] = np.frombuffer(raw, np.uint8)
                    filled += len(raw)
                    members.read_data(buf[filled : filled + _padded(size)].data)
                    filled += _padded(size)
                    counts[1] += need
                    self.progress.update(need)
                    reported += need
                self.progress.update(members.offset - reported)  # skipped members, end blocks
                self.edges.append((opening, key))
                if key is not None:
                    ends.append(filled)
                    files.append(index)
                    last = (path, key)
                else:
                    last = None
                if isinstance(source, FileSource):
                    source.check_unchanged()
            finally:
                stream.close()
            keys.check_file()
        keys.check_all()
        self.block_files = np.array(files, np.int64)
        yield buf[:filled], np.array([0, *ends], np.int64), True


def refuse_continued(path: str, first: bytes, last: tuple[str, bytes]) -> None:
    """Refuse tar ``path`` whose first sample's key is ``first`` when the previous input's last
    sample (``last``: its file and key) has that key: one sample would span two tars."""
    if last[1] == first:
        raise InputError(f"{path}: sample {shown(first)} continues from the end of {last[0]}; a sample must be within one tar")


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
                if kind == GNU_LONG_NAME:
                    name = padded[:length].split(b"\0", 1)[0]
                elif kind == PAX:
                    try:
                        records = _pax_records(padded[:length])
                        name = records.get(b"path", name)
                        size = _digits(records[b"size"]) if b"size" in records else size
                    except ValueError:
                        raise InputError(f"{self.path}: corrupt pax header at byte {at}") from None
                    if any(k.startswith(b"GNU.sparse.") for k in records):
                        sparse = records.get(b"GNU.sparse.name", b"")
                continue
            if kind == PAX_GLOBAL:
                self._global_header(length, at)
                continue
            member = name if name is not None else _header_name(block)
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
            self._claim(length, member, at)
            if kind == DIRECTORY or (kind == b"\0" and member.endswith(b"/")):
                self._skip(_padded(length), "a directory's data")
            else:
                self._unread = length
                yield raw, member, length
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


def locate_sample(source: Source, want: int) -> tuple[str, bytes, bytes]:
    """Sample ``want`` of tar ``source``: its name, the sample's key and its first member, read again
    (only when a key repeats, to word the refusal and rule out a hash collision)."""
    path = source.name
    stream = source.open()
    try:
        members = _Members(stream, path)
        n, key = -1, None
        for _raw, name, _size in members:
            parsed = sample_key(name)
            this = name if parsed is None else parsed[0]  # the first read refused members without a key
            if this != key:
                n, key = n + 1, this
                if n == want:
                    return path, this, name
            members.skip_data()
    finally:
        stream.close()
    raise InputError(f"{path}: file changed while being read (sample {want + 1} is gone)")


def _header_name(block: bytes) -> bytes:
    """A header's own path: its name field, after the ustar prefix field in POSIX headers."""
    name = block[:100].split(b"\0", 1)[0]
    if block[257:263] == b"ustar\x0000":
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            return prefix + b"/" + name
    return name


def is_tar_path(path: str) -> bool:
    """Whether a local regular file holds a tar: named ``.tar`` (``.tar.gz``, ``.tar.zst``... too),
    or, if its name names no other format, starting (once decompressed) with a ustar header."""
    from .detect import data_kind
    from .registry import WEBDATASET

    named = data_kind(os.path.basename(path))
    if named is not None:
        return named == WEBDATASET
    if not os.path.isfile(path):
        return False
    try:
        stream = FileSource(path).open()
        try:
            head = stream.read(BLOCK)
        finally:
            stream.close()
    except (InputError, OSError):
        return False  # the run's read says what is wrong with it
    return looks_like_tar(head)


def tar_fingerprint(inputs: list[str], memory: int) -> Fingerprint:
    """The fingerprint of the WebDataset samples of the tars ``inputs`` (each sample's raw tar
    blocks, as a run copies them and ``--verify`` hashes them), each tar read on its own in blocks
    of at most ``memory`` bytes (a longer sample is refused, naming ``-S``)."""
    total = Fingerprint()
    for path in inputs:
        for block, offsets, _final in SampleReader([path], Progress()).blocks(memory):
            total += fingerprint(block, offsets)
    return total
