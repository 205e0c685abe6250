"""One shuffle's settings as a frozen request, built and validated once for the library and the command line."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from fractions import Fraction
from typing import Any, Protocol

from .arguments import _check_types, _describe, _input_list, _integer, _memory_argument, _optional_integer, _optional_path
from .core import mix as weights, plan
from .core.head import parse_share
from .core.numbers import HOW, SIZE_LIMIT
from .core.mix import SourceStats
from .engines.base import get_engine
from .errors import InputError, OutputError, UsageError, option
from .formats import registry
from .mix_settings import MIX_SETTINGS, check_sources, check_stratify, mix_settings
from .quoting import quote_arg, quote_name
from .storage.paths import own_descriptor
from .storage.remote import is_url, local_output
from .storage.safefs import written_in_place
from .storage.sources import FileSource, Source


class Runner(Protocol):
    """What runs a Dask run's tasks (``scheduler=``): a ``distributed.Client`` or a ``concurrent.futures`` executor."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        """Start ``fn(*args)``; the returned future's ``result()`` gives its value."""


@dataclass(frozen=True)
class ShuffleStats:
    """What a run did: records and bytes written, temp buckets made, passes over the data, wall time,
    and duplicates dropped."""

    records: int
    bytes: int
    buckets: int
    passes: int
    seconds: float
    #: Weighted sources (``sources=``): per source, records read, rate and records in the multiset.
    sources: tuple[SourceStats, ...] = ()
    #: Records dropped as copies of others (``--unique``).
    duplicates: int = 0
    #: What the format calls a record (lines: "records"; "rows", "samples", "documents"), for the summary.
    unit: str = "records"


def resolve_memory(memory: int | str | None) -> int:
    """``-S`` in bytes (default half of RAM), refused below the minimum the engine needs."""
    limit = plan.parse_size(plan.DEFAULT_MEMORY if memory is None else memory)
    if limit < plan.MIN_MEMORY:
        raise UsageError(f"memory limit {limit} bytes is below the minimum of {plan.MIN_MEMORY}; raise {option('memory')}")
    return min(limit, plan.MOST_MEMORY)


@dataclass(frozen=True)
class Request:
    """Every setting of one shuffle under one name each, as the library and the command line share it;
    made by ``Request.build``, which checks them all once."""

    #: Paths (directories replaced by their data files), URLs and ``Source`` objects.
    inputs: tuple[str | Source, ...]
    output: str | None = None
    #: Bytes; None for the engine's default (local: half of RAM; dask: 1G per task).
    memory: int | None = None
    seed: int | None = None
    random_source: str | None = None
    tmp_dir: str | None = None
    head_count: int | None = None
    #: ``-n P%``: the share of the records read that is written (with ``head_count`` too, the
    #: smaller count wins). Set from ``head_count="10%"``, not a keyword of its own.
    head_share: Fraction | None = None
    repeat: bool = False
    zero_terminated: bool = False
    lines_per_record: int = 1
    header: int = 0
    shards: int | None = None
    #: Shards of at least this many record bytes each (``--shard-size``), given as bytes or a size like "256M".
    shard_size: int | None = None
    shard_records: int | None = None
    #: ``--split``: NAME=COUNT|FRACTION|rest,... (see ``storage.layout``).
    split: str | None = None
    manifest: str | None = None
    compress: str | None = None
    compress_temp: bool = False
    verify: bool = False
    resume: bool = False
    #: Keep one copy of byte-identical records (``--unique``), before the shuffle.
    unique: bool = False
    #: ``--stratify``: each split gets its share of every source's records (see ``core.stratify``).
    stratify: bool = False
    sync: bool = True
    #: Worker threads; None for every core the process may use.
    threads: int | None = None
    row_group_size: int | None = None
    schema: str | None = None
    output_format: str | None = None
    engine: str = "local"
    #: A Dask scheduler's address, or what runs the tasks: a ``distributed.Client``, an executor.
    scheduler: str | Runner | None = None
    temp_url: str | None = None
    #: Plan the run and write nothing (``plan_shuffle``, ``--dry-run``): engines that cannot plan refuse it.
    dry_run: bool = False
    #: The family of records shuffled: the first of ``formats.registry``'s families whose ``detect``
    #: claims the inputs (Megatron documents, tar samples, Parquet / Arrow rows...), else ``lines``.
    family: str = registry.LINES
    #: The local directories named as inputs (or matched by a pattern), before ``inputs`` replaced
    #: them by their files: outputs a later read of one would take back are refused (``check_outputs``).
    input_directories: tuple[str, ...] = ()
    #: Weighted sources: each name with its files (directories and patterns expanded), in order;
    #: ``inputs`` are these files, source by source.
    sources: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: ``rates``: each source's rate (1 unless named); ``mix``: each source's share of ``total``.
    rates: tuple[tuple[str, Fraction], ...] = ()
    mix: tuple[tuple[str, Fraction], ...] = ()
    total: int | None = None
    by: str = "records"
    max_rate: Fraction = weights.DEFAULT_MAX_RATE

    @property
    def source_rates(self) -> list[Fraction]:
        """Each source's rate as given (1 unless ``rates`` names it); with ``mix``, solved later."""
        given = dict(self.rates)
        return [given.get(name, Fraction(1)) for name, _files in self.sources]

    @property
    def no_copies(self) -> str | None:
        """Why one of this request's records may not be written twice (None: it may), as its format declares."""
        return registry.no_copies(self.family)

    @property
    def workers(self) -> int:
        """Worker threads the run uses: ``threads``, or the cores the process may run on."""
        from .core.parallel import default_threads

        return self.threads or default_threads()

    @property
    def sampled(self) -> bool:
        """Whether ``-n`` limits the records written (a count or a share)."""
        return self.head_count is not None or self.head_share is not None

    @classmethod
    def build(cls, inputs: object, output: object = None, *, function: str = "shuffle", **settings: object) -> Request:
        """The request for ``inputs`` -> ``output`` with ``settings`` (the keyword arguments of
        ``function``, which an unknown one is named with), every check made here, once: types,
        ranges, combinations, and the engine's refusals."""
        names = {f.name for f in fields(cls)} - {"inputs", "output", "family", "input_directories", "head_share", *MIX_SETTINGS}
        for name in settings:
            if name not in names and name not in MIX_SETTINGS:
                raise TypeError(f"{function}() got an unexpected keyword argument '{name}'")
        mixing = mix_settings({name: settings.pop(name) for name in MIX_SETTINGS if name in settings})
        if mixing["sources"]:
            if inputs not in (None, (), []):
                raise UsageError(f"give the inputs as {option('source')} or as files, not both")
            inputs = [path for _name, files in mixing["sources"] for path in files]
        items = _input_list(inputs)
        typed = _typed_settings({f.name: f.default for f in fields(cls) if f.name in names} | settings)
        typed["output"] = local_output(_optional_path("output", output))
        _check_ranges(typed)
        if typed["memory"] is not None:
            typed["memory"] = resolve_memory(typed["memory"])
        expanded, paths, directories = _expand(items)
        _refuse_relative_names_without_a_directory(paths, typed)
        urls = [item for item in expanded if isinstance(item, str) and item not in paths]
        family = registry.family_of(registry.Operands(tuple(paths), tuple(urls), len(expanded), typed["output"], typed["output_format"]))
        request = cls(inputs=tuple(expanded), family=family, input_directories=tuple(directories), **typed, **mixing)
        refusal = get_engine(request.engine).supports(request)
        if refusal is not None:
            raise UsageError(refusal)
        _check_combinations(request, len(paths) == len(expanded))
        return request


def _refuse_relative_names_without_a_directory(paths: list[str], typed: dict[str, Any]) -> None:
    """With the current directory removed, a relative name names nothing: refused naming it, as GNU
    shuf refuses it (resolving it failed later with no name: "No such file or directory")."""
    outputs = [typed[name] for name in ("output", "manifest", "tmp_dir", "random_source")]
    relative = [p for p in (*paths, *outputs) if isinstance(p, str) and p != "-" and not os.path.isabs(p)]
    if not relative:
        return
    try:
        os.getcwd()
    except FileNotFoundError:
        name = relative[0]
        error = InputError if name in paths else OutputError
        # ``../x`` may still name a file (the parent stays), which the run could not resolve; a name
        # in the removed directory names nothing.
        there = name if name in paths or name == typed["random_source"] else os.path.dirname(name)
        if there in ("", ".") or not os.path.lexists(there):
            raise error(f"{quote_name(name)}: No such file or directory (the current directory was removed)") from None
        raise error(f"{quote_name(name)}: the current directory was removed: give this name from / (an absolute path)") from None


def _typed_settings(raw: dict[str, object]) -> dict[str, Any]:
    """``raw`` settings type-checked in the order that decides which of several wrong ones is named."""
    typed: dict[str, Any] = {"memory": _memory_argument(raw["memory"])}
    typed["seed"] = _optional_integer("seed", raw["seed"])
    for name in ("tmp_dir", "random_source"):
        typed[name] = _optional_path(name, raw[name])
    typed["manifest"] = local_output(_optional_path("manifest", raw["manifest"]))
    typed["shard_size"] = _shard_size(raw["shard_size"])
    typed["head_count"], typed["head_share"] = _head(raw["head_count"])
    typed["header"], typed["lines_per_record"] = _integer("header", raw["header"]), _integer("lines_per_record", raw["lines_per_record"])
    for name in ("shards", "shard_records", "row_group_size", "threads"):
        typed[name] = _optional_integer(name, raw[name])
    flags = ("zero_terminated", "repeat", "compress_temp", "verify", "resume", "sync", "unique", "dry_run", "stratify")
    _check_types(flags, bool, tuple(raw[name] for name in flags), optional=False)
    texts = ("compress", "schema", "output_format", "temp_url")
    _check_types(texts, str, tuple(raw[name] for name in texts), optional=True)
    typed["split"] = _split(raw["split"])
    _check_types(("engine",), str, (raw["engine"],), optional=False)
    scheduler = raw["scheduler"]
    if not (scheduler is None or isinstance(scheduler, str) or callable(getattr(scheduler, "submit", None))):
        raise UsageError(f"scheduler must be an address (str) or an object with submit() (a Dask client), not {_describe(scheduler)}")
    return typed | {name: raw[name] for name in (*flags, *texts, "engine", "scheduler")}


def _split(value: object) -> str | None:
    """``split`` as ``--split`` spells it: a str as given, or a mapping of each split's name to its
    count (int), fraction (float, or a Fraction of a finite decimal) or ``"rest"``, in its order."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, Mapping):
        raise UsageError(f"split must be a str, a mapping of names to counts or fractions, or None, not {_describe(value)}")
    from .storage.layout import SPLIT_NAME, SPLIT_NAME_RULE

    if not value:
        raise UsageError("split names no split")
    parts = []
    for name, part in value.items():
        if not isinstance(name, str):
            raise UsageError(f"split names must be str, not {_describe(name)}")
        if not SPLIT_NAME.match(name):  # (nor may one bring its own ',' or '=' into the text)
            raise UsageError(f"invalid split name {quote_arg(name)}: {SPLIT_NAME_RULE}")
        if part == "rest" and isinstance(part, str):
            text = "rest"
        elif isinstance(part, int) and not isinstance(part, bool):
            text = str(int(part))
        elif isinstance(part, float):
            text = _decimal_text(Decimal(repr(float(part))))  # 1e-05 as 0.00001, which --split reads
        elif isinstance(part, Fraction) and Fraction(decimal := Decimal(part.numerator) / Decimal(part.denominator)) == part:
            text = _decimal_text(decimal)
        else:
            raise UsageError(
                f"split {name!r} must be a count (int), a fraction (float or a Fraction with a finite decimal) or 'rest', "
                f"not {_describe(part)}"
            )
        parts.append(f"{name}={text}")
    return ",".join(parts)


def _decimal_text(value: Decimal) -> str:
    """A fraction as ``--split`` reads one: digits with a dot (``1`` would be a count of 1 record)."""
    text = format(value, "f")
    return text if "." in text or not text.lstrip("-").isdigit() else text + ".0"


def _head(value: object) -> tuple[int | None, Fraction | None]:
    """``head_count`` as a count, or (a str such as ``"10%"``) as a share of the records read."""
    if isinstance(value, str):
        share = parse_share(value)
        if share is None:
            raise UsageError(
                f"head_count must be an integer or a percentage from '0%' to '100%' such as '10%' or '0.5%' ({HOW}), not {_describe(value)}"
            )
        return None, share
    return _optional_integer("head_count", value), None


def _check_ranges(typed: dict[str, Any]) -> None:
    """Counts in range: ``head_count`` at least 0, ``header`` 0, ``lines_per_record`` and ``shards`` 1."""
    if typed["head_count"] is not None and typed["head_count"] < 0:
        raise UsageError(f"invalid {option('head_count')} value: {quote_arg(typed['head_count'])}: a non-negative integer is needed")
    for setting, least in (("header", 0), ("lines_per_record", 1)):
        if typed[setting] < least:
            raise UsageError(f"invalid {option(setting)} value: {quote_arg(typed[setting])}")
    for setting in ("shards", "shard_records", "shard_size", "threads"):
        if typed[setting] is not None and typed[setting] < 1:
            raise UsageError(f"invalid {option(setting)} value: {quote_arg(typed[setting])}")


def _expand(items: list[str | Source]) -> tuple[list[str | Source], list[str], list[str]]:
    """The inputs with local globs matched (one that matches nothing stays, for the read to refuse)
    and directories replaced by their data files; those of them that are local paths (not sources,
    nor URLs that are not also local paths, which are read through fsspec); and the local directories
    the inputs named or matched (``Request.input_directories``)."""
    from .formats.detect import named_inputs
    from .storage.remote import is_remote

    expanded: list[str | Source] = []
    directories: list[str] = []
    for s in items:
        if isinstance(s, str) and not is_remote(s):
            files, named = named_inputs(s)
            expanded.extend(files or [s])
            directories.extend(named)
        else:
            expanded.append(s)
    paths = [s for s in expanded if isinstance(s, str) and not is_remote(s)]
    return expanded, paths, directories


def _check_combinations(request: Request, all_paths: bool) -> None:
    """Refuse settings that cannot work together: for every run, then for its family of records
    (the checks its ``registry.Family`` names; ``all_paths``: every input is a local path)."""
    if request.verify and (request.sampled or request.repeat):
        raise UsageError(
            f"{option('verify')} checks whole shuffles; it cannot check a sample ({option('head_count')}) or {option('repeat')}"
        )
    if request.shards is not None and request.repeat and not request.sampled:
        raise UsageError(
            f"{option('shards')} needs {option('head_count')} with {option('repeat')} (shards split a known number of records)"
        )
    registry.settings_check(request.family)(request, all_paths)


def _check_records(request: Request) -> None:
    """The checks that lines, tar samples and table rows share: weighted sources, the output layout, ``unique``."""
    if request.stratify:
        check_stratify(request)
    if request.sources:
        check_sources(request)
    _check_outputs(request)
    if request.unique and request.repeat:
        raise UsageError(f"{option('unique')} cannot be used with {option('repeat')}")


def check_line_settings(request: Request, all_paths: bool) -> None:
    """Refuse what does not apply to lines (``registry``'s lines family; tar samples check these too):
    table settings, an unknown codec, ``resume`` without what it needs."""
    _check_records(request)
    if request.row_group_size is not None or request.schema is not None or request.output_format is not None:
        raise UsageError(
            f"{option('row_group_size')}, {option('schema')} and {option('output_format')} apply to Parquet and Arrow "
            f"data (inputs, or {option('output')} FILE.parquet)"
        )
    if request.compress is not None:
        from .storage.codecs import parse_compress

        parse_compress(request.compress)
    if request.resume:
        _check_resume(request)
    _check_listed(request)


def _check_listed(request: Request) -> None:
    """Records that hold the separator (an ``-e`` operand with a newline) are whole only in memory and
    only as records: alone, not cut into lines by a header, groups of lines, or a manifest's check."""
    from .storage.sources import BytesSource

    listed = [item for item in request.inputs if isinstance(item, BytesSource) and item.ends is not None]
    if not listed:
        return
    sep = 0 if request.zero_terminated else 10
    held = f"{listed[0].name} records holding a {'NUL' if sep == 0 else 'newline'}"
    if any(listed[0].data[end - 1] != sep for end in listed[0].ends or []):
        raise UsageError(f"{held}: each must end with one, as its ends say where records end")
    if len(request.inputs) > 1:
        raise UsageError(f"{held} are shuffled alone, not with other inputs")
    if request.header or request.lines_per_record != 1 or request.manifest is not None:
        used = settings_in_use(request, ("header", "lines_per_record", "manifest"))
        raise UsageError(f"{held} cannot be used with {', '.join(used)}: each record is kept whole, not read as lines")


def _shard_size(value: object) -> int | None:
    """``shard_size``: None, a byte count, or a size string (bytes by default; K, M, G, T binary units)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, str)):
        if value is None:
            return None
        raise UsageError(f"shard_size must be a byte count (int) or a size such as '256M', not {_describe(value)}")
    if isinstance(value, int):
        if value >= SIZE_LIMIT:  # as the same size spelt as a string is refused
            raise UsageError(f"{option('shard_size')} argument {quote_arg(value)} too large")
        return value
    from .storage.layout import parse_byte_size

    return parse_byte_size(value, option("shard_size"))


def _check_outputs(request: Request) -> None:
    """Refuse output layouts that cannot work: two shard options, ``split`` without ``{split}`` in the
    output, a manifest without output files, and the new layouts with ``repeat`` without ``-n``."""
    from .storage.layout import SPLIT_FIELD, parse_split

    given = [name for name in ("shards", "shard_size", "shard_records") if getattr(request, name) is not None]
    if len(given) > 1:
        raise UsageError(f"{option(given[0])} and {option(given[1])} cannot be combined: choose one way to cut shards")
    if request.split is not None:
        parse_split(request.split)
        if request.output is None or SPLIT_FIELD not in request.output:
            raise UsageError(
                f"{option('split')} needs {option('output')} with a {SPLIT_FIELD} placeholder, like out/{SPLIT_FIELD}.jsonl"
            )
        if request.output.endswith(os.sep) and not given and not is_url(request.output):  # (a URL prefix takes objects)
            raise UsageError(
                f"{option('output')} {quote_arg(request.output)} names a directory for each split, but no shard option is given: "
                f"add {option('shards')}, {option('shard_size')} or {option('shard_records')}, or name a file, like out/{SPLIT_FIELD}.jsonl"
            )
        field = _shard_field(request.output.replace(SPLIT_FIELD, ""))
        if field and not given:
            raise UsageError(
                f"{option('output')} {quote_arg(request.output)} numbers shards with {quote_arg(field)}, but no shard option is given: "
                f"add {option('shards')}, {option('shard_size')} or {option('shard_records')}, or take {quote_arg(field)} out"
            )
    if request.manifest is not None and (request.output is None or request.output == "-" or request.manifest == "-"):
        raise UsageError(f"{option('manifest')} needs {option('output')} naming files, and a file to write the manifest to")
    layouts = [n for n in ("split", "shard_size", "shard_records", "manifest") if getattr(request, n) is not None]
    if layouts and request.repeat and request.head_count is None and request.head_share is None:
        raise UsageError(
            f"{option(layouts[0])} needs {option('head_count')} with {option('repeat')} (outputs are cut from a known number of records)"
        )


def _shard_field(pattern: str) -> str:
    """The first ``{}``-style field of ``pattern`` (what numbers shards), or empty if it has none."""
    from string import Formatter

    try:
        fields = [(name, spec, conv) for _, name, spec, conv in Formatter().parse(pattern) if name is not None]
    except ValueError:
        return ""  # a lone brace: no field, a literal name
    if not fields:
        return ""
    name, spec, conv = fields[0]
    return f"{{{name}{'!' + conv if conv else ''}{':' + spec if spec else ''}}}"


#: Settings of line files only, and of Parquet/Arrow rows only (``settings_in_use`` names).
LINE_SETTINGS = ("zero_terminated", "repeat", "header", "lines_per_record", "resume")
ROW_SETTINGS = ("row_group_size", "schema", "output_format")
#: ``settings_in_use`` names that are not the Request field they stand for.
_FIELD_OF = {"source": "sources", "dask": "engine"}


def settings_in_use(request: Request, names: tuple[str, ...]) -> list[str]:
    """The options, among ``names`` (Request fields, or ``source``/``dask``), that ``request`` sets
    away from their defaults, spelt for the caller: the list a family's refusal names in one line."""
    defaults = {f.name: f.default for f in fields(Request)}
    return [option(name) for name in names if getattr(request, _FIELD_OF.get(name, name)) != defaults[_FIELD_OF.get(name, name)]]


#: The most rows ``--row-group-size`` takes: Arrow's writers count them in a signed 64-bit integer.
ROW_GROUP_MAX = 2**63 - 1


def not_for_rows(settings: list[str]) -> UsageError:
    """The refusal of line-only ``settings`` (as ``errors.option`` names them) for table rows, on every engine."""
    return UsageError(f"{', '.join(settings)}: not available for Parquet or Arrow data (rows, not lines)")


def check_table_settings(request: Request, all_paths: bool) -> None:
    """Refuse what does not apply to rows (``registry``'s table family): inputs other than files, and line-only settings."""
    _check_records(request)
    if not all_paths and not all(isinstance(item, str) for item in request.inputs):  # (URLs are names: the engine reads them)
        raise UsageError(
            f"Parquet or Arrow output needs input files (JSON Lines), not {option('echo')} or {option('input_range')}"
        )
    unsupported = settings_in_use(request, LINE_SETTINGS)
    if unsupported:
        raise not_for_rows(unsupported)
    if request.row_group_size is not None and not 1 <= request.row_group_size <= ROW_GROUP_MAX:
        # (Arrow takes a 64-bit signed count: a larger one failed in its writer, after the whole input was read.)
        raise UsageError(f"invalid {option('row_group_size')} value: {quote_arg(request.row_group_size)}")
    from .formats.detect import suffix_kind

    named = request.output_format or (None if request.output is None else suffix_kind(request.output))
    if named == "jsonl" and request.row_group_size is not None:
        raise UsageError(f"{option('row_group_size')} applies to Parquet and Arrow output; rows written as JSON Lines have no row groups")
    if request.manifest is not None:
        if named == "jsonl":
            raise UsageError(
                f"{option('manifest')}: rows written as JSON Lines cannot be checked against it; write .parquet or .arrow files"
            )


def check_megatron_settings(request: Request, all_paths: bool) -> None:
    """Refuse what does not apply to documents of Megatron datasets (``registry``'s megatron family): inputs other than dataset files
    (local, or URLs), output to standard output, line and row settings, a codec (Megatron reads
    plain pairs); weighted sources, ``stratify`` and ``resume`` checked as for lines."""
    if not all_paths and not all(isinstance(item, str) for item in request.inputs):
        raise UsageError(f"Megatron datasets are read from files and URLs, not {option('echo')} or {option('input_range')}")
    if request.output is None or request.output == "-":
        from .formats.detect import megatron_prefix
        from .formats.megatron import read_header

        for item in request.inputs:  # a text file named t.idx says what it is first (GNU shuf shuffles its lines)
            prefix = megatron_prefix(item) if isinstance(item, str) else None
            if prefix is not None:
                read_header(prefix + ".idx")
        raise UsageError(f"a Megatron dataset is written to files: give {option('output')} PREFIX (PREFIX.bin and PREFIX.idx are written)")
    unsupported = settings_in_use(request, (*(s for s in LINE_SETTINGS if s != "resume"), "compress", *ROW_SETTINGS))
    if unsupported:
        raise UsageError(f"{', '.join(unsupported)}: not available for Megatron datasets (.bin/.idx documents)")
    if request.manifest is not None and request.manifest.endswith((".bin", ".idx")):
        raise UsageError(f"{quote_name(request.manifest)}: a manifest named as a dataset file would be taken for one; name it .json")
    if request.stratify:
        check_stratify(request)
    if request.sources:
        check_sources(request)
    _check_outputs(request)
    if request.resume:
        _check_resume(request)


def _check_resume(request: Request) -> None:
    """``resume``'s preconditions: a seed, an output file, and local input files to check and read again."""
    if request.seed is None and request.random_source is None:
        raise UsageError(
            f"{option('resume')} needs {option('seed')} (or {option('random_source')}): a resumed run must draw the same numbers"
        )
    if request.seed is None and request.random_source is not None:
        source = os.fspath(request.random_source)
        try:
            regular = stat.S_ISREG(os.stat(source).st_mode)
        except (OSError, ValueError):
            regular = True  # missing or unreadable: the random source's own error follows
        if not regular:
            raise UsageError(
                f"{option('resume')} needs {option('random_source')} naming a regular file, not {quote_name(source)}: "
                f"a device or FIFO gives other bytes each time it is read, so a rerun could never resume"
            )
    if request.head_share is not None:
        raise UsageError(f"{option('resume')} cannot be used with {option('head_count')} P% (a share of the records); give a count")
    if request.repeat:
        raise UsageError(f"{option('resume')} cannot be used with {option('repeat')}")
    if request.output is None or request.output == "-":
        raise UsageError(f"{option('resume')} needs {option('output_file')} (not standard output)")
    try:
        in_place = written_in_place(os.stat(request.output)) or own_descriptor(request.output) is not None
    except (OSError, ValueError):
        in_place = False  # a new file (or a URL): the output's own checks follow
    if in_place:
        raise UsageError(
            f"{option('resume')} needs {option('output')} naming a regular file, not {quote_name(request.output)}: "
            f"a device, FIFO, deleted file or open descriptor is written as the run goes and cannot be taken up where it stopped"
        )
    from .storage.remote import is_remote

    def local(item: str | Source) -> bool:
        if isinstance(item, str):
            return item != "-" and not is_remote(item)
        return isinstance(item, FileSource) and item.path != "-"

    if not all(local(item) for item in request.inputs):
        raise UsageError(
            f"{option('resume')} needs local input files (standard input and URLs cannot be checked and read again)"
        )
