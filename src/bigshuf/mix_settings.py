"""The settings of weighted sources (``sources=``, ``rates=``, ``mix=``, ``total=``, ``by=``,
``max_rate=``, ``stratify=``) checked and made exact for the request: names known, shares summing
to 1, rates within the maximum, every file in one source."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from .arguments import _describe, _integer, _path_list
from .core import mix as weights
from .core.numbers import shown
from .errors import UsageError, option
from .quoting import quote_arg, quote_name
from .storage.layout import parse_byte_size

if TYPE_CHECKING:
    from .request import Request


#: The settings of weighted sources, checked together by ``mix_settings``.
MIX_SETTINGS = ("sources", "rates", "mix", "total", "by", "max_rate")


def mix_settings(raw: dict[str, object]) -> dict[str, Any]:
    """``sources``, ``rates``, ``mix``, ``total``, ``by`` and ``max_rate`` checked and made exact:
    names known and shares summing to 1, every file in one source (``check_sources`` holds the
    rates against ``max_rate`` once the request's format is known)."""
    sources = _source_files(raw.get("sources"))
    names = [name for name, _files in sources]
    max_rate = weights.as_fraction(raw.get("max_rate", weights.DEFAULT_MAX_RATE), f"{option('max_rate')} value")
    if max_rate > weights.MOST_RATE:
        # More copies of a record than any corpus wants; past it the counts of copies overflow.
        raise UsageError(f"invalid {option('max_rate')} value: {quote_arg(raw['max_rate'])} (at most {weights.MOST_RATE})")
    if max_rate < 1:
        # A cap on upsampling: below 1 it would refuse every source kept whole, the default rate 1 included.
        raise UsageError(
            f"invalid {option('max_rate')} value: {quote_arg(raw['max_rate'])} (at least 1: it caps upsampling; "
            f"sample a source down with {option('rate_pair')})"
        )
    by = raw.get("by", "records")
    if not isinstance(by, str) or by not in ("records", "bytes"):
        raise UsageError(f"invalid {option('by')} value: {quote_arg(by)} (records or bytes)")
    total = raw.get("total")
    # (An empty mapping weighs nothing; anything else is checked as a mapping below, never tested for truth.)
    given = (*(raw.get(k) is not None and not (isinstance(raw.get(k), Mapping) and not raw.get(k)) for k in ("rates", "mix")),
             total is not None, by != "records")
    for setting, used in zip(("rate", "mix", "total", "by"), given):
        if used and not sources:
            raise UsageError(f"{option(setting)} needs {option('source_pair')} to name the sources it weighs")
    rates = _named_numbers("rates", raw.get("rates"), names)
    shares = _named_numbers("mix", raw.get("mix"), names)
    if rates and shares:
        raise UsageError(f"{option('rate')} and {option('mix')} cannot be combined: give rates or shares")
    for setting, used in (("total", total is not None), ("by", by != "records")):
        if used and not shares:
            raise UsageError(f"{option(setting)} needs {option('mix')}")
    if shares:
        for name in names:
            if name not in dict(shares):
                raise UsageError(f"{option('mix')} gives no share to source {quote_arg(name)}: name every source")
        for name, share in shares:
            if share == 0:
                raise UsageError(f"{option('mix')}: the share of source {quote_arg(name)} must be above 0")
        if abs(sum((share for _name, share in shares), Fraction(0)) - 1) > weights.MIX_TOLERANCE:
            raise UsageError(f"{option('mix')} shares sum to {shown(sum((s for _n, s in shares), Fraction(0)))}, not 1")
        order = dict(shares)
        shares = [(name, order[name]) for name in names]
    return {
        "sources": tuple(sources), "rates": tuple(rates), "mix": tuple(shares),
        "total": _mix_total(total, by), "by": by, "max_rate": max_rate,
    }


def _source_files(raw: object) -> list[tuple[str, tuple[str, ...]]]:
    """``sources`` (name -> a path, directory or pattern, or a list of them) as names with their
    files, each file in one source only."""
    from .formats.detect import named_files
    from .storage.remote import is_remote

    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        raise UsageError(f"sources must map each source's name to its paths, not {_describe(raw)}")
    if not raw:
        raise UsageError("sources names no source: map each source's name to its paths, or give inputs instead")
    out: list[tuple[str, tuple[str, ...]]] = []
    owner: dict[object, str] = {}
    for name, paths in raw.items():
        if not isinstance(name, str):
            raise UsageError(f"a source's name must be a str, not {_describe(name)}")
        weights.check_name(name, option("source"))
        files: list[str] = []
        for path in _path_list(f"source {quote_arg(name)}", paths):
            if is_remote(path):
                raise UsageError(f"source {quote_arg(name)}: {quote_name(path)}: the files of {option('source')} must be local")
            matched = named_files(path)
            if not matched:
                raise UsageError(f"source {quote_arg(name)}: no file matches {quote_arg(path)}")
            files.extend(matched)
        for path in files:
            same = _identity(path)
            if same in owner:
                raise UsageError(f"{quote_name(path)}: named in source {quote_arg(owner[same])} and in {quote_arg(name)}; a file may be in one source, once")
            owner[same] = name
        out.append((name, tuple(files)))
    return out


def _identity(path: str) -> object:
    """What makes a source's file the same file by any name (a hard link, a symlink, another
    spelling): its device and inode; standard input, or a file that cannot be read (its read says
    why), by its path."""
    if path == "-":
        return path
    try:
        st = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return (st.st_dev, st.st_ino)


def _named_numbers(setting: str, raw: object, names: list[str]) -> list[tuple[str, Fraction]]:
    """``rates`` or ``mix`` (name -> number) as exact numbers, every name a source's."""
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        raise UsageError(f"{setting} must map source names to numbers, not {_describe(raw)}")
    out = []
    for name, value in raw.items():
        if name not in names:
            flag = option("rate" if setting == "rates" else setting)
            raise UsageError(f"{flag} names {quote_arg(name)}, which is not a source ({option('source_pair')})")
        flag = option("rate" if setting == "rates" else setting)
        out.append((name, weights.as_fraction(value, f"{flag} value for source {quote_arg(name)}")))
    return out


def _mix_total(total: object, by: object) -> int | None:
    """``total``: records (a whole number), or with ``by="bytes"`` a byte count or a size like ``50G``."""
    if total is None:
        return None
    if isinstance(total, str):
        text = total.lstrip()  # leading blanks and a '+' as -n takes them; nothing after the number
        text = text.removeprefix("+")
        if text.isascii() and text.isdigit():
            value = int(text)
        elif by == "bytes":
            try:  # (its refusal is worded for the value, not for --total: the one below says what --total takes)
                value = parse_byte_size(text, option("total"))
            except UsageError:
                value = -1
        else:
            value = -1
    else:
        value = _integer("total", total)
    if value < 1:
        raise UsageError(f"invalid {option('total')} value: {quote_arg(total)} (a count of {by}{', or a size like 50G' if by == 'bytes' else ''})")
    return value


def check_stratify(request: Request) -> None:
    """``stratify`` needs weighted sources and a split to share out, and no ``-n`` (a sample of the
    splits would no longer hold each source's share)."""
    if not request.sources or request.split is None:
        raise UsageError(
            f"{option('stratify')} needs {option('source')} and {option('split')}: it gives each split its share of every source"
        )
    if request.sampled:
        raise UsageError(f"{option('stratify')} cannot be combined with {option('head_count')}")


def _regular(path: str) -> bool:
    """Whether ``path`` is a regular file, or missing (reading it reports that, as for any input)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True


def check_sources(request: Request) -> None:
    """What weighted sources cannot run with: ``repeat``, and standard input when
    each source's records must be counted first."""
    for setting, used in (("repeat", request.repeat),):
        if used:
            raise UsageError(f"{option('source')} cannot be combined with {option(setting)}")
    if weights.needs_counts(request.source_rates, bool(request.mix)) or request.stratify:
        why = f"(for {option('mix')}, a fractional {option('rate')} or {option('stratify')})"
        for name, files in request.sources:
            if "-" in files:
                raise UsageError(f"source {quote_arg(name)} reads standard input, but its records must be counted before the shuffle {why}: name files")
            for path in files:
                if not _regular(path):  # read once to count, then again: a pipe gives its records only once
                    raise UsageError(
                        f"source {quote_arg(name)}: {quote_name(path)} is not a regular file, but its records must be counted before the "
                        f"shuffle {why}: name regular files"
                    )
    if not request.mix:
        # First a rate the format refuses (a tar source's above 1): raising --max-rate would not allow it.
        names = [name for name, _files in request.sources]
        weights.refuse_copies(request, names, request.source_rates)
        weights.refuse_above(names, request.source_rates, request.max_rate, solved=False)
