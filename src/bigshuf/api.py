"""The library's functions: ``shuffle``, ``shuffle_range`` and ``check_permutation``, thin over a request and an engine."""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from fractions import Fraction
from functools import partial
from typing import Any

import numpy as np

from .core import draws, plan, streams
from .core.head import count_of, parse_share
from .core.range_sample import NUMBER_BYTES, BucketedSample
from .core.fingerprint import Fingerprint, fingerprint_records
from .core.parallel import Workers, default_threads
from .core.plan import keeps_file_limit
from .core.records import RecordFormat, record_cuts
from .core.streams import rng_for, seed_entropy
from .engines.base import run_request
from .errors import BigShufError, InputError, TempSpaceError, UsageError, option, render
from .progress import Progress
from .quoting import quote_name
from .arguments import _check_types, _integer, _memory_argument, _optional_integer, _optional_path, _path, _path_list
from .request import Request, Runner
from .run_plan import RunPlan
from .request import ShuffleStats as ShuffleStats, resolve_memory as resolve_memory
from .storage.reader import RecordReader, leftover_error
from .storage.sources import FileSource, GeneratedSource, RangeSource, Source
from .storage.caller_handlers import carries_handler_exceptions
from .storage.threads import signals_held


PathLike = str | os.PathLike[str]


@carries_handler_exceptions
@keeps_file_limit
def shuffle(
    inputs: PathLike | Source | Sequence[PathLike | Source] = (),
    output: PathLike | None = None,
    *,
    memory: int | str | None = None,
    seed: int | None = None,
    tmp_dir: PathLike | None = None,
    head_count: int | str | None = None,
    zero_terminated: bool = False,
    repeat: bool = False,
    random_source: PathLike | None = None,
    progress: Progress | None = None,
    header: int = 0,
    lines_per_record: int = 1,
    shards: int | None = None,
    shard_size: int | str | None = None,
    shard_records: int | None = None,
    split: str | Mapping[str, int | float | Fraction | str] | None = None,
    manifest: PathLike | None = None,
    compress: str | None = None,
    compress_temp: bool = False,
    verify: bool = False,
    resume: bool = False,
    row_group_size: int | None = None,
    schema: str | None = None,
    output_format: str | None = None,
    sync: bool = True,
    threads: int | None = None,
    engine: str = "local",
    scheduler: str | Runner | None = None,
    temp_url: str | None = None,
    sources: Mapping[str, PathLike | Sequence[PathLike]] | None = None,
    rates: Mapping[str, float | str] | None = None,
    mix: Mapping[str, float | str] | None = None,
    total: int | str | None = None,
    by: str = "records",
    max_rate: float | str = 10,
    unique: bool = False,
    stratify: bool = False,
) -> ShuffleStats:
    """Write the records of ``inputs`` to ``output`` in uniformly random order.

    ``inputs`` is one path or several (``-`` is stdin), read as one concatenated input;
    ``output`` a path written atomically, or None / ``-`` for stdout. ``memory`` bounds
    the working memory (bytes, or a size string like ``"256M"``, ``"25%"``); inputs that do
    not fit are shuffled externally with temporary files under ``tmp_dir``. The same inputs,
    seed and options (memory included) give the same output. ``head_count`` keeps the first
    COUNT records (a uniform sample), or a share of those read (``"10%"``: round(0.1 * N), halves
    up); ``repeat`` samples with replacement.

    Inputs may be gzip, zstd, bzip2 or xz compressed (detected by their magic bytes).
    ``compress`` (``"zstd"``, ``"gzip:6"``, ``"none"``) overrides the codec implied by the
    output's suffix. ``shards=N`` writes N files (``output`` a directory or a pattern such as
    ``"out/part-{:05d}.jsonl.zst"``) that concatenated are one uniform shuffle; ``shard_size``
    (bytes, or ``"256M"``) cuts shards of at least that many record bytes each instead (records never
    cut), ``shard_records=N`` shards of N records each. ``split`` (``"valid=10000,train=rest"``,
    ``"train=0.98,valid=0.01,test=0.01"``, or as a mapping: ``{"train": 0.98, "valid": 0.01,
    "test": 0.01}``) cuts the shuffle into consecutive splits, each written to ``output`` with
    ``{split}`` replaced by its name (and sharded within). ``manifest`` writes a JSON
    record of the run (inputs, every output file's records, bytes and fingerprint), committed with
    the outputs; ``check_manifest`` checks the files against it. ``header=N``
    keeps the first input's first N lines on top of every output file and drops the first N
    lines of later inputs (lines, whatever ``lines_per_record``: records start after them). ``lines_per_record=N`` shuffles groups of N lines (FASTQ: 4).
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
    ``threads`` is how many worker threads run the passes (default: every core the process may
    use); the output for a seed is the same whatever it is.

    ``engine="dask"`` runs the shuffle as Dask tasks (``pip install 'bigshuf[dask]'``): inputs and
    ``output`` may then be fsspec URLs; ``scheduler`` is the scheduler's address (default
    ``$DASK_SCHEDULER_ADDRESS``, else a cluster of processes on this machine) or a client or
    executor to submit the tasks to; ``temp_url`` where temporary objects go, reachable by every
    worker. Settings an engine cannot run are refused before anything starts.

    Weighted sources (instead of ``inputs``): ``sources`` names groups of files (each a path, a
    directory or a glob pattern, or a list of them), e.g. ``{"web": "data/web/", "code":
    "code/*.jsonl.zst"}``. ``rates`` gives a source's rate r (default 1): each of its records
    appears floor(r) times, and a uniform sample of round(frac(r) * n) of them once more. Or
    ``mix`` gives each source's share of ``total`` records (``by="bytes"``: bytes, e.g.
    ``"50G"``; without ``total``, the most that repeats no record), the rates solved from the
    counts. A rate above ``max_rate`` is refused. The output is a uniform shuffle of the
    resulting multiset; the stats' ``sources`` say what each source gave.
    ``unique`` keeps one copy of identical records (lines and rows byte for byte, as ``sort -u``;
    tar samples by their members' suffixes and data; Megatron documents by tokens and sequence
    lengths) and shuffles those; the count dropped is the result's ``duplicates``. It costs at most
    one more pass over the data (Dask, with ``sources``: two) and keeps within ``memory`` however
    many copies there are. With ``sources`` a record several sources hold is kept once, for the
    first of them (input order), the rates apply to each source's records left, and each source's
    ``dropped`` is in the stats.
    ``stratify`` (with ``sources`` and ``split``) gives every split its share of each source's
    records in the multiset (largest remainder), each split still a uniform subset in uniform order.
    """
    _check_types(("progress",), Progress, (progress,), optional=True)
    request = Request.build(
        inputs, output, memory=memory, seed=seed, tmp_dir=tmp_dir, head_count=head_count,
        zero_terminated=zero_terminated, repeat=repeat, random_source=random_source, header=header,
        lines_per_record=lines_per_record, shards=shards, shard_size=shard_size, shard_records=shard_records,
        split=split, manifest=manifest, compress=compress, compress_temp=compress_temp,
        verify=verify, resume=resume, row_group_size=row_group_size, schema=schema, output_format=output_format,
        sync=sync, threads=threads, engine=engine, scheduler=scheduler, temp_url=temp_url, unique=unique,
        stratify=stratify, sources=sources, rates=rates, mix=mix, total=total, by=by, max_rate=max_rate,
    )
    return run_request(request, progress or Progress())


@carries_handler_exceptions
@keeps_file_limit
def plan_shuffle(
    inputs: PathLike | Source | Sequence[PathLike | Source] = (), output: PathLike | None = None, **options: Any
) -> RunPlan:
    """What ``shuffle(inputs, output, **options)`` would do and need, writing nothing (``--dry-run``).

    Takes ``shuffle``'s arguments (checked as it checks them; ``progress`` is not one) and returns
    a ``RunPlan``: the inputs and their size, the records (counted, or estimated from the start of
    the input as pass 1 would), the memory, the path (in memory, or external with its passes and
    buckets), the temporary space against the free space under ``tmp_dir``, the file descriptors
    against ``ulimit -n``, the output files, and the checks the run makes before it reads (each
    passed or failed with the run's message). ``RunPlan.render()`` is the text ``--dry-run`` prints.
    Nothing is created, written, locked or removed; standard input is read only if it is a regular
    file, and left at the offset it had (a pipe is not read). ``engine="dask"``
    plans the Dask run (its pass-1 tasks, buckets and passes) without starting a cluster.
    """
    request = Request.build(inputs, output, function="plan_shuffle", dry_run=True, **options)
    if request.engine == "dask":
        from .engines.cluster import nothing_drawn, refuse_before_reading

        drawn_locally = nothing_drawn(request)
        if drawn_locally:
            try:
                refuse_before_reading(request)
            except BigShufError:
                drawn_locally = False  # planned as the Dask run, whose checks say why
        if drawn_locally:
            from .engines.local_plan import plan_request as plan_local

            return plan_local(request)
        from .engines.dask.plan import plan_request
    else:
        from .engines.local_plan import plan_request
    return plan_request(request)


#: The largest number ``shuffle_range`` takes: GNU shuf's limit (SIZE_MAX) on 64-bit systems.
RANGE_MAX = 2**64 - 1

#: Above this, NumPy's default (int64) draws cannot reach the numbers; unsigned 64-bit draws can.
_INT64_MAX = 2**63 - 1

#: Bytes a header's number takes at most, written with its separator (20 digits for 2**64 - 1).
HEADER_NUMBER_BYTES = 21

#: Bytes a number of a range's sample is allowed in memory (``limit`` over this many numbers are
#: chosen in memory; more are drawn into files under -T).
SAMPLE_NUMBER_BYTES = 16

#: Numbers a range's sample turns into text at once: 2**16 of them take about 7 MiB as Python objects.
DRAW_NUMBERS = 1 << 16


@carries_handler_exceptions
@keeps_file_limit
def shuffle_range(lo: int, hi: int, output: PathLike | None = None, **options: Any) -> ShuffleStats:
    """Shuffle the integers ``lo..hi`` (``-i LO-HI``, at most 0..2**64-1); takes ``shuffle``'s keyword options.

    With ``head_count`` (and ``repeat``, or a sample of at most half the records), or ``repeat`` alone,
    the numbers are drawn directly, without listing the range: ``-i 1-18446744073709551615 -n 5`` is
    instant; a sample that does not fit in memory is drawn into files under ``tmp_dir``.
    A range that must be listed and can fit neither in memory nor in the free temporary
    space is refused at once.
    """
    lo, hi = _integer("lo", lo), _integer("hi", hi)
    if lo > hi + 1 or lo < 0 or hi > RANGE_MAX:
        raise UsageError(f"invalid input range: '{lo}-{hi}' (from 0 up to {RANGE_MAX}, lo at most hi + 1)")
    # The engine's refusals first (ranges run on the local engine), before the range is sized or drawn from.
    engine_settings = {k: v for k, v in options.items() if k in ("engine", "scheduler", "temp_url")}
    if engine_settings:
        Request.build(RangeSource(lo, hi, b"\n"), output, **engine_settings)
    # Then every keyword as ``shuffle`` checks it: the numbers may be drawn here, without it.
    keywords = set(inspect.signature(shuffle).parameters) - {"inputs", "output"}
    unknown = next((name for name in options if name not in keywords), None)
    if unknown is not None:
        raise TypeError(f"shuffle_range() got an unexpected keyword argument '{unknown}'")
    _check_types(("progress",), Progress, (options.get("progress"),), optional=True)
    Request.build(RangeSource(lo, hi, b"\n"), output, **{k: v for k, v in options.items() if k != "progress"})
    count = hi - lo + 1
    # A header and records of several numbers shape the range as they shape the file of its
    # numbers: the first ``header`` numbers stay on top and the draws are of whole records.
    header = _integer("header", options.get("header", 0))
    group = _integer("lines_per_record", options.get("lines_per_record", 1))
    shaped = (header, group) != (0, 1) and header >= 0 and group >= 1 and count > header
    first, ids, records = (lo + header, 0, (count - header) // group) if shaped else (lo, lo, count)
    share = options.get("head_count")
    shared = isinstance(share, str)  # -n P%, which reads the input (header, leftover) even when it keeps nothing
    if isinstance(share, str):  # -n P%: a share of the range's records, whose count is known (``shared``, for mypy)
        fraction = parse_share(share)
        assert fraction is not None, "Request.build refused any other string"
        options = options | {"head_count": count_of(fraction, records)}
    head_count = _optional_integer("head_count", options.get("head_count"))
    repeat = options.get("repeat", False)
    _check_types(("repeat", "zero_terminated"), bool, (repeat, options.get("zero_terminated", False)), optional=False)
    limit = resolve_memory(_memory_argument(options.get("memory")))
    sep = b"\0" if options.get("zero_terminated") else b"\n"
    if repeat and count == 0 and head_count != 0:  # (-n 0 draws nothing, from nothing too, as in shuf)
        raise InputError("no lines to repeat")
    streamed = RangeSource(lo, hi, sep).drawn_unlisted(repeat, head_count, header, group, plan.block_budget(limit))
    left = RangeSource(lo, hi, b"\n").leftover(header, group) if shaped else 0
    if left and (head_count != 0 or shared):  # (-n 0 reads no input)
        raise leftover_error(f"{lo}-{hi}", left, group)
    sampling = (
        not streamed and head_count is not None and (head_count != 0 or shared) and ((header, group) == (0, 1) or shaped)
        and HEADER_NUMBER_BYTES * header <= limit // 4 and (repeat or head_count <= records // 2)
    )
    if not sampling:
        if not streamed:
            from .storage.tempspace import check_range_space

            check_range_space(lo, hi, head_count, limit, bool(options.get("compress_temp")),
                              _optional_path("tmp_dir", options.get("tmp_dir")))
        return shuffle(RangeSource(lo, hi, sep), output, **options)
    assert head_count is not None
    entropy = seed_entropy(options.get("seed"), options.get("random_source"), needed=head_count != 0, opened=bool(options.get("repeat")))
    rng = rng_for(entropy, streams.RANGE_DRAWS)
    # Records are drawn by number, ``ids`` to ``top``: a lone number's is the number itself. Ranges
    # that reach past int64 draw unsigned 64-bit numbers; the others draw as they always have, so
    # their seeded outputs stay the same.
    top = ids + records - 1
    wide = top > _INT64_MAX or records > _INT64_MAX  # (Generator.choice takes at most int64's largest)
    # A sample that does not fit in memory is drawn into files under -T (which hold it until the
    # shuffle has read it): listing the range instead took minutes, or for ever for a wide one.
    bucketed = not repeat and head_count * group * SAMPLE_NUMBER_BYTES > limit
    chosen = None
    if not repeat and not bucketed:
        chosen = draws.distinct_wide(rng, ids, top, head_count) if wide else draws.distinct(rng, records, head_count, limit) + ids

    def lines(numbers: np.ndarray) -> bytes:
        return sep.join(b"%d" % v for v in numbers.tolist()) + sep

    def drawn(per: int) -> Iterator[np.ndarray]:
        """The records' numbers chosen in memory, or drawn now with ``repeat``, ``per`` at a time."""
        assert head_count is not None
        for start in range(0, head_count, per):
            size = min(per, head_count - start)
            if chosen is not None:
                yield chosen[start : start + size]
            elif wide:
                yield rng.integers(ids, top, size, dtype=np.uint64, endpoint=True)
            else:
                yield rng.integers(ids, top, size, endpoint=True)

    def generated(stored: BucketedSample | None) -> Iterator[bytes]:
        """The header, then the records drawn (or ``stored``), each record's numbers in order,
        ``DRAW_NUMBERS`` at most at once (a record of more numbers alone, in pieces)."""
        if shaped and header:
            yield lines(np.arange(lo, first, dtype=np.uint64))
        per = max(1, DRAW_NUMBERS // group)
        kind = np.uint64 if hi > _INT64_MAX else np.int64
        for values in (stored.pieces(per) if stored is not None else drawn(per)):
            if not shaped:
                yield lines(values)
                continue
            starts = values.astype(kind) * np.asarray(group, kind) + np.asarray(first, kind)
            for offset in range(0, group, DRAW_NUMBERS):
                yield lines((starts[:, None] + np.arange(offset, min(group, offset + DRAW_NUMBERS), dtype=kind)).ravel())

    # The draws are i.i.d. (or a uniform sample in random order), so shuffling them again,
    # through the same engine and options as any input, keeps the result uniform.
    rest = {k: v for k, v in options.items() if k not in ("head_count", "repeat", "random_source", "seed")}
    if not bucketed:
        return shuffle(GeneratedSource(f"{lo}-{hi}", partial(generated, None)), output, seed=entropy, **rest)
    from .storage.tempspace import TempSpace, full_disk_hint

    with TempSpace(_optional_path("tmp_dir", options.get("tmp_dir"))) as space:
        stored = BucketedSample(space.path, ids, top, head_count, limit)
        space.check_free(2 * NUMBER_BYTES * head_count)  # a round's new draws beside the numbers kept
        try:
            stored.draw(rng)
        except OSError as e:
            raise TempSpaceError(f"{quote_name(space.path)}: cannot write the sample of {lo}-{hi}: {e.strerror}{full_disk_hint(e)}") from None
        return shuffle(GeneratedSource(f"{lo}-{hi}", partial(generated, stored)), output, seed=entropy, **rest)


#: Bytes read at once from each side of ``check_permutation``: the same pages serve every block.
CHECK_BLOCK = 32 << 20

#: Working memory of one ``check_permutation`` worker beside the blocks it hashes (measured
#: peaks of ``fingerprint_records``: 3 MiB on 60-byte or ~1 KB records, 26 MiB on empty lines).
CHECK_WORKER_MEMORY = 32 << 20


@carries_handler_exceptions
@keeps_file_limit
def check_permutation(
    inputs: PathLike | Sequence[PathLike],
    outputs: PathLike | Sequence[PathLike],
    *,
    memory: int | str | None = None,
    zero_terminated: bool = False,
    lines_per_record: int = 1,
    header: int = 0,
    threads: int | None = None,
) -> tuple[Fingerprint, Fingerprint]:
    """Fingerprints of the records of ``inputs`` and of ``outputs`` (each a path or a list of
    paths); equal when the outputs hold exactly the inputs' records, in any order and split
    over any number of files.

    Compressed files are read as such; ``header`` lines are set aside as ``shuffle`` does: no input's
    first ``header`` lines are counted, and each output must start with the first input's header
    (InputError naming the output if not), which is set aside. ``threads`` workers hash (default: the
    cores this process may use), fewer if ``memory`` cannot hold them; the result is the same.
    """
    from .formats.compare import other_records_fingerprints
    from .formats.detect import expand_directories

    from .storage.remote import is_remote

    # Each side listed once: a generator given is used up by its first reading.
    input_paths, output_paths = _path_list("inputs", inputs), _path_list("outputs", outputs)
    if [*input_paths, *output_paths].count("-") > 1:  # both sides would read it at once, each taking part
        raise UsageError("standard input ('-') can be read only once: name it on one side of the comparison")
    for path in [*input_paths, *output_paths]:
        if is_remote(os.fspath(path)):  # else named 'No such file or directory', as if it were missing
            raise UsageError(f"{os.fspath(path)}: {option('check_permutation')} reads local files, not URLs")
    inputs = expand_directories(input_paths)
    outputs = expand_directories(output_paths)
    memory = _memory_argument(memory)
    _check_types(("zero_terminated",), bool, (zero_terminated,), optional=False)
    lines_per_record, header = _integer("lines_per_record", lines_per_record), _integer("header", header)
    if lines_per_record < 1 or header < 0:
        raise UsageError(f"lines_per_record must be at least 1 and header at least 0, not {lines_per_record} and {header}")
    threads = _thread_count(threads)
    fmt = RecordFormat(0 if zero_terminated else 10, lines_per_record)
    limit = resolve_memory(memory)
    other = other_records_fingerprints(inputs, outputs, fmt, header, limit)
    if other is not None:
        return other
    # The limit covers both sides' read buffers and the workers: at most half of it for workers.
    workers = max(1, min(threads, limit // 2 // CHECK_WORKER_MEMORY))
    capacity = max(256, limit // 4, (limit - workers * CHECK_WORKER_MEMORY) // 2)
    stop = threading.Event()
    # The header the shuffle writes atop each output: the first input's (its first ``header`` lines, or
    # fewer), known once that input is open; it is read once, as a pipe can be read only once.
    first: Future[bytes] = Future()
    if not header or not inputs:
        first.set_result(b"")

    def total(paths: Sequence[PathLike], output: bool = False) -> Fingerprint:
        # Each block is cut at record ends into one part per worker; the other side's parts
        # keep the workers busy while this side reads its next block.
        fp = Fingerprint()
        try:
            head = first.result() if output else b""
            lines = head.count(bytes([fmt.sep])) if output else header
            for path in paths:
                reader = RecordReader([FileSource(path)], fmt, Progress(), lines)
                for block, _final in reader.blocks(capacity, option("memory"), block=min(CHECK_BLOCK, capacity)):
                    if not output and not first.done():
                        first.set_result(reader.header)
                    if stop.is_set():
                        return fp
                    cuts = record_cuts(block, fmt, workers)
                    parts = [hashers.submit(partial(fingerprint_records, block[a:b], fmt)) for a, b in zip(cuts, cuts[1:])]
                    for part in parts:
                        fp += part.result()
                if not output and not first.done():
                    first.set_result(reader.header)  # a first input of no records
                if output and reader.separators_added:
                    raise InputError(
                        f"{FileSource(path).name}: its last record does not end with {'a NUL' if fmt.sep == 0 else 'a newline'}, "
                        "as every record a shuffle writes does (files of shards joined end to end would join it with the next one's first)"
                    )
                if output and reader.header != head:
                    raise InputError(
                        f"{FileSource(path).name}: does not start with the header of {FileSource(inputs[0]).name} "
                        f"(its first {header} line(s), as {option('header')} keeps them), as a shuffle of it does"
                    )
        except BaseException as e:
            stop.set()  # the other side need not finish
            if not first.done():
                first.set_exception(e)
            raise
        return fp

    sides, hashers = ThreadPoolExecutor(2), Workers(workers)
    try:
        with signals_held():  # the pools' threads (started from these two) leave Ctrl-C to the main thread
            got_in, got_out = sides.submit(total, inputs), sides.submit(total, outputs, True)
        return got_in.result(), got_out.result()
    finally:
        stop.set()
        sides.shutdown(cancel_futures=True)
        hashers.close()


def _thread_count(threads: object) -> int:
    """``threads``: an int of at least 1, or None for the cores this process may use."""
    count = _optional_integer("threads", threads)
    if count is None:
        return default_threads()
    if count < 1:
        raise UsageError(f"threads must be at least 1, not {count}")
    return count


@carries_handler_exceptions
@keeps_file_limit
def check_manifest(manifest: PathLike, *, memory: int | str | None = None) -> tuple[list[str], str]:
    """Check the output files a ``manifest`` lists against it: each file's records, bytes, size and
    fingerprint, and that together they hold the records the run wrote. Returns the problems found
    (one line each; none when all is well) and a one-line summary. The manifest is read as untrusted
    input: only the regular files it names are read, and nothing is written."""
    return checked_manifest(manifest, memory, cli=False)


def checked_manifest(manifest: PathLike, memory: int | str | None, *, cli: bool) -> tuple[list[str], str]:
    """``check_manifest``, its problems naming options as the command line (``cli``) or the library spells them."""
    from .formats.manifest_check import check_manifest as check

    problems, summary = check(_path("manifest", manifest), resolve_memory(_memory_argument(memory)) // 2)
    return [render(p, cli) for p in problems], summary
