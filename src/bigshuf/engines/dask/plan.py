"""``--engine=dask --dry-run``: a Dask run's plan, worked out by the driver's own functions, writing nothing.

The inputs are expanded and looked at as ``inputs.prepare`` does (the bucket count and pass-1 tasks
are its), local inputs' first records read as the local plan reads them (a damaged tar, Parquet page or
index fails the plan, not a task), weighted sources sized by ``weights.plan_multiset``, the outputs named and checked as the
driver checks them before pass 1 (``outputs.check_layout``, ``check_output_directory``) without
creating, locking or tidying anything; no cluster is started. The lines and checks are
``dryrun``'s: its record, sources and output parts where they apply, and its ``RunPlan``.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field, replace

from ... import dryrun
from ...core import plan
from ...core.driver import OutputPlan, Sample
from ...core.streams import seed_entropy
from ...errors import BigShufError, option
from ...formats import registry
from ...request import Request, resolve_memory
from ...run_plan import RunPlan
from ...storage import remote
from ...storage.layout import Sharding, parse_split
from ...storage.tempspace import check_parent, check_space
from .driver import DEFAULT_MEMORY, _check_options, refuse_temp_directory
from .placement import check_shard_target, output_names
from .inputs import Prepared, Settings, prepare
from .outputs import Layout, check_layout
from .tasks import Config
from .weights import check_inputs, plan_multiset


@dataclass
class _Facts(dryrun.Facts):
    """``dryrun.Facts`` with what the Dask driver planned: pass 1's tasks and buckets and the input
    files as expanded (None: the inputs could not be prepared), and whether a counting pass comes first."""

    prepared: Prepared | None = None
    files: list[remote.RemoteFile] = field(default_factory=list)
    counting: bool = False
    #: Why the run would refuse its options before reading (a missing --temp-url, no Dask installed, ...).
    options_error: str = ""


def plan_request(request: Request) -> RunPlan:
    """The plan of a Dask ``request`` (built by ``Request.build``): the inputs prepared as the run
    prepares them, then the parts of the plan in ``PARTS`` in turn."""
    facts = _gather(request)
    for part in PARTS:
        part(facts)
    est = facts.sample.estimate
    stored = None if facts.prepared is None else sum(f.size for f in facts.files)
    return RunPlan(
        inputs=len(request.inputs), input_bytes=stored,
        nbytes=None if est is None else est.nbytes, records=None if est is None else est.records, exact=facts.sample.exact,
        memory=facts.limit, in_memory=False, passes=facts.passes, buckets=facts.buckets,
        tmp_dir=facts.tmp_dir, temp_needed=_temp_need(facts), temp_free=facts.temp_free, descriptors=None,
        descriptor_limit=plan.open_file_limit(), outputs=tuple(facts.outputs), lines=tuple(facts.lines), checks=tuple(facts.checks),
    )


def _gather(request: Request) -> _Facts:
    """Check the options and prepare pass 1 as ``driver.shuffle`` does, up to where it would start the cluster."""
    limit = resolve_memory(request.memory if request.memory is not None else DEFAULT_MEMORY)
    facts = _Facts(request, limit, Sample(None, why="the inputs cannot be read"))
    names = [s for s in request.inputs if isinstance(s, str)]
    out_name = request.output
    settings = Settings(
        out_name, request.shards, limit, request.zero_terminated, request.compress, request.row_group_size,
        request.output_format, request.manifest is not None,
    )
    try:
        runner = request.scheduler is not None and not isinstance(request.scheduler, str)
        scheduler = request.scheduler if isinstance(request.scheduler, str) else None
        _check_options(request.head_count, request.shards, request.verify, scheduler, runner, request.temp_url)
        seed_entropy(request.seed, request.random_source)
    except BigShufError as e:
        facts.options_error = dryrun.error_line(e)
    try:
        facts.prepared = prepare(names, settings, "plan")  # names pass-1 objects under "plan", never made
        facts.files = list(facts.prepared.stored)
        if request.sources:
            from ..cluster import _weights

            weights = _weights(request)
            assert weights is not None
            check_inputs(weights, facts.prepared.names)
        facts.input_error = _first_look(request)
    except BigShufError as e:
        facts.input_error = dryrun.error_line(e)
    if facts.input_error:
        facts.prepared, facts.files = None, []  # nothing further is planned from inputs the run refuses
    if facts.prepared is not None:
        facts.sample = facts.prepared.kind.sample(facts.prepared, request)  # as the family's kind counts or estimates them
    dryrun.weigh(facts)
    _temp_dir(facts)
    _buckets(facts)
    if facts.prepared is not None:
        if facts.prepared.pairs is not None:  # Megatron: the .bin (pattern, directory) -o names, as the run names it
            try:
                out_name = facts.prepared.pairs.target
            except BigShufError as e:
                facts.output_error = dryrun.error_line(e)  # refused under the output, as the local plan refuses it
                return facts
        facts.output = OutputPlan(
            out_name, request.shards, facts.prepared.compress, facts.prepared.suffix,
            Sharding(request.shards, request.shard_records, request.shard_size), request.split, request.manifest,
        )
    return facts


def _first_look(request: Request) -> str:
    """The refusal the local engine's plan makes of the start of local inputs (a corrupt tar, Parquet
    page or index), which a Dask run meets only in its tasks; "" when none. URLs are not read by a plan."""
    names = list(request.inputs)
    if any(not isinstance(name, str) or remote.is_url(name) for name in names):
        return ""
    try:  # under the local default memory: a row larger than a task's -S is written alone by Dask
        registry.run_class(request.family).sample(replace(request, memory=None), names)
    except BigShufError as e:
        return dryrun.error_line(e)
    return ""


def _temp_dir(facts: _Facts) -> None:
    """Where the run keeps its scratch space (``-T``) and the free space where its temporary objects
    go: that directory's, or a local ``--temp-url``'s (a remote one's is not known)."""
    facts.tmp_dir = facts.request.tmp_dir or tempfile.gettempdir()
    url = remote.local_output(facts.request.temp_url)
    try:
        facts.temp_free = None if url is not None and remote.is_url(url) else shutil.disk_usage(url or facts.tmp_dir).free
    except OSError:
        facts.temp_free = None


def _buckets(facts: _Facts) -> None:
    """The run's buckets (pass 1's, sized for the multiset of weighted sources once its rates are known)
    and the passes it reports: pass 1 and 2, ``--unique``'s dedup stage, ``--shard-size``'s measuring pass."""
    request, prepared = facts.request, facts.prepared
    if prepared is None:
        return
    k = prepared.k
    if request.sources:
        from ..cluster import _weights

        weights = _weights(request)
        assert weights is not None
        facts.counting = weights.counted and not request.unique
        sample = facts.sample
        counts, nbytes = sample.source_records, sample.source_bytes
        if request.unique or (weights.counted and counts is None) or facts.mix_error:
            k = -1  # sized by the multiset, known only after counting (or refused)
        else:
            mixer = weights.mixer(counts if weights.counted else None, nbytes if weights.counted else None)
            by_source = list(nbytes) if weights.counted and nbytes is not None else [int(s or 0) for s in sample.source_sizes]
            cfg = Config(0, prepared.fmt, facts.limit, k, False, False)
            k = plan_multiset(cfg, weights, mixer, by_source)[0].k
    facts.buckets = None if k < 0 else k
    unique = 0 if not request.unique else 2 if request.sources else 1
    facts.passes = 2 + (request.shard_size is not None) + unique


# The parts of a Dask plan, in the order of its lines.


def _inputs(facts: _Facts) -> None:
    """``inputs: 3 files, 1.2 GiB`` (local files and URLs as expanded) and the check that they can be read."""
    prepared = facts.prepared
    if prepared is None:
        facts.line("inputs", f"{len(facts.request.inputs)} named, size unknown")
    else:
        n = len(prepared.names)
        urls = sum(isinstance(name, str) and remote.is_url(name) for name in facts.request.inputs)
        kinds = f" (from {urls} URL{'s' if urls != 1 else ''})" if urls else ""
        size = sum(f.size for f in facts.files)
        unit = registry.FAMILIES[prepared.family].input_unit
        facts.line("inputs", f"{n} {unit}{'s' if n != 1 else ''}{kinds}, {plan.format_size(size)}")
    facts.check("inputs", lambda: facts.input_error and dryrun.fail_with(facts.input_error))


def _memory(facts: _Facts) -> None:
    """``memory: 1.0 GiB per task (default: 1G)``: what one task may use; then the check of the
    options the driver refuses before it reads (a ``--scheduler`` without ``--temp-url``, ...)."""
    given = facts.request.memory is not None
    facts.line("memory", f"{plan.format_size(facts.limit)} per task ({option('memory') if given else f'default: {DEFAULT_MEMORY}'})")
    facts.check("options", lambda: facts.options_error and dryrun.fail_with(facts.options_error))


def _path(facts: _Facts) -> None:
    """``path: Dask tasks, 2 passes, 5 buckets, 3 pass-1 tasks of up to 64.0 MiB`` and the passes a run adds."""
    prepared, request = facts.prepared, facts.request
    if prepared is None:
        facts.line("path", "Dask tasks, unknown (the inputs cannot be read)")
        return
    passes = f"{facts.passes} passes"
    among = [f"{option('unique')}'s hashing and dedup passes"] if request.unique else []
    if request.shard_size is not None:
        among.append(f"a measuring pass for {option('shard_size')}")
    if among:
        more = ", more if a hash bucket outgrows -S" if request.unique else ""
        passes += f" ({' and '.join(among)} among them{more})"
    if facts.counting:
        passes += f" after a counting pass over {prepared.kind.counting_reads}"
    if facts.buckets is not None:
        buckets = f"{facts.buckets} bucket{'s' if facts.buckets != 1 else ''}"
    elif facts.mix_error:
        buckets = f"buckets unknown (the {option('mix')} is refused)"
    else:
        buckets = "buckets sized once the multiset is counted"
    tasks = len(prepared.tasks)
    each = prepared.kind.task_words(facts.limit, request.unique)
    facts.line("path", f"Dask tasks, {passes}, {buckets}, {tasks} pass-1 task{'s' if tasks != 1 else ''}{each}")


def _temp_need(facts: _Facts) -> int | None:
    """Bytes of temporary objects: pass 1's (the multiset's with weighted sources), and with ``--unique``
    the hash buckets of every record read beside them (an upper bound)."""
    need, read = facts.temp_bytes, facts.sample.temp_bytes
    if need is not None and read is not None and facts.request.unique:
        need += read
    return need


def _temp_space(facts: _Facts) -> None:
    """``temporary space: needs ~1.3 GiB in /tmp, 40.0 GiB free`` (or on ``--temp-url``, free space
    unknown), with the run's check of its ``-T`` and, when local, of the free space."""
    request, need = facts.request, _temp_need(facts)
    about = "up to " if request.unique else "" if facts.sample.exact else "~"
    amount = "an unknown amount" if need is None else about + plan.format_size(need)
    url = remote.local_output(request.temp_url)
    if url is not None and remote.is_url(url):
        facts.line("temporary space", f"needs {amount} on URL {url}, free space unknown; scratch in {facts.tmp_dir}")
    else:
        where = url or facts.tmp_dir
        facts.line("temporary space", f"needs {amount} in {where}, {dryrun.size_text(facts.temp_free)} free")

    def usable() -> None:
        check_parent(facts.tmp_dir)
        if url is not None and not remote.is_url(url):
            refuse_temp_directory(url)
        if (url is None or not remote.is_url(url)) and need is not None and facts.temp_free is not None:
            check_space(url or facts.tmp_dir, need, facts.temp_free)

    facts.check("temporary space", usable)


def _output(facts: _Facts) -> None:
    """The output as the driver names and checks it before pass 1: local files by ``dryrun``'s part
    (the same checks), URLs named here; a layout (splits, open-ended shards, a manifest) checked by
    the driver's ``check_layout``, which also refuses a manifest of URL outputs."""
    out, prepared = facts.output, facts.prepared
    if prepared is None:
        facts.line("output", "unknown (the inputs cannot be read)")
        return
    if out is None:
        dryrun.plan_output(facts)  # "unknown", and the run's refusal of the name -o gives
        return
    layout = Layout(out.sharding, None if out.split is None else parse_split(out.split), out.manifest)
    target = out.target
    if out.shards is not None and not layout.on and target in (None, "-"):
        facts.line("output", "standard output")
        facts.check("output", lambda: check_shard_target(None))
        return
    if target is not None and remote.is_url(target):
        facts.line("output", _url_output(facts, target, layout))
        if out.manifest is not None:
            facts.line("manifest", out.manifest)
    else:
        dryrun.plan_output(facts)
        if not layout.on and prepared.pairs is None:
            return
        facts.checks.pop()  # the driver's own check of a layout follows
    names, pairs = prepared.names, prepared.pairs
    laid = replace(layout, files=pairs is not None)  # as the driver lays out Megatron pairs: every file, even one

    def usable() -> None:
        """The driver's checks of the output before pass 1 (with a Megatron pair's own)."""
        if laid.on:
            check_layout(target, laid, out.compress, out.suffix, names, dry_run=True, input_directories=facts.request.input_directories)
            if pairs is not None:
                pairs.check(laid)
        elif out.shards is not None:
            output_names(str(target), out.shards, out.compress, out.suffix)

    facts.check("output", usable)


def _url_output(facts: _Facts, target: str, layout: Layout) -> str:
    """The output line of a URL target: its shard names or its layout in words (each object written whole)."""
    out = facts.output
    assert out is not None
    if layout.on:
        cut = [] if layout.split is None else [f"splits {out.split}" + dryrun.split_sizes(facts, layout.split)]
        return f"{target} ({'; '.join(cut + dryrun.shard_cut(out.sharding, out.shards))})"
    if out.shards is None:
        facts.outputs = [target]
        return target
    try:
        facts.outputs = output_names(target, out.shards, out.compress, out.suffix)
    except BigShufError:
        return target  # the output check says what is wrong with the names
    shown = facts.outputs[0] if out.shards == 1 else f"{facts.outputs[0]} ... {facts.outputs[-1]}"
    return f"{shown} ({out.shards} shard{'s' if out.shards != 1 else ''})"


def _records(facts: _Facts) -> None:
    """``dryrun``'s records line, once the inputs were prepared (rows of Parquet files as their footers list them)."""
    if facts.prepared is not None:
        dryrun.plan_records(facts)


def _mix(facts: _Facts) -> None:
    """``dryrun``'s sources line, with the mix checked as the run's mixer checks it, and how the Dask
    run drops duplicates (always as tasks: a hashing pass, then a task per hash bucket)."""
    dryrun.plan_mix(facts)
    if facts.request.unique:
        facts.lines[-1] = (
            "duplicates", f"dropped by {option('unique')}: a hashing pass, then a dedup task per hash bucket "
            "(temporary space up to twice the input)"
        )


#: The parts of a Dask plan; ``dryrun``'s where the Dask run plans alike.
PARTS = [_inputs, _records, _mix, _memory, _path, _temp_space, _output]
