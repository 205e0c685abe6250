"""Decompressed sizes of compressed inputs, before they are read: what plans the buckets, the
temporary space and weighted sources' shares.

A file's size comes from what its format records where that is exact (xz's index; zstd frames
that all state their content size), else from its group's ratio (a source's files, or all of
them) sampled on the first ``SAMPLE_BYTES`` of up to ``SAMPLE_FILES`` of its files spread over
the list: a ratio seen on one file's start made a corpus of 150:1 and 13:1 sources look like
either one. gzip's ISIZE is not used: it is modulo 2^32 and only the last member's.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from ..errors import InputError
from .codecs import SNIFF_BYTES, detect
from .sources import FileSource, Source, input_sizes

#: Decoded bytes read from the start of each sampled file: the Dask plan's sample. Measured (warm
#: cache, best of 5): 4 ms a gzip file, 14 ms for 200 zstd shards without their sizes (4 sampled); bzip2 120 ms, and coarse (its
#: decoder takes whole 256 KiB reads: 22% short on 20 MB of JSON Lines).
SAMPLE_BYTES = 1 << 20

#: Files of a group sampled, spread over it (first, last and evenly between).
SAMPLE_FILES = 4

#: The most block headers walked to add up one zstd file's frames (a 3-byte read each; each full
#: block holds 128 KiB decoded, so this covers 512 MiB); past it, the file is sampled instead.
ZSTD_HEADERS = 4096

#: The most xz streams (each an index read) added up in one file, the largest index read, and
#: the most stream padding (zeros) skipped before a stream's footer.
XZ_STREAMS = 64
XZ_INDEX = 1 << 20
XZ_PADDING = 64 << 10


@dataclass(frozen=True)
class Stored:
    """A compressed input as stored: its name in messages, its bytes, its codec, how to open it,
    and where in what that opens its bytes start (standard input's offset)."""

    name: str
    size: int
    codec: str
    open: Callable[[], BinaryIO]
    start: int = 0


class DecodedSizes:
    """For a reader of ``sources``: their sizes once decoded (``decoded_sizes``, each input's weighted
    source in ``groups`` sampled together, None: one group), worked out once, and whether all are exact."""

    sources: list[Source]
    groups: Sequence[int] | None
    _decoded: tuple[list[int | None], bool] | None = None

    def decoded_sizes(self) -> list[int | None]:
        """Each input's bytes once decompressed, as ``decoded_sizes`` plans them."""
        return self._planned()[0]

    def sized_exactly(self) -> bool:
        """Whether the sizes are exact (every compressed input's recorded by its format, or decoded
        whole): the run then checks its free temporary space before pass 1, as for plain files."""
        return self._planned()[1]

    def _planned(self) -> tuple[list[int | None], bool]:
        if self._decoded is None:
            self._decoded = decoded_sizes(self.sources, self.groups)
        return self._decoded


def decoded_sizes(sources: Sequence[Source], groups: Sequence[int] | None = None) -> tuple[list[int | None], bool]:
    """Each input's bytes once decompressed: its size where known, a compressed regular file's as
    recorded or by its group's sampled ratio (``groups``: each input's; None: one group), None for
    the rest (pipes); and whether every one is exact (none sampled), as the run's free-space check needs."""
    sizes = list(input_sizes(sources))
    stored: list[Stored] = []
    at: list[int] = []
    for i, (source, size) in enumerate(zip(sources, sizes)):
        file = _local(source) if size is None and isinstance(source, FileSource) else None
        if file is not None:
            stored.append(file)
            at.append(i)
    within = [0 if groups is None else groups[i] for i in at]
    expanded, exact = expanded_sizes(stored, within)
    for i, size in zip(at, expanded):
        sizes[i] = size
    return sizes, exact and None not in sizes


def _local(source: FileSource) -> Stored | None:
    """``source`` as a ``Stored`` file if it is a compressed regular file, standard input's from
    its offset (opened anew, so that offset stays); else None (the run says what is wrong)."""
    disk = source.disk_size()
    if disk is None:  # not a regular file: opened, a pipe would be read (or wait for a writer)
        return None
    path, start = source.path, 0

    def by_name() -> BinaryIO:
        """The file opened by its name."""
        return open(path, "rb")

    opener = by_name
    if path == "-":
        start, opener = source.stdin_offset() or 0, _standard_input
    try:
        with opener() as f:
            f.seek(start)
            codec = detect(f.read(SNIFF_BYTES))
    except OSError:
        return None
    if codec is None:
        return None
    return Stored(source.name, disk, codec, opener, start)


def _standard_input() -> BinaryIO:
    """Standard input's regular file, read at offsets of its own (``_AtOffsets``)."""
    return cast(BinaryIO, io.BufferedReader(_AtOffsets(0)))


class _AtOffsets(io.RawIOBase):
    """A regular file open as descriptor ``fd`` (standard input's), read at offsets of its own
    (``pread``): the descriptor's offset, which the run reads on from, stays; and the file need not
    be opened again by a name its permissions may refuse (``/proc/self/fd/0``), which gave a user
    allowed to reopen it another plan, so another output, than one who was not. Closing it leaves
    the descriptor open."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self._at = 0

    def readable(self) -> bool:
        """Always: it is only read."""
        return True

    def seekable(self) -> bool:
        """Always: the offsets are its own."""
        return True

    def readinto(self, b: Any) -> int:
        """Read at the current offset into ``b``, and move past what was read."""
        n = os.preadv(self._fd, [b], self._at)
        self._at += n
        return n

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        """Move the offset (from the start, the current offset or the file's end)."""
        base = 0 if whence == os.SEEK_SET else self._at if whence == os.SEEK_CUR else os.fstat(self._fd).st_size
        self._at = base + pos
        return self._at

    def tell(self) -> int:
        """The current offset."""
        return self._at


def expanded_sizes(files: Sequence[Stored], groups: Sequence[int], recorded: bool = True) -> tuple[list[int], bool]:
    """Each file's decoded bytes: as recorded (``recorded``: where reading the record is cheap),
    else its size times its group's ratio, sampled on at most ``SAMPLE_FILES`` of the group's
    files; a sampled file by its own ratio (exactly, if decoded whole). And whether all are exact."""
    sizes = [recorded_size(f) if recorded else None for f in files]
    members: dict[int, list[int]] = {}
    exact = True
    for i, (size, group) in enumerate(zip(sizes, groups)):
        if size is None:
            members.setdefault(group, []).append(i)
    for indexes in members.values():
        decoded = consumed = 0
        for i in spread(indexes, SAMPLE_FILES):
            got, fed, whole = _sample(files[i])
            if fed:
                sizes[i] = got if whole else int(files[i].size * got / fed)
            exact = exact and whole
            decoded, consumed = decoded + got, consumed + fed
        ratio = decoded / consumed if consumed else 1.0
        for i in indexes:
            if sizes[i] is None:
                sizes[i] = int(files[i].size * ratio)
                exact = False
    return cast(list[int], sizes), exact


def spread(items: Sequence[int], most: int) -> list[int]:
    """At most ``most`` of ``items``, the first and last among them and the rest evenly between."""
    if len(items) <= most:
        return list(items)
    return [items[round(j * (len(items) - 1) / (most - 1))] for j in range(most)]


def _sample(file: Stored) -> tuple[int, int, bool]:
    """Bytes decoded from the start of ``file`` (up to ``SAMPLE_BYTES``), the compressed bytes they
    took, and whether that was all of it; nothing for a file that cannot be read (the run says why)."""
    from .decoding import Decompressed, open_reader

    try:
        with open_reader(_opened_at(file), file.codec, file.name) as stream:
            decoded = 0
            while decoded < SAMPLE_BYTES:
                got = len(stream.read(SAMPLE_BYTES - decoded))
                if not got:
                    return decoded, file.size, True
                decoded += got
            consumed = cast(Decompressed, stream).position() - file.start  # what the decoder was fed for them
            whole = not stream.read(1)
    except (InputError, OSError):
        return 0, 0, False
    return decoded, file.size if whole else min(consumed, file.size), whole


def _opened_at(file: Stored) -> BinaryIO:
    """``file`` opened, at the start of its bytes."""
    raw = file.open()
    try:
        raw.seek(file.start)
    except OSError:
        raw.close()
        raise
    return raw


def recorded_size(file: Stored) -> int | None:
    """The decoded bytes ``file``'s format records, where they are exact (xz, zstd), else None."""
    reader: Callable[[BinaryIO, int, int], int | None] | None = {"zstd": _zstd_size, "xz": _xz_size}.get(file.codec)
    if reader is None:
        return None
    try:
        with file.open() as raw:
            return reader(raw, file.start, file.size)
    except OSError:
        return None


def _read_at(raw: BinaryIO, offset: int, n: int) -> bytes:
    """``n`` bytes of ``raw`` at ``offset`` (fewer at its end)."""
    raw.seek(offset)
    return raw.read(n)


def _zstd_size(raw: BinaryIO, start: int, size: int) -> int | None:
    """The sum of the content sizes of the zstd frames filling ``raw`` (skippable frames between
    them) from ``start`` on, or None if a frame does not state its size or the walk ends anywhere but
    ``size`` bytes on."""
    import zstandard

    total = headers = 0
    at, size = start, start + size
    while at < size:
        head = _read_at(raw, at, 18)  # the longest frame header
        magic = int.from_bytes(head[:4], "little")
        if magic & 0xFFFFFFF0 == 0x184D2A50 and len(head) >= 8:  # skippable: magic, length, content
            at += 8 + int.from_bytes(head[4:8], "little")
            continue
        try:
            params = zstandard.get_frame_parameters(head)
            at += zstandard.frame_header_size(head)
        except zstandard.ZstdError:
            return None
        if params.content_size == zstandard.CONTENTSIZE_UNKNOWN:
            return None
        total += params.content_size
        last = 0
        while not last:
            headers += 1
            block = _read_at(raw, at, 3)
            if headers > ZSTD_HEADERS or len(block) < 3:
                return None
            word = int.from_bytes(block, "little")
            last, kind = word & 1, word >> 1 & 3
            if kind == 3:
                return None
            at += 3 + (1 if kind == 1 else word >> 3)
        at += 4 if params.has_checksum else 0
    return total if at == size else None


def _xz_size(raw: BinaryIO, start: int, size: int) -> int | None:
    """The sum of the uncompressed sizes in the indexes of the xz streams filling ``size`` bytes of
    ``raw`` from ``start`` (read from their end, stream padding skipped), or None where they do not add up."""
    total, end = 0, size
    for _stream in range(XZ_STREAMS):
        tail = _read_at(raw, start + max(0, end - XZ_PADDING), min(end, XZ_PADDING))
        end -= (len(tail) - len(tail.rstrip(b"\0"))) & ~3  # stream padding, in fours
        footer = _read_at(raw, start + end - 12, 12) if end >= 24 else b""
        if footer[10:12] != b"YZ":
            return None
        backward = (int.from_bytes(footer[4:8], "little") + 1) * 4
        if backward > XZ_INDEX or end - 12 - backward < 12:
            return None
        index = _read_at(raw, start + end - 12 - backward, backward)
        parsed = _xz_index(index)
        if parsed is None:
            return None
        blocks, decoded = parsed
        total += decoded
        end -= 12 + backward + blocks + 12
        if end == 0:
            return total
        if end < 0:
            return None
    return None


def _xz_index(index: bytes) -> tuple[int, int] | None:
    """An xz index's blocks' stored bytes (each padded to four) and their uncompressed bytes."""
    if not index or index[0] != 0:
        return None
    at = 1

    def number() -> int | None:
        nonlocal at
        value = shift = 0
        while at < len(index) and shift < 63:
            byte = index[at]
            at += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        return None

    count = number()
    stored = decoded = 0
    for _ in range(count or 0):
        unpadded, uncompressed = number(), number()
        if unpadded is None or uncompressed is None:
            return None
        stored += (unpadded + 3) & ~3
        decoded += uncompressed
    return None if count is None else (stored, decoded)
