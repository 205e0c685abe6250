"""The library entry point: validate, choose in-memory or external, run, return statistics."""

from __future__ import annotations

import hashlib
import json
import operator
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np

from .core import plan, streams
from .core.fingerprint import Fingerprint, fingerprint
from .core.streams import rng_for, seed_entropy
from .errors import InputError, TempSpaceError, UsageError, option
from .formats.line_run import LineRun, Options
from .core.records import RecordFormat, find_offsets
from .progress import Progress
from .storage.sinks import CodecChoice
from .storage.sources import FileSource, GeneratedSource, RangeSource, RecordReader, Source
from .storage.threads import signals_held

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class ShuffleStats:
    """What a run did: records and bytes written, temp buckets made, passes over the data, wall time."""

    records: int
    bytes: int
    buckets: int
    passes: int
    seconds: float


def resolve_memory(memory: int | str | None) -> int:
    """``-S`` in bytes (default half of RAM), refused below the minimum the engine needs."""
    limit = plan.parse_size(plan.DEFAULT_MEMORY if memory is None else memory)
    if limit < plan.MIN_MEMORY:
        raise UsageError(f"memory limit {limit} bytes is below the minimum of {plan.MIN_MEMORY}; raise {option('memory')}")
    return limit


def _describe(value: object) -> str:
    """A wrongly typed argument for a message: its type and (shortened) value."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _path(name: str, value: object) -> str:
    """``value`` as a path (str or os.PathLike of str); bytes and other types are a UsageError."""
    path = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(path, str):
        raise UsageError(f"{name} must be a path (str or os.PathLike), not {_describe(value)}")
    return path


def _optional_path(name: str, value: object) -> str | None:
    """``_path`` that also takes None."""
    return None if value is None else _path(name, value)


def _integer(name: str, value: object) -> int:
    """``value`` as an int (NumPy integers too); a bool, float or str is a UsageError."""
    if isinstance(value, bool):
        raise UsageError(f"{name} must be an integer, not {_describe(value)}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise UsageError(f"{name} must be an integer, not {_describe(value)}") from None


def _optional_integer(name: str, value: object) -> int | None:
    """``_integer`` that also takes None."""
    return None if value is None else _integer(name, value)


def _check_types(names: tuple[str, ...], kind: type, values: tuple[object, ...], *, optional: bool) -> None:
    """Every value is a ``kind`` (or None when ``optional``), else a UsageError naming the argument."""
    for name, value in zip(names, values):
        if not isinstance(value, kind) and not (optional and value is None):
            what = {bool: "True or False", str: "a str"}.get(kind, kind.__name__)
            raise UsageError(f"{name} must be {what}{' or None' if optional else ''}, not {_describe(value)}")


def _memory_argument(memory: object) -> int | str | None:
    """``memory``: None, a byte count or a size string; anything else is a UsageError."""
    if memory is None or isinstance(memory, str):
        return memory
    if isinstance(memory, bool) or not isinstance(memory, int):
        try:
            return _integer("memory", memory)
        except UsageError:
            raise UsageError(
                f"memory must be a byte count (int) or a size such as '256M' or '25%', not {_describe(memory)}"
            ) from None
    return memory


def _is_source(value: object) -> bool:
    """Whether ``value`` looks like a ``Source`` (a name, ``size()`` and ``open()``)."""
    return hasattr(value, "name") and callable(getattr(value, "size", None)) and callable(getattr(value, "open", None))


def _input_list(inputs: object) -> list[str | Source]:
    """``inputs`` as a non-empty list of paths and sources: one path or source, or an iterable of them."""
    if isinstance(inputs, (bytes, bytearray, memoryview)):
        raise UsageError(
            f"inputs must be paths or Source objects, not {_describe(inputs)}: decode a bytes path with "
            "os.fsdecode(); wrap records in memory in bigshuf.storage.sources.BytesSource"
        )
    if isinstance(inputs, (str, os.PathLike)) or _is_source(inputs):
        items: list[object] = [inputs]
    elif isinstance(inputs, Iterable):
        items = list(inputs)
    else:
        raise UsageError(f"inputs must be a path, a Source or a list of them, not {_describe(inputs)}")
    if not items:
        raise UsageError("no inputs given: pass '-' to read standard input")
    return [cast(Source, item) if _is_source(item) else _path("each input", item) for item in items]


def shuffle(
    inputs: PathLike | Source | Sequence[PathLike | Source],
    output: PathLike | None = None,
    *,
    memory: int | str | None = None,
    seed: int | None = None,
    tmp_dir: PathLike | None = None,
    head_count: int | None = None,
    zero_terminated: bool = False,
    repeat: bool = False,
    random_source: PathLike | None = None,
    progress: Progress | None = None,
    header: int = 0,
    lines_per_record: int = 1,
    shards: int | None = None,
    compress: str | None = None,
    compress_temp: bool = False,
    verify: bool = False,
    resume: bool = False,
    row_group_size: int | None = None,
    schema: str | None = None,
    output_format: str | None = None,
    sync: bool = True,
) -> ShuffleStats:
    """Write the records of ``inputs`` to ``output`` in uniformly random order.

    ``inputs`` is one path or several (``-`` is stdin), read as one concatenated input;
    ``output`` a path written atomically, or None / ``-`` for stdout. ``memory`` bounds
    the working memory (bytes, or a size string like ``"256M"``, ``"25%"``); inputs that do
    not fit are shuffled externally with temporary files under ``tmp_dir``. The same inputs,
    seed and options (memory included) give the same output. ``head_count`` keeps the first
    COUNT records (a uniform sample); ``repeat`` samples with replacement.

    Inputs may be gzip, zstd, bzip2 or xz compressed (detected by their magic bytes).
    ``compress`` (``"zstd"``, ``"gzip:6"``, ``"none"``) overrides the codec implied by the
    output's suffix. ``shards=N`` writes N files (``output`` a directory or a pattern such as
    ``"out/part-{:05d}.jsonl.zst"``) that concatenated are one uniform shuffle. ``header=N``
    keeps the first input's first N records on top of every output file and drops the first N
    records of later inputs. ``lines_per_record=N`` shuffles groups of N lines (FASTQ: 4).
    ``compress_temp`` keeps the temporary buckets zstd-compressed. ``verify`` fingerprints
    the records read and the records written and fails, output not put in place, if they differ.
    ``resume`` checkpoints an external run (needs a ``seed``) so that the same call, after a
    crash, continues where it stopped and writes the same output.

    Parquet and Arrow IPC inputs (files, or directories of them) have their rows shuffled and
    are written as Parquet, Arrow or JSON Lines as ``output``'s suffix says (default: the input's
    format, or ``output_format``: ``"parquet"``, ``"arrow"``, ``"jsonl"``); ``row_group_size``
    sets the rows per Parquet row group (Arrow record batch). Line
    inputs with a ``.parquet`` or ``.arrow`` output are read as JSON Lines, their columns typed by
    ``schema`` (``"name:type,..."`` or a Parquet/Arrow file) or inferred from the first rows.
    ``sync=False`` skips the fsync of output files and their directories before and after the
    rename that puts them in place (faster; a machine crash may then lose the new output).
    """
    items = _input_list(inputs)
    output = _optional_path("output", output)
    memory = _memory_argument(memory)
    seed = _optional_integer("seed", seed)
    tmp_dir = _optional_path("tmp_dir", tmp_dir)
    random_source = _optional_path("random_source", random_source)
    head_count = _optional_integer("head_count", head_count)
    header, lines_per_record = _integer("header", header), _integer("lines_per_record", lines_per_record)
    shards, row_group_size = _optional_integer("shards", shards), _optional_integer("row_group_size", row_group_size)
    _check_types(
        ("zero_terminated", "repeat", "compress_temp", "verify", "resume"), bool,
        (zero_terminated, repeat, compress_temp, verify, resume), optional=False,
    )
    _check_types(("compress", "schema", "output_format"), str, (compress, schema, output_format), optional=True)
    _check_types(("progress",), Progress, (progress,), optional=True)
    if head_count is not None and head_count < 0:
        raise UsageError(f"invalid line count: '{head_count}'")
    for flag, value, least in ((option("header"), header, 0), (option("lines_per_record"), lines_per_record, 1)):
        if value < least:
            raise UsageError(f"invalid {flag} value: '{value}'")
    if shards is not None and shards < 1:
        raise UsageError(f"invalid {option('shards')} value: '{shards}'")
    if verify and (head_count is not None or repeat):
        raise UsageError(
            f"{option('verify')} checks whole shuffles; it cannot check a sample ({option('head_count')}) or {option('repeat')}"
        )
    if shards is not None and repeat and head_count is None:
        raise UsageError(
            f"{option('shards')} needs {option('head_count')} with {option('repeat')} (shards split a known number of records)"
        )
    from .formats.detect import expand_directories, is_table_input, refuse_terminal, suffix_kind

    expanded = _open_urls([part for s in items for part in (expand_directories([s]) if isinstance(s, str) else [s])])
    sources: list[Source] = [FileSource(s) if isinstance(s, (str, os.PathLike)) else s for s in expanded]
    entropy = seed_entropy(seed, random_source)
    target = None if output is None else os.fspath(output)
    paths = [os.fspath(s) for s in expanded if isinstance(s, (str, os.PathLike))]
    tables_in = len(paths) == len(sources) and any(is_table_input(p) for p in paths)
    tables_out = output_format in ("parquet", "arrow") or (
        target not in (None, "-") and suffix_kind(target) in ("parquet", "arrow")
    )
    if target is not None and "://" in target and not os.path.exists(os.path.dirname(target) or "."):
        raise UsageError(f"{target}: this engine writes local files; write to URLs with {option('dask')}")
    if tables_in or tables_out:
        if len(paths) != len(sources):
            raise UsageError(
                f"Parquet or Arrow output needs input files (JSON Lines), not {option('echo')} or {option('input_range')}"
            )
        unsupported = [
            flag for flag, used in (
                (option("zero_terminated"), zero_terminated), (option("repeat"), repeat), (option("header"), header),
                (option("lines_per_record"), lines_per_record != 1), (option("resume"), resume),
            ) if used
        ]
        if unsupported:
            raise UsageError(f"{', '.join(unsupported)}: not available for Parquet or Arrow data (rows, not lines)")
        if row_group_size is not None and row_group_size < 1:
            raise UsageError(f"invalid {option('row_group_size')} value: '{row_group_size}'")
        return _shuffle_tables(
            paths, target, entropy=entropy, memory=resolve_memory(memory), head_count=head_count,
            tmp_dir=None if tmp_dir is None else os.fspath(tmp_dir), shards=shards, compress=compress,
            compress_temp=compress_temp, verify=verify, row_group_size=row_group_size, schema=schema,
            progress=progress or Progress(), output_format=output_format, sync=sync,
        )
    if row_group_size is not None or schema is not None or output_format is not None:
        raise UsageError(
            f"{option('row_group_size')}, {option('schema')} and {option('output_format')} apply to Parquet and Arrow "
            f"data (inputs, or {option('output')} FILE.parquet)"
        )
    opts = Options(
        memory=resolve_memory(memory),
        entropy=entropy,
        fmt=RecordFormat(0 if zero_terminated else 10, lines_per_record),
        head_count=head_count,
        repeat=repeat,
        tmp_dir=os.fspath(tmp_dir) if tmp_dir is not None else None,
        header=header,
        shards=shards,
        compress=_parse_compress(compress),
        compress_temp=compress_temp,
        verify=verify,
    )
    if target in (None, "-") and opts.compress is not None and opts.compress[0] != "none":
        refuse_terminal(f"{opts.compress[0]}-compressed data")
    if resume:
        if seed is None and random_source is None:
            raise UsageError(
                f"{option('resume')} needs {option('seed')} (or {option('random_source')}): a resumed run must draw the same numbers"
            )
        if repeat or output is None or os.fspath(output) == "-":
            raise UsageError(
                f"{option('resume')} needs {option('output')} FILE (not standard output) and cannot be used with {option('repeat')}"
            )
        if not all(isinstance(s, FileSource) and s.path != "-" for s in sources):
            raise UsageError(
                f"{option('resume')} needs local input files (standard input and URLs cannot be checked and read again)"
            )
        opts = replace(opts, resume_key=_resume_key(opts, sources, os.fspath(output)))
    return ShuffleStats(*LineRun(opts, sources, target, progress or Progress(), sync).run())


def _open_urls(inputs: list[PathLike | Source]) -> list[PathLike | Source]:
    """``inputs`` with every URL (``s3://...``, ``https://...``; globs expanded) that is not also a
    local path made a source read through fsspec."""
    from .storage.remote import is_url, url_sources

    out: list[PathLike | Source] = []
    for item in inputs:
        name = os.fspath(item) if isinstance(item, (str, os.PathLike)) else None
        if name is not None and is_url(name) and not os.path.exists(name):
            out.extend(url_sources([name]))
        else:
            out.append(item)
    return out


def _shuffle_tables(
    paths: list[str], target: str | None, *, schema: str | None, progress: Progress, compress: str | None,
    output_format: str | None, **settings: Any,
) -> ShuffleStats:
    """Shuffle the rows of Parquet / Arrow / JSON Lines inputs into a table output (see ``shuffle``)."""
    from .formats.detect import output_kind, refuse_terminal
    from .formats.table_run import TableJob, shuffle_tables
    from .formats.tables import open_inputs, parse_schema, resolve_codec

    inputs = open_inputs(paths, parse_schema(schema) if schema is not None else None)
    kind = output_kind(target, inputs[0].kind, output_format)
    if kind != "jsonl" and target in (None, "-"):
        refuse_terminal("Parquet" if kind == "parquet" else "Arrow IPC")
    job = TableJob(inputs=inputs, output=target, kind=kind, codec=resolve_codec(kind, compress, target), **settings)
    return ShuffleStats(*shuffle_tables(job, progress))


def _resume_key(opts: Options, sources: list[Source], output: str) -> str:
    """Names a job: same inputs (by path), output, seed and options give the same key."""
    from . import __version__

    job = {
        "version": __version__,
        "inputs": [os.path.abspath(s.path) for s in sources if isinstance(s, FileSource)],
        "output": os.path.abspath(output),
        "options": repr(replace(opts, tmp_dir=None)),
    }
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()[:16]


def _parse_compress(spec: str | None) -> CodecChoice | None:
    if spec is None:
        return None
    from .storage.codecs import parse_compress

    return parse_compress(spec)


#: The largest number ``shuffle_range`` takes: GNU shuf's limit (SIZE_MAX) on 64-bit systems.
RANGE_MAX = 2**64 - 1

#: Above this, NumPy's default (int64) draws cannot reach the numbers; unsigned 64-bit draws can.
_INT64_MAX = 2**63 - 1


def shuffle_range(lo: int, hi: int, output: PathLike | None = None, **options: Any) -> ShuffleStats:
    """Shuffle the integers ``lo..hi`` (``-i LO-HI``, at most 0..2**64-1); takes ``shuffle``'s keyword options.

    With ``head_count`` (and ``repeat``, or a sample that fits in memory) the numbers are
    drawn directly, without listing the range: ``-i 1-18446744073709551615 -n 5`` is instant.
    A range that must be listed and can fit neither in memory nor in the free temporary
    space is refused at once.
    """
    lo, hi = _integer("lo", lo), _integer("hi", hi)
    if lo > hi + 1 or lo < 0 or hi > RANGE_MAX:
        raise UsageError(f"invalid input range: '{lo}-{hi}' (from 0 up to {RANGE_MAX}, lo at most hi + 1)")
    head_count = _optional_integer("head_count", options.get("head_count"))
    repeat = options.get("repeat", False)
    _check_types(("repeat", "zero_terminated"), bool, (repeat, options.get("zero_terminated", False)), optional=False)
    limit = resolve_memory(_memory_argument(options.get("memory")))
    sep = b"\0" if options.get("zero_terminated") else b"\n"
    count = hi - lo + 1
    if repeat and count == 0:
        raise InputError("no lines to repeat")
    sampling = head_count is not None and (repeat or (head_count <= count // 2 and head_count * 16 <= limit))
    if not sampling:
        _check_range_fits(lo, hi, head_count, limit, options)
        return shuffle(RangeSource(lo, hi, sep), output, **options)
    assert head_count is not None
    entropy = seed_entropy(options.get("seed"), options.get("random_source"))
    rng = rng_for(entropy, streams.RANGE_DRAWS)
    # Ranges that reach past int64 draw unsigned 64-bit numbers; the others draw as they always
    # have, so their seeded outputs stay the same.
    wide = hi > _INT64_MAX
    chosen = None
    if not repeat:
        chosen = _distinct_draws(rng, lo, hi, head_count) if wide else rng.choice(count, size=head_count, replace=False) + lo

    def draws() -> Iterator[bytes]:
        for first in range(0, head_count, 1 << 20):
            size = min(1 << 20, head_count - first)
            if chosen is not None:
                values = chosen[first : first + size]
            elif wide:
                values = rng.integers(lo, hi, size, dtype=np.uint64, endpoint=True)
            else:
                values = rng.integers(lo, hi, size, endpoint=True)
            yield sep.join(b"%d" % v for v in values.tolist()) + sep

    # The draws are i.i.d. (or a uniform sample in random order), so shuffling them again,
    # through the same engine and options as any input, keeps the result uniform.
    rest = {k: v for k, v in options.items() if k not in ("head_count", "repeat", "random_source", "seed")}
    return shuffle(GeneratedSource(f"{lo}-{hi}", draws), output, seed=entropy, **rest)


def _distinct_draws(rng: np.random.Generator, lo: int, hi: int, n: int) -> np.ndarray:
    """``n`` distinct numbers of ``lo..hi`` (``n`` at most half of them) in uniformly random order.

    Each number's first appearance in a stream of uniform draws is a uniform pick among those
    not yet picked, so keeping first appearances, drawing again for the repeats, is an exact
    sample without replacement, in random order, for ranges too wide for ``Generator.choice``.
    """
    chosen = np.empty(0, np.uint64)
    while len(chosen) < n:
        drawn = np.concatenate([chosen, rng.integers(lo, hi, n - len(chosen), dtype=np.uint64, endpoint=True)])
        _, first = np.unique(drawn, return_index=True)
        chosen = drawn[np.sort(first)]
    return chosen


def _range_bytes(lo: int, hi: int) -> int:
    """Bytes of the numbers ``lo..hi`` written in decimal, each with its separator."""
    total, digits = 0, 1
    while 10 ** (digits - 1) <= hi or digits == 1:
        first, last = max(lo, 10 ** (digits - 1) if digits > 1 else 0), min(hi, 10**digits - 1)
        total += max(0, last - first + 1) * (digits + 1)
        digits += 1
    return total


def _check_range_fits(lo: int, hi: int, head_count: int | None, limit: int, options: dict[str, Any]) -> None:
    """Refuse at once a range that must be listed and fits neither in memory nor in the temp space.

    Listing ``-i 1-18446744073709551615`` would otherwise run for ever (GNU shuf runs out of
    memory at once). The space asked for is a lower bound: the part of the range that a
    ``head_count`` keeps, at one bit per number with ``compress_temp``.
    """
    count = hi - lo + 1
    nbytes = _range_bytes(lo, hi)
    if plan.fits_in_memory(nbytes, count, limit):
        return
    kept = count if head_count is None else min(count, head_count)
    need = kept // 8 if options.get("compress_temp") else nbytes * kept // count
    from .storage.tempspace import default_tmp_dir

    parent = _optional_path("tmp_dir", options.get("tmp_dir")) or default_tmp_dir()
    try:
        free = shutil.disk_usage(parent).free
    except OSError:
        return  # the run itself says what is wrong with the directory
    if need > free:
        raise TempSpaceError(
            f"{parent}: not enough temporary space for the {count} numbers of {lo}-{hi}: need at least "
            f"{plan.format_size(need)} (they do not fit in memory, {plan.format_size(limit)}), "
            f"{plan.format_size(free)} free; take a sample with {option('head_count')} or choose another directory with {option('tmp_dir')}"
        )


def _path_list(name: str, paths: object) -> list[str]:
    """One path (a str is one path, not its characters) or an iterable of them, at least one."""
    if isinstance(paths, (str, os.PathLike)):
        return [_path(name, paths)]
    if isinstance(paths, (bytes, bytearray)) or not isinstance(paths, Iterable):
        raise UsageError(f"{name} must be a path or a list of paths, not {_describe(paths)}")
    listed = [_path(f"each of {name}", p) for p in paths]
    if not listed:
        raise UsageError(f"{name}: no files given")
    return listed


def check_permutation(
    inputs: PathLike | Sequence[PathLike],
    outputs: PathLike | Sequence[PathLike],
    *,
    memory: int | str | None = None,
    zero_terminated: bool = False,
    lines_per_record: int = 1,
    header: int = 0,
) -> tuple[Fingerprint, Fingerprint]:
    """Fingerprints of the records of ``inputs`` and of ``outputs`` (each a path or a list of
    paths); equal when the outputs hold exactly the inputs' records, in any order and split
    over any number of files.

    Compressed files are read as such; ``header`` records are set aside as ``shuffle`` does
    (no file's first ``header`` records are counted).
    """
    from .formats.detect import expand_directories, is_table_input

    inputs = expand_directories(_path_list("inputs", inputs))
    outputs = expand_directories(_path_list("outputs", outputs))
    memory = _memory_argument(memory)
    _check_types(("zero_terminated",), bool, (zero_terminated,), optional=False)
    lines_per_record, header = _integer("lines_per_record", lines_per_record), _integer("header", header)
    if lines_per_record < 1 or header < 0:
        raise UsageError(f"lines_per_record must be at least 1 and header at least 0, not {lines_per_record} and {header}")
    for path in [*inputs, *outputs]:
        if is_table_input(os.fspath(path)):
            raise UsageError(f"{os.fspath(path)}: {option('check_permutation')} compares lines; shuffle tables with {option('verify')} instead")
    fmt = RecordFormat(0 if zero_terminated else 10, lines_per_record)
    capacity = plan.read_capacity(resolve_memory(memory))

    def total(paths: Sequence[PathLike]) -> Fingerprint:
        fp = Fingerprint()
        for path in paths:
            reader = RecordReader([FileSource(path)], fmt, Progress(), header)
            for block, _final in reader.blocks(capacity, option("memory")):
                fp += fingerprint(block, find_offsets(block, fmt))
        return fp

    # The two sides on two threads: NumPy releases the GIL, so a 2-core machine does both at once.
    with ThreadPoolExecutor(2) as pool:
        with signals_held():  # the pool's threads leave Ctrl-C to the main thread
            got_in, got_out = pool.submit(total, inputs), pool.submit(total, outputs)
        return got_in.result(), got_out.result()
