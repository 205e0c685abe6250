"""How the number options are spelt (``--rate``, ``--mix``, ``--max-rate``, the fractions of
``--split`` and ``-n P%``, and the sizes ``-S``, ``--shard-size`` and ``--total``): digits, and if
there is a dot, digits on both sides of it; a size may add a unit.

One rule for all of them, so that ``1`` and ``1.`` can never mean two things (``--split a=1`` is one
record, a fraction is written ``1.0``), and no spelling (``1/2``, ``1e-2``, ``.5``, ``2GB``) works in
one option and not in another, or means one thing here and another in the tools beside it.
"""

from __future__ import annotations

import re
from decimal import Decimal, localcontext
from fractions import Fraction

#: A number as the options take it: ``10``, ``0.5``, ``2.25``.
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?\Z")

#: How to write one, for the one-line refusals.
HOW = "digits with digits after any dot, such as 0.5 or 2.5"


def parse_decimal(text: str) -> Fraction | None:
    """``text`` as the exact number it spells, or None if it is not spelt as the options take numbers."""
    return Fraction(Decimal(text)) if _DECIMAL.match(text) else None


#: Sizes from here on are refused, as GNU sort refuses an ``-S`` that does not fit 64 bits.
SIZE_LIMIT = 1 << 64

#: A size: a number, then after any spaces a unit, case ignored: ``b`` (bytes); ``K``, ``M``, ``G``,
#: ``T``, ``P``, ``E`` alone or with ``iB`` (powers of 1024, as GNU sort's ``-S``); with ``B`` alone
#: (``kB``, ``GB``: powers of 1000, as coreutils' head and dd and Hugging Face's shard sizes read
#: them); or ``%``. A newline, inside or after, is no space. A lower-case ``b`` after the prefix
#: (``Kb``, ``mb``) is refused: Hugging Face reads it as bits (``100Kb`` is 12,500 bytes), head and
#: dd refuse it, and bytes would be a third reading.
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)[ \t]*(?:(%|b)|([kmgtpe])(ib|b)?)?[ \t]*\Z", re.IGNORECASE | re.ASCII)


def parse_size(text: str, bare: int) -> tuple[Fraction, bool] | None:
    """``text`` as a size: its bytes (a bare number counting ``bare`` each) and whether it is a
    percentage instead (the number as written), or None if it is not spelt as a size."""
    m = _SIZE.match(text)
    if not m:
        return None
    number = Fraction(Decimal(m.group(1)))
    unit, prefix, tail = (m.group(2) or "").lower(), (m.group(3) or "").lower(), (m.group(4) or "").lower()
    if unit == "%":
        return number, True
    if unit == "b":
        return number, False
    if not prefix:
        return number * bare, False
    if m.group(4) == "b":
        return None
    return number * (1000 if tail == "b" else 1024) ** ("kmgtpe".index(prefix) + 1), False


def shown(x: Fraction) -> str:
    """``x`` for a message: exactly when it is a decimal between 1e-20 and 1e20 (a sum of fractions
    just off 1 reads 0.9999999999999999, however many digits, not 1), else to 6 digits; never
    through a float, which a rate of 10**400 would overflow."""
    rest = x.denominator
    for factor in (2, 5):
        while rest % factor == 0:
            rest //= factor
    with localcontext() as context:
        context.prec = len(str(abs(x.numerator))) + len(str(x.denominator)) + 6  # enough for an ending decimal
        value = (Decimal(x.numerator) / Decimal(x.denominator)).normalize()
    if rest == 1 and (x == 0 or -20 < value.adjusted() < 20):
        return format(value, "f")
    with localcontext() as context:
        context.prec = 6
        return format((+value).normalize(), "g")
