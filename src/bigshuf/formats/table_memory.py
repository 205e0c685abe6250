"""Rows that fit in memory, shuffled there: the whole input when every row is held (``--unique``'s
first copies kept first, and with weighted sources the mix planned from what is left), or one of
pass 2's buckets. The rows are merged into a few large chunks, permuted and emitted in pieces.

Functions of the ``TableRun`` they work for, so that ``table_run`` keeps to reading, choosing
the path and the driver's hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ..core import mix, streams
from ..core.streams import rng_for
from .dedup_stage import dropped_per_source
from .row_unique import first_rows, source_counts, source_labels, table_hashes
from .table_mix import Block, fits_with_copies
from .tables import _drain, consolidate, take_rows

if TYPE_CHECKING:
    from .table_run import TableRun


def unique_mix_in_memory(run: TableRun, held: list[Block]) -> tuple[int, np.ndarray, np.ndarray | None] | None:
    """``--unique`` with weighted sources, every row held (each batch with its rows per source):
    the first copy of each row in input order kept, the mix planned from each source's rows left,
    and if their multiset fits, ``held`` replaced by the rows kept; returns their bytes, copies and
    (``--stratify``) splits, or None (nothing planned: the run goes through the dedup pass)."""
    table = pa.Table.from_batches([b[0] for b in held], schema=run.table_out.schema.remove_metadata())
    sizes = np.concatenate([np.empty(0, np.int64), *(b[1] for b in held)])
    labels = np.concatenate([np.empty(0, np.uint16), *(source_labels(b[2]) for b in held)])
    kept = first_rows(table, table_hashes(table))
    n = len(run.request.sources)
    dropped = dropped_per_source(labels, kept, n)
    labels = labels[kept]
    nbytes = int(sizes[kept].sum())
    counts = np.bincount(labels, minlength=n).tolist()
    weights = run.weighed_bytes(table, kept, sizes[kept].astype(np.float64))
    run._plan_mix((counts, np.bincount(labels, weights, n).astype(np.int64).tolist()))
    assert run.mixer is not None
    run.mixer.dropped = dropped
    totals = source_counts(labels)
    mult = run._copies(streams.selection(streams.IN_MEMORY), totals)
    if not fits_with_copies(nbytes, len(kept), mult, run.limit):
        run.mixer, run.stratifier, run.out.split_totals = None, None, None
        return None
    split = None if run.stratifier is None else run._split_labels(streams.stratify(streams.IN_MEMORY), totals, mult)
    run.duplicates = table.num_rows - len(kept)
    unique = table.take(kept).combine_chunks() if len(kept) < table.num_rows else table
    held[:] = [(batch, None) for batch in unique.to_batches()]
    return nbytes, mult, split


def unique_in_memory(run: TableRun, held: list[Block]) -> int:
    """``--unique``, every row held: each batch of ``held`` replaced by its rows that are the first
    of their kind in the whole input; returns the bytes of the rows kept."""
    table = pa.Table.from_batches([b[0] for b in held], schema=run.table_out.schema.remove_metadata())
    sizes = np.concatenate([np.empty(0, np.int64), *(b[1] for b in held)])
    kept = first_rows(table, table_hashes(table))
    run.duplicates = table.num_rows - len(kept)
    unique = table.take(kept).combine_chunks() if len(kept) < table.num_rows else table
    held[:] = [(batch, None) for batch in unique.to_batches()]
    return int(sizes[kept].sum())


def in_memory(
    run: TableRun, batches: list[pa.RecordBatch], nbytes: int, mult: np.ndarray | None = None, labels: np.ndarray | None = None
) -> None:
    """Every row held: shuffled (with weighted sources, each row as many times as ``mult`` says) and
    written; with ``--stratify`` each split's copies (``labels``) shuffled on their own, splits in order."""
    table = pa.Table.from_batches(consolidate(_drain(batches), run.limit), schema=run.table_out.schema.remove_metadata())
    index = None if mult is None else mix.copies_index(mult)
    if mult is not None and run.request.verify:
        run.read_fingerprint += run.rows_fingerprint(table, mult)
    elif (run.request.unique or run.resume_name is not None) and run.request.verify:
        # --unique: the unique rows; --resume (Megatron): what was read, counted as scattered or held here.
        run.read_fingerprint += run.rows_fingerprint(table)
    count = run.wanted(table.num_rows if index is None else len(index))
    run.begin_output(count)
    if labels is not None:
        if index is None:
            index = np.arange(table.num_rows, dtype=np.int32 if table.num_rows < 2**31 else np.int64)
        assert run.stratifier is not None
        for v in range(run.stratifier.splits):
            part = index[labels == v]
            emit_permuted(run, table, nbytes, rng_for(run.entropy, streams.stratum(v)), len(part), part)
        run.records += count
        return
    emit_permuted(run, table, nbytes, rng_for(run.entropy, streams.IN_MEMORY), count, index)
    run.records += count


def emit_permuted(
    run: TableRun, table: pa.Table, nbytes: int, rng: np.random.Generator, count: int, index: np.ndarray | None = None
) -> None:
    """Write ``count`` rows of ``table`` (``nbytes`` by ``row_sizes``) in uniformly random order
    (a uniform sample if fewer than all); with ``index``, of the multiset of rows it lists."""
    n = table.num_rows
    if index is not None:
        if count == len(index):
            order = index.copy()
            rng.shuffle(order)
        else:
            order = index[rng.choice(len(index), size=count, replace=False)]
    elif count == n:
        order = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
        rng.shuffle(order)
    else:
        order = rng.choice(n, size=count, replace=False)
    chunk = max(1, run.piece * n // max(1, nbytes)) if n else 1
    batches = table.to_batches()
    starts = np.zeros(len(batches) + 1, np.int64)
    np.cumsum([b.num_rows for b in batches], out=starts[1:])
    gathers = ((lambda lo=lo: take_rows(batches, starts, order[lo : lo + chunk])) for lo in range(0, count, chunk))
    for rows in run.workers.sized(nbytes).ordered(gathers):
        run.emit(rows)
