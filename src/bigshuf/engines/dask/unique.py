"""``--unique`` on the Dask engine (lines): a dedup stage in front of the two-pass shuffle, as the
local engine's (``formats.line_unique``), made of tasks.

A hashing task per pass-1 task drops the copies within each run of at most ``piece_records``
records of its blocks and scatters the rest by a hash of their bytes (``core.dedup.bucket_ids``)
into k hash buckets, one object per block, so all copies of a record meet in one bucket, at most
one per run. A dedup task per hash bucket loads it, keeps the first copy of each record (compared
byte for byte, never by hash alone) and scatters the unique records into the shuffle's random
buckets, as a pass-1 block (stream ``unique(hash bucket)``); a hash bucket too big for memory is
split again with the next level's hash inside its task, each level keeping one copy per run, so
copies shrink until the buckets fit. Pass 2 then runs as always over the unique records: their
uniform shuffle, whatever the hash does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...core import plan, streams
from ...core.dedup import bucket_ids, first_copies, gather
from ...core.fingerprint import Fingerprint, record_hashes
from ...core.records import RecordFormat, find_offsets
from ...core.scatter import Scattered, regroup
from ...core.streams import rng_for
from ...errors import InputError, option
from ...formats.line_unique import fits, hash_bucket_count
from ...storage import remote
from .lines import LineTasks, _records, _write_parts
from ...progress import Progress, dedup_phase, scatter_phase
from .tasks import Config, RunTasks, ScatterResult, ScatterTask, Segment, index, load, parts


@dataclass
class Hashed:
    """What a hashing task wrote (one object per block, by hash bucket), each block's records and
    bytes as read, and the copies it dropped within runs."""

    segments: list[Segment]
    counted: list[tuple[int, int]]
    duplicates: int


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


@dataclass
class Deduplicated:
    """A dedup task's unique records scattered (one object per hash bucket it ends in), their
    fingerprint (``--verify``), the copies it dropped, and how deep it split."""

    segments: list[Segment] = field(default_factory=list)
    read: Fingerprint = field(default_factory=Fingerprint)
    duplicates: int = 0
    depth: int = 0  # the deepest level a hash bucket was split again to


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
    fmt = _line_format(cfg)
    task, k = hashing.task, hashing.k
    out = Hashed([], [], 0)
    for b, block in enumerate(cfg.fmt.blocks(task, cfg)):
        out.counted.append(cfg.fmt.count(block))
        if not len(block):
            continue
        scattered, dropped = _hash_runs(block, fmt, cfg.limit, 0, k)
        out.duplicates += dropped
        out.segments.append(_write_parts(scattered, k, f"{task.object_prefix}-{b:06d}"))
    return out


def dedup_task(cfg: Config, task: DedupTask) -> Deduplicated:
    """The dedup pass for one hash bucket: its unique records scattered into the shuffle's buckets."""
    result = Deduplicated()
    _dedup(cfg, task, (task.bucket,), task.where, task.size, task.count, result)
    return result


def _dedup(
    cfg: Config, task: DedupTask, path: tuple[int, ...], where: tuple[tuple[str, int, int], ...], size: int, count: int,
    result: Deduplicated,
) -> None:
    """Deduplicate the hash bucket ``path`` (its number at each level) and scatter its unique
    records; split it with the next level's hash first if it does not fit in memory."""
    fmt = _line_format(cfg)
    name = "-".join(map(str, path))
    if count == 1 or fits(size, count, cfg.limit):
        unique = load(where, size)
        if count > 1:
            offsets = _records(unique, count, fmt, f"hash bucket {name}")
            kept = first_copies(unique, offsets)
            result.duplicates += count - len(kept)
            unique = gather(unique, offsets, kept)[0]
            del offsets, kept
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
    k = hash_bucket_count(size, count, cfg.limit, "")
    segments = []
    for t, part in enumerate(where):
        scattered, dropped = _hash_runs(load([part], part[2] - part[1]), fmt, cfg.limit, level, k)
        result.duplicates += dropped
        segments.append(_write_parts(scattered, k, remote.join(task.scratch, name, f"{t:06d}")))
    counts, bounds = index(segments, k)
    sizes = np.diff(bounds, axis=1).sum(axis=0)
    for s in np.flatnonzero(counts.sum(axis=0)).tolist():
        below = parts(segments, counts, bounds, s)
        _dedup(cfg, task, (*path, s), below, int(sizes[s]), int(counts[:, s].sum()), result)


def _hash_runs(block: np.ndarray, fmt: RecordFormat, limit: int, level: int, k: int) -> tuple[list[Scattered], int]:
    """A block's runs of at most ``piece_records`` records, each without its own copies, regrouped
    by the hash buckets of ``level``; and how many copies were dropped."""
    out: list[Scattered] = []
    dropped = pos = 0
    most = plan.piece_records(limit)
    while pos < len(block):
        offsets = find_offsets(block[pos:], fmt, most)
        unit = block[pos : pos + int(offsets[-1])]
        hashes = record_hashes(unit, offsets)
        kept = first_copies(unit, offsets, hashes)
        ids = np.full(len(offsets) - 1, k, np.uint16 if k < 1 << 16 else np.uint32)
        ids[kept] = bucket_ids(hashes[kept], level, k)
        dropped += len(ids) - len(kept)
        out.append(regroup(unit, offsets, ids, k, k))
        pos += len(unit)
    return out, dropped


def _line_format(cfg: Config) -> RecordFormat:
    """The separator of a line run's tasks (``--unique`` on the Dask engine is for lines)."""
    assert isinstance(cfg.fmt, LineTasks)
    return cfg.fmt.fmt


def unique_pass(
    run_tasks: RunTasks, cfg: Config, tasks: list[ScatterTask], progress: Progress, root: str
) -> tuple[list[ScatterResult], list[Segment], Fingerprint, int, int]:
    """``--unique``'s dedup stage in front of pass 1: the hashing tasks, then a dedup
    task per hash bucket scattering its unique records into the shuffle's buckets. Returns each
    pass-1 task's blocks as read (for the manifest), the shuffle's pass-1 objects, the unique
    records' fingerprint, the copies dropped and the passes the stage added (one per hash level)."""
    k = hash_buckets(cfg.k)
    sizes = [t.nbytes for t in tasks]
    progress.start(dedup_phase(0), sum(sizes))
    hashed: list[Hashed] = run_tasks(hash_task, cfg, [HashTask(t, k) for t in tasks], sizes)
    found = [s for h in hashed for s in h.segments]
    counts, bounds = index(found, k)
    bucket_counts = counts.sum(axis=0)
    bucket_sizes = np.diff(bounds, axis=1).sum(axis=0)
    used = np.flatnonzero(bucket_counts).tolist()
    dedups = [
        DedupTask(j, parts(found, counts, bounds, j), int(bucket_sizes[j]), int(bucket_counts[j]),
                  remote.join(root, "p1", "unique"), remote.join(root, "dedup"))
        for j in used
    ]
    progress.start(scatter_phase(0), int(bucket_sizes.sum()))
    done: list[Deduplicated] = run_tasks(dedup_task, cfg, dedups, [d.size for d in dedups])
    results = [ScatterResult([], Fingerprint(), h.counted) for h in hashed]
    segments = [s for d in done for s in d.segments]
    duplicates = sum(h.duplicates for h in hashed) + sum(d.duplicates for d in done)
    passes = 1 + max((d.depth for d in done), default=0)
    return results, segments, sum((d.read for d in done), Fingerprint()), duplicates, passes
