"""``--dry-run``: the ``Facts`` a plan (``run_plan.RunPlan``) is made from, and the parts of it that
every engine's plan shares (records, weighted sources, output).

Each engine works out its own facts and adds its own parts, by the run's own code and writing
nothing: the local engine's plan is ``engines.local_plan``, the Dask engine's ``engines.dask.plan``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import NoReturn

from .core import head, mix as weights, plan
from .core.driver import OutputPlan, Sample
from .errors import BigShufError, option
from .formats import registry
from .formats.detect import read_back
from .request import Request
from .run_plan import Check
from .storage.layout import Sharding, SplitPart, parse_split, split_counts
from .storage.paths import own_descriptor
from .storage.safefs import written_in_place
from .storage.shards import check_outputs, check_shard_count, shard_names


@dataclass
class Facts:
    """What the parts of a plan are made from, worked out once: the request, the format's sample of
    its input, the path, and the output; the parts add their lines and checks."""

    request: Request
    limit: int
    sample: Sample
    #: Why the input could not be read (a message of the run's), if it could not.
    input_error: str = ""
    buckets: int | None = None
    #: ``--unique``'s hash buckets, written before pass 1's (None: not known, or no dedup pass).
    hash_buckets: int | None = None
    passes: int | None = None
    tmp_dir: str = ""
    temp_free: int | None = None
    output: OutputPlan | None = None
    output_error: str = ""
    outputs: list[str] = field(default_factory=list)
    #: The share of the buckets' bytes pass 1 writes under ``-n`` (``head.temp_share``).
    head_temp_share: float = 1.0
    descriptors: int | None = None
    #: Weighted sources: each source's rate (None: solved only after the run's counting pass), the
    #: records of the multiset (None: not counted), bytes of the multiset over bytes read (None:
    #: unknown), and why the run would refuse the mix, if it would.
    rates: list[Fraction] | None = None
    multiset: int | None = None
    factor: float | None = 1.0
    mix_error: str = ""
    lines: list[tuple[str, str]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def line(self, name: str, value: str) -> None:
        """Add the plan line ``name: value``."""
        self.lines.append((name, value))

    def check(self, name: str, test: Callable[[], object]) -> None:
        """Add check ``name``: it fails with the message of the BigShufError ``test`` raises (said
        once: a failure an earlier check already gave, the inputs' met again by the output's, is
        not repeated)."""
        try:
            test()
        except BigShufError as e:
            message = error_line(e)
            if all(c.message != message for c in self.checks):
                self.checks.append(Check(name, False, message))
        else:
            self.checks.append(Check(name, True))

    @property
    def in_memory(self) -> bool | None:
        """Whether the run shuffles in memory (None: unknown); ``-n 0`` reads nothing, and needs no buckets.
        With weighted sources the multiset's index of copies must fit beside the records, as the run holds it."""
        if self.request.head_count == 0:
            return True
        est = self.sample.estimate
        if not self.sample.in_memory or not self.request.sources or est is None or est.nbytes is None or est.records is None:
            return self.sample.in_memory
        if self.multiset is not None:
            copies = self.multiset
        elif self.factor is not None:
            copies = int(est.records * self.factor)  # the multiset's records, expected
        else:
            return None
        family = registry.FAMILIES[self.request.family]
        if not family.copies_index_at_one and self.rates is not None and all(r == 1 for r in self.rates):
            copies = 0  # every record once: a table run holds no index of copies
        return plan.fits_in_memory(est.nbytes, est.records + copies, self.limit)

    @property
    def temp_bytes(self) -> int | None:
        """Temporary bytes the buckets take: the sample's figure, for the multiset of weighted
        sources, of which ``-n`` writes ``head_temp_share``."""
        need = self.sample.temp_bytes
        return None if need is None or self.factor is None else int(need * self.factor * self.head_temp_share)


def error_line(e: BigShufError) -> str:
    """``e``'s message with its settings still as placeholders, to be spelt for the reader."""
    return str(e.args[0]) if e.args else type(e).__name__


def weigh(facts: Facts) -> None:
    """Weighted sources: the rates as the run solves them, where each source's records (or bytes, for
    ``by="bytes"``) are known without the run's counting pass, the multiset they make, and the
    bytes of the multiset over the bytes read; a mix the run would refuse is kept as ``mix_error``."""
    request, sample = facts.request, facts.sample
    if not request.sources:
        return
    counts = sample.source_records
    if request.unique:
        # The rates apply to the records left once --unique drops copies: counted only by the run.
        sample = replace(sample, source_records=None, source_bytes=None)
        counts = None
    if request.mix and (sample.source_bytes if request.by == "bytes" else counts) is None:
        facts.factor = None  # the rates, and so the multiset, are known after the counting pass
        return
    try:
        mixer = weights.mixer_for(request, counts, sample.source_bytes)  # refuses what the run's mixer refuses
    except BigShufError as e:
        facts.mix_error, facts.factor = error_line(e), None
        return
    facts.rates = mixer.rates
    if counts is not None:
        facts.multiset = sum(mixer.multiset_sizes())
    # As the run weighs its multiset (its family says how): a run of rows (tables, Megatron documents)
    # by its rows when it knows them, a line run by the bytes it counted when it counts, else by the sources' sizes.
    counting = weights.needs_counts(request.source_rates, bool(request.mix)) or request.stratify
    family = registry.FAMILIES[request.family]
    if family.weighs_records and counts is not None:
        facts.factor = (facts.multiset or 0) / max(1, sum(counts))
    elif family.weighs_counted_bytes and counting and sample.source_bytes is not None:
        facts.factor = mixer.expected_factor(list(sample.source_bytes))
    else:
        facts.factor = mixer.expected_factor(list(sample.source_sizes))


def size_text(n: int | None) -> str:
    """A byte count for a plan line ('unknown' for None)."""
    return "unknown" if n is None else plan.format_size(n)


# The parts of a plan that every engine's plan takes.


def plan_records(facts: Facts) -> None:
    """``records: ~1,234,567, ~1.2 GiB (estimated from the first 1.0 MiB)``, or counted, or why unknown."""
    sample, est = facts.sample, facts.sample.estimate
    if est is None or est.records is None or est.nbytes is None:
        facts.line("records", f"unknown ({sample.why or 'the input does not say its size'})")
        return
    if sample.exact:
        facts.line("records", f"{est.records:,}, {plan.format_size(est.nbytes)} (counted: {sample.counted})")
    elif sample.records_counted:
        facts.line(
            "records", f"{est.records:,} (counted: {sample.records_counted}), ~{plan.format_size(est.nbytes)} "
            f"(estimated from the first {plan.format_size(sample.sampled)})"
        )
    else:
        facts.line(
            "records", f"~{est.records:,}, ~{plan.format_size(est.nbytes)} (estimated from the first {plan.format_size(sample.sampled)})"
        )
    request = facts.request
    if request.sources:
        return  # the multiset's size is the sources' line
    count = head.resolve(request.head_count, request.head_share, est.records)
    if count is not None:
        kept = count if request.repeat else min(est.records, count)
        exact = sample.exact or (kept == request.head_count and request.head_share is None)
        share = "" if request.head_share is None else f" {float(request.head_share * 100):g}%"
        about = "at most " if request.unique else "" if exact else "~"  # -n counts the unique records
        facts.line("records written", f"{about}{kept:,} ({option('head_count')}{share})")


def plan_mix(facts: Facts) -> None:
    """``sources: web 3 files rate 0.5, code 1 file rate 2; counted in a first pass``, the rates of a
    ``--mix`` and the multiset's records where the sources' counts are known (the mix checked as the
    run checks it), and what ``--unique`` adds in words."""
    request = facts.request
    if request.sources:
        rates = dict(request.rates)
        solved = None if facts.rates is None else dict(zip((name for name, _files in request.sources), facts.rates))
        words = []
        for name, files in request.sources:
            how = f"share {float(dict(request.mix)[name]):g}" if request.mix else f"rate {float(rates.get(name, 1)):g}"
            if request.mix and solved is not None:
                how += f" (rate {float(solved[name]):.6g})"
            words.append(f"{name} {len(files)} file{'s' if len(files) != 1 else ''} {how}")
        counted = weights.needs_counts(request.source_rates, bool(request.mix))
        listed = registry.FAMILIES[request.family].listed_counts
        if listed == "rows":
            from .formats.detect import is_table_input

            # Parquet and Arrow files say their row counts; JSON Lines rows, and Arrow bytes, are counted.
            paths = [p for p in request.inputs if isinstance(p, str)]
            counted = request.by == "bytes" or (counted and not all(is_table_input(p) for p in paths))
        elif listed == "all":
            counted = False  # the inputs say each source's records and bytes (Megatron indexes: documents, token bytes)
        total = ""
        if request.mix:
            total = f" of {request.total:,} {request.by}" if request.total is not None else " of the most that repeats no record"
        if facts.multiset is not None:
            total += f"; {facts.multiset:,} record{'s' if facts.multiset != 1 else ''} to shuffle"
        if counted and request.unique:
            total += f"; the rates apply to each source's records left once {option('unique')} drops copies, counted as it drops them"
        elif counted and request.mix and facts.rates is None and not facts.mix_error:
            total += "; the rates are known only after a counting pass reads every input first"
        elif counted:
            total += "; a counting pass reads every input first"
        facts.line("sources", ", ".join(words) + total)
        facts.check("sources", lambda: facts.mix_error and fail_with(facts.mix_error))
    if request.unique:
        hashes = registry.run_class(request.family).hash_bytes if request.engine == "local" else 0  # (Dask keeps none)
        facts.line(
            "duplicates", f"dropped by {option('unique')}: in memory if the input fits twice in -S, else a dedup pass "
            f"first (temporary space up to twice the input{f', and {hashes} bytes a record for their hashes' if hashes else ''})"
        )


def plan_output(facts: Facts) -> None:
    """``output: out/part-00000.jsonl.zst ... out/part-00031.jsonl.zst (32 shards)``, checked as the run
    checks it before reading (without creating, locking or tidying anything)."""
    out = facts.output
    if out is None:
        facts.line("output", "unknown")
        facts.check("output", lambda: fail_with(facts.output_error))
        return
    if out.target in (None, "-"):
        facts.line("output", "standard output")
    elif out.split is not None or out.sharding.open_ended:
        cut = [] if out.split is None else [f"splits {out.split}{', stratified by source' if facts.request.stratify else ''}"]
        if out.split is not None:
            cut[0] += split_sizes(facts, parse_split(out.split))
        facts.line("output", f"{out.target} ({'; '.join(cut + shard_cut(out.sharding, out.shards))})")
    elif out.shards is None:
        facts.outputs = [out.target]
        facts.line("output", f"{out.target}{_replacing(out.target)}")
    else:
        target, shards = out.target, out.shards
        try:
            check_shard_count(target, shards)  # before naming them: 2**40 names would fill the memory
            directory = os.path.isdir(target) or target.endswith(os.sep)
            facts.outputs = shard_names(target, shards, out.compress, directory, suffix=out.suffix)
        except BigShufError:
            pass  # the check below says what is wrong with the names
        shown = target if not facts.outputs else facts.outputs[0] if shards == 1 else f"{facts.outputs[0]} ... {facts.outputs[-1]}"
        facts.line("output", f"{shown} ({shards} shard{'s' if shards != 1 else ''})")
    if out.manifest is not None:
        facts.line("manifest", out.manifest)
    split = None if out.split is None else parse_split(out.split)
    facts.check("output", lambda: _check_output(out, split, facts.request))


def _replacing(target: str) -> str:
    """What ``-o target`` does to a file already there, for the output line: nothing to say of a new
    file, a device or a FIFO."""
    try:
        st = os.stat(target)
    except OSError:
        return ""
    if not stat.S_ISREG(st.st_mode):
        return ""
    fd = own_descriptor(target)
    if fd is not None:
        return f" (written through descriptor {fd} at its offset, as standard output is)"
    return " (written in place: a deleted file)" if written_in_place(st) else " (replaces an existing file)"


def _check_output(out: OutputPlan, split: tuple[SplitPart, ...] | None, request: Request) -> None:
    """Refuse the output as the run would: its names, then the format's own checks of its files."""
    check_outputs(
        out.target, out.sharding, split, out.manifest, out.compress, out.suffix, dry_run=True, inputs=_input_files(request),
        input_directories=request.input_directories, taken=read_back,
    )
    if out.own_check is not None:
        out.own_check()


def _input_files(request: Request) -> list[str]:
    """The input files a manifest must not replace: every file each path named stands for (both of a Megatron dataset)."""
    paths = [p for p in request.inputs if isinstance(p, str)]
    return [name for p in paths for name in registry.stored_files(request.family, p)]


def _written(facts: Facts) -> tuple[int | None, bool]:
    """The records the run writes, and whether that is a count (the input, or each source, counted)
    rather than an estimate; None when not even estimated (or ``--unique`` drops an unknown share)."""
    request, est = facts.request, facts.sample.estimate
    if request.head_count == 0:
        return 0, True
    if request.unique or est is None or est.records is None:
        return None, False
    if request.sources:
        if facts.multiset is not None:
            total, exact = facts.multiset, True
        elif facts.factor is not None:
            total, exact = int(est.records * facts.factor), False
        else:
            return None, False
    else:
        total, exact = est.records, facts.sample.exact
    count = head.resolve(request.head_count, request.head_share, total)
    if count is None:
        return total, exact
    return (count if request.repeat else min(total, count)), exact or (request.repeat and request.head_share is None)


def shard_cut(sharding: Sharding, shards: int | None) -> list[str]:
    """How an output is cut into shards, in words (none: one file per split)."""
    if sharding.records is not None:
        return [f"shards of {sharding.records} records"]
    if sharding.size is not None:
        return [f"shards of {plan.format_size(sharding.size)}"]
    return [] if shards is None else [f"{shards} shards each"]


def split_sizes(facts: Facts, parts: tuple[SplitPart, ...]) -> str:
    """``: valid 100, train 9,900 records`` for the output line: each split's records where the run's
    are counted (a split the records cannot fill fails the ``splits`` check with the run's message),
    estimated where they are estimated (never failed on an estimate)."""
    written, exact = _written(facts)
    if written is None:
        why = f"the duplicates {option('unique')} drops are" if facts.request.unique else "the records are"
        return f": sizes known once {why} counted"
    try:
        counts = split_counts(parts, written)
    except BigShufError as e:
        if exact:
            refused = error_line(e)
            facts.check("splits", lambda: fail_with(refused))
            return ""
        return f": the ~{written:,} records estimated are too few for them (the run checks once they are counted)"
    sizes = ", ".join(f"{p.name} {c:,}" for p, c in zip(parts, counts))
    return f": {sizes} records" if exact else f": about {sizes} records (estimated; the run checks once they are counted)"


class _Failed(BigShufError):
    """A check of the plan's own that failed (its message as the run would word it)."""


def fail_with(message: str) -> NoReturn:
    """Fail a check with ``message``."""
    raise _Failed(message)
