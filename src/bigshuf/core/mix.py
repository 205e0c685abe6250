"""Weighted sources (``--source``, ``--rate``, ``--mix``): rates solved exactly from the counts, and
the draws that decide how many copies of each record go into the multiset that is shuffled.

A source at rate r contributes every record floor(r) times, and a uniform sample without
replacement of m = round(frac(r) * n) of its n records once more. The sample is drawn block by
block in input order (sequential selection sampling): a block holding c of the R records still
to come, M of which must still be picked, takes a hypergeometric(M, R - M, c) count of picks,
placed uniformly among its c records. That is an exact uniform m-subset, needs n before the
first block (a counting pass), and no third pass or extra buckets.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from decimal import Decimal
from fractions import Fraction

import numpy as np

from ..errors import InputError, UsageError, option
from . import numbers
from .numbers import shown
from .fingerprint import Fingerprint, fingerprint
from ..quoting import quote_arg
from .records import RecordFormat, array_block, as_binary_array, count_separators
from .streams import Key, rng_for

if TYPE_CHECKING:
    from ..request import Request

#: What a source name may hold.
NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")

#: Highest rate allowed unless ``--max-rate`` says otherwise.
DEFAULT_MAX_RATE = Fraction(10)

#: Highest ``--max-rate``: copies of a record past it are no training mix, and their counts overflow.
MOST_RATE = 2**32

#: How far the shares of ``--mix`` may sum from 1.
MIX_TOLERANCE = Fraction(1, 10**6)

#: NumPy's hypergeometric draws take fewer than this many good and bad records.
HYPERGEOMETRIC_LIMIT = 10**9


@dataclass(frozen=True)
class SourceStats:
    """One source of a run: its records read, its rate, and its records in the shuffled multiset
    (before ``-n`` takes the first of them)."""

    name: str
    read: int
    rate: float
    written: int
    #: Records of the source ``--unique`` dropped as copies (of its own or an earlier source's),
    #: counted in ``read``; the rate applies to the ``read - dropped`` left.
    dropped: int = 0


def parse_rate(text: str, what: str) -> Fraction:
    """A rate or share written as the options write numbers (``2.5``, ``0.3``, ``10``), exactly."""
    value = numbers.parse_decimal(text.strip())
    if value is None:
        raise UsageError(f"invalid {what}: {quote_arg(text)} (a number is {numbers.HOW})")
    return value


def as_fraction(value: object, what: str) -> Fraction:
    """A library rate: a str spelt as on the command line, or an int, finite float or Fraction (at
    least 0), as the exact decimal it reads as."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Fraction)):
        raise UsageError(f"{what} must be a number, not {type(value).__name__} {value!r}")
    if isinstance(value, str):
        return parse_rate(value, what)
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"invalid {what}: {quote_arg(value)}")
    exact = Fraction(Decimal(repr(float(value)))) if isinstance(value, float) else Fraction(value)  # NumPy's repr reads np.float64(0.5)
    if exact < 0:
        raise UsageError(f"invalid {what}: {quote_arg(value)} (must be at least 0)")
    return exact


def named_values(text: str, flag: str) -> list[tuple[str, str]]:
    """``A=x,B=y`` (or one ``A=x``) as pairs, each name checked."""
    pairs = []
    for item in text.split(","):
        name, eq, value = item.partition("=")
        if not eq or not value:
            raise UsageError(f"invalid {flag} value: {quote_arg(text)} (expected NAME=VALUE)")
        pairs.append((check_name(name.strip(), flag), value))
    return pairs


def check_name(name: str, flag: str) -> str:
    """A source name: letters, digits, ``_``, ``.`` and ``-``."""
    if not NAME.match(name):
        raise UsageError(f"invalid source name in {flag}: {quote_arg(name)} (letters, digits, '_', '.' and '-' only)")
    return name


def needs_counts(rates: Sequence[Fraction], mixing: bool) -> bool:
    """Whether the records of each source must be counted before pass 1: for a share of a
    ``--mix``, or for a rate's fractional part."""
    return mixing or any(r.denominator != 1 for r in rates)


def solve_mix(
    names: Sequence[str], shares: Sequence[Fraction], counts: Sequence[int], total: int | None, unit: str, left: str = "",
) -> list[Fraction]:
    """The rate of each source that gives it its share of ``total`` (records or bytes, as
    ``counts`` are); ``refuse_above`` checks them against ``max_rate``. Without ``total``: the largest total that repeats
    no record (the scarcest source, for its share, at rate 1).

    For records the targets are apportioned by largest remainder so that they sum to ``total``
    exactly, and each rate is target / count, so the source gives exactly its target. ``left`` says
    what the counts are of, in the message for a source with none (``--unique``'s records left)."""
    for name, count in zip(names, counts):
        if count == 0:
            raise InputError(f"source {quote_arg(name)} has no {unit}{left}: it cannot make up a share of {option('mix')}")
    whole = sum(shares, Fraction(0))
    shares = [share / whole for share in shares]  # shares within the tolerance of 1, made exact
    if total is None:
        total = min(int(count / share) for count, share in zip(counts, shares))
    exact = [share * total for share in shares]
    if unit == "records":
        targets = [int(x) for x in exact]
        order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - targets[i]), i))
        for i in order[: total - sum(targets)]:
            targets[i] += 1
        exact = [Fraction(t) for t in targets]
    return [x / count for x, count in zip(exact, counts)]


def refuse_above(names: Sequence[str], rates: Sequence[Fraction], max_rate: Fraction, solved: bool) -> None:
    """Refuse a rate above ``max_rate``: given (``--rate``), or ``solved`` from the ``mix``."""
    for name, rate in zip(names, rates):
        if rate > max_rate:
            said = (
                f"{option('mix')} needs rate {shown(rate)} for source {quote_arg(name)}, above" if solved
                else f"{option('rate')} {shown(rate)} for source {quote_arg(name)} is above"
            )
            raise UsageError(f"{said} the maximum of {shown(max_rate)}; raise {option('max_rate')} to allow it")


def source_files(request: Request) -> list[int]:
    """The source of each input, in order (the inputs are the sources' files, source by source)."""
    return [s for s, (_name, files) in enumerate(request.sources) for _file in files]


def mixer_for(request: Request, counts: Sequence[int] | None, nbytes: Sequence[int] | None) -> Mixer:
    """The mixer of ``request``'s weighted sources: each source's rate as given, or with ``mix``
    solved from ``counts`` (records; ``nbytes`` with ``by="bytes"``), refusing what a run refuses.
    Line runs, table runs and the dry run all weigh their sources here."""
    names = [name for name, _files in request.sources]
    file_source = source_files(request)
    rates = request.source_rates
    if request.mix:
        measured = nbytes if request.by == "bytes" else counts
        assert measured is not None, "a mix is solved from counts"
        shares = [share for _name, share in request.mix]
        left = f" left once {option('unique')} drops copies" if request.unique else ""
        rates = solve_mix(names, shares, measured, request.total, request.by, left)
    refuse_copies(request, names, rates)  # first: a tar source's rate above 1 is not a matter of --max-rate
    if request.mix:
        refuse_above(names, rates, request.max_rate, solved=True)
    return Mixer(names, file_source, rates, counts)


def refuse_copies(request: Request, names: Sequence[str], rates: Sequence[Fraction]) -> None:
    """Refuse a rate above 1 (given, or solved from the ``mix``) when the request's records may not
    be written twice (``Request.no_copies``, which its format declares, says why): made where the
    rates are resolved (the request's given rates, every mixer), so every engine and the dry run refuse alike."""
    why = request.no_copies
    if why is None:
        return
    for name, rate in zip(names, rates):
        if rate > 1:
            how = f"the {option('mix')} needs it: lower {option('total')} or this source's share" if request.mix else "give 1 or less"
            shown = f"{float(rate):g}"
            if Fraction(shown) <= 1:  # rounded down to 1 (1.0000001): shown in full, as it is above 1
                shown = repr(float(rate)) if float(rate) > 1 else str(rate)
            raise UsageError(f"source {quote_arg(name)}: rate {shown} {why} ({how})")


class Mixer:
    """How many copies of each record of each source go into the multiset: ``copies`` per record,
    plus, for a fractional rate, records picked uniformly for one more (``pick``). Sources are
    numbered in order; the inputs are their files, source by source, so a block's records of one
    source are contiguous."""

    def __init__(self, names: Sequence[str], file_source: Sequence[int], rates: Sequence[Fraction], counts: Sequence[int] | None) -> None:
        self.names = list(names)
        self.rates = list(rates)
        self.file_source = np.asarray(file_source, np.int64)
        self.copies = [int(r) for r in rates]
        # Picks still to make and records still to come, per source (only with a fractional rate).
        self.picks_left = [0] * len(names)
        self.records_left = [0] * len(names)
        self.counts = None if counts is None else list(counts)
        if counts is not None:
            for s, (rate, n) in enumerate(zip(rates, counts)):
                frac = rate - int(rate)
                self.picks_left[s] = int(frac * n + Fraction(1, 2)) if frac else 0
                self.records_left[s] = n
                if self.picks_left[s] and n >= HYPERGEOMETRIC_LIMIT:
                    raise InputError(
                        f"source {quote_arg(names[s])} has {n} records: a fractional rate is not supported on 10^9 records "
                        "or more; split the source"
                    )
        self._start = (list(self.picks_left), list(self.records_left))
        self.dropped = [0] * len(names)  # --unique: each source's copies, dropped before the mixer saw them
        self.reset()

    def reset(self) -> None:
        """Back to before the first block (a run that tried the in-memory path and left it)."""
        self.picks_left, self.records_left = list(self._start[0]), list(self._start[1])
        self.read = [0] * len(self.names)
        self.written = [0] * len(self.names)

    def multiset_sizes(self) -> list[int]:
        """Each source's copies in the multiset (``--stratify``; the counts must be known)."""
        assert self.counts is not None
        return [copies * n + picks for copies, n, picks in zip(self.copies, self.counts, self._start[0])]

    def segments(self, runs: Sequence[tuple[int, int]], size: int) -> list[tuple[int, int, int]]:
        """The byte ranges of a block (``size`` bytes, its files' ``runs``: file index and start)
        held by each source: ``(source, lo, hi)`` in order, empty ones left out."""
        return segments(self.file_source, runs, size)

    def pick(self, entropy: int, key: Key, counts: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        """For a block holding ``counts`` records of each source (``(source, count)`` in order),
        which of them (sorted indices among the source's records in the block) get one more copy,
        drawn from stream ``key``; the blocks must come in input order."""
        rng = rng_for(entropy, key)
        chosen = []
        for s, c in counts:
            got = self.take(rng, s, c)
            picks = np.sort(rng.choice(c, got, replace=False)) if got else np.empty(0, np.int64)
            chosen.append(picks)
        return chosen

    def take(self, rng: np.random.Generator, s: int, c: int) -> int:
        """How many of the next ``c`` records of source ``s`` get a copy more (a hypergeometric draw
        from ``rng`` of the picks left among the records left), counted read and written; the Dask
        engine's client draws these for each block, its tasks place them."""
        self.read[s] += c
        want, left = self.picks_left[s], self.records_left[s]
        if self.counts is not None and c > left:
            raise InputError(f"source {quote_arg(self.names[s])}: more records than were counted before the shuffle (did a file change?)")
        got = 0
        if want and c:
            got = want if c == left else int(rng.hypergeometric(want, left - want, c))
            self.picks_left[s] -= got
        self.records_left[s] -= c
        self.written[s] += self.copies[s] * c + got
        return got

    def multiplicity(self, counts: Sequence[tuple[int, int]], chosen: Sequence[np.ndarray]) -> np.ndarray:
        """Copies of each record of a run of records holding ``counts`` of each source in order
        (``chosen``: which of each source's get one more)."""
        mult = np.repeat(np.array([self.copies[s] for s, _c in counts], np.int64), [c for _s, c in counts])
        base = 0
        for (_s, c), picks in zip(counts, chosen):
            mult[base + picks] += 1
            base += c
        return mult

    def check_complete(self) -> None:
        """Every counted record was read, and no more (else a file changed after the counting pass)."""
        if self.counts is None:
            return
        for name, counted, read in zip(self.names, self.counts, self.read):
            if counted != read:
                raise InputError(
                    f"source {quote_arg(name)}: {counted} records counted before the shuffle, {read} read by it (did a file change?)"
                )

    def most_copies(self) -> int:
        """The most copies any record gets (what a piece of records may grow to, scattered), at
        least 1: pieces are divided by it, and every rate may be 0."""
        return max([1, *(math.ceil(rate) for rate in self.rates)])

    def stats(self) -> tuple[SourceStats, ...]:
        """Per source: records read (with the copies ``--unique`` dropped), rate, records put into the
        multiset, and copies dropped."""
        return tuple(
            SourceStats(name, read + dropped, float(rate), written, dropped)
            for name, read, rate, written, dropped in zip(self.names, self.read, self.rates, self.written, self.dropped)
        )

    def expected_factor(self, sizes: Sequence[int | None]) -> float:
        """Bytes of the multiset over bytes read, from each source's size (None: unknown, taken as the mean rate)."""
        known = [(float(self.rates[s]), size) for s, size in enumerate(sizes) if size is not None]
        mean = sum(float(r) for r in self.rates) / max(1, len(self.rates))
        weight = sum(size for _r, size in known)
        if not known or weight == 0:
            return max(mean, 1e-9)
        return max(sum(r * size for r, size in known) / weight, 1e-9)


def segments(file_source: np.ndarray, runs: Sequence[tuple[int, int]], size: int) -> list[tuple[int, int, int]]:
    """The byte ranges of a block (``size`` bytes, its files' ``runs``: file index and start) held by
    each source (``file_source``: the source of each file): ``(source, lo, hi)`` in order, empty ones left out."""
    out: list[tuple[int, int, int]] = []
    bounds = [start for _file, start in runs[1:]] + [size]
    for (file, lo), hi in zip(runs, bounds):
        if hi <= lo:
            continue
        s = int(file_source[file])
        if out and out[-1][0] == s and out[-1][2] == lo:
            out[-1] = (s, out[-1][1], hi)
        else:
            out.append((s, lo, hi))
    return out


def count_in(block: np.ndarray, segments: Sequence[tuple[int, int, int]], lo: int, hi: int, fmt: RecordFormat) -> list[tuple[int, int]]:
    """Records of each source in ``block[lo:hi]`` (both ends record ends), ``(source, count)`` in order."""
    out = []
    for s, a, b in segments:
        start, stop = max(lo, a), min(hi, b)
        if start < stop:
            out.append((s, count_separators(block[start:stop], fmt.sep) // fmt.group))
    return out


def split_picks(counts: Sequence[tuple[int, int]], chosen: Sequence[np.ndarray], pieces: Sequence[Sequence[tuple[int, int]]]) -> list[list[np.ndarray]]:
    """A block's picks (``chosen``, per source of ``counts``) cut into its pieces' shares, each
    relative to the piece's first record of the source."""
    where = {s: i for i, (s, _c) in enumerate(counts)}
    seen = [0] * len(counts)
    out = []
    for piece in pieces:
        mine = []
        for s, c in piece:
            i = where[s]
            picks = chosen[i]
            lo, hi = np.searchsorted(picks, [seen[i], seen[i] + c])
            mine.append(picks[lo:hi] - seen[i])
            seen[i] += c
        out.append(mine)
    return out


def merge_counts(pieces: Sequence[Sequence[tuple[int, int]]]) -> list[tuple[int, int]]:
    """The pieces' counts summed per source, sources in their order of appearance."""
    totals: dict[int, int] = {}
    for piece in pieces:
        for s, c in piece:
            totals[s] = totals.get(s, 0) + c
    return list(totals.items())


def copies_index(mult: np.ndarray) -> np.ndarray | None:
    """The records to scatter or shuffle, each as many times as ``mult`` says (None: each once)."""
    if len(mult) and int(mult.min()) == 1 and int(mult.max()) == 1:
        return None
    dtype = np.int32 if len(mult) < 1 << 31 else np.int64
    return np.repeat(np.arange(len(mult), dtype=dtype), mult)


def multiset_fingerprint(block: np.ndarray, offsets: np.ndarray, mult: np.ndarray) -> Fingerprint:
    """The fingerprint of the records of ``block`` each counted ``mult`` times (what is scattered)."""
    import pyarrow.compute as pc

    total = Fingerprint()
    for v in np.unique(mult).tolist():
        if v == 0:
            continue
        if int(mult.min()) == int(mult.max()) == v:  # every record: no gathering
            fp = fingerprint(block, offsets)
        else:
            chosen = pc.take(as_binary_array(block, offsets), np.flatnonzero(mult == v))
            fp = fingerprint(*array_block(chosen))
        total += Fingerprint(v * fp.records, v * fp.bytes, v * fp.digest % 2**64)
    return total
