"""The Dask engine's client side: check the options, then the local driver's steps (pass 1, the
count and -n, the outputs laid out, pass 2, the records written checked, the commit), all or
nothing, each step's tasks run by ``runner`` over the level pass 1 made (``core.level``).
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from types import SimpleNamespace
from typing import Any

import numpy as np

from ...quoting import quote_arg, quote_name
from ...request import Runner, ShuffleStats, resolve_memory
from ...core.fingerprint import Fingerprint, verification_failure
from ...core.mix import SourceStats
from ...core.head import resolve as resolve_head
from ...core.streams import seed_entropy
from ...errors import OutputError, TempSpaceError, UsageError, option
from ...progress import Progress, scatter_phase, shuffle_phase
from ...storage import remote
from ...storage.commit import OutputFiles
from ...storage.paths import generated_path
from ...storage.safefs import make_private_directory
from ...storage.layout import Sharding, output_directories, parse_split
from ...storage.manifest import run_entries, strata_entries
from ...storage.shards import make_directories, note_stale_shards
from ...storage.sinks import AtomicFileSink, Sink, open_output
from ...storage.tempspace import TempSpace, check_parent
from .inputs import Prepared, Settings, prepare
from .placement import Placement, commit, lay_out, plan_placement, remove_abandoned_parts
from .outputs import (
    Layout, PlannedFile, check_layout, input_counts, inputs_entry, plan_files, shards_after, write_run_manifest,
)
from .tasks import (
    Config, GatherResult, GatherTask, Index, RunTasks, ScatterResult, TaskFormat, gather_task, scatter_task,
)
from .cuts import measure
from .runner import connect, given, on
from .unique import unique_pass
from .unique_mix import unique_weighted_pass
from .weights import Mixed, Weights, check_inputs, weighted_pass

#: ``-S`` of the Dask engine when none is given: the memory one task may use. A fixed
#: default (not a share of this machine's RAM) keeps the plan, and so a seeded output,
#: the same whichever machine submits the job.
DEFAULT_MEMORY = "1G"

#: The manifest's run-wide entries from the inputs' entries, the format's, ``-n``'s count, the
#: sources' stats and the copies ``--unique`` dropped (``storage.manifest.run_entries``).
RunInfo = Callable[[list[dict[str, Any]], dict[str, Any], int | None, tuple[SourceStats, ...], int], dict[str, Any]]


@dataclass
class _Job:
    """One run as planned before the cluster starts: its settings, inputs and format,
    where its outputs go and its temporary objects live; then what laying out the outputs made."""

    cfg: Config
    prepared: Prepared
    layout: Layout
    out: Placement
    out_name: str | None
    root: str
    scratch: str
    sync: bool
    planned: list[PlannedFile] = field(default_factory=list)  # the files of a layout (--shard-records, --split, ...)
    sink: Sink | None = None  # a single local output (or standard output), parts written in or concatenated
    direct: str | None = None  # the sink's temporary file, when the tasks write straight into it


@dataclass
class _Scattered:
    """Pass 1 done (through ``--unique``'s stage and weighted sources' draws where asked): the objects
    indexed, the records' fingerprint, each pass-1 task's results (for the manifest), what was mixed,
    the copies dropped and the passes added."""

    index: Index
    read: Fingerprint
    results: list[ScatterResult]
    mixed: Mixed | None = None
    duplicates: int = 0
    extra_passes: int = 0


def shuffle(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str] | None = None,
    *,
    memory: int | str | None = None,
    seed: int | None = None,
    random_source: str | os.PathLike[str] | None = None,
    tmp_dir: str | os.PathLike[str] | None = None,
    temp_url: str | None = None,
    scheduler: str | None = None,
    runner: Runner | None = None,
    head_count: int | None = None,
    head_share: Fraction | None = None,
    zero_terminated: bool = False,
    shards: int | None = None,
    compress: str | None = None,
    verify: bool = False,
    row_group_size: int | None = None,
    output_format: str | None = None,
    progress: Progress | None = None,
    sync: bool = True,
    split: str | None = None,
    shard_records: int | None = None,
    shard_size: int | None = None,
    manifest: str | os.PathLike[str] | None = None,
    run_info: RunInfo | None = None,
    weights: Weights | None = None,
    unique: bool = False,
    input_directories: Sequence[str] = (),
) -> ShuffleStats:
    """Shuffle ``inputs`` (paths or fsspec URLs, globs and directories allowed: lines, Parquet /
    Arrow rows, WebDataset tar samples or Megatron documents) into ``output`` on a Dask cluster.

    ``memory`` (default 1G) is what one task may use; ``scheduler`` a Dask scheduler address
    (else ``$DASK_SCHEDULER_ADDRESS``, else a local cluster of processes); ``temp_url`` the
    shared place for temporary objects (default ``tmp_dir`` or the system's, which only a
    local cluster can share). ``runner`` replaces the cluster with any executor (tests). The
    same inputs, seed, ``memory`` and ``shards`` give the same output for any number of workers.
    Rows are written as ``output_format`` (else as ``output``'s suffix or the input says) in row
    groups of ``row_group_size`` rows (else of about 64 MiB). ``head_share`` keeps that share of the
    records read (``-n 10%``), rounded as ``core.head.count_of`` rounds. ``split``, ``shard_records``
    and ``manifest`` cut and record the output as the local engine does, each file written by one
    task; ``run_info(inputs, format, head_count, sources, duplicates)`` gives the manifest's run-wide
    entries. ``weights`` are weighted sources (``--source``, ``--rate``, ``--mix``, ``--stratify``: see
    ``weights``), whose files ``inputs`` must be, source by source. ``unique`` keeps one copy of
    byte-identical records (lines, or rows as ``--verify`` tells them apart) and shuffles those
    (``unique``; with weighted sources, before their rates apply: ``unique_mix``).

    The steps are the local driver's (``core.driver.TwoPass``), each a task per object: pass 1,
    the count and ``-n``, the outputs laid out, pass 2 over the level pass 1 made
    (``core.level.Level``), the records written checked, then the commit.
    """
    start = time.perf_counter()
    progress = progress or Progress()
    names = [os.fspath(inputs)] if isinstance(inputs, (str, os.PathLike)) else [os.fspath(i) for i in inputs]
    scheduler = _check_options(head_count, shards, verify, scheduler, runner is not None, temp_url)
    for setting, value in (("shard_records", shard_records), ("shard_size", shard_size)):
        if value is not None and value < 1:
            raise UsageError(f"invalid {option(setting)} value: {quote_arg(value)}")
    entropy = seed_entropy(seed, random_source)
    limit = resolve_memory(memory if memory is not None else DEFAULT_MEMORY)
    sharding = Sharding(shards, shard_records, shard_size)
    output = remote.local_output(None if output is None else os.fspath(output))
    settings = Settings(
        output, shards, limit, zero_terminated, compress, row_group_size, output_format,
        manifest is not None, sharding.open_ended,
    )
    root, scratch = _temp_places(tmp_dir, temp_url)
    prepared = prepare(names, settings, root)
    stamps = [remote.stamp(f.name) for f in prepared.stored]  # the local inputs as pass 1 will read them
    if weights is not None:
        check_inputs(weights, prepared.names)
    if unique:
        prepared.fmt.check_unique()
    manifest_name = remote.local_output(None if manifest is None else os.fspath(manifest))
    layout = Layout(sharding, None if split is None else parse_split(split), manifest_name, prepared.pairs is not None)
    out_name, out = _place(prepared, settings, layout, root, sync, input_directories)
    cfg = Config(entropy, prepared.fmt, limit, prepared.k, verify, manifest is not None, unique)
    job = _Job(cfg, prepared, layout, out, out_name, root, scratch, sync)
    # Pass 1's objects hold the records: a private directory, locked while this client runs so that a
    # later run removes it if this one is killed (as a local run's), its parent checked to exist.
    space = TempSpace(os.path.dirname(scratch), name=os.path.basename(scratch)).__enter__()
    if not remote.is_url(job.root) and job.root != job.scratch:
        try:
            make_private_directory(job.root)  # a local --temp-url's, private as the scratch is
        except BaseException:
            space.__exit__(None, None, None)
            raise
    committed = False
    try:
        with (connect(scheduler, job.scratch) if runner is None else given(runner)) as run:
            run_tasks = on(run, progress)
            first = _pass1(run_tasks, job, weights, progress)
            changed = remote.changed_input(prepared.stored, stamps, prepared.stored_shown())  # (tasks read byte ranges: blind to it)
            if changed is not None:
                raise changed
            found = first.index.level.total
            head_count = resolve_head(head_count, head_share, found)
            total = found if head_count is None else min(found, head_count)
            measured = _lay_out(run_tasks, job, first.index, total, progress)
            tasks2, results2 = _pass2(run_tasks, job, first.index, total, progress)
        progress.close()
        _check_written(first.read, results2, total, verify, job.cfg.fmt)
        if job.prepared.pairs is not None:
            job.prepared.pairs.place(job.out, results2, job.root)
        if job.layout.manifest is not None:
            info = run_info or _default_info(seed, random_source, head_share, split, unique)
            _manifest(job, first, info, head_count, results2, {f.name: s for f, s in zip(prepared.stored, stamps)})
        commit(job.out, [t.target for t in tasks2], job.sink, job.direct is not None)
        committed = True
        if job.layout.sharding.open_ended:
            note_stale_shards(shards_after(job.layout, job.planned, job.prepared.compress, job.prepared.suffix))
        passes = 2 + measured + first.extra_passes + max((r.depth for r in results2), default=0)
        return ShuffleStats(
            total, sum(r.bytes for r in results2), job.cfg.k, passes, time.perf_counter() - start,
            first.mixed.stats() if first.mixed else (), first.duplicates, job.cfg.fmt.unit,
        )
    finally:
        progress.close()
        if not committed:
            _discard(job)
        remote.remove_tree(job.root)
        space.__exit__(None, None, None)


def _temp_places(tmp_dir: str | os.PathLike[str] | None, temp_url: str | None) -> tuple[str, str]:
    """The run's temporary places, named and not yet made: where its objects go (``root``: under
    ``temp_url``, else the local scratch directory) and the local scratch directory."""
    run_id = uuid.uuid4().hex[:12]
    local_parent = os.fspath(tmp_dir) if tmp_dir is not None else tempfile.gettempdir()
    check_parent(local_parent)
    scratch = os.path.join(local_parent, f"bigshuf-dask-{run_id}")
    temp_url = remote.local_output(temp_url)
    if temp_url is not None and not remote.is_url(temp_url):
        refuse_temp_directory(temp_url)
    root = remote.join(remote.canonical(temp_url), f"bigshuf-dask-{run_id}") if temp_url is not None else scratch
    if not remote.is_url(root) and os.path.realpath(root) == os.path.realpath(scratch):
        root = scratch  # a local --temp-url that is -T: the one directory (made twice, it failed: File exists)
    return root, scratch


def refuse_temp_directory(path: str) -> None:
    """Refuse a local ``--temp-url`` that is not an existing directory, as ``-T`` is refused: a missing
    one is not made (and left behind)."""
    if not path:
        raise UsageError(f"invalid {option('temp_url')} value: ''")
    if not os.path.isdir(path):
        raise TempSpaceError(f"{quote_name(path)}: {os.strerror(errno.ENOTDIR if os.path.exists(path) else errno.ENOENT)}")


def _place(
    prepared: Prepared, settings: Settings, layout: Layout, root: str, sync: bool, input_directories: Sequence[str],
) -> tuple[str | None, Placement]:
    """The outputs named and checked before pass 1 (a layout's files are planned once the records
    are counted): the output's name (Megatron: the ``.bin`` pairs') and where pass 2 writes; none
    that a later read of one of the ``input_directories`` would take back beside inputs left there."""
    out_name = settings.target
    if prepared.pairs is not None:  # Megatron: PREFIX.bin files, each laid out and committed with its .idx
        out_name = prepared.pairs.target
    if not layout.on:
        return out_name, plan_placement(
            out_name, settings.shards, prepared.compress, root, sync, prepared.suffix, prepared.names, input_directories,
        )
    check_layout(out_name, layout, prepared.compress, prepared.suffix, prepared.names, input_directories=input_directories)
    if prepared.pairs is not None:
        prepared.pairs.check(layout)
    assert out_name is not None
    files = None if remote.is_url(out_name) else OutputFiles(sync)
    if files is not None and layout.sharding.open_ended:  # a later shard there at the commit may be an earlier run's
        files.note_present(output_directories(out_name, None if layout.split is None else [p.name for p in layout.split], True))
    return out_name, Placement(out_name, None, None, files=files)


def _pass1(run_tasks: RunTasks, job: _Job, weights: Weights | None, progress: Progress) -> _Scattered:
    """Pass 1: every input's records scattered into the buckets, behind ``--unique``'s dedup stage
    and weighted sources' draws where asked (which size the buckets for the multiset: ``job.cfg``
    changes); the format's checks across tasks made."""
    cfg, tasks = job.cfg, job.prepared.tasks
    mixed: Mixed | None = None
    duplicates = extra = 0
    if cfg.unique and weights is not None:
        cfg, mixed, results, segments, read, duplicates, extra = unique_weighted_pass(run_tasks, cfg, weights, tasks, progress, job.root)
    elif cfg.unique:
        results, segments, read, duplicates, extra = unique_pass(run_tasks, cfg, tasks, progress, job.root)
    else:
        if weights is None:
            progress.start(scatter_phase(0), sum(t.nbytes for t in tasks))
            results = run_tasks(scatter_task, cfg, tasks, [t.nbytes for t in tasks])
        else:
            cfg, mixed, results = weighted_pass(run_tasks, cfg, weights, tasks, progress, job.prepared.decoded_bytes)
        segments = [s for r in results for s in r.segments]
        read = sum((r.read for r in results), Fingerprint())
    cfg.fmt.check_scattered(tasks, results)
    job.cfg = cfg
    return _Scattered(Index(segments, cfg.k, cfg.limit), read, results, mixed, duplicates, extra)


def _lay_out(run_tasks: RunTasks, job: _Job, scattered: Index, total: int, progress: Progress) -> bool:
    """The output files of a layout planned and made (``--shard-size``: after a measuring pass, whose
    running return says it ran), and a single local output's file opened."""
    measured = job.layout.sharding.size is not None
    prepared, out = job.prepared, job.out
    if job.layout.on:
        size_ends = None
        if job.layout.sharding.size is not None:
            cutter = measure(run_tasks, job.cfg, scattered, total, job.root, progress)
            size = job.layout.sharding.size
            size_ends = lambda start, count: cutter.split_ends(start, count, size)  # noqa: E731
        job.planned = plan_files(job.out_name or "", job.layout, total, prepared.compress, prepared.suffix, size_ends)
        lay_out(out, job.planned, job.root, prepared.compress)
        out.absent = [after for after, _ in shards_after(job.layout, job.planned, prepared.compress, prepared.suffix)]
    if out.shards is None and (out.target is None or not remote.is_url(out.target)):
        job.sink = open_output(out.target, ("none", None), sync=job.sync)
    # Plain output (or one whole file) to a local file: tasks write in place, no concatenation.
    if isinstance(job.sink, AtomicFileSink) and (out.codec is None or job.cfg.fmt.whole_output):
        job.direct = job.sink.tmp_path
    return measured


def _pass2(
    run_tasks: RunTasks, job: _Job, scattered: Index, total: int, progress: Progress
) -> tuple[list[GatherTask], list[GatherResult]]:
    """Pass 2: a task per output object, each permuting the buckets its records lie in and writing them."""
    tasks = _gather_tasks(scattered, total, job.out, job.root, job.direct, job.cfg.fmt.whole_output)
    progress.start(shuffle_phase(0), int(scattered.level.sizes.sum()))
    # Each task's share of the buckets it draws from (tasks sharing a bucket split its bytes), for progress.
    sizes = [sum(p.size * (p.stop - p.first) // max(1, p.count) for p in t.pieces) for t in tasks]
    return tasks, run_tasks(gather_task, job.cfg, tasks, sizes)


def _gather_tasks(scattered: Index, total: int, out: Placement, root: str, direct: str | None, whole: bool) -> list[GatherTask]:
    """Pass-2 tasks covering output records ``[0, total)`` of the pass-1 objects ``scattered``: one
    per shard, or for a single output one per non-empty bucket (a part), or one in all if the format
    writes ``whole`` files; written as objects or, with ``direct``, into that local file at the part's place."""
    level = scattered.level
    offsets: list[int | None]
    shown: list[str | None] = []  # each target's output file, as messages name it (a part of one: none)
    if out.shards is not None:
        spans = out.spans or [(i * total // out.shards, (i + 1) * total // out.shards) for i in range(out.shards)]
        targets, codecs, offsets = out.temps, out.codecs, [None] * out.shards
        given = out.target is not None and not remote.is_url(out.target) and not os.path.isabs(out.target)
        shown = [os.path.relpath(final) if given else final for final in out.finals]  # relative if -o was (normalised)
    elif whole:
        spans, targets = [(0, total)], [direct or remote.join(root, "p2", "part-000000")]
        codecs, offsets = [out.codec], [0 if direct else None]
    else:
        used = level.slices(0, total)
        # No record: an empty part, for a compressed output's empty stream (a file in place is empty).
        spans = [(int(level.starts[s.bucket]), int(level.starts[s.bucket]) + s.stop) for s in used] or ([] if direct else [(0, 0)])
        targets = [direct or remote.join(root, "p2", f"part-{i:06d}") for i in range(len(spans))]
        codecs = [out.codec] * len(spans)
        # Every part but a -n run's last is a whole bucket, so its place in the file is known.
        ends = np.cumsum([int(level.sizes[s.bucket]) for s in used], dtype=np.int64)
        offsets = [int(e) for e in np.concatenate([[0], ends[:-1]])] if direct and used else [None] * len(spans)
    if not shown:
        shown = [out.target if direct else None] * len(targets)  # a file written straight into, or parts
    return [
        GatherTask(target, codec, tuple(map(scattered.piece, level.slices(a, b))), remote.join(root, "p3"), offset, name)
        for (a, b), target, codec, offset, name in zip(spans, targets, codecs, offsets, shown)
    ]


def _discard(job: _Job) -> None:
    """A run that failed: whatever it wrote toward its outputs removed, the directories it made too."""
    out = job.out
    if job.sink is not None:
        job.sink.abort()
    for name in out.temps:
        remote.remove(name)
    remove_abandoned_parts(out.temps)
    if out.files is not None:
        out.files.discard()  # the manifest's temporary file too
        out.files.release()
    for directory in reversed(out.made):
        try:
            os.rmdir(directory)
        except OSError:
            pass  # not empty: something else is in it now


def check_places(
    head_count: int | None, shards: int | None, verify: bool, scheduler: str | None, own_runner: bool,
    temp_url: str | None, tmp_dir: str | os.PathLike[str] | None,
) -> None:
    """The refusals a run makes before it reads any input: its options (``_check_options``) and its
    temporary places (``_temp_places``); for a run with nothing to draw, which reads none."""
    _check_options(head_count, shards, verify, scheduler, own_runner, temp_url)
    _temp_places(tmp_dir, temp_url)


def _check_options(
    head_count: int | None, shards: int | None, verify: bool, scheduler: str | None, own_runner: bool, temp_url: str | None
) -> str | None:
    """Refuse options that cannot work before anything starts; return the scheduler to use."""
    if head_count is not None and head_count < 0:
        raise UsageError(f"invalid {option('head_count')} value: {quote_arg(head_count)}: a non-negative integer is needed")
    if shards is not None and shards < 1:
        raise UsageError(f"invalid {option('shards')} value: {quote_arg(shards)}")
    if verify and head_count is not None:
        raise UsageError(f"{option('verify')} checks whole shuffles; it cannot check a sample ({option('head_count')})")
    if scheduler is not None and not scheduler.strip():
        # An empty address is a mistake (an unset shell variable), not a request for a local cluster.
        raise UsageError(f"invalid {option('scheduler')} value: {quote_arg(scheduler)}: an address like tcp://host:8786 is needed")
    named = option("scheduler") if scheduler else "a scheduler from $DASK_SCHEDULER_ADDRESS"
    scheduler = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    if scheduler and not own_runner and temp_url is None:
        raise UsageError(
            f"{named} needs {option('temp_url')}: a place every worker can reach, e.g. s3://bucket/tmp/ "
            "(or a local path if every worker runs on this machine)"
        )
    try:
        import fsspec  # noqa: F401

        if not own_runner:
            import distributed  # noqa: F401
    except ImportError:
        raise UsageError(f"{option('dask')} needs Dask: pip install 'bigshuf[dask]'") from None
    return scheduler


def _check_written(read: Fingerprint, results2: list[GatherResult], total: int, verify: bool, fmt: TaskFormat) -> None:
    """Before anything is put in place: every record written once, and with ``verify`` the same
    records as scattered (``read``: the unique ones with ``--unique``, every copy with weighted
    sources, every copy of the unique ones with both), said in ``fmt``'s unit as the local engine says it."""
    written = sum(r.records for r in results2)
    if written != total:
        raise OutputError(f"wrote {written} {fmt.unit}, expected {total}; output not put in place")
    if verify:
        wrote = sum((r.written for r in results2), Fingerprint())
        if read != wrote:
            raise OutputError(verification_failure(replace(read, unit=fmt.unit), replace(wrote, unit=fmt.unit), fmt.records_kind == "rows"))


def _manifest(
    job: _Job, first: _Scattered, info: RunInfo, head_count: int | None, results: list[GatherResult],
    stamps: dict[str, tuple[int, int] | None],
) -> None:
    """Write the manifest beside its target, to be committed with the outputs (``out.manifest_move``);
    the inputs' sizes and mtimes as pass 1 read them (``stamps``)."""
    out, prepared, fmt, manifest = job.out, job.prepared, job.cfg.fmt, job.layout.manifest
    assert out.files is not None and manifest is not None, "a manifest of URL outputs is refused before the run"
    counts = (
        prepared.pairs.counts() if prepared.pairs is not None
        else input_counts(prepared.tasks, first.results, len(prepared.names), fmt.input_bytes)
    )
    mixed = first.mixed
    entries = info(inputs_entry(prepared.names, counts, stamps), fmt.format_entry(), head_count, mixed.stats() if mixed else (), first.duplicates)
    entries["entropy"] = str(job.cfg.entropy)
    if mixed is not None and mixed.stratifier is not None and job.layout.split is not None:
        strata = mixed.stratifier
        entries["stratified"] = strata_entries([p.name for p in job.layout.split], strata.names, strata.table)
    out.made += make_directories([manifest])
    temp = out.files.temp_name(generated_path(manifest), len(job.planned))
    out.manifest_move = write_run_manifest(manifest, temp, entries, job.planned, results, out.temps, fmt.records_kind, out.files.sync)


def _default_info(
    seed: int | None, random_source: str | os.PathLike[str] | None, head_share: Fraction | None, split: str | None, unique: bool,
) -> RunInfo:
    """The manifest's run-wide entries for a call of ``shuffle`` itself (the engine passes the request's)."""
    settings = SimpleNamespace(
        seed=seed, random_source=random_source, head_share=head_share, repeat=False, split=split, sources=(), unique=unique,
    )
    return lambda inputs, fmt, head_count, sources, duplicates: run_entries(settings, inputs, fmt, head_count, sources, duplicates)
