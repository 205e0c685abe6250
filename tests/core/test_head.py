"""``-n P%``: the share parsed exactly, rounded half up, and the smaller of a count and a share."""

from __future__ import annotations

from fractions import Fraction

import pytest

from bigshuf.core.head import count_of, parse_share, resolve, temp_share


@pytest.mark.parametrize(
    "text,share",
    [("10%", Fraction(1, 10)), ("0.5%", Fraction(1, 200)), (" +5%", Fraction(1, 20)), ("0.50%", Fraction(1, 200)),
     ("100%", Fraction(1)), ("0%", Fraction(0)), ("12.0%", Fraction(3, 25)), ("33.333%", Fraction(33333, 100000))],
)
def test_percentages_parse_exactly(text: str, share: Fraction) -> None:
    assert parse_share(text) == share


# Numbers as every mix option writes them (core.numbers): no leading or trailing dot, as in --rate and --split.
@pytest.mark.parametrize(
    "text", ["101%", "100.0001%", "10", "%", "-1%", "1e2%", "10 %", "10%%", "0x10%", "nan%", "", ".5%", "12.%", "1/2%", "1..2%"]
)
def test_what_is_not_a_percentage_from_0_to_100(text: str) -> None:
    assert parse_share(text) is None


def test_rounding_is_half_up_and_exact_at_any_size() -> None:
    half = Fraction(1, 200)  # 0.5%
    assert [count_of(half, n) for n in (99, 100, 101, 300)] == [0, 1, 1, 2]  # 0.495, 0.5, 0.505, 1.5
    assert count_of(Fraction(1, 10), 1005) == 101  # 100.5 up
    big = 2**70 + 5
    assert count_of(Fraction(1, 10), big) == (big + 5) // 10  # no float rounding at 2**70
    assert count_of(Fraction(1), big) == big and count_of(Fraction(0), big) == 0


def test_count_and_share_resolve_to_the_smaller() -> None:
    assert resolve(None, None, 50) is None
    assert resolve(7, None, 50) == 7
    assert resolve(None, Fraction(1, 10), 50) == 5
    assert resolve(3, Fraction(1, 10), 50) == 3 and resolve(9, Fraction(1, 10), 50) == 5


def test_temp_share_of_a_head_count() -> None:
    """What ``-n`` has pass 1 hold: everything without a count or for one past the records; a small
    count holds about a bucket and a half; more when dropped buckets stay (``--resume``); never
    more than everything, and never less for a larger count."""
    assert temp_share(None, 10**6, 20, False) == temp_share(10**6, 10**6, 20, False) == 1.0
    assert temp_share(5, None, 20, False) == temp_share(5, 10**6, 1, False) == 1.0
    assert temp_share(1, 10**6, 20, False) == pytest.approx(1.5 / 20, rel=1e-3)
    for keeps in (False, True):
        shares = [temp_share(count, 10**6, 20, keeps) for count in (1, 10**3, 10**4, 10**5, 5 * 10**5, 10**6 - 1)]
        assert shares == sorted(shares) and all(0 < s <= 1 for s in shares)
    assert temp_share(10**4, 10**6, 20, True) > temp_share(10**4, 10**6, 20, False)
