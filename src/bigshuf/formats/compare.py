"""What ``check_permutation`` compares when the files are not lines: the samples of tars, the
documents of Megatron datasets (each side's fingerprint), and a refusal for Parquet/Arrow tables."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

from ..core.fingerprint import Fingerprint
from ..core.records import RecordFormat
from ..errors import InputError, UsageError, option
from . import registry
from ..quoting import quote_name

PathLike = str | os.PathLike[str]

#: The line settings, which no other kind of records takes.
LINES = RecordFormat(10, 1)


def other_records_fingerprints(
    inputs: Sequence[PathLike], outputs: Sequence[PathLike], fmt: RecordFormat, header: int, limit: int,
) -> tuple[Fingerprint, Fingerprint] | None:
    """Both sides' fingerprints when the paths hold tar samples or Megatron documents; None when
    they hold lines. Tables, and one kind beside another, are refused in one line. Each names its
    records by the format's unit (``documents``, ``samples``), as a run's summary does."""
    if _megatron_sides(inputs, outputs, fmt, header):
        return _in_units(registry.MEGATRON, _documents_fingerprint(inputs, limit), _documents_fingerprint(outputs, limit))
    from .detect import is_table_input

    for path in [*inputs, *outputs]:
        if is_table_input(os.fspath(path)):
            raise UsageError(f"{quote_name(os.fspath(path))}: {option('check_permutation')} compares lines; shuffle tables with {option('verify')} instead")
    if _tar_sides(inputs, outputs, fmt, header):
        from .tar_input import tar_fingerprint

        # One side after the other, each in half the limit: a sample as long as a shuffle at this limit takes fits.
        got_in = tar_fingerprint([os.fspath(p) for p in inputs], limit // 2)
        return _in_units(registry.WEBDATASET, got_in, tar_fingerprint([os.fspath(p) for p in outputs], limit // 2))
    return None


def _in_units(family: str, got_in: Fingerprint, got_out: Fingerprint) -> tuple[Fingerprint, Fingerprint]:
    """Both sides named by the unit of ``family``'s run (``ShuffleStats.unit``'s)."""
    unit: str = registry.run_class(family).unit
    return replace(got_in, unit=unit), replace(got_out, unit=unit)


def _tar_sides(inputs: Sequence[PathLike], outputs: Sequence[PathLike], fmt: RecordFormat, header: int) -> bool:
    """Whether the paths are WebDataset tars (by name or content), compared by their samples; a mix
    of tars and other files, or tars with line settings, is refused."""
    from .tar_input import is_tar_path

    paths = [os.fspath(p) for p in [*inputs, *outputs]]
    tars = [is_tar_path(p) for p in paths]
    if not any(tars):
        return False
    if not all(tars):
        tar, other = paths[tars.index(True)], paths[tars.index(False)]
        raise UsageError(f"{quote_name(tar)} is a tar archive and {quote_name(other)} is not: {option('check_permutation')} compares samples of tars with tars only")
    if fmt != LINES or header:
        raise UsageError(
            f"{option('zero_terminated')}, {option('lines_per_record')} and {option('header')} apply to lines, not to samples of tars"
        )
    return True


def _megatron_sides(inputs: Sequence[PathLike], outputs: Sequence[PathLike], fmt: RecordFormat, header: int) -> bool:
    """Whether the paths name Megatron datasets, compared by their documents; refused when some do and
    others do not, or with a setting of lines."""
    from .detect import megatron_prefix

    paths = [os.fspath(p) for p in [*inputs, *outputs]]
    prefixes = [megatron_prefix(p) for p in paths]
    if all(p is None for p in prefixes):
        return False
    if any(p is None for p in prefixes):
        one = paths[prefixes.index(None)]
        if not os.path.lexists(one):
            raise InputError(f"{quote_name(one)}: No such file or directory (nor {quote_name(one + '.idx')})")
        other = paths[next(i for i, p in enumerate(prefixes) if p is not None)]
        raise UsageError(f"{quote_name(one)} is not a Megatron dataset and {quote_name(other)} is: {option('check_permutation')} compares one kind of records")
    if fmt != LINES or header:
        raise UsageError(
            f"{option('zero_terminated')}, {option('lines_per_record')} and {option('header')} apply to lines, not to Megatron documents"
        )
    return True


def _documents_fingerprint(paths: Sequence[PathLike], limit: int) -> Fingerprint:
    """The documents of the Megatron datasets ``paths`` name (each checked as a run checks it):
    counted, with their tokens' bytes and a hash of their tokens, sequence lengths and modes."""
    from .detect import megatron_prefix
    from .megatron import dataset_fingerprint

    total = Fingerprint()
    for path in paths:
        prefix = megatron_prefix(os.fspath(path))
        assert prefix is not None, "every path was checked to name a dataset"
        total += dataset_fingerprint(prefix, limit)
    return total
