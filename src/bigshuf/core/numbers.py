"""How the number options of a training mix are spelt (``--rate``, ``--mix``, ``--max-rate``, the
fractions of ``--split`` and ``-n P%``): digits, and if there is a dot, digits on both sides of it.

One rule for all of them, so that ``1`` and ``1.`` can never mean two things (``--split a=1`` is one
record, a fraction is written ``1.0``), and no spelling (``1/2``, ``1e-2``, ``.5``) works in one
option and not in another.
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
