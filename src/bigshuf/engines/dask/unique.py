"""``--unique`` on the Dask engine: a dedup stage in front of the two-pass shuffle, as the local
engine's (``formats.line_unique``, ``formats.row_unique``), made of tasks.

A hashing task per pass-1 task drops the copies within each run of its blocks (lines: at most
``piece_records``; rows: a block) and scatters the rest by a hash of their bytes
(``core.dedup.bucket_ids``) into k hash buckets, one object per block, so all copies of a record
meet in one bucket, at most one per run. A dedup task per hash bucket loads it, keeps the first
copy of each record (compared byte for byte, or column by column for rows, never by hash alone)
and scatters the unique records into the shuffle's random buckets, as a pass-1 block (stream
``unique(hash bucket)``); a hash bucket too big for memory is
split again with the next level's hash inside its task, each level keeping one copy per run, so
copies shrink until the buckets fit. Pass 2 then runs as always over the unique records: their
uniform shuffle, whatever the hash does. With weighted sources a dedup task writes its unique
records grouped by source instead, for ``unique_mix`` to weigh.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...core import plan, streams
from ...core.fingerprint import Fingerprint
from ...core.streams import rng_for
from ...errors import InputError, option
from ...core.dedup import dedup_need, hash_bucket_count
from ...formats.line_unique import fits
from ...storage import remote
from ...progress import Progress, dedup_phase, scatter_phase
from .tasks import Config, Index, RunTasks, ScatterResult, ScatterTask, Segment, load
from .weights import Weights


@dataclass
class Hashed:
    """What a hashing task wrote (one object per block, by hash bucket), each block's records and
    bytes as read, and the copies it dropped within runs."""

    segments: list[Segment]
    counted: list[tuple[int, int]]
    duplicates: int
    summary: Any = None  # what the format's check across tasks needs (``ScatterResult.summary``)


@dataclass(frozen=True)
class DedupTask:
    """One top-level hash bucket: where its parts lie, its bytes and records, where its unique
    records' objects go (``prefix``) and where it is split again if too big (``scratch``)."""

    bucket: int
    where: tuple[tuple[str, int, int], ...]
    size: int
    count: int
    prefix: str
    scratch: str
    #: Weighted sources: each part's source and records, and how many sources there are (None: no sources).
    labels: tuple[tuple[int, int], ...] | None = None
    sources: int = 0


@dataclass(frozen=True)
class Leaf:
    """Weighted sources: a hash bucket deduplicated (its number at each level, ``path``), its unique
    records written grouped by source (``segment``: source ``s`` as bucket ``s``) and their bytes per source."""

    path: tuple[int, ...]
    segment: Segment
    nbytes: np.ndarray


@dataclass
class Deduplicated:
    """A dedup task's unique records scattered (one object per hash bucket it ends in), their
    fingerprint (``--verify``), the copies it dropped, and how deep it split."""

    segments: list[Segment] = field(default_factory=list)
    read: Fingerprint = field(default_factory=Fingerprint)
    duplicates: int = 0
    depth: int = 0  # the deepest level a hash bucket was split again to
    #: Weighted sources: each source's copies dropped, and the hash buckets' unique records by source.
    dropped: list[int] = field(default_factory=list)
    leaves: list[Leaf] = field(default_factory=list)


def hash_buckets(k: int) -> int:
    """Hash buckets for a run planned with ``k`` shuffle buckets: twice as many, as a bucket is
    deduplicated beside its unique copy (a bucket too big is split again, so this only sets speed)."""
    return max(2, 2 * k)


@dataclass(frozen=True)
class HashTask:
    """The hashing pass over one pass-1 task's records, into ``k`` hash buckets."""

    task: ScatterTask
    k: int


def hash_task(cfg: Config, hashing: HashTask) -> Hashed:
    """The hashing pass for one pass-1 task: each block's runs deduplicated and scattered into the
    hash buckets, written as one object per block."""
    task, k = hashing.task, hashing.k
    out = Hashed([], [], 0)
    block = None
    for b, block in enumerate(cfg.fmt.blocks(task, cfg)):
        out.counted.append(cfg.fmt.count(block))
        if not len(block):
            continue
        segment, dropped = cfg.fmt.hash_scatter(block, 0, k, cfg, f"{task.object_prefix}-{b:06d}")
        out.duplicates += dropped
        out.segments.append(segment)
    summarized = ScatterResult([], Fingerprint(), out.counted)
    cfg.fmt.finish(summarized, block)
    out.summary = summarized.summary
    return out


def dedup_task(cfg: Config, task: DedupTask) -> Deduplicated:
    """The dedup pass for one hash bucket: its unique records scattered into the shuffle's buckets
    (with weighted sources: written by source, for ``unique_mix``)."""
    result = Deduplicated(dropped=[0] * task.sources)
    _dedup(cfg, task, (task.bucket,), task.where, task.labels, task.size, task.count, result)
    return result


def _dedup(
    cfg: Config, task: DedupTask, path: tuple[int, ...], where: tuple[tuple[str, int, int], ...],
    labels: tuple[tuple[int, int], ...] | None, size: int, count: int, result: Deduplicated,
) -> None:
    """Deduplicate the hash bucket ``path`` (its number at each level) and scatter its unique
    records (with weighted sources, whose parts' ``labels`` give their sources: write them by
    source); split it with the next level's hash first if it does not fit in memory."""
    name = "-".join(map(str, path))
    if count == 1 or fits(size, count, cfg.limit):
        block = cfg.fmt.decode(load(where, size), [hi - lo for _, lo, hi in where])
        if labels is not None:
            _by_source(cfg, task, path, block, labels, count, result)
            return
        unique, kept = cfg.fmt.dedup(block, count, f"hash bucket {name}")
        result.duplicates += count - len(kept)
        del block
        segment, fp = cfg.fmt.scatter(unique, rng_for(cfg.entropy, streams.unique(*path)), cfg.k, cfg, f"{task.prefix}-{name}")
        result.segments.append(segment)
        result.read += fp
        return
    level = len(path)
    if level > plan.MAX_DEPTH:
        raise InputError(
            f"copies could not be split below {plan.format_size(cfg.limit)} after {level} passes: {option('unique')} "
            f"needs the records repeated to be shorter than about a quarter of {option('memory')}; raise {option('memory')}"
        )
    result.depth = max(result.depth, level)
    k = hash_bucket_count(dedup_need(size, count), cfg.limit)
    segments = []
    group_sources = []
    for t, (group, source) in enumerate(_groups(where, labels, plan.read_capacity(cfg.limit) // 2)):
        sizes = [hi - lo for _, lo, hi in group]
        block = cfg.fmt.decode(load(group, sum(sizes)), sizes)
        segment, dropped = cfg.fmt.hash_scatter(block, level, k, cfg, remote.join(task.scratch, name, f"{t:06d}"))
        result.duplicates += dropped
        if labels is not None:
            result.dropped[source] += dropped  # copies within a group are of its one source
        segments.append(segment)
        group_sources.append(source)
        del block
    below = Index(segments, k, cfg.limit)
    for piece in map(below.piece, below.level.slices(0, below.level.total)):
        s = piece.bucket
        held = None
        if labels is not None:
            held = tuple((group_sources[t], int(below.counts[t, s])) for t in below.holding(s))
        _dedup(cfg, task, (*path, s), piece.parts, held, piece.size, piece.count, result)


def _by_source(
    cfg: Config, task: DedupTask, path: tuple[int, ...], block: object, labels: tuple[tuple[int, int], ...], count: int,
    result: Deduplicated,
) -> None:
    """Weighted sources: the first copy of each record of a hash bucket read back (its parts' sources
    and records ``labels``, in input order, so a copy held by two sources counts for the first),
    written grouped by source; each source's copies dropped are counted."""
    name = "-".join(map(str, path))
    unique, kept = cfg.fmt.dedup(block, count, f"hash bucket {name}")
    of = np.repeat(np.array([s for s, _c in labels], np.int64), [c for _s, c in labels])
    ids = of[kept]
    gone = np.bincount(of, minlength=task.sources) - np.bincount(ids, minlength=task.sources)
    result.dropped = [a + int(b) for a, b in zip(result.dropped, gone)]
    result.duplicates += count - len(kept)
    segment, nbytes = cfg.fmt.write_groups(unique, ids, task.sources, f"{task.prefix}-{name}")
    result.leaves.append(Leaf(path, segment, nbytes))


def _groups(
    where: Sequence[tuple[str, int, int]], labels: Sequence[tuple[int, int]] | None, most: int
) -> Iterator[tuple[list[tuple[str, int, int]], int]]:
    """Consecutive parts of a bucket joined into runs of up to ``most`` bytes (one part at least), each
    deduplicated at once when the bucket is split again: a bucket's parts each hold one copy of a
    record at most, so only runs across parts make the copies fewer at the next level (as the local
    engine joins batches, ``row_unique._groups``). With weighted sources (``labels``) a run holds one
    source's parts, which it yields with them (else 0)."""
    group: list[tuple[str, int, int]] = []
    held = source = 0
    for i, part in enumerate(where):
        mine = 0 if labels is None else labels[i][0]
        if group and (held + part[2] - part[1] > most or mine != source):
            yield group, source
            group, held = [], 0
        group.append(part)
        held += part[2] - part[1]
        source = mine
    if group:
        yield group, source


def dedup_stage(
    run_tasks: RunTasks, cfg: Config, tasks: list[ScatterTask], progress: Progress, root: str,
    weights: Weights | None,
) -> tuple[list[Hashed], list[Deduplicated]]:
    """The hashing tasks, then a dedup task per hash bucket: with weighted sources its unique
    records written by source, else scattered into the shuffle's buckets. Returns both kinds of
    task's results."""
    k = hash_buckets(cfg.k)
    sizes = [t.nbytes for t in tasks]
    progress.start(dedup_phase(0), sum(sizes))
    hashed: list[Hashed] = run_tasks(hash_task, cfg, [HashTask(t, k) for t in tasks], sizes)
    found = Index([s for h in hashed for s in h.segments], k, cfg.limit)
    found_source = [] if weights is None else [weights.file_source[t.file_index] for t, h in zip(tasks, hashed) for _s in h.segments]
    dedups = [
        DedupTask(p.bucket, p.parts, p.size, p.count, remote.join(root, "p1", "unique"), remote.join(root, "dedup"),
                  None if weights is None else
                  tuple((found_source[t], int(found.counts[t, p.bucket])) for t in found.holding(p.bucket)),
                  0 if weights is None else len(weights.names))
        for p in map(found.piece, found.level.slices(0, found.level.total))
    ]
    progress.start(scatter_phase(0) if weights is None else "dedup by source", int(found.level.sizes.sum()))
    done: list[Deduplicated] = run_tasks(dedup_task, cfg, dedups, [d.size for d in dedups])
    return hashed, done


def unique_pass(
    run_tasks: RunTasks, cfg: Config, tasks: list[ScatterTask], progress: Progress, root: str
) -> tuple[list[ScatterResult], list[Segment], Fingerprint, int, int]:
    """``--unique``'s dedup stage in front of pass 1: the hashing tasks, then a dedup
    task per hash bucket scattering its unique records into the shuffle's buckets. Returns each
    pass-1 task's blocks as read (for the manifest), the shuffle's pass-1 objects, the unique
    records' fingerprint, the copies dropped and the passes the stage added (one per hash level)."""
    hashed, done = dedup_stage(run_tasks, cfg, tasks, progress, root, None)
    results = [ScatterResult([], Fingerprint(), h.counted, h.summary) for h in hashed]
    segments = [s for d in done for s in d.segments]
    duplicates = sum(h.duplicates for h in hashed) + sum(d.duplicates for d in done)
    passes = 1 + max((d.depth for d in done), default=0)
    return results, segments, sum((d.read for d in done), Fingerprint()), duplicates, passes
