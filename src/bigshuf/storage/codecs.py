"""Compressed inputs and outputs: gzip, zstd, bzip2 and xz, detected by magic bytes or named by suffix."""

# Library choices, measured on the 2-core development machine (idle, warm page cache) by
#     /work/venv/bin/python benchmarks/codecs_bench.py
# 256 MiB of generated text (random words, lines of 60-1000 bytes); MB/s of uncompressed data,
# median of 3; reads drain 16 MiB readinto calls, writes take 16 MiB memoryviews; "cpu" is
# cores busy; size is compressed/uncompressed.
#
#   gzip read     isal IGzipFile 626 | isal decompressobj loop (chosen) 594 | zlib-ng 459
#                 | pyarrow 271 | stdlib 224 | `gzip -dc` 164
#   zstd read     zstandard decompressobj loop (chosen) 941 | stream_reader 932
#                 | pyarrow 967-980 | `zstd -dc` 884
#   gzip write    isal L1 268-334 (0.460) | isal L2 307 (0.447) | isal L3 (chosen for 6-9) 204 (0.442)
#                 | isal threaded x2: L1 504, L3 410 at 1.8 cpu | zlib-ng L1 174 (0.615), L6 66 (0.433)
#                 | stdlib L1 73 (0.485), L6 37 (0.442) | `gzip -6` 34 | pyarrow 34
#   zstd write    zstandard L3 140 (0.360), L3 threads=2 (chosen) 288 at 1.8 cpu (0.359)
#                 | L1 272, L1 threads=2 461 | pyarrow (fixed level 1) 283 | `zstd -3` 162, `-T2` 300
#   bzip2 (stdlib, 32 MiB)  read 32 (= `bzip2 -dc`); write L1 19 (0.406), L9 17 (0.306)
#   xz (stdlib, 32 MiB)     read 78 (= `xz -dc`); write L1 10 (0.361), L6 1 (0.308)
#
# Reading: every codec goes through one strict loop over the library's decompressor objects
# (_MemberLoop), which reads concatenated members, rejects trailing garbage and detects
# truncation. zstandard's stream_reader is as fast but returns short output without error on
# a truncated frame; isal's IGzipFile is 5% faster but calls trailing garbage "truncated";
# pyarrow reports every problem as an OSError told apart only by its message.
# Writing: isal (ISA-L igzip) has levels 1-3 only; gzip levels map onto them so that the
# default, 6, is as small as `gzip -6` at 6x its speed (ISA-L level 2, gzip:4-5, is 1.5x
# faster still for 1% more). Its threaded writer (2x) runs Python threads that die with the
# thread that opened it and writes the file from them, so it is not used. zstd's own worker
# threads double its speed when a core is free, give the same bytes for any worker count,
# and cost about 50 MiB at level 3. xz defaults to level 1: level 6, xz's own default,
# writes 1 MB/s, over two hours per 10 GB.

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..errors import BigShufError, OutputError, UsageError, option


@dataclass(frozen=True)
class Codec:
    """One compression format: how to recognise it and how ``--compress`` names its levels."""

    name: str
    #: Prefixes that start a compressed file (any one of them).
    magic: tuple[bytes, ...]
    #: Output file suffixes that select it, lower case, first one canonical.
    suffixes: tuple[str, ...]
    default_level: int
    levels: range
    #: What the format calls one self-contained piece, for "ends inside a ..." messages.
    unit: str
    #: The PyPI package it needs beyond the standard library, for install hints.
    package: str | None
    #: Short names of a tar compressed with it (``.tgz`` for ``.tar.gz``), as GNU tar knows them.
    tar_suffixes: tuple[str, ...] = ()


CODECS: dict[str, Codec] = {
    "gzip": Codec("gzip", (b"\x1f\x8b\x08",), (".gz",), 6, range(1, 10), "member", "isal", (".tgz", ".taz")),
    "zstd": Codec(
        "zstd",
        # A frame, or a skippable frame (magic 0x184D2A50-5F) that some tools put first.
        (b"\x28\xb5\x2f\xfd",) + tuple(bytes([0x50 + i, 0x2A, 0x4D, 0x18]) for i in range(16)),
        (".zst", ".zstd"),
        3,
        range(1, 23),
        "frame",
        "zstandard",
        (".tzst",),
    ),
    "bzip2": Codec("bzip2", (b"BZh",), (".bz2",), 9, range(1, 10), "stream", None, (".tbz2", ".tbz", ".tb2", ".tz2")),
    "xz": Codec("xz", (b"\xfd7zXZ\x00",), (".xz",), 1, range(0, 10), "stream", None, (".txz",)),
}

_ALIASES = {"gz": "gzip", "zst": "zstd", "bz2": "bzip2"}

#: Bytes ``sniff`` peeks: enough for every magic plus bzip2's block magic after its header.
SNIFF_BYTES = 16

#: bzip2's first block (``1AY&SY``, the BCD digits of pi) or its end of stream (sqrt(pi)).
_BZIP2_AFTER_HEADER = (b"1AY&SY", b"\x17rE8P\x90")


def detect(head: bytes) -> str | None:
    """The codec whose magic bytes start ``head`` (give at least 6 bytes), or None for plain data.

    With 10 bytes or more a bzip2 header must also be followed by a block or end-of-stream
    magic, so a text file that happens to start with ``BZh9`` is not taken for bzip2.
    """
    for codec in CODECS.values():
        if any(head.startswith(m) for m in codec.magic):
            if codec.name == "bzip2":
                if not head[3:4].isdigit() or head[3:4] == b"0":
                    continue
                if len(head) >= 10 and head[4:10] not in _BZIP2_AFTER_HEADER:
                    continue
            return codec.name
    return None


def codec_for_suffix(path: str) -> str | None:
    """The codec an output path asks for by its suffix (``out.jsonl.zst``, ``out.tgz`` → zstd, gzip), or None."""
    lower = path.lower()
    for codec in CODECS.values():
        if lower.endswith(codec.suffixes + codec.tar_suffixes):
            return codec.name
    return None


def parse_compress(spec: str) -> tuple[str, int | None]:
    """Parse ``--compress=CODEC[:LEVEL]`` into (codec, level or None); ``none`` means plain output.

    Plain output is returned as ``("none", None)``.
    """
    name, colon, level_text = spec.strip().lower().partition(":")
    name = _ALIASES.get(name, name)
    if name == "none":
        if colon:
            raise UsageError(f"{option('compress')}: 'none' takes no level (got {spec!r})")
        return "none", None
    if name not in CODECS:
        choices = ", ".join([*CODECS, "none"])
        raise UsageError(f"{option('compress')}: unknown codec {spec!r}; choose one of {choices}, optionally with :LEVEL")
    if not colon:
        return name, None
    levels = CODECS[name].levels
    level = int(level_text) if level_text.isascii() and level_text.isdigit() else None
    if level is None or level not in levels:
        raise UsageError(
            f"{option('compress')}: {name} level must be an integer from {levels.start} to {levels.stop - 1} (got {spec!r})"
        )
    return name, level


def _require(module: str, codec: str, error: type[BigShufError], prefix: str = "") -> Any:
    """Import an optional codec library, or explain which package to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        from ..address_space import no_room_to_load

        if no_room_to_load(e):
            raise  # installed, but memory (``ulimit -v``) is too small to load it: said as such
        package = CODECS[codec].package
        raise error(f"{prefix}{codec} support needs the '{package}' package: pip install {package}") from None


# ---------------------------------------------------------------------------------------------
# Sniffing


class Replay(io.RawIOBase):
    """A stream whose first bytes were already read (to sniff a pipe, to split off a header): hands them out again first."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head = memoryview(head)
        self._raw = raw
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
        else:
            n = self._raw.readinto(b) or 0  # type: ignore[attr-defined]
        self._pos += n
        return n

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._raw.close()


def sniff(raw: BinaryIO) -> tuple[BinaryIO, str | None]:
    """Peek at the start of ``raw`` and return a stream positioned at the start, and its codec.

    A seekable ``raw`` is read and seeked back, and returned itself. A pipe cannot seek back,
    so it comes back wrapped in a stream that replays the peeked bytes before reading on;
    closing that wrapper closes ``raw``.
    """
    seekable = False
    try:
        seekable = raw.seekable()
        start = raw.tell() if seekable else 0
    except OSError:
        seekable = False
    head = b""
    while len(head) < SNIFF_BYTES:
        more = raw.read(SNIFF_BYTES - len(head))
        if not more:
            break
        head += more
    if seekable:
        raw.seek(start)
        return raw, detect(head)
    return Replay(head, raw), detect(head)  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# Writing


def _isal_level(level: int) -> int:
    """ISA-L's level (1-3) for a gzip level (1-9): 6-9 give ISA-L's best, as small as gzip -6."""
    return 1 if level <= 3 else 2 if level <= 5 else 3


def _zstd_workers() -> int:
    """Worker threads for zstd compression: one per CPU this process may run on."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def open_writer(raw: BinaryIO, codec: str, level: int | None) -> BinaryIO:
    """A stream compressing into ``raw``; ``close()`` ends the compressed data but leaves ``raw`` open.

    ``level`` None means the codec's default. Errors writing to ``raw`` surface as the
    OSError ``raw`` raised. The same writes give the same bytes, run after run.
    """
    spec = CODECS.get(codec)
    if spec is None:
        raise ValueError(f"unknown codec {codec!r}")
    if level is None:
        level = spec.default_level
    if level not in spec.levels:
        raise UsageError(f"{option('compress')}: {codec} level must be from {spec.levels.start} to {spec.levels.stop - 1}")
    if codec == "gzip":
        igzip = _require("isal.igzip", codec, OutputError)
        # filename="" and mtime=0 keep the temporary file's name and the time out of the header.
        isal_level = _isal_level(level)
        return igzip.IGzipFile(filename="", mode="wb", compresslevel=isal_level, fileobj=raw, mtime=0)  # type: ignore[no-any-return]
    if codec == "zstd":
        zstandard = _require("zstandard", codec, OutputError)
        # Checksums, which the zstd tool writes by default, let readers catch damaged data.
        # zstd's output is the same for any number of workers (1 or more), so this is reproducible.
        compressor = zstandard.ZstdCompressor(level=level, threads=_zstd_workers(), write_checksum=True)
        return compressor.stream_writer(raw, closefd=False)  # type: ignore[no-any-return]
    if codec == "bzip2":
        import bz2

        return bz2.BZ2File(raw, "wb", compresslevel=level)  # type: ignore[return-value]
    import lzma

    return lzma.LZMAFile(raw, "wb", format=lzma.FORMAT_XZ, preset=level)  # type: ignore[return-value]
