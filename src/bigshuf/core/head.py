"""``-n``'s count: a number of records, or a percentage of the records read, known once they are counted."""

from __future__ import annotations

import re
from fractions import Fraction

from .numbers import parse_decimal

#: ``P%``: a percentage, as ``-n 10%`` or ``-n 0.5%`` write it: leading blanks and a ``+`` allowed, as
#: in ``-n``'s counts, then a number as the mix options write them (``core.numbers``).
_PERCENT = re.compile(r"[ \t\n\v\f\r]*\+?([0-9.]+)%\Z")


def parse_share(text: str) -> Fraction | None:
    """The share of the records that ``text`` (``"10%"``, ``"0.5%"``) asks for, exactly; None if
    it is not a percentage from 0% to 100%."""
    m = _PERCENT.match(text)
    percent = None if m is None else parse_decimal(m.group(1))
    if percent is None:
        return None
    share = percent / 100
    return share if share <= 1 else None


def count_of(share: Fraction, total: int) -> int:
    """``round(share * total)``, halves rounded up, computed exactly (no float error at any size)."""
    return int((share * total + Fraction(1, 2)) // 1)


def resolve(count: int | None, share: Fraction | None, total: int) -> int | None:
    """The records ``-n`` keeps of ``total``: its count, its share of them, or the smaller of the two
    (None: no limit)."""
    if share is None:
        return count
    of_total = count_of(share, total)
    return of_total if count is None else min(count, of_total)


def temp_share(count: int | None, records: int | None, k: int, keeps_dropped: bool) -> float:
    """The share of an external run's bucket bytes that pass 1 holds at most under ``-n count``, of
    ``records`` records scattered into ``k`` buckets (1.0: all of them).

    Pass 1 drops the buckets past the one where the count is reached, and their files go at once:
    it holds at most ``count`` records and one bucket (half as much again is kept spare, as
    ``records`` is an estimate). Under ``--resume`` (``keeps_dropped``) dropped files stay with what
    they took before the cut: bucket ``i`` is written until the buckets before it hold ``count``
    records, after ``count * k / i`` of them if they are spread evenly, so it takes
    ``min(1, count * k / (i * records))`` of its share (and half as much again is kept spare)."""
    if count is None or not records or count >= records or k <= 1:
        return 1.0
    reach = count * k / records
    written = min(1.0, 1.5 * (1 + sum(min(1.0, reach / i) for i in range(1, k))) / k)
    return written if keeps_dropped else min(written, 1.5 * (count / records + 1 / k))
