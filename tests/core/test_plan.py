"""core/plan, directly: memory sizes parsed as GNU sort's -S, sizes formatted for messages, and
the budget arithmetic (what fits, how many buckets, piece and buffer sizes) within the limit.
"""

from __future__ import annotations

import pytest

from bigshuf.core import plan
from bigshuf.errors import UsageError

#: Limits from the smallest accepted to 64 GiB, odd ones included.
LIMITS = [plan.MIN_MEMORY, 1500, 4096, 100_000, 1 << 20, 3 * (1 << 20) + 7, 256 << 20, 1 << 30, 64 << 30]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0", 0),
        ("7", 7 << 10),  # K is the default unit
        ("10b", 10),
        ("10B", 10),
        ("2k", 2 << 10),
        ("2KiB", 2 << 10),
        ("2kB", 2000),  # kB, MB, GB: powers of 1000, as head -c and dd read them
        ("2KB", 2000),
        ("2GB", 2 * 10**9),
        ("1.5MB", 1_500_000),
        ("2GiB", 2 << 30),
        ("2gib", 2 << 30),
        ("1.5M", 3 << 19),
        (" 3 G ", 3 << 30),
        ("1t", 1 << 40),
        ("1P", 1 << 50),
        ("1E", 1 << 60),
        ("0.5b", 0),
    ],
)
def test_parse_size_units(text: str, expected: int) -> None:
    """Binary suffixes, K by default, optional ``iB``, decimal ones with ``B``, spaces and fractions.
    ``2GB`` was read as 2 GiB, where coreutils and Hugging Face read 2 * 10**9."""
    assert plan.parse_size(text) == expected


def test_parse_size_percent_of_memory() -> None:
    """``N%`` is that share of physical memory, up to 100%."""
    ram = plan.physical_memory()
    assert plan.parse_size("100%") == ram
    assert plan.parse_size("25%") == int(ram * 25 / 100)
    assert plan.parse_size("0.5%") == int(ram * 0.5 / 100)
    with pytest.raises(UsageError) as info:
        plan.parse_size("101%")
    assert info.value.cli_message() == "invalid -S argument '101%': more than 100%"


def test_parse_size_passes_ints_through() -> None:
    """A library caller's int is bytes; a negative one is refused."""
    assert plan.parse_size(12345) == 12345
    with pytest.raises(UsageError, match="^invalid memory size: '-1'$"):
        plan.parse_size(-1)


@pytest.mark.parametrize("text", [
    "", " ", "abc", "-1", "1x", "1.2.3", "K", "1 K K", "1KB2", "%", "1e3", "0x10", "1,5M", "1G\n", "1\nG", "\u00b2", "\u0661G",
    "2kb", "2Kb", "1.5Mb", "1 gb",  # bits to Hugging Face (2Kb: 250 bytes), refused by head -c and dd
])
def test_parse_size_refuses_garbage(text: str) -> None:
    """Anything else is one usage error quoting the argument (a newline escaped, on one line),
    naming -S (memory= in the library). ``1G`` and a newline was read as 1 GiB."""
    with pytest.raises(UsageError) as info:
        plan.parse_size(text)
    shown = text.replace("\n", "\\n")
    assert info.value.cli_message() == f"invalid -S argument '{shown}'"
    assert str(info.value) == f"invalid memory= argument '{shown}'"


@pytest.mark.parametrize(
    "n, text",
    [
        (0, "0 B"), (1, "1 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
        (10 << 20, "10.0 MiB"), (3 << 30, "3.0 GiB"), (1 << 40, "1.0 TiB"), (1 << 50, "1.0 PiB"),
        (5 << 60, "5.0 EiB"), ((1 << 64) - 1, "16.0 EiB"),
        (-2048, "-2.0 KiB"),
    ],
)
def test_format_size(n: int, text: str) -> None:
    """Bytes below 1 KiB, then one decimal in the largest binary unit: up to EiB, as far as ``-S``
    goes (``-S 5E`` was shown as 5242880.0 TiB)."""
    assert plan.format_size(n) == text


@pytest.mark.parametrize("limit", LIMITS)
def test_pieces_and_buffers_fit_within_the_limit(limit: int) -> None:
    """Pieces are bounded by MAX_PIECE; the pieces in flight leave a positive block budget; the read
    buffer is at most half the limit (it holds the longest record)."""
    piece = plan.piece_bytes(limit)
    assert 64 <= piece <= plan.MAX_PIECE
    assert (plan.IN_FLIGHT_PIECES + 2) * piece < limit
    assert 0 < plan.block_budget(limit) < limit
    assert 256 <= plan.read_capacity(limit) <= limit // 2
    assert plan.piece_records(limit) * plan.META_PER_RECORD <= max(limit // 16, 16 * plan.META_PER_RECORD)


@pytest.mark.parametrize("limit", LIMITS)
def test_fits_in_memory_at_the_boundary(limit: int) -> None:
    """Bytes plus bookkeeping up to the block budget fit; one byte more does not."""
    budget = plan.block_budget(limit)
    records = budget // (4 * plan.META_PER_RECORD)
    nbytes = budget - plan.META_PER_RECORD * records
    assert plan.fits_in_memory(nbytes, records, limit)
    assert not plan.fits_in_memory(nbytes + 1, records, limit)
    assert not plan.fits_in_memory(nbytes, records + 1, limit)
    assert plan.fits_in_memory(0, 0, limit)


@pytest.mark.parametrize("limit", LIMITS)
def test_bucket_count_is_monotonic_and_bounded(limit: int) -> None:
    """More data never means fewer buckets; always at least 2, at most MAX_BUCKETS."""
    counts = [plan.bucket_count(n, n // 50, limit) for n in [0, 1, 10**3, 10**5, 10**7, 10**9, 10**11, 10**13]]
    assert counts == sorted(counts)
    assert all(2 <= c <= plan.MAX_BUCKETS for c in counts)
    by_records = [plan.bucket_count(10**6, r, limit) for r in [0, 10, 10**4, 10**6]]
    assert by_records == sorted(by_records)


@pytest.mark.parametrize("limit", LIMITS)
def test_expected_buckets_fit_when_not_capped(limit: int) -> None:
    """Below the cap, the expected bucket (data and bookkeeping over k) is at most a third of the
    block budget, so it is shuffled in memory in pass 2; and k is the smallest such count."""
    target = max(1, plan.block_budget(limit) // plan.BUCKET_FRACTION)
    for nbytes in [10 * limit, 37 * limit + 5, 500 * limit]:
        records = nbytes // 40
        need = nbytes + plan.META_PER_RECORD * records
        k = plan.bucket_count(nbytes, records, limit, max_buckets=10**9)
        if k < plan.MAX_BUCKETS and k < plan._open_file_allowance():
            assert need / k <= target
            assert k == 2 or need / (k - 1) > target


def test_bucket_count_respects_max_buckets() -> None:
    """A caller's cap holds, but never below 2 buckets."""
    limit = 1 << 20
    assert plan.bucket_count(10**12, 10**9, limit) == min(plan.MAX_BUCKETS, plan._open_file_allowance())
    assert plan.bucket_count(10**12, 10**9, limit, max_buckets=100) == 100
    assert plan.bucket_count(10**12, 10**9, limit, max_buckets=1) == 2
    assert plan.bucket_count(10, 1, limit, max_buckets=100) == 2


def test_format_size_rounds_up_into_the_next_unit() -> None:
    """A size that rounds to 1024 of a unit is shown as 1.0 of the next one."""
    assert plan.format_size((1 << 20) - 1) == "1.0 MiB"


@pytest.mark.parametrize("text", ["16E", "9999999999999999999999T", "1" + "0" * 400, 1 << 64])
def test_a_size_past_64_bits_is_refused_as_sort_refuses_it(text: str | int) -> None:
    """``-S 16E`` was taken, and a pipe's read buffer planned from it was past what NumPy can make
    (an internal ValueError); a number of 400 digits was an OverflowError (float). GNU sort says
    "-S argument '16E' too large"."""
    with pytest.raises(UsageError, match="too large$"):
        plan.parse_size(text)


def test_a_huge_limit_is_planned_as_the_most_memory() -> None:
    """Up to 16 EiB, ``-S`` is taken as no limit: planned as ``MOST_MEMORY``, whose buffers NumPy can make."""
    from bigshuf.request import resolve_memory

    assert resolve_memory("15E") == resolve_memory(str((1 << 64) - 1) + "b") == plan.MOST_MEMORY
    assert resolve_memory("8G") == 8 << 30
