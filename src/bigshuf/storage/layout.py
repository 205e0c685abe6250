"""How the output is cut into files: ``--split`` parts (consecutive pieces of the one shuffle, each
to its own ``{split}`` target) and, within each, shards by count, by records or by size."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from ..core import numbers
from ..core.numbers import parse_decimal, shown
from ..errors import UsageError, option
from ..quoting import quote_arg

#: What a split name may hold: it becomes part of a path, so no separator, brace or leading dot.
SPLIT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
#: ``SPLIT_NAME`` in words, for messages.
SPLIT_NAME_RULE = "letters, digits, _ . -, not starting with . or -"
_COUNT = re.compile(r"[0-9]+\Z")

#: The placeholder ``-o`` must hold with ``--split``.
SPLIT_FIELD = "{split}"


@dataclass(frozen=True)
class SplitPart:
    """One split of ``--split``: a fixed record ``count``, a ``fraction`` of the records written, or the rest."""

    name: str
    count: int | None = None
    fraction: Fraction | None = None

    @property
    def rest(self) -> bool:
        """Whether this split takes the records the others leave."""
        return self.count is None and self.fraction is None


def parse_split(text: str) -> tuple[SplitPart, ...]:
    """``NAME=COUNT|FRACTION|rest,...`` as split parts, in order; malformed specs are one UsageError."""
    parts: list[SplitPart] = []
    for item in text.split(","):
        name, eq, value = item.strip().partition("=")
        value = value.strip()
        if not eq or not SPLIT_NAME.match(name):
            raise UsageError(
                f"invalid {option('split')} part {quote_arg(item)}: use NAME=COUNT, NAME=FRACTION or NAME=rest "
                f"(names of {SPLIT_NAME_RULE})"
            )
        if any(p.name == name for p in parts):
            raise UsageError(f"{option('split')}: split {quote_arg(name)} is named twice")
        if value == "rest":
            if any(p.rest for p in parts):
                raise UsageError(f"{option('split')}: only one split may be 'rest' ({quote_arg(name)} is the second)")
            parts.append(SplitPart(name))
        elif _COUNT.match(value):
            parts.append(SplitPart(name, count=int(value)))
        elif (fraction := parse_decimal(value)) is not None and fraction <= 1:
            parts.append(SplitPart(name, fraction=fraction))
        else:
            raise UsageError(
                f"invalid {option('split')} value for {quote_arg(name)}: {quote_arg(value)} (a record count such as 100, a fraction up to 1 "
                "with digits after its dot such as 0.01 or 1.0, or rest)"
            )
    fractions = sum((p.fraction for p in parts if p.fraction is not None), Fraction(0))
    has_rest = any(p.rest for p in parts)
    if fractions > 1:
        raise UsageError(f"{option('split')}: the fractions add up to {shown(fractions)}, more than 1")
    if not has_rest and all(p.fraction is not None for p in parts) and fractions != 1:
        raise UsageError(
            f"{option('split')}: the fractions add up to {shown(fractions)}, not 1; make one split 'rest' to take what is left"
        )
    return tuple(parts)


def split_counts(parts: tuple[SplitPart, ...], total: int) -> list[int]:
    """Each split's record count once ``total`` records are known: fixed counts as given, fractions
    of ``total`` by largest remainder (ties to the earlier split), and ``rest`` what is left."""
    counts: list[int | None] = [p.count for p in parts]
    fixed = 0
    for p in parts:
        if p.count is not None:
            fixed += p.count
            if fixed > total:
                records = "record" if p.count == 1 else "records"
                raise UsageError(
                    f"{option('split')}: split {quote_arg(p.name)} needs {p.count} {records}, but only {total - fixed + p.count} "
                    f"of the {total} written are left for it"
                )
    shares = [(i, p.fraction * total) for i, p in enumerate(parts) if p.fraction is not None]
    target = int(sum((q for _, q in shares), Fraction(0)) + Fraction(1, 2))
    for i, q in shares:
        counts[i] = int(q)
    short = target - sum(int(q) for _, q in shares)
    for i, _q in sorted(shares, key=lambda s: (-(s[1] - int(s[1])), s[0]))[:short]:
        counts[i] = (counts[i] or 0) + 1
    taken = fixed + target
    if taken > total:
        first = next(parts[i].name for i, _ in shares)
        raise UsageError(
            f"{option('split')}: split {quote_arg(first)} and the fractions after it need {target} records, "
            f"but only {total - fixed} of the {total} written are left after the fixed counts"
        )
    rest = next((i for i, p in enumerate(parts) if p.rest), None)
    if rest is not None:
        counts[rest] = total - taken
    elif taken != total:
        raise UsageError(
            f"{option('split')}: the splits take {taken} of the {total} records written; make one split 'rest' to take what is left"
        )
    return [c or 0 for c in counts]


def split_target(target: str, name: str) -> str:
    """``-o`` with its ``{split}`` placeholder replaced by split ``name``."""
    return target.replace(SPLIT_FIELD, name)


def output_directories(target: str, split_names: Sequence[str] | None, sharded: bool) -> list[str]:
    """The real directory of each split's files (or of the one output's) as ``-o`` names them before
    any is planned: a shards directory itself, else the directory of its pattern's fixed start."""
    targets = [target] if split_names is None else [split_target(target, name) for name in split_names]
    found = []
    for each in targets:
        if sharded and "{" not in each and (os.path.isdir(each) or each.endswith(os.sep)):
            found.append(os.path.realpath(each))
        else:
            found.append(os.path.realpath(os.path.dirname(each.split("{", 1)[0]) or "."))
    return found


@dataclass(frozen=True)
class Sharding:
    """How each split (or the whole output) is cut into files: ``count`` shards of near-equal
    record counts, shards of ``records`` records (the last smaller), or shards of at least ``size``
    record bytes (a new one starts once the current one holds that much); none of them: one file."""

    count: int | None = None
    records: int | None = None
    size: int | None = None

    @property
    def on(self) -> bool:
        """Whether the output is cut into shards at all."""
        return self.count is not None or self.records is not None or self.size is not None

    @property
    def open_ended(self) -> bool:
        """The number of shards is not known before the input is read."""
        return self.records is not None or self.size is not None

    def files(self, count: int) -> int | None:
        """How many files hold a split of ``count`` records (at least one); None when cut by size as written."""
        if self.size is not None:
            return None
        if self.count is not None:
            return self.count
        if self.records is not None:
            return max(1, -(-count // self.records))
        return 1

    def file_end(self, start: int, count: int, index: int) -> int:
        """The record number file ``index`` of the split holding records ``[start, start + count)`` ends at
        (cut by size: the split's end, the most it may reach)."""
        if self.count is not None:
            return start + (index + 1) * count // self.count
        if self.records is not None:
            return start + min(count, (index + 1) * self.records)
        return start + count


def file_places(counts: Sequence[int], splits: Sequence[int], sharding: Sharding) -> list[tuple[int, int]]:
    """The split and file number of each of the output's first files, from each file's records
    (``counts``), as ``Output.emit`` opens them over splits of ``splits`` records. ValueError if no
    run could have cut them so: a file cut by count not full but the last, the last one empty (a
    file is opened for a record), a file past its split's end, or more files than the splits take."""
    starts = [sum(splits[:g]) for g in range(len(splits))]
    places: list[tuple[int, int]] = []
    done = 0
    for i, records in enumerate(counts):
        if places:
            group, index = places[-1]
            files = sharding.files(splits[group])
            more = done < starts[group] + splits[group] if files is None else index + 1 < files
            group, index = (group, index + 1) if more else (group + 1, 0)
        else:
            group, index = 0, 0
        if group >= len(splits):
            raise ValueError(f"lists {len(counts)} output files, more than the output has")
        end = sharding.file_end(starts[group], splits[group], index)
        last = i == len(counts) - 1
        short = records == 0 if last else done + records != end
        if done + records > end or (short and (last or sharding.size is None)):
            raise ValueError(f"counts {records} records in output file {i}, from record {done}; by the output's plan it ends at record {end}")
        places.append((group, index))
        done += records
    return places


def shard_option(sharding: Sharding) -> str:
    """The option that asked for ``sharding``, for messages."""
    if sharding.records is not None:
        return option("shard_records")
    if sharding.size is not None:
        return option("shard_size")
    return option("shards")


def parse_byte_size(text: str, flag: str) -> int:
    """A size in bytes: a number (bytes) with an optional unit as ``numbers.parse_size`` reads them
    (``256M``, ``1GiB``: powers of 1024; ``1GB``: of 1000), at least one byte and under 16 EiB."""
    parsed = numbers.parse_size(text, 1)
    if parsed is None or parsed[1] or parsed[0] < 1:
        raise UsageError(f"invalid {flag} value: {quote_arg(text)} (bytes, or a size such as 256M or 1G)")
    if parsed[0] >= numbers.SIZE_LIMIT:
        raise UsageError(f"{flag} argument {quote_arg(text)} too large")
    return int(parsed[0])
