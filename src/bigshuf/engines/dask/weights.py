"""Weighted sources on the Dask engine (``--source``, ``--rate``, ``--mix``, ``--stratify``), with the
local engine's semantics (``core.mix``, ``core.stratify``).

When a share, a fractional rate or ``--stratify`` needs each source's records, a counting pass of
tasks counts every pass-1 block (the blocks pass 1 will read: same tasks, same cuts; Megatron
documents from the indexes alone, ``CountedByIndex``). The client
then solves the rates and walks the blocks in input order, drawing for each how many of its
records get a copy more (hypergeometric, as ``Mixer.pick`` draws block by block) and, with
``--stratify``, how many of its copies go to each split (multivariate hypergeometric, as
``Stratifier.assign``): sequential selection sampling, so each source's picks are an exactly
uniform subset and each split gets an exactly uniform share of each source's copies. Each pass-1
task places its blocks' picks uniformly among their records (stream ``selection(block)``), labels
its copies with their splits in uniformly random order (``stratify(block)``) and scatters every
copy with its own bucket draw, in chunks (``piece(block, c)``) that hold about a block once copied;
a block whose records are each there once is scattered as without sources (``block``), so that
every rate 1 gives the plain run's output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import math
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ...core import streams
from ...core.fingerprint import Fingerprint
from ...core.mix import Mixer, SourceStats
from ...core.streams import Key, rng_for
from ...core.stratify import Stratifier
from ...errors import InputError, UsageError, option
from ...quoting import quote_name
from ...storage.layout import SplitPart
from ...progress import Progress, scatter_phase
from .tasks import Config, Copies, RunTasks, ScatterResult, ScatterTask, Segment

#: Each block's records and bytes, per pass-1 task (the counting pass's result).
BlockCounts = list[tuple[int, int]]


@dataclass(frozen=True)
class Weights:
    """A run's weighted sources as the engine hands them over: the sources' names, each input
    file's source, whether the records must be counted first, the splits ``--stratify`` shares
    each source among (None without it), and the mixer made from the counts (``core.mix.mixer_for``)."""

    names: tuple[str, ...]
    file_source: tuple[int, ...]
    counted: bool
    stratify: tuple[SplitPart, ...] | None
    mixer: Callable[[Sequence[int] | None, Sequence[int] | None], Mixer]


@dataclass(frozen=True)
class Draws:
    """What the client drew for one block: its records as counted, how many get a copy more, and
    with ``--stratify`` how many of its copies go to each split."""

    records: int
    picks: int
    strata: tuple[int, ...] | None = None


@dataclass(frozen=True)
class WeightedTask:
    """A pass-1 task of weighted sources: its records' copies (``copies`` each, plus the picks of
    ``draws``, one per block; None when nothing was counted), each block scattered in ``chunks``
    (the most copies a record gets), and with ``--stratify`` the splits' bucket bounds."""

    task: ScatterTask
    copies: int
    chunks: int
    draws: tuple[Draws, ...] | None
    bounds: tuple[int, ...] | None

    @property
    def nbytes(self) -> int:
        """Input bytes it reads, for progress."""
        return self.task.nbytes


@runtime_checkable
class CountedByIndex(Protocol):
    """A task format that counts its blocks without reading their records (Megatron documents, from the indexes)."""

    def block_counts(self, task: ScatterTask, cfg: Config) -> BlockCounts:
        """Each block's records and bytes, as ``count`` would give them for the blocks ``blocks`` reads."""


def count_task(cfg: Config, task: ScatterTask) -> BlockCounts:
    """The counting pass for one task: each of its blocks' records and bytes."""
    if isinstance(cfg.fmt, CountedByIndex):
        return cfg.fmt.block_counts(task, cfg)
    return [cfg.fmt.count(block) for block in cfg.fmt.blocks(task, cfg)]


def source_totals(weights: Weights, tasks: Sequence[ScatterTask], counted: Sequence[BlockCounts]) -> tuple[list[int], list[int]]:
    """Records and bytes of each source, from the counting pass."""
    records, nbytes = [0] * len(weights.names), [0] * len(weights.names)
    for task, blocks in zip(tasks, counted):
        s = weights.file_source[task.file_index]
        records[s] += sum(r for r, _b in blocks)
        nbytes[s] += sum(b for _r, b in blocks)
    return records, nbytes


def draw_blocks(
    entropy: int, weights: Weights, mixer: Mixer, stratifier: Stratifier | None, tasks: Sequence[ScatterTask],
    counted: Sequence[BlockCounts],
) -> list[tuple[Draws, ...]]:
    """Each task's blocks' draws, made in input order from the client's streams (``selection(TOP)``
    for the picks, ``stratify(TOP)`` for the splits); the mixer and stratifier count them."""
    picks = rng_for(entropy, streams.selection(streams.TOP))
    splits = rng_for(entropy, streams.stratify(streams.TOP))
    out = []
    for task, blocks in zip(tasks, counted):
        s = weights.file_source[task.file_index]
        drawn = []
        for records, _bytes in blocks:
            got = mixer.take(picks, s, records)
            strata = None
            if stratifier is not None:
                strata = tuple(int(x) for x in stratifier.take(splits, s, mixer.copies[s] * records + got))
            drawn.append(Draws(records, got, strata))
        out.append(tuple(drawn))
    return out


def weighted_scatter_task(cfg: Config, wt: WeightedTask) -> ScatterResult:
    """Pass 1 for one task of weighted sources: each block's copies placed and scattered, a chunk
    at a time, one object per chunk; returns their indexes and each block's records and bytes read."""
    task = wt.task
    segments: list[Segment] = []
    read = Fingerprint()
    counted: list[tuple[int, int]] = []
    block = None
    for b, block in enumerate(cfg.fmt.blocks(task, cfg)):
        records, nbytes = cfg.fmt.count(block)
        counted.append((records, nbytes))
        if wt.draws is not None and (b >= len(wt.draws) or wt.draws[b].records != records):
            raise InputError(f"{quote_name(task.source)}: more or fewer records than were counted before the shuffle (did the file change?)")
        if not records:
            continue
        key = streams.scatter(streams.TOP, task.file_index, task.range_index, b)
        mult, labels = block_copies(cfg.entropy, key, wt.copies, None if wt.draws is None else wt.draws[b], records)
        got, fp = scatter_copies(cfg, block, key, mult, labels, wt.chunks, wt.bounds, f"{task.object_prefix}-{b:06d}")
        segments += got
        read += fp
    if wt.draws is not None and len(counted) < len(wt.draws):
        raise InputError(f"{quote_name(task.source)}: fewer records than were counted before the shuffle (did the file change?)")
    result = ScatterResult(segments, read, counted)
    cfg.fmt.finish(result, block)
    return result


def scatter_copies(
    cfg: Config, block: Any, key: Key, mult: np.ndarray, labels: np.ndarray | None, chunks: int,
    bounds: tuple[int, ...] | None, name: str,
) -> tuple[list[Segment], Fingerprint]:
    """Scatter the copies ``mult`` of a block's records (stream ``key``, with ``--stratify`` each copy's
    split ``labels`` within its ``bounds``) in ``chunks`` pieces, one object each, named from ``name``;
    return their indexes and the multiset's fingerprint."""
    if chunks == 1 and labels is None and int(mult.min()) == int(mult.max()) == 1:
        # Every record once: scattered as without sources, so every rate 1 gives the plain run's output.
        segment, fp = cfg.fmt.scatter(block, rng_for(cfg.entropy, key), cfg.k, cfg, name)
        return [segment], fp
    segments: list[Segment] = []
    read = Fingerprint()
    first = copied = 0
    for c, (chunk, n) in enumerate(cfg.fmt.chunks(block, chunks)):
        mine = mult[first : first + n]
        first += n
        strata = None
        if labels is not None:
            assert bounds is not None
            m = int(mine.sum())
            strata = (np.asarray(bounds, np.int64), labels[copied : copied + m])
            copied += m
        rng = rng_for(cfg.entropy, streams.piece(key, c))
        segment, fp = cfg.fmt.scatter(chunk, rng, cfg.k, cfg, f"{name}-{c:04d}", Copies(mine, strata))
        segments.append(segment)
        read += fp
    return segments, read


def block_copies(entropy: int, key: Key, copies: int, drawn: Draws | None, records: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A block's copies of each record (``copies`` each, its picks placed uniformly, stream
    ``selection(key)``) and with ``--stratify`` each copy's split, in uniformly random order (stream
    ``stratify(key)``); ``drawn``: the client's draws for it (None when nothing was counted)."""
    mult = np.full(records, copies, np.int64)
    if drawn is None:
        return mult, None
    if drawn.picks:
        rng = rng_for(entropy, streams.selection(key))
        mult[rng.choice(records, drawn.picks, replace=False)] += 1
    if drawn.strata is None:
        return mult, None
    splits = len(drawn.strata)
    labels = np.repeat(np.arange(splits, dtype=np.uint8 if splits <= 1 << 8 else np.int32), drawn.strata)
    rng_for(entropy, streams.stratify(key)).shuffle(labels)
    return mult, labels


def check_inputs(weights: Weights, names: Sequence[str]) -> None:
    """The engine's inputs must be the sources' files, one each, in order."""
    if len(names) != len(weights.file_source):
        raise UsageError(
            f"{option('source')}: its {len(weights.file_source)} files were found as {len(names)} inputs; "
            "name files without pattern characters"
        )


@dataclass(frozen=True)
class Mixed:
    """What pass 1 of weighted sources made: the mixer (rates, records read and put into the
    multiset per source) and, with ``--stratify``, the stratifier (each split's copies per source)."""

    mixer: Mixer
    stratifier: Stratifier | None

    def stats(self) -> tuple[SourceStats, ...]:
        """Per source: records read, rate, and records put into the multiset."""
        return self.mixer.stats()


def plan_multiset(
    cfg: Config, weights: Weights, mixer: Mixer, by_source: Sequence[int]
) -> tuple[Config, Stratifier | None, tuple[int, ...] | None]:
    """The run's settings with the buckets sized for the multiset (``by_source``: each source's bytes,
    and at least one bucket per split with ``--stratify``), its stratifier and the splits' bucket bounds."""
    k = max(cfg.k, math.ceil(cfg.k * mixer.expected_factor(by_source)))
    stratifier = None
    if weights.stratify is not None:
        stratifier = Stratifier(weights.names, mixer.multiset_sizes(), weights.stratify)
        k = max(k, stratifier.splits)
    bounds = None if stratifier is None else tuple(int(b) for b in stratifier.bucket_bounds(k))
    return replace(cfg, k=k), stratifier, bounds


def weighted_pass(
    run_tasks: RunTasks, cfg: Config, weights: Weights, tasks: list[ScatterTask], progress: Progress,
    decoded: Callable[[Sequence[int]], Sequence[int]],
) -> tuple[Config, Mixed, list[ScatterResult]]:
    """Pass 1 of weighted sources: a counting pass first when the rates or ``--stratify`` need the
    counts, the rates solved and each block's draws made here, then every copy scattered. Returns
    the run's settings with the buckets sized for the multiset, what was mixed, and pass 1's results.
    Uncounted, each source weighs its records' bytes: ``decoded(groups)`` gives each input file's
    (a compressed one's once decoded, ``Prepared.decoded_bytes``), not its bytes on disk."""
    sizes = [t.nbytes for t in tasks]
    counted: list[BlockCounts] | None = None
    if weights.counted:
        progress.start("counting", sum(sizes))
        counted = run_tasks(count_task, cfg, tasks, sizes)
        records, by_source = source_totals(weights, tasks, counted)
        mixer = weights.mixer(records, by_source)
    else:
        by_file = decoded(weights.file_source)
        by_source = [0] * len(weights.names)
        for t in tasks:
            by_source[weights.file_source[t.file_index]] += by_file[t.file_index] if t.codec else t.nbytes
        mixer = weights.mixer(None, None)
    cfg, stratifier, bounds = plan_multiset(cfg, weights, mixer, by_source)
    draws: list[tuple[Draws, ...] | None] = [None] * len(tasks)
    if counted is not None:
        draws = list(draw_blocks(cfg.entropy, weights, mixer, stratifier, tasks, counted))
    most = mixer.most_copies()
    weighted = [
        WeightedTask(t, mixer.copies[weights.file_source[t.file_index]], most, d, bounds) for t, d in zip(tasks, draws)
    ]
    progress.start(scatter_phase(0), sum(sizes))
    results: list[ScatterResult] = run_tasks(weighted_scatter_task, cfg, weighted, sizes)
    if counted is None:
        # Nothing drawn on the client: each source's records read and copies made, from what the tasks read.
        unused = rng_for(cfg.entropy, streams.selection(streams.TOP))
        for t, r in zip(tasks, results):
            for read, _bytes in r.counted or []:
                mixer.take(unused, weights.file_source[t.file_index], read)
    mixer.check_complete()
    return cfg, Mixed(mixer, stratifier), results
