"""``--unique`` for table rows: which rows are first copies, compared exactly as the row fingerprint
tells rows apart, and a dedup stage of hash buckets in front of the two-pass shuffle.

Two rows are the same when every column's values are: both null (whatever bytes lie under a
null), or both valid with the same bytes: fixed-width values by their bit pattern (so ``-0.0``
and ``0.0`` differ, and NaNs with different payloads differ, as ``--verify`` tells them apart),
strings and binaries byte for byte, lists element by element (same length), structs field by
field, dictionary values by what they decode to. Rows are grouped by their 64-bit row hash
(``rowhash.row_hashes``) and compared within a group, so a hash collision never merges two.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..core import plan
from ..core.checkpoint import advice
from ..core.dedup import bucket_ids, dedup_need, hash_bucket_count, keeps_hashes
from ..core.records import list_spans
from ..core.buckets import BucketSet
from ..core.scatter import Scattered
from ..errors import InputError, TempSpaceError, UsageError, option
from ..progress import dedup_phase, scatter_phase
from ..quoting import quote_arg, quote_name
from ..storage.tempspace import TempSpace
from .arrow_resume import ResumableTableBuckets
from .rowhash import row_hashes
from .table_mix import Block
from .tables import TableBuckets, _combine, _rebatch, consolidate, row_sizes
from .dedup_stage import TOP, DedupStage

if TYPE_CHECKING:
    from .table_run import TableRun

#: Row pairs compared at once (bounds the copies a comparison takes).
COMPARE_ROWS = 1 << 16


def values_equal(a: Any, b: Any) -> np.ndarray:
    """Whether value ``a[i]`` is the same as ``b[i]`` (arrays of one type and length), for every i."""
    t = a.type
    if isinstance(t, pa.BaseExtensionType):
        a, b, t = a.storage, b.storage, t.storage_type
    if pa.types.is_dictionary(t):
        a, b = a.dictionary_decode(), b.dictionary_decode()
        t = a.type
    if pa.types.is_string_view(t) or pa.types.is_binary_view(t):
        wide = pa.large_binary() if pa.types.is_binary_view(t) else pa.large_string()
        a, b, t = a.cast(wide), b.cast(wide), wide
    n = len(a)
    if pa.types.is_null(t):
        return np.ones(n, np.bool_)
    if pa.types.is_struct(t):
        eq = np.ones(n, np.bool_)
        for i in range(t.num_fields):
            eq &= values_equal(a.field(i), b.field(i))
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t) or pa.types.is_fixed_size_list(t):
        eq = _lists_equal(a, b)
    elif pa.types.is_binary(t) or pa.types.is_string(t) or pa.types.is_large_binary(t) or pa.types.is_large_string(t):
        eq = pc.fill_null(pc.equal(a, b), False).to_numpy(zero_copy_only=False)
    elif pa.types.is_boolean(t):
        eq = pc.fill_null(pc.equal(a, b), False).to_numpy(zero_copy_only=False)
    elif getattr(t, "bit_width", 0) and t.bit_width % 8 == 0:
        eq = np.all(_fixed_bytes(a) == _fixed_bytes(b), axis=1)
    else:
        raise UsageError(f"{option('unique')} cannot compare a column of type {t}")
    valid_a, valid_b = _valid(a), _valid(b)
    return np.where(valid_a & valid_b, eq, ~valid_a & ~valid_b)


def check_comparable(schema: pa.Schema) -> None:
    """Refuse, before anything is read, a schema with a column whose values ``--unique`` cannot compare."""
    def comparable(t: pa.DataType) -> bool:
        if isinstance(t, pa.BaseExtensionType):
            return comparable(t.storage_type)
        if pa.types.is_dictionary(t):
            return comparable(t.value_type)
        if pa.types.is_struct(t):
            return all(comparable(t.field(i).type) for i in range(t.num_fields))
        if pa.types.is_map(t):
            return comparable(t.key_type) and comparable(t.item_type)
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            return comparable(t.value_type)
        flat = (pa.types.is_null, pa.types.is_boolean, pa.types.is_string, pa.types.is_large_string, pa.types.is_binary,
                pa.types.is_large_binary, pa.types.is_string_view, pa.types.is_binary_view)
        if any(test(t) for test in flat):
            return True
        try:
            return bool(t.bit_width) and t.bit_width % 8 == 0
        except ValueError:  # pyarrow's answer for types of no fixed width (unions, run-end encoded)
            return False

    for field in schema:
        if not comparable(field.type):
            raise UsageError(f"{option('unique')} cannot compare column {quote_arg(field.name)} of type {field.type}")


def _valid(arr: Any) -> np.ndarray:
    """Which values of ``arr`` are not null."""
    if not arr.null_count:
        return np.ones(len(arr), np.bool_)
    return np.asarray(arr.is_valid())


def _fixed_bytes(arr: Any) -> np.ndarray:
    """The bytes of each fixed-width value of ``arr``, a row each."""
    width = arr.type.bit_width // 8
    n = len(arr)
    data = np.frombuffer(arr.buffers()[1], np.uint8)[arr.offset * width : (arr.offset + n) * width]
    return data.reshape(n, width)


def _lists_equal(a: Any, b: Any) -> np.ndarray:
    """Whether list ``a[i]`` has the length and the elements of ``b[i]``, for every i (nulls aside)."""
    offsets_a, values_a = list_spans(a)
    offsets_b, values_b = list_spans(b)
    lengths = np.diff(offsets_a)
    eq: np.ndarray = lengths == np.diff(offsets_b)
    both = np.flatnonzero(eq & (lengths > 0))
    if not len(both):
        return eq
    sizes = lengths[both]
    total = int(sizes.sum())
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    same = values_equal(values_a.take(np.repeat(offsets_a[both], sizes) + within), values_b.take(np.repeat(offsets_b[both], sizes) + within))
    wrong = np.add.reduceat((~same).astype(np.int64), np.cumsum(sizes) - sizes)
    eq[both] = wrong == 0
    return eq


def rows_equal(table: pa.Table, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether row ``a[i]`` of ``table`` is the same as row ``b[i]``, for every i (exact)."""
    eq = np.ones(len(a), np.bool_)
    for lo in range(0, len(a), COMPARE_ROWS):
        part = slice(lo, lo + COMPARE_ROWS)
        for column in table.columns:
            left = column.take(a[part]).combine_chunks()
            right = column.take(b[part]).combine_chunks()
            eq[part] &= values_equal(left, right)
    return eq


def table_hashes(table: pa.Table) -> np.ndarray:
    """The row hash of every row of ``table``."""
    parts = [row_hashes(batch) for batch in table.to_batches()]
    return np.concatenate([np.empty(0, np.uint64), *parts])


def first_rows(table: pa.Table, hashes: np.ndarray) -> np.ndarray:
    """Indices, ascending, of the rows of ``table`` that are the first of their kind in it (``hashes``: their row hashes)."""
    n = table.num_rows
    if n < 2:
        return np.arange(n, dtype=np.int64)
    order = np.argsort(hashes)
    sorted_h = hashes[order]
    same = np.flatnonzero(sorted_h[1:] == sorted_h[:-1])
    if not len(same):
        return np.arange(n, dtype=np.int64)
    runs = np.flatnonzero(sorted_h[1:] != sorted_h[:-1]) + 1
    keep = np.zeros(n, np.bool_)
    keep[np.minimum.reduceat(order, np.concatenate(([0], runs)))] = True
    equal = rows_equal(table, order[same], order[same + 1])
    for value in np.unique(sorted_h[same[~equal]]).tolist():
        # A hash shared by distinct rows: its group is settled row by row.
        firsts: list[int] = []
        for i in np.flatnonzero(hashes == np.uint64(value)).tolist():
            keep[i] = not firsts or not rows_equal(table, np.full(len(firsts), i), np.array(firsts)).any()
            if keep[i]:
                firsts.append(i)
    kept: np.ndarray = np.flatnonzero(keep)
    return kept


def hash_buckets(nbytes: int, nrows: int, limit: int, held: int = 0) -> int:
    """Hash buckets of a level of ``nbytes`` in ``nrows`` rows, beside ``held`` open bucket files of pass 1."""
    return hash_bucket_count(dedup_need(nbytes, nrows), limit, held=held)


def fits(nbytes: int, nrows: int, limit: int) -> bool:
    """Whether rows can be deduplicated in memory: they, their unique copy and the bookkeeping, within
    the share of the limit the shuffle's pass 1 leaves (as for lines)."""
    return dedup_need(nbytes, nrows) <= plan.read_capacity(limit)


def source_labels(counts: list[tuple[int, int]]) -> np.ndarray:
    """Each row's source, from a run of rows' ``(source, count)`` in order."""
    return np.repeat(np.array([s for s, _c in counts], np.uint16), [c for _s, c in counts])


def source_counts(labels: np.ndarray) -> list[tuple[int, int]]:
    """A run of rows' ``(source, count)`` in order, from each row's source (ascending)."""
    counts = np.bincount(labels) if len(labels) else np.zeros(0, np.int64)
    return [(s, int(counts[s])) for s in np.flatnonzero(counts).tolist()]


class RowDedup(DedupStage):
    """The dedup stage of one ``--unique`` table run: rows scattered by hash into buckets (each batch's
    own copies dropped first), each bucket then deduplicated in memory, or split again a level deeper.

    With ``sources`` weighted sources each row's source travels with it (a bucket holds its rows in
    input order, so its rows per source are counts): the first copy in input order is kept, and each
    source's copies dropped are counted (``dropped``)."""

    repeated = "the rows repeated to be smaller than about an eighth"
    run: TableRun

    def __init__(self, run: TableRun, temp: TempSpace, sources: int = 0) -> None:
        super().__init__(run, temp, sources)
        # With sources, each level's rows per bucket and source (by the level's directory), and the
        # buckets a counting pass split one level deeper, to be read from there by the next.
        self.per_source: dict[str, np.ndarray] = {}
        self.below: dict[str, dict[int, TableBuckets]] = {}
        # Each level's rows' hashes, bucket by bucket in the rows' order (None: not kept, see ``keeps_hashes``).
        self.hashes: dict[str, BucketSet | None] = {}

    def bucket_bytes(self, buckets: Any) -> int:
        """The bytes the hash ``buckets`` hold."""
        return int(buckets.sizes.sum())

    def scatter(self, blocks: Iterator[Any], nbytes: int, nrows: int) -> TableBuckets:
        """The input's ``blocks`` (about ``nbytes`` of ``nrows`` rows; with sources each with its rows
        per source) scattered into the top level's hash buckets."""
        labelled = ((b[0], b[1], source_labels(b[2]) if self.sources else None) for b in blocks)
        buckets = self._fill(labelled, nbytes, nrows, 0, TOP)
        if self.keep_top:
            assert isinstance(buckets, ResumableTableBuckets)
            hashes = self.hashes[buckets.directory]
            self.run.save_checkpoint(dedup={
                "k": buckets.k, "buckets": buckets.state(), "hashes": None if hashes is None else hashes.state(),
                "per_source": self.per_source[buckets.directory].tolist() if self.sources else None,
            })
        return buckets

    def resume(self, blocks: Iterator[Any]) -> TableBuckets:
        """``--resume`` past the dedup pass: its hash buckets (and hashes) as the (validated) checkpoint
        left them, the input's ``blocks`` read again only to count each source's rows, from which the
        copies the pass dropped follow (refused if the buckets hold more than was read)."""
        run = self.run
        state = run.state["dedup"]
        k, directory, why = int(state["k"]), os.path.join(self.temp.path, TOP), advice(run.state_dir)
        buckets = ResumableTableBuckets(directory, k, run.table_out.schema, run.request.compress_temp, run.piece, fresh=False)
        buckets.advice = why
        buckets.restore(state["buckets"], 0, True)
        hashes = None
        if state["hashes"] is not None:  # kept as written, whatever the limit on open files now
            hashes = BucketSet(f"{directory}-hashes", k, compress=run.request.compress_temp, fresh=False)
            hashes.advice = why
            hashes.restore(state["hashes"], 0, True)
        self.hashes[directory] = hashes
        per_source = self.per_source[directory] = np.array(state["per_source"] or np.zeros((k, 0)), np.int64).reshape(k, -1)
        read = np.zeros(max(1, self.sources), np.int64)
        for block in blocks:
            if self.sources:
                for s, c in block[2]:
                    read[s] += c
            else:
                read[0] += block[0].num_rows
        kept = per_source.sum(axis=0) if self.sources else buckets.records.sum(keepdims=True)
        self.settle_resumed(k, kept, read)
        return buckets

    def unique(self, buckets: TableBuckets) -> Generator[Block, None, None]:
        """The unique rows of the top level's hash ``buckets``, in batches with their row sizes (and
        with sources, their rows per source, as pass 1 takes weighted batches)."""
        self.run.progress.start(scatter_phase(0), int(buckets.sizes.sum()))
        yield from self._unique_buckets(buckets, 0, TOP)

    def _fill(self, blocks: Iterator[tuple[pa.RecordBatch, np.ndarray, np.ndarray | None]], nbytes: int, nrows: int, level: int, name: str) -> TableBuckets:
        """Scatter ``blocks`` (with each row's source, or None) into new hash buckets of ``level``
        (directory ``name``); return them, closed."""
        run = self.run
        self.enter_level(level)
        k = hash_buckets(nbytes, nrows, run.limit, run.held_files)
        run.buckets += k
        directory, top = os.path.join(self.temp.path, name), level == 0 and self.keep_top
        if top:  # --resume: synced and checkpointed once complete
            buckets: TableBuckets = ResumableTableBuckets(directory, k, run.table_out.schema, run.request.compress_temp, run.piece, True)
        else:
            buckets = TableBuckets(directory, k, run.table_out.schema, run.request.compress_temp, run.piece)
        per_source = self.per_source[buckets.directory] = np.zeros((k, self.sources), np.int64)
        kept_hashes = self.hashes[buckets.directory] = (
            BucketSet(f"{buckets.directory}-hashes", k, compress=run.request.compress_temp) if keeps_hashes(k, run.held_files) else None
        )
        try:
            if level:
                run.progress.start(dedup_phase(level), nbytes)
            for batch, sizes, labels in _groups(blocks, plan.read_capacity(run.limit) // 2):
                table = pa.Table.from_batches([batch])
                hashes = table_hashes(table)
                kept = first_rows(table, hashes)
                run.duplicates += batch.num_rows - len(kept)
                ids = bucket_ids(hashes[kept], level, k)
                counts = np.bincount(ids, minlength=k)
                buckets.records += counts
                buckets.sizes += np.bincount(ids, weights=sizes[kept], minlength=k).astype(np.int64)
                if labels is not None:
                    per_source += np.bincount(ids.astype(np.int64) * self.sources + labels[kept], minlength=k * self.sources).reshape(k, -1)
                    self.drop(labels, kept)
                grouped = kept[np.argsort(ids, kind="stable")]
                rows = batch.take(grouped)
                buckets.append(rows, counts)
                if kept_hashes is not None:
                    bounds = np.zeros(k + 1, np.int64)
                    np.cumsum(counts, out=bounds[1:])
                    kept_hashes.append(Scattered(hashes[grouped].view(np.uint8).data, 8 * bounds, counts))
                if level:
                    run.progress.update(int(sizes.sum()))
            if top:
                assert isinstance(buckets, ResumableTableBuckets)
                buckets.sync()
                if kept_hashes is not None:
                    kept_hashes.sync()
        finally:
            try:
                buckets.close()
            finally:
                if kept_hashes is not None:
                    kept_hashes.close()
        return buckets

    def _bucket_hashes(self, buckets: TableBuckets, j: int, table: pa.Table) -> np.ndarray:
        """The row hashes of bucket ``j`` read back as ``table``: kept beside it when written, else computed."""
        kept = self.hashes.get(buckets.directory)
        if kept is None:
            return table_hashes(table)
        hashes = np.empty(table.num_rows, np.uint64)
        if int(kept.sizes[j]) != hashes.nbytes:
            raise TempSpaceError(f"{quote_name(kept.path(j))}: {kept.sizes[j]} bytes of hashes for {len(hashes)} rows")
        kept.read_into(j, hashes.view(np.uint8))
        return hashes

    def _remove(self, buckets: TableBuckets, j: int) -> None:
        """Delete bucket ``j``'s files once it has been consumed (its hashes' too), unless they are a
        ``--resume`` checkpoint's (the top level's: they stay until the output is in place)."""
        if self.keep_top and buckets.directory == os.path.join(self.temp.path, TOP):
            return
        buckets.remove(j)
        kept = self.hashes.get(buckets.directory)
        if kept is not None:
            kept.remove(j)

    def _unique_buckets(
        self, buckets: TableBuckets, level: int, name: str, tally: list[list[int]] | None = None
    ) -> Generator[Block, None, None]:
        """Each hash bucket's unique rows in bucket order, each bucket removed once used; with
        ``tally``, nothing yielded or removed: each source's unique rows and bytes added to it."""
        run = self.run
        per_source = self.per_source[buckets.directory]
        below_of = self.below.setdefault(buckets.directory, {})
        for j in range(buckets.k):
            size, count = int(buckets.sizes[j]), int(buckets.records[j])
            if not count:
                continue
            below = below_of.get(j)
            if below is None and (count == 1 or fits(size, count, run.limit)):
                table = pa.Table.from_batches(consolidate(buckets.batches(j), run.limit), schema=buckets.schema)
                if table.num_rows != count:
                    raise InputError(f"{quote_name(buckets.path(j))}: temporary bucket holds {table.num_rows} rows, not the {count} written")
                kept = first_rows(table, self._bucket_hashes(buckets, j, table))
                labels = np.repeat(np.arange(self.sources, dtype=np.uint16), per_source[j]) if self.sources else None
                if tally is not None:
                    assert labels is not None
                    mine = labels[kept]
                    weights = run.weighed_bytes(table, kept, row_sizes_of(table, kept))
                    tally[0] = (np.asarray(tally[0]) + np.bincount(mine, minlength=self.sources)).tolist()
                    tally[1] = (np.asarray(tally[1]) + np.bincount(mine, weights, self.sources).astype(np.int64)).tolist()
                    run.progress.update(size)
                    continue
                run.duplicates += count - len(kept)
                if labels is not None:
                    self.drop(labels, kept)
                    labels = labels[kept]
                unique = table.take(kept) if len(kept) < count else table
                del table
                self._remove(buckets, j)
                yield from self._batches(unique, labels)
                del unique
                if level == 0:
                    run.progress.update(size)
            else:
                if below is None:
                    blocks = _rebatch(buckets.batches(j), run.piece, plan.piece_records(run.limit))
                    below = self._fill(self._labelled(blocks, per_source[j]), size, count, level + 1, f"{name}-{j}")
                    self._remove(buckets, j)
                    if tally is not None:
                        below_of[j] = below
                else:
                    del below_of[j]
                yield from self._unique_buckets(below, level + 1, f"{name}-{j}", tally)
                if level == 0:
                    run.progress.start("counting" if tally is not None else scatter_phase(0), int(buckets.sizes[j + 1 :].sum()))

    def _batches(self, unique: pa.Table, labels: np.ndarray | None) -> Iterator[Block]:
        """A bucket's unique rows in batches for pass 1, with their row sizes; with sources (each row's
        ``labels``) also their rows per source, the batches shrunk by the most copies a row gets (as
        the run's own weighted batches are, so that scattered they hold about a piece)."""
        run = self.run
        if labels is None:
            yield from _rebatch(unique.to_batches(), run.piece, plan.piece_records(run.limit))
            return
        assert run.mixer is not None
        most = run.mixer.most_copies()
        at = 0
        for batch, sizes in _rebatch(unique.to_batches(), max(1, run.piece // most), max(1, plan.piece_records(run.limit) // most)):
            yield batch, sizes, source_counts(labels[at : at + batch.num_rows])
            at += batch.num_rows

    def _labelled(self, blocks: Iterator[tuple[pa.RecordBatch, np.ndarray]], per_source: np.ndarray) -> Iterator[tuple[pa.RecordBatch, np.ndarray, np.ndarray | None]]:
        """A bucket's ``blocks`` read back in order, each with its rows' sources (from the bucket's rows
        per source: its first ``per_source[0]`` rows are source 0's, and so on), or None without sources."""
        bounds = np.cumsum(per_source)
        at = 0
        for batch, sizes in blocks:
            labels = None
            if self.sources:
                labels = np.searchsorted(bounds, np.arange(at, at + batch.num_rows), side="right").astype(np.uint16)
            at += batch.num_rows
            yield batch, sizes, labels


def row_sizes_of(table: pa.Table, rows: np.ndarray) -> np.ndarray:
    """The sizes (``row_sizes``) of ``table``'s ``rows``, as floats to weigh counts with."""
    sizes = np.concatenate([np.empty(0, np.int64), *(row_sizes(batch) for batch in table.to_batches())])
    weights: np.ndarray = sizes[rows].astype(np.float64)
    return weights


def _groups(
    blocks: Iterator[tuple[pa.RecordBatch, np.ndarray, np.ndarray | None]], most: int
) -> Iterator[tuple[pa.RecordBatch, np.ndarray, np.ndarray | None]]:
    """``blocks`` (batches with their row sizes and rows' sources, or None) joined into runs of up to
    ``most`` bytes, each dropping its own copies at once: a run holds more than one row of any size up
    to ``most`` / 2, so the copies in a bucket too big for memory shrink at every level however small
    the batches are."""
    group: list[pa.RecordBatch] = []
    sizes: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    held = 0
    for batch, size, label in blocks:
        nbytes = int(size.sum())
        if group and held + nbytes > most:
            yield _combine(group), np.concatenate(sizes), np.concatenate(labels) if labels else None
            group, sizes, labels, held = [], [], [], 0
        group.append(batch)
        sizes.append(size)
        if label is not None:
            labels.append(label)
        held += nbytes
    if group:
        yield _combine(group), np.concatenate(sizes), np.concatenate(labels) if labels else None
