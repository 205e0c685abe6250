"""Compressed inputs and outputs: registry, detection, round trips and every way compressed data breaks."""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import lzma
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bigshuf.storage import codecs, decoding
from bigshuf.errors import InputError, UsageError

from helpers import compress, decompress, run_peak

ALL = sorted(codecs.CODECS)

#: Buffer sizes for readinto: odd, smaller and larger than the codecs' internal chunks.
ODD_SIZES = (1, 7, 4093, 65537, 1 << 20)


def text(n_lines: int = 20000, seed: int = 0) -> bytes:
    """Compressible lines of random words, with a few raw bytes mixed in."""
    rng = np.random.default_rng(seed)
    words = [bytes(rng.integers(97, 123, rng.integers(1, 9)).astype(np.uint8)) for _ in range(300)]
    words += [b"\x00", b"\xff\xfe", b"\r"]
    picks = rng.integers(0, len(words), n_lines * 8)
    lines = [b" ".join(words[j] for j in picks[i * 8 : i * 8 + 8]) for i in range(n_lines)]
    return b"\n".join(lines) + b"\n"


def written(codec: str, data: bytes, level: int | None = None, chunk: int = 100_003) -> bytes:
    """``data`` compressed through ``open_writer`` in odd-sized memoryview chunks."""
    raw = io.BytesIO()
    w = codecs.open_writer(raw, codec, level)
    view = memoryview(data)
    for i in range(0, len(view), chunk):
        w.write(view[i : i + chunk])
    w.flush()
    w.close()
    return raw.getvalue()


def read_all(blob: bytes, codec: str, name: str = "in.dat", sizes: tuple[int, ...] = ODD_SIZES) -> bytes:
    """Everything ``open_reader`` yields, read with ``readinto`` into buffers of cycling sizes."""
    reader = decoding.open_reader(io.BytesIO(blob), codec, name)
    buffers = [memoryview(bytearray(s)) for s in sizes]
    out = bytearray()
    i = 0
    while True:
        buf = buffers[i % len(buffers)]
        n = reader.readinto(buf)  # type: ignore[attr-defined]
        if not n:
            break
        out += buf[:n]
        i += 1
    reader.close()
    return bytes(out)


@pytest.fixture(scope="module")
def data() -> bytes:
    return text()


# --- registry, detection, names -------------------------------------------------------------


def test_registry_describes_four_codecs() -> None:
    assert ALL == ["bzip2", "gzip", "xz", "zstd"]
    for codec in codecs.CODECS.values():
        assert codec.magic and codec.suffixes and codec.default_level in codec.levels
    assert codecs.CODECS["zstd"].default_level == 3
    assert codecs.CODECS["gzip"].default_level == 6
    assert codecs.CODECS["xz"].default_level == 1


@pytest.mark.parametrize("codec", ALL)
def test_detect_recognises_real_output(codec: str, data: bytes) -> None:
    assert codecs.detect(compress(codec, data)[:16]) == codec
    assert codecs.detect(written(codec, data)[:6]) == codec


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"hello world\n",
        b'{"text": "a"}\n',
        b"\x00\x00\x00\x00\x00\x00",
        b"\xff\xfe\xfd\xfc\xfb\xfa",
        b"\x1f",  # gzip's first byte alone
        b"\x1f\x8b",  # gzip's magic without the deflate method byte
        b"\x1f\x8b\x07abc",
        b"\x28\xb5\x2f",  # three quarters of zstd's magic
        b"\xfd7zXZ",  # xz's magic minus its last byte
        b"BZ",
        b"BZh0abcdefgh",  # level 0 does not exist
        b"BZhx\n",
        b"BZh9 is how this line starts\n",  # looks like a bzip2 header but no block follows
        b"\x50\x2a\x4d\x17abcd",  # one bit away from a zstd skippable frame
    ],
)
def test_detect_leaves_other_bytes_plain(head: bytes) -> None:
    assert codecs.detect(head) is None


def test_detect_zstd_skippable_frame_and_short_bzip2_head() -> None:
    assert codecs.detect(b"\x5e\x2a\x4d\x18\x04\x00\x00\x00") == "zstd"
    assert codecs.detect(b"BZh91A") == "bzip2"  # 6 bytes: only the header can be checked
    assert codecs.detect(b"BZh91AY&SY") == "bzip2"
    assert codecs.detect(b"BZh9\x17rE8P\x90") == "bzip2"  # an empty stream


@pytest.mark.parametrize(
    "path, codec",
    [
        ("out.jsonl.gz", "gzip"),
        ("OUT.GZ", "gzip"),
        ("dir.zst/out.zst", "zstd"),
        ("out.zstd", "zstd"),
        ("out.bz2", "bzip2"),
        ("/tmp/a.xz", "xz"),
        ("out.jsonl", None),
        # A compressed tar's short names, as GNU tar writes them (the WebDataset format reads them as tars).
        ("out.tgz", "gzip"),
        ("OUT.TZST", "zstd"),
        ("out.tbz2", "bzip2"),
        ("out.txz", "xz"),
        ("out.tgz.txt", None),
        ("gz", None),
        ("-", None),
        ("out.zst.txt", None),
    ],
)
def test_codec_for_suffix(path: str, codec: str | None) -> None:
    assert codecs.codec_for_suffix(path) == codec


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("gzip", ("gzip", None)),
        ("gz:1", ("gzip", 1)),
        ("GZIP:9", ("gzip", 9)),
        ("zstd", ("zstd", None)),
        ("zst:19", ("zstd", 19)),
        ("zstd:22", ("zstd", 22)),
        ("bzip2:1", ("bzip2", 1)),
        ("bz2", ("bzip2", None)),
        ("xz:0", ("xz", 0)),
        ("none", ("none", None)),
        ("None", ("none", None)),
    ],
)
def test_parse_compress_accepts(spec: str, expected: tuple[str, int | None]) -> None:
    assert codecs.parse_compress(spec) == expected


@pytest.mark.parametrize(
    "spec",
    ["", "lz4", "lz4:3", "gzip:", "gzip:x", "zstd:1_0", "zstd:+3", "gzip:³", "gzip:0", "gzip:10", "zstd:23", "zstd:0"]
    + ["gzip:-1", "gzip:1:2", "none:3", ":3"],
)
def test_parse_compress_rejects(spec: str) -> None:
    with pytest.raises(UsageError, match="compress=") as info:
        codecs.parse_compress(spec)
    assert "\n" not in str(info.value)


def test_import_leaves_optional_libraries_unloaded() -> None:
    code = "import sys, bigshuf.storage.codecs; print(sorted(m for m in ('zstandard', 'isal', 'zlib_ng') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ALL)
def test_round_trip_default_level(codec: str, data: bytes) -> None:
    blob = written(codec, data)
    assert len(blob) < len(data) // 2
    assert decompress(codec, blob) == data
    assert read_all(blob, codec) == data


@pytest.mark.parametrize("codec, level", [("gzip", 1), ("gzip", 9), ("zstd", 1), ("zstd", 19), ("bzip2", 1), ("xz", 0)])
def test_round_trip_other_levels(codec: str, level: int, data: bytes) -> None:
    blob = written(codec, data[:200_000], level, chunk=4099)
    assert read_all(blob, codec) == data[:200_000]


@pytest.mark.parametrize("codec", ALL)
def test_empty_data_round_trips(codec: str) -> None:
    assert read_all(written(codec, b""), codec) == b""


@pytest.mark.parametrize("codec", ALL)
def test_reader_reads_library_output_and_supports_read(codec: str, data: bytes) -> None:
    reader = decoding.open_reader(io.BytesIO(compress(codec, data)), codec, "x")
    assert reader.read(10) == data[:10]
    assert reader.read() == data[10:]
    assert reader.read() == b""


def test_reader_fills_a_numpy_buffer(data: bytes) -> None:
    buf = np.zeros(len(data) + 10, np.uint8)
    reader = decoding.open_reader(io.BytesIO(compress("zstd", data)), "zstd", "x")
    assert reader.readinto(buf.data) == len(data)  # type: ignore[attr-defined]
    assert buf[: len(data)].tobytes() == data


def test_concatenated_gzip_members_read_as_one(data: bytes) -> None:
    a, b = data[:100_000], data[100_000:]
    blob = gzip.compress(a) + gzip.compress(b"") + gzip.compress(b)
    assert read_all(blob, "gzip") == data


def test_concatenated_zstd_frames_read_as_one(data: bytes) -> None:
    import zstandard

    a, b = data[:100_000], data[100_000:]
    skippable = b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"12345"
    c = zstandard.ZstdCompressor(level=3)
    blob = skippable + c.compress(a) + c.compress(b"") + skippable + c.compress(b)
    assert read_all(blob, "zstd") == data


def test_zstd_frames_of_every_header_shape_read_whole(data: bytes) -> None:
    # The reader walks frame and block headers to feed a few blocks at a time: content size
    # present or not (streamed), checksum or not, single segment or a window descriptor,
    # raw, run and compressed blocks, headers cut across reads.
    import zstandard

    runs = bytes(300_000) + b"\n" + data[:50_000] + b"\1" * 200_000
    blobs = []
    for level, checksum, sized in [(1, True, True), (3, False, True), (19, True, False), (-5, False, False)]:
        c = zstandard.ZstdCompressor(level=level, write_checksum=checksum, write_content_size=sized)
        if sized:
            blobs.append(c.compress(runs) + c.compress(data))
        else:
            obj = c.compressobj()
            blobs.append(obj.compress(runs) + obj.compress(data) + obj.flush())
    blob = b"".join(blobs)
    expected = (runs + data) * len(blobs)
    assert read_all(blob, "zstd") == expected
    assert read_all(blob, "zstd", sizes=(3, 1 << 22)) == expected


def long_window_frame(data: bytes, window_log: int) -> bytes:
    """``data`` as one streamed zstd frame keeping a ``2**window_log`` window (as ``zstd --long``
    writes), which a known content size would have shrunk to fit the data."""
    import zstandard

    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=window_log)
    obj = zstandard.ZstdCompressor(compression_params=params).compressobj()
    return obj.compress(data) + obj.flush()


def test_zstd_frames_with_a_long_window_read_as_zstd_long_reads_them(data: bytes, tmp_path: Path, run_cli) -> None:
    """Regression: a frame whose window is over zstandard's default 128 MiB limit (``zstd --long=28``
    up to ``--long=31``) was reported as corrupt."""
    import zstandard

    blob = long_window_frame(data, 28)
    assert zstandard.get_frame_parameters(blob).window_size == 1 << 28
    with pytest.raises(zstandard.ZstdError, match="too much memory"):
        zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    assert read_all(blob, "zstd") == data
    (tmp_path / "w.zst").write_bytes(blob)
    code, out, err = run_cli(["--seed", "1", "w.zst"], cwd=tmp_path)
    assert (code, err) == (0, b"")
    assert sorted(out.splitlines()) == sorted(data.splitlines())


def test_zstd_frame_needing_a_dictionary_says_so_in_one_line(data: bytes, tmp_path: Path, run_cli) -> None:
    """A frame compressed with a dictionary was reported as corrupt data; it is valid, only not readable without it."""
    import zstandard

    samples = [b"%d lines of %d words and %d more\n" % (i, i * 7, i * 13) for i in range(2000)]
    blob = zstandard.ZstdCompressor(dict_data=zstandard.train_dictionary(4096, samples)).compress(data)
    (tmp_path / "d.zst").write_bytes(blob)
    code, out, err = run_cli(["d.zst"], cwd=tmp_path)
    assert (code, out) == (1, b"")
    assert err == b"bigshuf: d.zst: the zstd frame at byte 0 needs a zstd dictionary, which bigshuf does not take\n", err


def test_concatenated_bzip2_streams_read_as_one(data: bytes) -> None:
    a, b = data[:100_000], data[100_000:]
    assert read_all(bz2.compress(a) + bz2.compress(b), "bzip2") == data


def test_concatenated_xz_streams_with_padding_read_as_one(data: bytes) -> None:
    a, b = data[:100_000], data[100_000:]
    assert read_all(lzma.compress(a) + b"\0" * 8 + lzma.compress(b) + b"\0" * 4, "xz") == data


def test_gzip_trailing_zeros_are_ignored_as_gzip_does(data: bytes) -> None:
    assert read_all(compress("gzip", data) + b"\0" * 7, "gzip") == data


def test_gzip_output_is_reproducible_and_hides_the_file_name(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "secret-temp-name"
    with open(path, "wb") as raw:
        w = codecs.open_writer(raw, "gzip", None)
        w.write(memoryview(data))
        w.flush()
        w.close()
    blob = path.read_bytes()
    assert b"secret-temp-name" not in blob
    assert blob == written("gzip", data, chunk=len(data))  # same writes, same bytes


# --- broken inputs --------------------------------------------------------------------------


def drain(reader: object, size: int = 65537) -> bytes:
    """Read with ``readinto`` until the end, as the engine does."""
    buf = memoryview(bytearray(size))
    out = bytearray()
    while n := reader.readinto(buf):  # type: ignore[attr-defined]
        out += buf[:n]
    return bytes(out)


@pytest.mark.parametrize("codec", ALL)
def test_corrupt_middle_raises_input_error_naming_the_file(codec: str, data: bytes) -> None:
    blob = bytearray(compress(codec, data))
    mid = len(blob) // 2
    blob[mid : mid + 16] = bytes(x ^ 0xFF for x in blob[mid : mid + 16])
    reader = decoding.open_reader(io.BytesIO(bytes(blob)), codec, "shard-7.dat")
    with pytest.raises(InputError) as info:
        drain(reader)
    found = re.fullmatch(rf"shard-7\.dat: corrupt {codec} data between bytes (\d+) and (\d+)", str(info.value))
    assert found is not None, str(info.value)
    lo, hi = int(found[1]), int(found[2])
    # Where the decompressor failed: past the damage (bzip2 finds it by a block's CRC), never before it.
    assert lo < hi <= len(blob) and hi > mid, (lo, hi, mid)


@pytest.mark.parametrize("codec", ALL)
@pytest.mark.parametrize("keep", [2 / 3, 0.5, 20])
def test_truncated_input_raises_input_error(codec: str, keep: float, data: bytes) -> None:
    blob = compress(codec, data)
    cut = int(len(blob) * keep) if keep < 1 else int(keep)
    reader = decoding.open_reader(io.BytesIO(blob[:cut]), codec, "part.bin")
    with pytest.raises(InputError, match=rf"^part\.bin: truncated {codec} data \(ends inside a \w+\)$"):
        drain(reader, 4093)


@pytest.mark.parametrize("codec", ALL)
@pytest.mark.parametrize("tail", [b"garbage after the end", b"\n", b"\x00" * 5 + b"x"])
def test_trailing_garbage_raises_input_error(codec: str, tail: bytes, data: bytes) -> None:
    """The message says where the garbage lies (it said "near byte N" of wherever the read had got to: the file's end)."""
    blob = compress(codec, data)
    reader = decoding.open_reader(io.BytesIO(blob + tail), codec, "t.dat")
    with pytest.raises(InputError, match=rf"^t\.dat: corrupt {codec} data (at byte|between bytes) (\d+)") as info:
        drain(reader)
    where = re.search(r"(\d+)( and (\d+))?$", str(info.value))
    assert where is not None and len(blob) <= int(where[1]) and int(where[3] or where[1]) <= len(blob) + len(tail), str(info.value)


@pytest.mark.parametrize("codec", ["zstd", "bzip2"])
def test_trailing_zeros_are_garbage_where_the_format_allows_no_padding(codec: str, data: bytes) -> None:
    with pytest.raises(InputError, match="corrupt"):
        drain(decoding.open_reader(io.BytesIO(compress(codec, data) + b"\0" * 8), codec, "z"))


def test_xz_padding_must_be_a_multiple_of_four(data: bytes) -> None:
    with pytest.raises(InputError, match="corrupt xz"):
        drain(decoding.open_reader(io.BytesIO(compress("xz", data) + b"\0" * 6), "xz", "z"))


@pytest.mark.parametrize("codec", ALL)
def test_random_damage_gives_input_error_or_the_right_bytes(codec: str) -> None:
    # Damage in places a format does not check (gzip's mtime, say) may leave the output intact;
    # anything else must be an InputError, never another exception, a hang or short output.
    small = text(1000, seed=3)
    blob = compress(codec, small)
    rng = np.random.default_rng(42)
    for _ in range(40):
        damaged = bytearray(blob)
        for pos in rng.integers(0, len(blob), rng.integers(1, 4)):
            damaged[pos] ^= int(rng.integers(1, 256))
        try:
            out = drain(decoding.open_reader(io.BytesIO(bytes(damaged)), codec, "f"), 999)
        except InputError:
            continue
        assert out == small


class FailingRaw(io.RawIOBase):
    """A file that delivers some bytes, then fails as a dying disk would."""

    def __init__(self, data: bytes, fail_at: int) -> None:
        self.data, self.pos, self.fail_at = data, 0, fail_at

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        if self.pos >= self.fail_at:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        n = min(len(b), self.fail_at - self.pos)
        b[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


@pytest.mark.parametrize("codec", ALL)
def test_read_error_of_the_file_is_reported_as_such(codec: str, data: bytes) -> None:
    blob = compress(codec, data)
    reader = decoding.open_reader(FailingRaw(blob, len(blob) // 3), codec, "disk.dat")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"^disk\.dat: read error: Input/output error$"):
        drain(reader)


# --- stream ownership and write errors ------------------------------------------------------


@pytest.mark.parametrize("codec", ALL)
def test_writer_close_leaves_raw_open(codec: str, tmp_path: Path) -> None:
    path = tmp_path / "out"
    with open(path, "wb", buffering=1 << 20) as raw:
        w = codecs.open_writer(raw, codec, None)
        w.write(memoryview(b"one\ntwo\n"))
        w.close()
        assert not raw.closed
        raw.write(compress(codec, b"three\n"))
    assert decompress(codec, path.read_bytes()) == b"one\ntwo\nthree\n"


@pytest.mark.parametrize("codec", ALL)
def test_reader_close_closes_raw(codec: str) -> None:
    raw = io.BytesIO(compress(codec, b"x\n"))
    reader = decoding.open_reader(raw, codec, "r")
    reader.close()
    assert raw.closed


class FullDisk(io.RawIOBase):
    """A file whose every write fails with ENOSPC."""

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("codec", ALL)
def test_write_errors_surface_as_the_files_oserror(codec: str, data: bytes) -> None:
    with pytest.raises(OSError) as info:
        w = codecs.open_writer(FullDisk(), codec, 1)  # type: ignore[arg-type]
        for _ in range(20):
            w.write(memoryview(data))
        w.close()
    assert info.value.errno == errno.ENOSPC


# --- sniffing -------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", [*ALL, None])
def test_sniff_seekable_returns_the_file_rewound(codec: str | None, data: bytes) -> None:
    blob = compress(codec, data) if codec else data
    raw = io.BytesIO(blob)
    stream, found = codecs.sniff(raw)
    assert found == codec
    assert stream is raw and raw.tell() == 0


def pipe_reader(payload: bytes) -> tuple[io.FileIO, threading.Thread]:
    """The read end of a pipe fed ``payload`` by a thread, its first bytes one at a time."""
    rfd, wfd = os.pipe()

    def feed() -> None:
        with open(wfd, "wb", buffering=0) as w:
            for i in range(min(5, len(payload))):
                w.write(payload[i : i + 1])
                time.sleep(0.01)
            w.write(payload[5:])

    thread = threading.Thread(target=feed)
    thread.start()
    return open(rfd, "rb", buffering=0), thread


@pytest.mark.parametrize("codec", [*ALL, None])
def test_sniff_pipe_keeps_the_peeked_bytes(codec: str | None, data: bytes) -> None:
    blob = compress(codec, data) if codec else data
    raw, thread = pipe_reader(blob)
    stream, found = codecs.sniff(raw)
    assert found == codec
    reader = decoding.open_reader(stream, codec, "-") if codec else stream
    assert drain(reader) == data
    reader.close()
    thread.join()
    assert raw.closed


@pytest.mark.parametrize("payload", [b"", b"a", b"\x1f\x8b"])
def test_sniff_pipe_shorter_than_the_peek(payload: bytes) -> None:
    raw, thread = pipe_reader(payload)
    stream, found = codecs.sniff(raw)
    assert found is None
    assert stream.read() == payload
    stream.close()
    thread.join()


def test_errors_after_sniffing_a_pipe_count_from_the_start(data: bytes) -> None:
    blob = bytearray(compress("bzip2", data))
    blob[len(blob) // 2] ^= 0xFF
    raw, thread = pipe_reader(bytes(blob))
    stream, _ = codecs.sniff(raw)
    with pytest.raises(InputError, match=r"^-: corrupt bzip2 data between bytes (\d+) and (\d+)$") as info:
        drain(decoding.open_reader(stream, "bzip2", "-"))
    assert len(blob) // 2 < int(str(info.value).rsplit(" ", 1)[1]) <= len(blob)
    stream.close()
    thread.join()


def test_missing_library_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from bigshuf.errors import OutputError

    monkeypatch.setitem(sys.modules, "zstandard", None)
    message = r"^in\.zst: zstd support needs the 'zstandard' package: pip install zstandard$"
    with pytest.raises(InputError, match=message):
        decoding.open_reader(io.BytesIO(b""), "zstd", "in.zst")
    with pytest.raises(OutputError, match="pip install zstandard"):
        codecs.open_writer(io.BytesIO(), "zstd", None)


# ---------------------------------------------------------------------------------------------
# Decompression bombs: output per call is bounded, so -S holds however well the input compresses

MiB = 1 << 20



def zeros_bomb(codec: str, size: int) -> bytes:
    """``size`` zero bytes compressed: zstd as one frame, the others as ten members (quicker to make)."""
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(bytes(size))  # blocks of runs: 4 bytes per 128 KiB
    piece = bytes(size // 10)
    one = {"gzip": lambda: gzip.compress(piece, 1), "bzip2": lambda: bz2.compress(piece, 1),
           "xz": lambda: lzma.compress(piece, preset=0)}[codec]()
    return one * 10


@pytest.mark.parametrize("codec", ALL)
def test_a_zeros_bomb_stays_within_the_limit(codec: str, tmp_path: Path) -> None:
    # 300 MiB of zeros (no newline: a record over the limit, refused) read at -S 32M must cost
    # about what 24 MiB of plain zeros cost: 1ac7d16 held all of a zstd frame's output at once.
    bomb = tmp_path / "bomb"
    bomb.write_bytes(zeros_bomb(codec, 300 * MiB))
    plain = tmp_path / "plain"
    plain.write_bytes(bytes(24 * MiB))
    code, reference = run_peak(["-S", "32M", str(plain), "-o", os.devnull], tmp_path)
    assert code == 1
    code, peak = run_peak(["-S", "32M", str(bomb), "-o", os.devnull], tmp_path)
    assert code == 1
    assert peak <= reference + 32 * MiB, (peak // MiB, reference // MiB)


def test_a_zstd_file_of_long_lines_costs_what_gzip_does(tmp_path: Path) -> None:
    # 48 lines of 1 MiB compress to a few KB; 1ac7d16 decompressed them in one call (2.1 GiB
    # peak on the reviewer's 92 KB file).
    import zstandard

    lines = b"".join(bytes([97 + i % 26]) * (MiB - 1) + b"\n" for i in range(48))
    (tmp_path / "long.zst").write_bytes(zstandard.ZstdCompressor(level=19).compress(lines))
    (tmp_path / "long.gz").write_bytes(gzip.compress(lines, 9))
    peaks = {}
    for name in ("long.gz", "long.zst"):
        code, peaks[name] = run_peak(["-S", "16M", "--seed", "1", name, "-o", name + ".out"], tmp_path)
        assert code == 0
        assert sorted((tmp_path / (name + ".out")).read_bytes().splitlines()) == sorted(lines.splitlines())
    # Within two -S of each other: pieces scattered while the rest is decoded (formats/line_early)
    # moved either peak by up to 18 MiB from run to run; decoding in one call cost gigabytes.
    assert peaks["long.zst"] <= peaks["long.gz"] + 32 * MiB, {k: v // MiB for k, v in peaks.items()}
