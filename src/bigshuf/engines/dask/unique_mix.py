"""``--unique`` with weighted sources on the Dask engine, with the local engine's semantics: copies
are dropped first (the first copy in input order is kept, so a record held by two sources counts
for the first of them as given), then the rates, the mix and ``--stratify`` apply to each source's
records left.

The dedup stage (``unique.dedup_stage``) writes each hash bucket's unique records grouped by
source and counts each source's copies dropped. The client then knows each source's unique
records and bytes: it solves the rates and draws, for each hash bucket's records of each source
in turn, how many get a copy more and how many of its copies go to each split, as
``weights.draw_blocks`` draws for the blocks of a run without ``--unique`` (streams
``selection(TOP)``, ``stratify(TOP)``). A task per hash bucket then places those picks and
scatters every copy into the shuffle's buckets, each source's records a block of stream
``unique_source(source, hash bucket)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core import streams
from ...core.fingerprint import Fingerprint
from ...core.streams import rng_for
from ...progress import Progress, scatter_phase
from ...storage import remote
from .tasks import Config, RunTasks, ScatterResult, ScatterTask, Segment, load
from .unique import Leaf, dedup_stage
from .weights import Draws, Mixed, Weights, block_copies, plan_multiset, scatter_copies


@dataclass(frozen=True)
class SourceBlock:
    """One source's unique records of one hash bucket: where they lie, the stream that names them,
    their copies each and the client's draws."""

    where: tuple[str, int, int]
    key: tuple[int, ...]
    copies: int
    drawn: Draws


@dataclass(frozen=True)
class LeafTask:
    """The copies of one hash bucket's unique records, source by source, scattered into the
    shuffle's buckets (each block in ``chunks`` pieces, ``bounds``: the splits' with ``--stratify``)."""

    blocks: tuple[SourceBlock, ...]
    chunks: int
    bounds: tuple[int, ...] | None
    prefix: str
    nbytes: int


def leaf_task(cfg: Config, task: LeafTask) -> ScatterResult:
    """Scatter every copy of a hash bucket's unique records, a source's records at a time."""
    segments: list[Segment] = []
    read = Fingerprint()
    for b, block in enumerate(task.blocks):
        name, lo, hi = block.where
        records = cfg.fmt.decode(load([block.where], hi - lo), [hi - lo])
        mult, labels = block_copies(cfg.entropy, block.key, block.copies, block.drawn, block.drawn.records)
        got, fp = scatter_copies(cfg, records, block.key, mult, labels, task.chunks, task.bounds, f"{task.prefix}-{b:04d}")
        segments += got
        read += fp
        del records
    return ScatterResult(segments, read)


def unique_weighted_pass(
    run_tasks: RunTasks, cfg: Config, weights: Weights, tasks: list[ScatterTask], progress: Progress, root: str
) -> tuple[Config, Mixed, list[ScatterResult], list[Segment], Fingerprint, int, int]:
    """``--unique`` with weighted sources in front of pass 2: the dedup stage, the rates solved on
    each source's unique records, then their copies scattered. Returns the run's settings (buckets
    sized for the multiset), what was mixed, each pass-1 task's blocks as read (for the manifest),
    the shuffle's pass-1 objects, the multiset's fingerprint, the copies dropped and the passes added."""
    hashed, done = dedup_stage(run_tasks, cfg, tasks, progress, root, weights)
    n = len(weights.names)
    dropped = [0] * n
    for task, h in zip(tasks, hashed):
        dropped[weights.file_source[task.file_index]] += h.duplicates  # copies within a run: of its file's source
    for d in done:
        dropped = [a + b for a, b in zip(dropped, d.dropped)]
    leaves: list[Leaf] = [leaf for d in done for leaf in d.leaves]
    records = np.zeros(n, np.int64)
    nbytes = np.zeros(n, np.int64)
    for leaf in leaves:
        records += leaf.segment.counts
        nbytes += leaf.nbytes
    mixer = weights.mixer([int(r) for r in records], [int(b) for b in nbytes])
    mixer.dropped = dropped
    cfg, stratifier, bounds = plan_multiset(cfg, weights, mixer, [int(b) for b in nbytes])
    picks = rng_for(cfg.entropy, streams.selection(streams.TOP))
    splits = rng_for(cfg.entropy, streams.stratify(streams.TOP))
    scatters = []
    for t, leaf in enumerate(leaves):
        blocks = []
        for s in np.flatnonzero(leaf.segment.counts).tolist():
            c = int(leaf.segment.counts[s])
            got = mixer.take(picks, s, c)
            strata = None
            if stratifier is not None:
                strata = tuple(int(x) for x in stratifier.take(splits, s, mixer.copies[s] * c + got))
            where = (leaf.segment.name, int(leaf.segment.bounds[s]), int(leaf.segment.bounds[s + 1]))
            blocks.append(SourceBlock(where, streams.unique_source(s, *leaf.path), mixer.copies[s], Draws(c, got, strata)))
        size = int(leaf.segment.bounds[-1])
        scatters.append(LeafTask(tuple(blocks), mixer.most_copies(), bounds, remote.join(root, "p1", f"mixed-{t:06d}"), size))
    mixer.check_complete()
    sizes = [t.nbytes for t in scatters]
    progress.start(scatter_phase(0), sum(sizes))
    scattered: list[ScatterResult] = run_tasks(leaf_task, cfg, scatters, sizes)
    results = [ScatterResult([], Fingerprint(), h.counted, h.summary) for h in hashed]
    segments = [s for r in scattered for s in r.segments]
    passes = 2 + max((d.depth for d in done), default=0)  # the hashing pass, each level split again, the copies scattered
    return cfg, Mixed(mixer, stratifier), results, segments, sum((r.read for r in scattered), Fingerprint()), sum(dropped), passes
