"""core/records: the compiled record finding and gathering (``bigshuf._records``) give exactly what
the NumPy and Arrow code they stand in for gives, and refuse offsets and indices outside a buffer.
"""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest

import bigshuf.core.records as records
from bigshuf.core.records import RecordFormat, as_binary_array, decimal_records, find_offsets, find_offsets_split, gather_records, take_records
from bigshuf.core.parallel import Workers


@pytest.fixture
def native():  # type: ignore[no-untyped-def]
    """The compiled module: the test install builds it."""
    assert records.native is not None, "bigshuf._records was not built (pip install -e . builds it)"
    return records.native


def random_block(rng: np.random.Generator, n: int, sep: int = 10, tail: bytes = b"") -> np.ndarray:
    """``n`` records of 0-40 random bytes (none ``sep``) each ended by ``sep``, then ``tail``."""
    parts = []
    for length in rng.integers(0, 40, n):
        body = rng.integers(0, 256, length, dtype=np.uint8)
        body[body == sep] = sep + 1
        parts.append(body.tobytes() + bytes([sep]))
    return np.frombuffer(b"".join(parts) + tail, np.uint8).copy()


@pytest.mark.parametrize("seed", range(6))
def test_compiled_finding_matches_numpy(native, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    block = random_block(rng, int(rng.integers(0, 3000)), sep=[10, 0][seed % 2], tail=b"ab" * (seed % 3))
    sep = [10, 0][seed % 2]
    cases = [(RecordFormat(sep, group), cap) for group in (1, 2, 4) for cap in (None, 0, 1, 7, 1000)]
    compiled = [find_offsets(block, fmt, cap) for fmt, cap in cases]
    split = find_offsets_split(np.tile(block, 9000 // max(1, len(block)) + 1), RecordFormat(sep), Workers(2))
    monkeypatch.setattr(records, "native", None)
    for (fmt, cap), got in zip(cases, compiled):
        want = find_offsets(block, fmt, cap)
        assert got.dtype == want.dtype and np.array_equal(got, want), (fmt, cap)
    assert np.array_equal(split, find_offsets_split(np.tile(block, 9000 // max(1, len(block)) + 1), RecordFormat(sep), Workers(2)))


def test_int64_offsets_found_over_many_slices(native, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Found in review: past 2 GiB (int64 offsets) each slice's ends were kept as views of the one
    scratch array, so later slices overwrote earlier ones. A small limit stands in for 2 GiB; a
    block of several slices must give the NumPy code's offsets, for single lines and groups."""
    block = random_block(np.random.default_rng(3), 20000)
    assert len(block) > 4 * 65536  # several of find_offsets' growing slices
    monkeypatch.setattr(records, "INT32_LIMIT", 1000)
    cases = [(RecordFormat(10, group), cap) for group in (1, 4) for cap in (None, 15000)]
    compiled = [find_offsets(block, fmt, cap) for fmt, cap in cases]
    monkeypatch.setattr(records, "native", None)
    for (fmt, cap), got in zip(cases, compiled):
        want = find_offsets(block, fmt, cap)
        assert got.dtype == want.dtype == np.int64 and np.array_equal(got, want), (fmt, cap)


@pytest.mark.parametrize("offsets_type", [np.int32, np.int64])
@pytest.mark.parametrize("index_type", [np.int32, np.int64])
def test_compiled_gathering_matches_arrow_take(native, offsets_type: type, index_type: type) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    block = random_block(rng, 500)
    offsets = find_offsets(block, RecordFormat()).astype(offsets_type)
    for index in (rng.permutation(500), rng.integers(0, 500, 1200), np.zeros(0, np.int64), np.array([499, 0, 0])):
        index = index.astype(index_type)
        got = take_records(block, offsets, index)
        want = pc.take(as_binary_array(block, offsets), index)
        assert got.type == want.type and got.equals(want)


def test_gathered_copies_past_int32_offsets_widen(native, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Copies of records (weighted sources, --repeat) whose total overflows int32 offsets get int64 ones."""
    block = np.frombuffer(b"abc\nde\n", np.uint8)
    offsets = np.array([0, 4, 7], np.int32)

    def narrow_overflows(b, o, i, ends, starts):  # type: ignore[no-untyped-def]
        if ends.dtype == np.int32:
            raise OverflowError("records too large for out_offsets")
        return native.plan_gather(b, o, i, ends, starts)

    fake = type("Native", (), {"plan_gather": staticmethod(narrow_overflows), "copy_gather": staticmethod(native.copy_gather)})
    monkeypatch.setattr(records, "native", fake)
    data, ends = gather_records(block, offsets, np.array([1, 0, 1]))
    assert ends.dtype == np.int64 and bytes(data) == b"de\nabc\nde\n" and ends.tolist() == [0, 3, 7, 10]


def test_compiled_code_refuses_what_is_outside_its_buffers(native) -> None:  # type: ignore[no-untyped-def]
    block = np.frombuffer(b"a\nbb\n", np.uint8)
    offsets = np.array([0, 2, 5], np.int32)
    for index in ([2], [-1], [1 << 40]):
        with pytest.raises(ValueError):
            gather_records(block, offsets, np.array(index, np.int64))
    for bad in ([0, 9], [3, 2], [-1, 2]):
        with pytest.raises(ValueError):
            gather_records(block, np.array(bad, np.int64), np.array([0]))
    with pytest.raises(TypeError):
        gather_records(block, offsets.astype(np.float64), np.array([0]))
    starts, ends = np.empty(1, np.int64), np.empty(2, np.int32)
    with pytest.raises(ValueError):  # out_offsets and starts of the wrong lengths or type
        native.plan_gather(block, offsets, np.array([1]), np.empty(3, np.int32), starts)
    with pytest.raises(ValueError):
        native.plan_gather(block, offsets, np.array([1]), ends, np.empty(1, np.int32))
    assert native.plan_gather(block, offsets, np.array([1]), ends, starts) == 3
    assert starts.tolist() == [2] and ends.tolist() == [0, 3]
    for bad_starts, bad_ends, out in (
        ([3], [0, 3], 9),  # reads past the block
        ([-1], [0, 3], 9),
        ([2], [0, 3], 2),  # writes past out
        ([2], [-1, 2], 9),
        ([2], [3, 0], 9),  # a negative length
    ):
        with pytest.raises(ValueError):
            native.copy_gather(block, np.array(bad_starts, np.int64), np.array(bad_ends, np.int64), np.empty(out, np.uint8))
    with pytest.raises(ValueError):
        native.copy_gather(block, starts, np.array([0], np.int64), np.empty(9, np.uint8))
    with pytest.raises(TypeError):
        native.find_ends(block, 10, 0, np.empty(4, np.int32))
    with pytest.raises(ValueError):
        native.find_ends(block, 256, 0, np.empty(4, np.int64))
    hits = np.empty(1, np.int64)
    assert native.find_ends(block, 10, 5, hits) == 1 and hits.tolist() == [6]  # stops when out is full


def test_a_pooled_buffer_is_reused_only_once_nothing_refers_to_its_bytes() -> None:
    """Slices, memoryviews and Arrow arrays over a leased buffer keep it leased; once all are gone
    the next lease gets the same memory; ``clear`` lets go of every buffer."""
    pool = records.BufferPool(keep=2)
    first = pool.lease(1000)
    address = first.ctypes.data
    derived = [
        lambda a: a[10:20], lambda a: a[5:].data, lambda a: np.frombuffer(a[3:9].data, np.uint8)[1:],
        lambda a: as_binary_array(a, np.array([0, 1000], np.int32)).slice(0, 1),
    ]
    for make in derived:
        held = make(first)
        other = pool.lease(1000)
        assert other.ctypes.data != address  # still referred to: another buffer
        del other
        del held
    del first
    again = pool.lease(900)
    assert again.ctypes.data == address and len(again) == 900 and again.flags.writeable
    pool.clear()
    assert again[0] == again[0] and pool._buffers == []  # a leased buffer outlives the pool's hold on it


def test_a_buffer_gathered_for_a_record_longer_than_a_piece_is_not_pooled() -> None:
    """A run's pool kept the buffer of a 60 MiB record's piece (and three more such) resident until
    the run ended, beyond what -S counts: 35 MB of a run's peak at -S 128M. Now a buffer larger
    than twice the run's piece goes once its readers let go; pieces' buffers are pooled as before."""
    pool = records.BufferPool(keep=4)
    pool.hold_at_most(1 << 20)
    long = pool.lease(8 << 20)
    assert len(long) == 8 << 20 and pool._buffers == []
    piece = pool.lease(1 << 20)
    assert [len(b) for b in pool._buffers] == [len(piece.base)]
    pool.clear()
    assert pool.largest is None
    del long, piece


@pytest.mark.parametrize("sep", [10, 0])
def test_decimal_records_are_the_numbers_as_python_writes_them(sep: int) -> None:
    """Every width from 1 to 20 digits, the powers of ten on either side, both ends of uint64, and none."""
    edges = [0, 1, 9, 10, 99, 100, 2**63 - 1, 2**63, 10**19 - 1, 10**19, 2**64 - 1]
    drawn = np.random.default_rng(4).integers(0, 2**64 - 1, 5000, dtype=np.uint64, endpoint=True) >> np.random.default_rng(5).integers(0, 64, 5000).astype(np.uint64)
    values = np.concatenate([np.array(edges, np.uint64), drawn])
    got = decimal_records(values, sep).to_pylist()
    assert got == [b"%d%c" % (v, sep) for v in values.tolist()]
    assert decimal_records(np.array([], np.uint64), sep).to_pylist() == []
