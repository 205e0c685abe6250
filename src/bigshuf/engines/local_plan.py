"""The local engine's ``--dry-run``: what its shuffle would do and need, worked out by the run's
own code, writing nothing.

The format's run looks at the start of the input as pass 1 would (``TwoPass.sample``) and names
its output (``TwoPass.output_plan``); the figures come from ``core.plan`` and the driver, and the
checks are the run's own (``storage.tempspace``, ``storage.shards``) made without creating,
locking or removing anything. The plan is ``dryrun``'s ``RunPlan``, made of parts, each a small
function that adds its ``name: value`` lines and checks to the ``Facts``, so that a new option
adds its part to ``PARTS`` (the Dask engine's plan is ``engines.dask.plan``).
"""

from __future__ import annotations

import os
import stat
import shutil
from collections.abc import Callable
from typing import Any

from ..core import head, plan
from ..core.driver import Estimate, Sample, level_buckets
from ..core.dedup import keeps_hashes
from ..run_plan import RunPlan
from ..dryrun import Facts, error_line, fail_with, plan_mix, plan_output, plan_records, size_text, weigh
from ..errors import BigShufError, option
from ..formats import registry
from ..request import Request, resolve_memory
from ..storage.output import OPEN_SHARDS
from ..storage.reader import leftover_error
from ..storage.sources import BytesSource, FileSource, RangeSource
from ..storage.tempspace import check_creatable, check_parent, check_range_space, check_space, default_tmp_dir


def plan_request(request: Request) -> RunPlan:
    """The plan of a local ``request`` (built and checked by ``Request.build``): every part in ``PARTS`` in turn."""
    facts = _gather(request)
    for part in PARTS:
        part(facts)
    sample = facts.sample
    est = sample.estimate
    return RunPlan(
        inputs=len(request.inputs), input_bytes=_stored_bytes(request.inputs, request.family),
        nbytes=None if est is None else est.nbytes, records=None if est is None else est.records, exact=sample.exact,
        memory=facts.limit, in_memory=facts.in_memory, passes=facts.passes, buckets=facts.buckets,
        tmp_dir=facts.tmp_dir, temp_needed=_temp_needed(facts),
        temp_free=facts.temp_free, descriptors=facts.descriptors, descriptor_limit=plan.open_file_limit(),
        outputs=tuple(facts.outputs), lines=tuple(facts.lines), checks=tuple(facts.checks),
    )


def _gather(request: Request) -> Facts:
    """Sample the input, choose the path and count the buckets as the run would, and name the output."""
    limit = resolve_memory(request.memory)
    run = registry.run_class(request.family)
    inputs: list[Any] = list(request.inputs)
    facts = Facts(request, limit, Sample(None))
    if request.head_count == 0:
        facts.sample = Sample(None, why=f"{option('head_count')} 0 reads no input")
    else:
        try:
            facts.sample = run.sample(request, inputs)
        except BigShufError as e:
            facts.input_error = error_line(e)
            facts.sample = Sample(None, why="the input cannot be read")
        for item in inputs:  # the refusal shuffle_range makes before it draws
            left = item.leftover(request.header, request.lines_per_record) if isinstance(item, RangeSource) else 0
            if left and not facts.input_error:
                facts.input_error = error_line(leftover_error(item.name, left, request.lines_per_record))
    weigh(facts)
    facts.tmp_dir = request.tmp_dir or default_tmp_dir()
    try:
        facts.temp_free = shutil.disk_usage(facts.tmp_dir).free
    except OSError:
        facts.temp_free = None
    est = facts.sample.estimate
    if est is not None and est.nbytes is not None and facts.factor not in (None, 1.0):
        # Pass 1 scatters the multiset: the run sizes its buckets by it.
        assert facts.factor is not None
        est = Estimate.of(int(est.nbytes * facts.factor), est.per_record)
    if facts.in_memory:
        facts.buckets, facts.passes = 0, 1
    elif facts.factor is None:
        pass  # the multiset pass 1 scatters is known only once the rates are
    elif est is not None:
        facts.buckets = level_buckets(est, limit, run.files_per_bucket)
        if not request.unique:  # (with --unique the dedup's hash buckets, which -n does not cut, come first)
            facts.head_temp_share = head.temp_share(request.head_count, est.records, facts.buckets, request.resume)
        known = est.nbytes is not None and est.records is not None
        facts.passes = plan.expected_passes(est.nbytes or 0, est.records or 0, limit) if known else None
        if request.unique and facts.passes is not None:
            facts.passes += 1  # the dedup's pass through hash buckets, before pass 1
        if request.unique and facts.sample.estimate is not None and facts.sample.estimate.nbytes is not None:
            facts.hash_buckets = run.dedup_buckets(facts.sample.estimate, limit, len(request.sources))
    try:
        facts.output = run.output_plan(request, inputs)
    except BigShufError as e:
        facts.output_error = error_line(e)
    return facts


def _temp_needed(facts: Facts) -> int | None:
    """Temporary bytes the run needs: none in memory, the buckets' figure when external."""
    if facts.in_memory:
        return 0
    return _temp_bytes(facts) if facts.in_memory is False else None


def _temp_bytes(facts: Facts) -> int | None:
    """The buckets' temporary bytes (``Facts.temp_bytes``); with ``--unique``, and the hashes the
    dedup keeps beside its hash buckets (8 bytes a record, but for tar samples)."""
    need, est = facts.temp_bytes, facts.sample.estimate
    if need is not None and facts.request.unique and est is not None and est.records is not None:
        need += registry.run_class(facts.request.family).hash_bytes * int(est.records)
    return need


def _stored_bytes(inputs: tuple[Any, ...], family: str = registry.LINES) -> int | None:
    """The inputs' bytes as stored (compressed files at their size on disk; every file an input stands
    for, as both of a Megatron dataset: ``registry.stored_files``); None if any is unknown."""
    total, stdin_seen = 0, False
    for item in inputs:
        if isinstance(item, BytesSource):
            total += len(item.data)
            continue
        if item == "-" and stdin_seen:
            continue  # a later ``-`` reads only what the first left: nothing, from a file
        if item == "-" and (size := FileSource(item).disk_size()) is not None:
            total, stdin_seen = total + size, True
            continue
        if not isinstance(item, str) or item == "-":
            return None
        try:
            found = [os.stat(name) for name in registry.stored_files(family, item)]
        except OSError:
            return None
        if not all(stat.S_ISREG(st.st_mode) for st in found):
            return None  # a FIFO or a device: its size is not its bytes ("0 B" for a pipe)
        total += sum(st.st_size for st in found)
    return total


# The local engine's parts of a plan, in the order of its lines.


def _inputs(facts: Facts) -> None:
    """``inputs: 3 files, 1.2 GiB`` and the check that they can be read."""
    items = facts.request.inputs
    files = sum(isinstance(i, str) and i != "-" for i in items)
    kind = registry.FAMILIES[facts.request.family].input_unit
    words = [f"{files} {kind}{'s' if files != 1 else ''}"] if files else []
    if "-" in items:
        words.append("standard input")
    words += [getattr(i, "name", "a source") for i in items if not isinstance(i, str)]
    stored = _stored_bytes(items, facts.request.family)
    words.append(size_text(stored) if stored is not None else "size unknown")
    facts.line("inputs", ", ".join(words))
    facts.check("inputs", lambda: facts.input_error and fail_with(facts.input_error))


def _memory(facts: Facts) -> None:
    """``memory: 256.0 MiB (-S)`` and the refusal the format would make once it had read this much."""
    given = facts.request.memory is not None
    facts.line("memory", f"{plan.format_size(facts.limit)} ({option('memory') if given else f'default: {plan.DEFAULT_MEMORY} of RAM'})")
    refusal = facts.sample.refusal
    if refusal:
        facts.check("memory", lambda: fail_with(refusal))


def _path(facts: Facts) -> None:
    """``path: in memory, 1 pass`` or ``path: external, 2 passes, 37 buckets`` (with the worker threads)."""
    request = facts.request
    threads = f", {request.workers} thread{'s' if request.workers != 1 else ''}"
    if request.head_count == 0:
        facts.line("path", f"none ({option('head_count')} 0 reads no input)")
    elif facts.in_memory:
        facts.line("path", f"in memory, 1 pass{threads}")
    elif facts.in_memory is None or facts.factor is None:
        why = facts.sample.why or "the input does not say its size"
        if facts.factor is None and facts.sample.estimate is not None:
            why = f"the {option('mix')} is refused" if facts.mix_error else "the multiset's size is known once the rates are"
        facts.line("path", f"{'external, ' if facts.in_memory is False else ''}unknown ({why})")
    else:
        passes = "at least 2 passes" if facts.passes is None else f"{facts.passes} passes"
        buckets = "buckets unknown" if facts.buckets is None else f"{facts.buckets} buckets"
        if facts.hash_buckets is not None:
            buckets = f"{facts.hash_buckets} hash buckets then {buckets}"
        facts.line("path", f"external, {passes}, {buckets}{threads}")


def _temp_space(facts: Facts) -> None:
    """``temporary space: needs 1.3 GiB in /tmp, 40.0 GiB free``, checked as the run checks its -T."""
    parent, free, need = facts.tmp_dir, facts.temp_free, _temp_bytes(facts)
    if facts.in_memory:
        facts.line("temporary space", "none (in memory)" if facts.request.head_count != 0 else "none")
        return
    where = f"in {parent}, {size_text(free)} free"
    if facts.factor is None and facts.sample.temp_bytes is not None:
        amount = "an unknown amount (so is the multiset's size)"
    elif need is None:
        amount = "an unknown amount"
    else:
        # Known when the input's size is, and with weighted sources the multiset's (counted, or integer rates).
        rates = facts.rates
        whole = rates is not None and all(r.denominator == 1 for r in rates)
        known = facts.sample.sized and (not facts.request.sources or facts.multiset is not None or whole)
        known = known and facts.head_temp_share == 1.0  # what -n leaves unwritten is only foreseen
        amount = ("" if known else "~") + plan.format_size(need)
    if facts.request.unique and need is not None:
        where += " (the dedup's hash buckets; the unique records' buckets take up to as much again)"
    facts.line("temporary space", f"needs {amount} {where}")

    def usable() -> None:
        check_parent(parent)
        check_creatable(parent)
        if need is not None and free is not None:
            check_space(parent, need, free)
        request = facts.request
        for item in request.inputs:
            # A whole range is listed: the run refuses at once one that fits neither in memory nor here.
            if isinstance(item, RangeSource) and request.head_count is None and not request.repeat:
                check_range_space(item.lo, item.hi, None, facts.limit, request.compress_temp, request.tmp_dir)

    facts.check("temporary space", usable)


def _descriptors(facts: Facts) -> None:
    """``file descriptors: needs 45, limit 1024``: the bucket files and output files open at once."""
    out = facts.output
    files = 0 if out is None or out.target in (None, "-") else min(out.shards or 1, OPEN_SHARDS)
    soft = plan.open_file_limit()
    shown = "unlimited" if soft == -1 else "unknown" if soft is None else soft
    per_bucket = registry.run_class(facts.request.family).files_per_bucket
    if facts.buckets is None:
        if facts.sample.estimate is None and not facts.input_error:  # a pipe: its buckets, if external
            buckets = plan.unsized_buckets(per_bucket)
            need = plan.descriptors_needed(buckets, files, per_bucket)
            facts.line("file descriptors", f"needs {need} if external ({buckets} buckets), limit {shown}")
        else:
            facts.line("file descriptors", "unknown (so is the bucket count)")
        return
    need = plan.descriptors_needed(facts.buckets, files, per_bucket)
    if facts.hash_buckets is not None:  # written before pass 1, with their hashes where they are kept
        k = facts.hash_buckets
        hash_files = per_bucket if registry.run_class(facts.request.family).hash_bytes == 0 or not keeps_hashes(k) else 2
        need = max(need, plan.descriptors_needed(k, 0, hash_files))
    facts.descriptors = need
    facts.line("file descriptors", f"needs {need}, limit {shown}")
    if soft is not None and soft != -1:
        limit = soft

        def enough() -> None:
            if need > limit:
                fail_with(f"{need} files open at once, more than the limit of {limit} (Too many open files); raise it with ulimit -n")

        facts.check("file descriptors", enough)


#: The parts of a plan, each adding its lines and checks to the ``Facts``; a new option adds its own.
PARTS: list[Callable[[Facts], None]] = [_inputs, plan_records, plan_mix, _memory, _path, _temp_space, _descriptors, plan_output]
