"""Reading compressed inputs strictly: one loop over each library's decompressor objects that reads
concatenated members, rejects trailing garbage, detects truncation and says where (see the
measurements atop ``codecs``), with decompressed output bounded per call."""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Callable
from typing import Any, BinaryIO

from ..errors import InputError
from .codecs import CODECS, _require, sniff

#: The most one decoder call returns: gzip, bzip2 and xz are asked for this much, zstd is fed
#: this many bytes' worth of its 128 KiB blocks.
LARGEST_PIECE = 2 << 20

#: Memory a piece decoded ahead holds beside its bytes (its object, its tuple with the position,
#: the queue's slot): measured at about 180 bytes, counted against the budget.
PIECE_OVERHEAD = 256
#: Pieces decoded ahead smaller than this on average, once ``SMALL_PIECES_SEEN`` of them, stop the
#: decoding ahead: a file of tiny members (a line each, as ``gzip >> log.gz`` makes) decodes in
#: the interpreter, whose lock the reading thread needs too (six such files took 18 s with a
#: second thread, 11 s without).
SMALL_PIECE = 16 << 10
SMALL_PIECES_SEEN = 64
#: The largest zstd window taken: 2 GiB, zstd's most (``--long=31``), as ``zstd -dc --long=31``
#: takes it. zstandard's default of 128 MiB would call valid long-window files corrupt; a frame
#: costs up to its window in memory, which only files made with a long window ask for.
ZSTD_MAX_WINDOW = 1 << 31


class _SourceError(Exception):
    """An OSError from the underlying file, kept apart from the codec's own OSErrors."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


class _Counted:
    """The raw compressed stream, counting the bytes taken from it so errors can say where."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0
        try:
            self.base = raw.tell()
        except (OSError, AttributeError, ValueError):
            self.base = 0

    def position(self) -> int:
        """Offset in the compressed file up to which data has been read."""
        return self.base + self.count

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer from a pipe), b"" at the end."""
        try:
            data = self.raw.read(n) or b""
        except OSError as e:
            raise _SourceError(e) from e
        self.count += len(data)
        return data


class _MemberLoop:
    """Decompresses a sequence of members, one fresh decompressor object each, strictly.

    Input that ends inside a member raises EOFError; bytes after a member that do not start
    with the codec's magic raise ``_Corrupt``. Decompressor objects come in three styles:
    ``"lzma"`` (bz2, lzma: ``max_length`` and ``needs_input``), ``"zlib"`` (``max_length`` and
    ``unconsumed_tail``) and ``"zstd"`` (no ``max_length``: it is fed at most ``_ZstdBlocks.MOST``
    blocks a call, each of which decodes to at most 128 KiB). So no call returns more than
    OUT_CHUNK-odd bytes, however well the input compresses.
    """

    #: Compressed bytes read per call. 128 KiB-1 MiB decompress zstd at the same speed and
    #: gzip 10% slower at 1 MiB (measured as in the header); 256 KiB keeps outputs cache-sized.
    RAW_CHUNK = 256 << 10
    #: Most decompressed bytes asked of gzip, bzip2 and xz per call (the caller's buffer may be larger).
    OUT_CHUNK = LARGEST_PIECE

    def __init__(self, source: _Counted, codec: str, new: Callable[[], Any], style: str, padding: int = 0) -> None:
        self._source = source
        self._magic = CODECS[codec].magic
        self._new = new
        self._style = style
        #: Zero bytes may pad streams to a multiple of this (xz stream padding), or 0 for none.
        self._padding = padding
        self._dec: Any = None
        self._blocks = _ZstdBlocks() if style == "zstd" else None
        self._input = b""
        #: Where the current member starts in the source: a member that ends where it
        #: started would otherwise be started again forever.
        self._member_at = -1
        #: The offsets in the compressed file of the bytes last handed to a decompressor (or found
        #: where a member should start), which a failure lies in.
        self.fed = (source.position(), source.position())

    def next_piece(self) -> bytes:
        """The next piece of decompressed data, b"" at the end. Every call asks for as much
        (``OUT_CHUNK``; zstd: ``_ZstdBlocks.MOST`` blocks), so the pieces, and how far the source
        has been read after each, are the same however the caller's reads are sized."""
        while True:
            if self._dec is None or self._dec.eof:
                rest = self._dec.unused_data if self._dec is not None else b""
                if not self._start_member(rest + self._input):
                    self._input = b""  # (all of it taken: a clean end)
                    return b""
            elif not self._input and self._needs_input():
                self._input = self._source.read(self.RAW_CHUNK)
                if not self._input:
                    raise EOFError
            if self._blocks is not None:
                n = self._blocks.feedable(self._input)
                if n == 0:  # a block header is cut off: read on (its end, or the file's)
                    more = self._source.read(self.RAW_CHUNK)
                    if more:
                        self._input += more
                        continue
                    n = len(self._input)
                data, self._input = self._input[:n], self._input[n:]
                self._note_fed(len(data))
                out = self._dec.decompress(data)
            else:
                data, self._input = self._input, b""
                self._note_fed(len(data))
                out = self._dec.decompress(data, self.OUT_CHUNK)
                if self._style == "zlib":
                    self._input = self._dec.unconsumed_tail
            if out:
                return bytes(out)

    def consumed(self) -> int:
        """Offset in the compressed file up to which data has been handed to a decompressor: what
        is read but not yet fed does not count (a 256 KiB read of data compressed tenfold, of which
        one block's worth is decoded, counted whole, made the input look ten times smaller)."""
        return self._source.position() - len(self._input)

    def _note_fed(self, length: int) -> None:
        """Record where the ``length`` bytes about to be decompressed lie: just before what is read and not yet fed."""
        end = self.consumed()
        self.fed = (end - length, end)

    def _needs_input(self) -> bool:
        return bool(self._dec.needs_input) if self._style == "lzma" else True

    def _start_member(self, data: bytes) -> bool:
        """Begin the member ``data`` starts (reading more if need be); False at a clean end."""
        zeros = 0
        while True:
            if not data:
                data = self._source.read(self.RAW_CHUNK)
            if self._padding and data[:1] == b"\0":
                stripped = data.lstrip(b"\0")
                zeros += len(data) - len(stripped)
                data = stripped
                continue
            longest = max(len(m) for m in self._magic)
            if data and len(data) < longest:
                more = self._source.read(self.RAW_CHUNK)
                if more:
                    data += more
                    continue
            break
        end = self._source.position()
        self.fed = (end - len(data), end)
        if zeros % max(self._padding, 1):
            raise _Corrupt
        if not data:
            return False
        if not any(data.startswith(m) for m in self._magic):
            if any(m.startswith(data) for m in self._magic):
                raise EOFError
            raise _Corrupt
        at = self._source.count - len(data)
        if at == self._member_at:
            raise _Corrupt
        self._member_at = at
        self._dec = self._new()
        if self._blocks is not None:
            self._blocks.reset()
        self._input = data
        return True


class _ZstdBlocks:
    """Walks the headers of one zstd frame as it is fed, to feed it a bounded number of blocks at a time.

    A block decodes to at most 128 KiB, but four bytes of input can be such a block (a run
    of one byte), so a decompressor fed 256 KiB at once could return gigabytes. Only the
    frame and block headers are read here; the decompressor checks everything.
    """

    #: Blocks fed per call: at most 2 MiB of output. Ordinary data (ratio 3-10) has fewer
    #: blocks than that in a raw chunk, so it is fed whole as before.
    MOST = LARGEST_PIECE // (128 << 10)

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """A new frame starts with the next byte fed."""
        self._skip = 0  # bytes of the current block (or skippable frame, or checksum) not yet fed
        self._next = "frame"  # what follows them: the "frame" header, a "block" header, or "done"
        self._checksum = False  # the frame ends with a 4-byte checksum

    def feedable(self, data: bytes) -> int:
        """How many leading bytes of ``data`` to feed now: whole headers and at most ``MOST`` blocks.

        Records them as fed. 0 means a header is cut off at the end of ``data``. After the
        frame's end, or data the walk cannot make sense of, everything is feedable: the
        decompressor keeps what follows its frame, and rejects what is not one.
        """
        at = blocks = 0
        while True:
            if self._skip:
                step = min(self._skip, len(data) - at)
                self._skip -= step
                at += step
                if self._skip:
                    return at
            if self._next == "done":
                return at or len(data)
            if blocks == self.MOST:
                return at
            if self._next == "frame":
                size = self._frame_header(data[at : at + 8])
            else:
                size = self._block_header(data[at : at + 3])
                blocks += 1
            if size == 0:
                return at
            self._skip = size

    def _frame_header(self, head: bytes) -> int:
        """Bytes of the frame header (of the whole frame if skippable) that ``head`` starts; 0 if cut off."""
        zstd = head[:4] == _ZSTD_MAGIC
        if len(head) < (5 if zstd else 8):
            return 0
        if not zstd:  # a skippable frame: magic, length, content
            self._next = "done"
            return 8 + int.from_bytes(head[4:8], "little")
        descriptor = head[4]
        single = descriptor >> 5 & 1
        self._checksum = bool(descriptor >> 2 & 1)
        content_size = (single, 2, 4, 8)[descriptor >> 6]
        self._next = "block"
        return 5 + (1 - single) + (0, 1, 2, 4)[descriptor & 3] + content_size

    def _block_header(self, head: bytes) -> int:
        """Bytes of the block that ``head`` starts, header included (and the frame's checksum after
        the last block); 0 if cut off."""
        if len(head) < 3:
            return 0
        word = int.from_bytes(head, "little")
        last, kind, size = word & 1, word >> 1 & 3, word >> 3
        if kind == 3:  # reserved: not a frame the decompressor will take
            self._next = "done"
            return 3
        if last:
            self._next = "done"
        content = 1 if kind == 1 else size  # a run (RLE) block holds one byte
        return 3 + content + (4 if last and self._checksum else 0)


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _Corrupt(Exception):
    """Raised by our own parsing where the libraries would raise their error type."""


class Decompressed(io.RawIOBase):
    """The decompressed stream ``open_reader`` returns: every failure becomes one InputError.

    Its pieces may be decoded ahead on another thread (``decode_ahead``) before the stream is
    read; reading then takes them first, and ``position`` is the same as if they had not been.
    """

    def __init__(
        self, source: _Counted, loop: _MemberLoop, codec: str, name: str, errors: tuple[type[Exception], ...]
    ) -> None:
        self._source = source
        self._loop: _MemberLoop | None = loop  # None once closed: the decoder's window is let go
        self._codec = codec
        self._name = name
        self._errors = errors + (_Corrupt,)
        self._pending = memoryview(b"")
        #: How far the compressed file had been fed to the decoder when the piece being read was
        #: decoded, and when the one before it was; that piece's length (0: none yet).
        self._at = self._from = source.position()
        self._piece = 0
        #: Pieces decoded ahead, each with ``_at`` after it, or the error that ended them.
        self._ahead: deque[tuple[bytes, int] | InputError] = deque()

    def readable(self) -> bool:
        return True

    def position(self) -> int:
        """Offset in the compressed file that the data read so far came from: where the decoder had
        been fed to when the piece being read was decoded, less the share of that piece's input its
        unread part stands for. A piece is up to 2 MiB decoded from one 256 KiB read: counted whole,
        a first block of 64 KiB made a tenfold-compressed input look ten times smaller than it is.
        It depends only on how much has been read, not on the sizes of the reads or on what was
        decoded ahead, so plans made from it are too."""
        if not self._piece:
            return self._at
        done = self._piece - len(self._pending)
        return self._from + (self._at - self._from) * done // self._piece

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        with memoryview(b) as view, view.cast("B") as flat:
            filled = 0
            while filled < len(flat):
                if not self._pending:
                    self._pending = memoryview(self._take())
                    if not self._pending:
                        break
                n = min(len(flat) - filled, len(self._pending))
                flat[filled : filled + n] = self._pending[:n]
                self._pending = self._pending[n:]
                filled += n
            return filled

    def decode_ahead(self, most: int, stop: Callable[[], bool]) -> None:
        """Decode pieces for later reads until they hold ``most`` bytes, the data ends or fails, or
        ``stop()``: run on another thread while this stream is not read (the caller waits for it
        to return before reading). A failure is raised when the read reaches it."""
        held = pieces = 0
        while held < most and not stop():
            try:
                piece = self._decode()
            except InputError as e:
                self._ahead.append(e)
                return
            assert self._loop is not None  # (``_decode`` raised were it closed)
            self._ahead.append((piece, self._loop.consumed()))
            if not piece:
                return
            held += len(piece) + PIECE_OVERHEAD
            pieces += 1
            if pieces >= SMALL_PIECES_SEEN and held < pieces * SMALL_PIECE:
                return  # tiny members: decoding them is the interpreter's work, which a second thread only contends for

    def _take(self) -> bytes:
        """The next piece: decoded ahead, else now."""
        if self._ahead:
            item = self._ahead.popleft()
            if isinstance(item, InputError):
                raise item
            piece, at = item
        else:
            piece = self._decode()
            assert self._loop is not None
            at = self._loop.consumed()
        self._from, self._piece, self._at = self._at, len(piece), at
        return piece

    def _decode(self) -> bytes:
        if self._loop is None:
            raise ValueError("read of a closed stream")
        try:
            return self._loop.next_piece()
        except _SourceError as e:
            raise InputError(f"{self._name}: read error: {e.error.strerror or e.error}") from None
        except EOFError:
            unit = CODECS[self._codec].unit
            raise InputError(f"{self._name}: truncated {self._codec} data (ends inside a {unit})") from None
        except self._errors as e:
            lo, hi = self._loop.fed
            if self._codec == "zstd" and "dictionary" in str(e).lower():
                raise InputError(f"{self._name}: the zstd frame at byte {lo} needs a zstd dictionary, which bigshuf does not take") from None
            where = f"at byte {lo}" if hi - lo <= 1 else f"between bytes {lo} and {hi}"
            raise InputError(f"{self._name}: corrupt {self._codec} data {where}") from None

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._ahead.clear()
            self._pending = memoryview(b"")
            self._loop = None  # a run keeps its sources (and so their streams) to the end: thousands of them
            self._source.raw.close()


def open_reader(raw: BinaryIO, codec: str, name: str) -> BinaryIO:
    """A stream of the data decompressed from ``raw``, concatenated members read as one.

    ``readinto`` and ``read`` raise only InputError, naming ``name``, for corrupt, truncated
    or unreadable input. Closing the stream closes ``raw`` too.
    """
    source = _Counted(raw)
    loop: _MemberLoop
    errors: tuple[type[Exception], ...]
    if codec == "gzip":
        isal_zlib = _require("isal.isal_zlib", codec, InputError, f"{name}: ")
        # wbits=31: one gzip member per object. gzip itself ignores zeros after the last member.
        loop = _MemberLoop(source, codec, lambda: isal_zlib.decompressobj(wbits=31), "zlib", padding=1)
        errors = (isal_zlib.error,)
    elif codec == "zstd":
        zstandard = _require("zstandard", codec, InputError, f"{name}: ")
        loop = _MemberLoop(source, codec, zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).decompressobj, "zstd")
        errors = (zstandard.ZstdError,)
    elif codec == "bzip2":
        import bz2

        # BZ2Decompressor reports bad data as a plain OSError; the file's own are _SourceError.
        loop = _MemberLoop(source, codec, bz2.BZ2Decompressor, "lzma")
        errors = (OSError,)
    elif codec == "xz":
        import lzma

        # Streams may be followed by zero padding in multiples of 4 bytes (the xz format).
        loop = _MemberLoop(source, codec, lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ), "lzma", padding=4)
        errors = (lzma.LZMAError,)
    else:
        raise ValueError(f"unknown codec {codec!r}")
    return Decompressed(source, loop, codec, name, errors)  # type: ignore[return-value]


def decompressing(raw: BinaryIO, name: str) -> BinaryIO:
    """``raw`` read through the codec its first bytes name (as it is, if none); closed on a read error."""
    try:
        stream, codec = sniff(raw)
    except OSError as e:
        raw.close()
        raise InputError(f"{name}: read error: {e.strerror or e}") from None
    return stream if codec is None else open_reader(stream, codec, name)
