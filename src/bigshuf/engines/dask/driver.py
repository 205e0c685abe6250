"""The Dask engine's client side: check the options, plan both passes, submit the tasks, check
what they wrote (counts, --verify fingerprints) and put the output in place, all or nothing.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from types import SimpleNamespace
from typing import Any, Protocol, TypeVar

import numpy as np

from ...request import ShuffleStats, resolve_memory
from ...core.fingerprint import Fingerprint
from ...core.mix import SourceStats
from ...core.head import resolve as resolve_head
from ...core.streams import seed_entropy
from ...errors import BigShufError, OutputError, TempSpaceError, UsageError, option
from ...progress import Progress, scatter_phase, shuffle_phase
from ...storage import remote
from ...storage.commit import OutputFiles
from ...storage.safefs import generated_path
from ...storage.layout import Sharding, parse_split
from ...storage.manifest import run_entries, strata_entries
from ...storage.shards import make_directories
from ...storage.sinks import AtomicFileSink, Sink, open_output
from .inputs import Settings, prepare
from .placement import Placement, commit, lay_out, plan_placement
from .outputs import (
    Layout, PlannedFile, check_layout, input_counts, inputs_entry, note_stale_shards, plan_files, write_run_manifest,
)
from .tasks import (
    Config, GatherResult, GatherTask, Index, TaskFormat, gather_task, scatter_task,
)
from .cuts import measure
from .unique import unique_pass
from .unique_mix import unique_weighted_pass
from .weights import Mixed, Weights, check_inputs, weighted_pass

#: ``-S`` of the Dask engine when none is given: the memory one task may use. A fixed
#: default (not a share of this machine's RAM) keeps the plan, and so a seeded output,
#: the same whichever machine submits the job.
DEFAULT_MEMORY = "1G"

T = TypeVar("T")

#: The manifest's run-wide entries from the inputs' entries, the format's, ``-n``'s count, the
#: sources' stats and the copies ``--unique`` dropped (``storage.manifest.run_entries``).
RunInfo = Callable[[list[dict[str, Any]], dict[str, Any], int | None, tuple[SourceStats, ...], int], dict[str, Any]]


class Runner(Protocol):
    """What runs the tasks: a ``distributed.Client`` or, for tests, a ``concurrent.futures`` executor."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        """Start ``fn(*args)``; the returned future's ``result()`` gives its value."""


# ---------------------------------------------------------------------------------------------
# The client side: plan, submit, check, put in place


def _gather_tasks(scattered: Index, total: int, out: Placement, root: str, direct: str | None, whole: bool) -> list[GatherTask]:
    """Pass-2 tasks covering output records ``[0, total)`` of the pass-1 objects ``scattered``: one
    per shard, or for a single output one per non-empty bucket (a part), or one in all if the format
    writes ``whole`` files; written as objects or, with ``direct``, into that local file at the part's place."""
    level = scattered.level
    offsets: list[int | None]
    if out.shards is not None:
        spans = out.spans or [(i * total // out.shards, (i + 1) * total // out.shards) for i in range(out.shards)]
        targets, codecs, offsets = out.temps, out.codecs, [None] * out.shards
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
    return [
        GatherTask(target, codec, tuple(map(scattered.piece, level.slices(a, b))), remote.join(root, "p3"), offset)
        for (a, b), target, codec, offset in zip(spans, targets, codecs, offsets)
    ]


def _run(runner: Runner, fn: Callable[[Config, T], Any], cfg: Config, tasks: Sequence[T],
         progress: Progress, sizes: Sequence[int]) -> list[Any]:
    """Submit every task, then collect the results in task order (progress by bytes)."""
    futures = [runner.submit(fn, cfg, t) for t in tasks]
    try:
        results = []
        for fut, size in zip(futures, sizes):
            results.append(_result(fut))
            progress.update(size)
        return results
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise


def _result(fut: Any) -> Any:
    """A task's value; a cluster failure (a worker that kept dying, a lost scheduler) becomes one message."""
    try:
        return fut.result()
    except BigShufError:
        raise
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        raise BigShufError(f"task failed: {where}{e.strerror or e}") from None
    except Exception as e:
        name = type(e).__name__
        if name in ("KilledWorker", "CommClosedError", "FutureCancelledError", "CancelledError"):
            raise BigShufError(f"cluster failure: {name}: {e}") from None
        raise


@contextmanager
def connect(scheduler: str | None, scratch: str) -> Iterator[Runner]:
    """A Dask client of the scheduler at ``scheduler``, or of a LocalCluster of processes (one
    single-threaded worker per core) made for this run with its scratch space in ``scratch``."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as e:
            raise UsageError(f"{option('scheduler')}: cannot reach '{scheduler}': {e}") from None
        try:
            yield client
        finally:
            client.close()
        return
    import dask

    # Workers' scratch space (and Dask's lock files) inside this run's directory, removed with it;
    # the scheduler's HTTP server on a free port, so that runs side by side do not collide.
    with dask.config.set({"temporary-directory": scratch}):
        cluster = LocalCluster(
            n_workers=os.cpu_count() or 1, threads_per_worker=1, processes=True, dashboard_address=":0",
            silence_logs=logging.CRITICAL, local_directory=scratch,
        )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


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
) -> ShuffleStats:
    """Shuffle ``inputs`` (paths or fsspec URLs, globs and directories allowed: lines, or Parquet /
    Arrow rows) into ``output`` on a Dask cluster.

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
    """
    start = time.perf_counter()
    progress = progress or Progress()
    names = [os.fspath(inputs)] if isinstance(inputs, (str, os.PathLike)) else [os.fspath(i) for i in inputs]
    scheduler = _check_options(head_count, shards, verify, scheduler, runner is not None, temp_url)
    for setting, value in (("shard_records", shard_records), ("shard_size", shard_size)):
        if value is not None and value < 1:
            raise UsageError(f"invalid {option(setting)} value: '{value}'")
    entropy = seed_entropy(seed, random_source)
    limit = resolve_memory(memory if memory is not None else DEFAULT_MEMORY)
    out_name = None if output is None else os.fspath(output)
    run_id = uuid.uuid4().hex[:12]
    local_parent = os.fspath(tmp_dir) if tmp_dir is not None else tempfile.gettempdir()
    if not os.path.isdir(local_parent):
        raise TempSpaceError(f"{local_parent}: No such file or directory")
    scratch = os.path.join(local_parent, f"bigshuf-dask-{run_id}")
    root = remote.join(remote.canonical(temp_url), f"bigshuf-dask-{run_id}") if temp_url is not None else scratch
    manifest_name = None if manifest is None else os.fspath(manifest)
    sharding = Sharding(shards, shard_records, shard_size)
    settings = Settings(
        out_name, shards, limit, zero_terminated, compress, row_group_size, output_format, manifest is not None, sharding.open_ended,
    )
    prepared = prepare(names, settings, root)
    if prepared.pairs is not None:  # Megatron: PREFIX.bin files, each laid out and committed with its .idx
        out_name = prepared.pairs.target
    layout = Layout(sharding, None if split is None else parse_split(split), manifest_name, prepared.pairs is not None)
    if weights is not None:
        check_inputs(weights, prepared.names)
    if unique:
        prepared.fmt.check_unique()
    if layout.on:
        check_layout(out_name, layout, prepared.compress, prepared.suffix, prepared.names)
        if prepared.pairs is not None:
            prepared.pairs.check(layout)
        assert out_name is not None
        out = Placement(out_name, None, None, files=None if remote.is_url(out_name) else OutputFiles(sync))
    else:
        out = plan_placement(out_name, shards, prepared.compress, root, sync, prepared.suffix)
    cfg = Config(entropy, prepared.fmt, limit, prepared.k, verify, manifest is not None, unique)
    os.makedirs(scratch)
    committed = False
    sink: Sink | None = None
    try:
        with (connect(scheduler, scratch) if runner is None else _given(runner)) as run:

            def run_tasks(fn: Callable[[Config, Any], Any], cfg: Config, tasks: Sequence[Any], sizes: Sequence[int]) -> list[Any]:
                """Run ``fn(cfg, task)`` for each of ``tasks`` (``sizes`` bytes each, for progress)."""
                return _run(run, fn, cfg, tasks, progress, sizes)

            tasks1 = prepared.tasks
            mixed: Mixed | None = None
            duplicates = dedup_passes = 0
            if unique and weights is not None:
                cfg, mixed, results1, segments, read, duplicates, dedup_passes = unique_weighted_pass(
                    run_tasks, cfg, weights, tasks1, progress, root,
                )
            elif unique:
                results1, segments, read, duplicates, dedup_passes = unique_pass(run_tasks, cfg, tasks1, progress, root)
            else:
                if weights is None:
                    progress.start(scatter_phase(0), sum(t.nbytes for t in tasks1))
                    results1 = _run(run, scatter_task, cfg, tasks1, progress, [t.nbytes for t in tasks1])
                else:
                    cfg, mixed, results1 = weighted_pass(run_tasks, cfg, weights, tasks1, progress)
                segments = [s for r in results1 for s in r.segments]
                read = sum((r.read for r in results1), Fingerprint())
            cfg.fmt.check_scattered(tasks1, results1)
            scattered = Index(segments, cfg.k, cfg.limit)
            found = scattered.level.total
            head_count = resolve_head(head_count, head_share, found)
            total = found if head_count is None else min(found, head_count)
            planned: list[PlannedFile] = []
            measured = layout.sharding.size is not None
            if layout.on:
                size_ends = None
                if layout.sharding.size is not None:
                    cutter = measure(run_tasks, cfg, scattered, total, root, progress)
                    size = layout.sharding.size
                    size_ends = lambda start, count: cutter.split_ends(start, count, size)  # noqa: E731
                planned = plan_files(out_name or "", layout, total, prepared.compress, prepared.suffix, size_ends)
                lay_out(out, planned, root, prepared.compress)
            if out.shards is None and (out.target is None or not remote.is_url(out.target)):
                sink = open_output(out.target, ("none", None), sync=sync)
            # Plain output (or one whole file) to a local file: tasks write in place, no concatenation.
            whole = cfg.fmt.whole_output
            direct = sink.tmp_path if isinstance(sink, AtomicFileSink) and (out.codec is None or whole) else None
            tasks2 = _gather_tasks(scattered, total, out, root, direct, whole)
            progress.start(shuffle_phase(0), int(scattered.level.sizes.sum()))
            # Each task's share of the buckets it draws from (tasks sharing a bucket split its bytes), for progress.
            sizes2 = [sum(p.size * (p.stop - p.first) // max(1, p.count) for p in t.pieces) for t in tasks2]
            results2: list[GatherResult] = _run(run, gather_task, cfg, tasks2, progress, sizes2)
        progress.close()
        _check_written(read, results2, total, verify)
        if prepared.pairs is not None:
            prepared.pairs.place(out, results2, root)
        if manifest_name is not None:
            info = run_info or _default_info(seed, random_source, head_share, split, unique)
            counts = (
                prepared.pairs.counts() if prepared.pairs is not None
                else input_counts(tasks1, results1, len(prepared.names), cfg.fmt.input_bytes)
            )
            entries = info(
                inputs_entry(prepared.names, counts), cfg.fmt.format_entry(), head_count, mixed.stats() if mixed else (), duplicates,
            )
            if mixed is not None and mixed.stratifier is not None and layout.split is not None:
                strata = mixed.stratifier
                entries["stratified"] = strata_entries([p.name for p in layout.split], strata.names, strata.table)
            _manifest(out, manifest_name, cfg.fmt, entries, planned, results2)
        commit(out, [t.target for t in tasks2], sink, direct is not None)
        committed = True
        note_stale_shards(layout, planned, prepared.compress, prepared.suffix)
        passes = 2 + measured + dedup_passes + max((r.depth for r in results2), default=0)
        return ShuffleStats(
            total, sum(r.bytes for r in results2), cfg.k, passes, time.perf_counter() - start, mixed.stats() if mixed else (),
            duplicates, cfg.fmt.unit,
        )
    finally:
        progress.close()
        if not committed:
            if sink is not None:
                sink.abort()
            for name in out.temps:
                remote.remove(name)
            if out.files is not None:
                out.files.discard()  # the manifest's temporary file too
                out.files.release()
            for directory in reversed(out.made):
                try:
                    os.rmdir(directory)
                except OSError:
                    pass  # not empty: something else is in it now
        remote.remove_tree(root)
        remote.remove_tree(scratch)


def _check_options(
    head_count: int | None, shards: int | None, verify: bool, scheduler: str | None, own_runner: bool, temp_url: str | None
) -> str | None:
    """Refuse options that cannot work before anything starts; return the scheduler to use."""
    if head_count is not None and head_count < 0:
        raise UsageError(f"invalid line count: '{head_count}'")
    if shards is not None and shards < 1:
        raise UsageError(f"invalid {option('shards')} value: '{shards}'")
    if verify and head_count is not None:
        raise UsageError(f"{option('verify')} checks whole shuffles; it cannot check a sample ({option('head_count')})")
    scheduler = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    if scheduler and not own_runner and temp_url is None:
        raise UsageError(f"{option('scheduler')} needs {option('temp_url')}: a place every worker can reach, e.g. s3://bucket/tmp/")
    try:
        import fsspec  # noqa: F401

        if not own_runner:
            import distributed  # noqa: F401
    except ImportError:
        raise UsageError(f"{option('dask')} needs Dask: pip install 'bigshuf[dask]'") from None
    return scheduler


def _check_written(read: Fingerprint, results2: list[GatherResult], total: int, verify: bool) -> None:
    """Before anything is put in place: every record written once, and with ``verify`` the same
    records as scattered (``read``: the unique ones with ``--unique``, every copy with weighted
    sources, every copy of the unique ones with both)."""
    written = sum(r.records for r in results2)
    if written != total:
        raise OutputError(f"wrote {written} records, expected {total}; output not put in place")
    if verify:
        wrote = sum((r.written for r in results2), Fingerprint())
        if read != wrote:
            raise OutputError(f"verification failed: read {read}, wrote {wrote}; output not put in place")


def _manifest(
    out: Placement, manifest: str, fmt: TaskFormat, info: dict[str, Any], planned: list[PlannedFile], results: list[GatherResult]
) -> None:
    """Write the manifest beside its target, to be committed with the outputs (``out.manifest_move``)."""
    assert out.files is not None, "a manifest of URL outputs is refused before the run"
    out.made += make_directories([manifest])
    temp = out.files.temp_name(generated_path(manifest), len(planned))
    out.manifest_move = write_run_manifest(manifest, temp, info, planned, results, out.temps, fmt.records_kind, out.files.sync)


def _default_info(
    seed: int | None, random_source: str | os.PathLike[str] | None, head_share: Fraction | None, split: str | None, unique: bool,
) -> RunInfo:
    """The manifest's run-wide entries for a call of ``shuffle`` itself (the engine passes the request's)."""
    settings = SimpleNamespace(
        seed=seed, random_source=random_source, head_share=head_share, repeat=False, split=split, sources=(), unique=unique,
    )
    return lambda inputs, fmt, head_count, sources, duplicates: run_entries(settings, inputs, fmt, head_count, sources, duplicates)


@contextmanager
def _given(runner: Runner) -> Iterator[Runner]:
    """A runner the caller made, used as ``connect``'s client is (and left running)."""
    yield runner
