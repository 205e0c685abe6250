"""A shuffle of Parquet, Arrow IPC or JSON Lines rows on the two-pass driver.

What is particular to rows: batches are read until the rows no longer fit (or the first ones
show that the rest will not), a bucket's row ids are drawn for a whole batch and its rows taken
at once, buckets are Arrow IPC streams, and a bucket is merged into a few large chunks before
it is permuted (gathering from thousands of slices would be quadratic). Rows that fit in memory,
the whole input or a bucket, are permuted and emitted by ``table_memory``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Generator, Iterable, Iterator, Sequence
from functools import partial
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa

from ..core import mix, plan, streams
from ..core.driver import Buckets, Estimate, OutputPlan, Sample, TwoPass
from ..core.fingerprint import Fingerprint
from ..core.stratify import split_ids
from ..core.streams import Key, draw_ids, rng_for
from ..errors import InputError, TempSpaceError, option
from ..progress import IN_MEMORY, Progress, dedup_phase, scatter_phase
from ..quoting import quote_name
from ..request import Request, resolve_memory
from ..storage.layout import Sharding, parse_split
from ..storage.manifest import input_entries, run_entries, strata_entries
from ..storage.shards import check_outputs
from ..storage.sinks import CodecChoice
from ..storage.tempspace import TempSpace
from ..storage.writeback import WriteBehind
from .row_unique import RowDedup, check_comparable, fits as dedup_fits, hash_buckets
from .rowhash import row_fingerprint
from .detect import output_kind, read_back, refuse_terminal
from .table_input import TableInput, open_inputs
from .table_memory import emit_permuted, in_memory, unique_in_memory, unique_mix_in_memory
from .table_mix import Block, WeightedRows, count_rows, fits_with_copies, multiset_fingerprint
from .table_output import TableOutput, check_row_columns, resolve_codec, table_shard_suffix
from .tables import GROUP_BYTES, TABLE_PIECE, TableBuckets, _drain, _rebatch, consolidate, parse_schema, plain_schema


class TableRun(WeightedRows, TwoPass):
    """One table shuffle: reads batches, decides in-memory or external, writes the output."""

    unit = "rows"
    resume_name: str | None = None  # --resume's job (its checkpoint directory's name), where the format has one

    def __init__(
        self, request: Request, inputs: list[TableInput], kind: str, codec: CodecChoice, entropy: int, progress: Progress
    ) -> None:
        super().__init__(
            entropy, resolve_memory(request.memory), request.head_count, request.tmp_dir, progress, request.workers,
            request.head_share,
        )
        self.request = request
        self.inputs = inputs
        self.piece = min(plan.piece_bytes(self.limit), TABLE_PIECE)
        self.progress_done = 0  # input bytes reported to progress
        split = None if request.split is None else parse_split(request.split)
        sharding = Sharding(request.shards, request.shard_records, request.shard_size)
        check_outputs(
            request.output, sharding, split, request.manifest, suffix=table_shard_suffix(kind, codec),
            inputs=[i.path for i in inputs], input_directories=request.input_directories, taken=read_back,
        )
        schema = shared_schema(inputs, self.piece)
        if request.unique:
            check_comparable(schema)
        self.writer = WriteBehind(plan.IN_FLIGHT_PIECES * self.piece)
        self.table_out = TableOutput(
            request.output, self.writer, kind=kind, shards=request.shards, codec=codec,
            shard_records=request.shard_records, split=split, manifest=request.manifest, shard_size=request.shard_size,
            schema=schema, group_rows=request.row_group_size,
            group_bytes=min(GROUP_BYTES, max(1, plan.block_budget(self.limit) // 8)), sync=request.sync,
        )
        self.table_out.verify = request.verify
        self.out = self.table_out
        self.out.hashers = self.workers
        self.input_rows: list[int] | None = None  # rows read from each input (once all are read), for the manifest
        self.out.manifest_info = self._manifest_info
        self._no_weights()

    @classmethod
    def for_request(cls, request: Request, inputs: list[Any], entropy: int, progress: Progress) -> TableRun:
        """Rows of every input file (one schema), written in the format ``-o`` or ``--output-format`` names."""
        target = request.output
        tables = open_inputs([s for s in inputs if isinstance(s, str)], _json_schema(request))
        kind = output_kind(target, tables[0].kind, request.output_format)
        if kind != "jsonl" and target in (None, "-"):
            refuse_terminal("Parquet" if kind == "parquet" else "Arrow IPC")
        return cls(request, tables, kind, resolve_codec(kind, request.compress, target), entropy, progress)

    def _manifest_info(self) -> dict[str, Any]:
        """The manifest's run-wide entries: the request, and the records read from every input."""
        run = run_entries(
            self.request, self._input_entries(), self._records_format(), self.head_count, self.source_stats(), self.duplicates,
            self.entropy,
        )
        if self.stratifier is not None and self.out.split is not None:
            run["stratified"] = strata_entries([p.name for p in self.out.split], self.stratifier.names, self.stratifier.table)
        return run

    def _input_entries(self) -> list[dict[str, Any]]:
        """The manifest's entry of every input: its path, size and mtime, and the rows read from it."""
        counts = None if self.input_rows is None else [(rows, None) for rows in self.input_rows]
        read_as = [i.stamps[0].stamped() if i.stamps else None for i in self.inputs]
        return input_entries([i.path for i in self.inputs], counts, [True] * len(self.inputs), read_as)

    def _records_format(self) -> dict[str, Any]:
        """The manifest's ``format``: the file format rows are written in."""
        return {"rows": self.table_out.kind}

    @classmethod
    def sample(cls, request: Request, inputs: list[Any]) -> Sample:
        """The first piece of rows read and sized as the run reads them; the row count from the files'
        metadata (Parquet, Arrow), or estimated from the bytes on disk (JSON Lines)."""
        if "-" in inputs:
            return Sample(None, why="standard input is not read by a plan: it could not be read again")
        tables = open_inputs([s for s in inputs if isinstance(s, str)], _json_schema(request))
        limit = resolve_memory(request.memory)
        piece = min(plan.piece_bytes(limit), TABLE_PIECE)
        shared_schema(tables, piece)
        total_rows = sum(t.rows or 0 for t in tables) if all(t.rows is not None for t in tables) else None
        starts: list[int] = []

        def read() -> Iterator[pa.RecordBatch]:
            """Every table's batches, each table's first row in ``starts`` before its rows are handed out."""
            at = 0
            for table in tables:
                starts.append(at)
                for batch in table.batches(piece):
                    at += batch.num_rows
                    yield batch

        # A row the run would refuse, among those sampled, is refused here too.
        batches = placeable(_rebatch(read(), piece, plan.piece_records(limit)), limit, [t.path for t in tables], starts)
        held: list[Block] = []
        # The run's first look, as far as the sample goes: where it stops holding rows, the same estimate.
        held_bytes, held_rows, whole = hold_rows(_first_bytes(batches, plan.DRY_RUN_SAMPLE), limit, total_rows, held)
        exact = whole and next(batches, None) is None
        del batches, held  # the files are closed with the reader
        if exact:
            est = Estimate(held_bytes, held_rows, held_bytes / max(1, held_rows))
        else:
            est = row_estimate(held_bytes, held_rows, total_rows, sum(t.disk_size() for t in tables))
        assert est.nbytes is not None and est.records is not None
        # Not all held: the run goes external. Held up to the sample's end: the estimate says.
        in_memory = whole and fits_whole(request, est.nbytes, est.records, limit)
        counts: tuple[int, ...] | None = None
        nbytes: tuple[int, ...] | None = None
        sizes: tuple[int | None, ...] = ()
        if request.sources:
            # Weighted sources: rows from the files' metadata, and counted as the run's counting pass
            # counts them when the sample read every row anyway; sized by the files on disk.
            file_source = mix.source_files(request)
            n = len(request.sources)
            by_source = [0] * n
            for s, table in zip(file_source, tables):
                by_source[s] += table.disk_size()
            sizes = tuple(by_source)
            if exact:
                counted = count_rows(tables, file_source, n, piece, Progress())
                counts, nbytes = tuple(counted[0]), tuple(counted[1])
            elif all(t.rows is not None for t in tables):
                rows = [0] * n
                for s, table in zip(file_source, tables):
                    rows[s] += table.rows or 0
                counts = tuple(rows)
        return Sample(
            est, held_bytes, exact=exact, sized=True, in_memory=in_memory, temp_bytes=est.nbytes,
            records_counted="" if total_rows is None else "from the files' metadata",
            source_records=counts, source_bytes=nbytes, source_sizes=sizes,
        )

    @classmethod
    def output_plan(cls, request: Request, inputs: list[Any]) -> OutputPlan:
        """The output as the run checks it: its files named with the suffix of the format it is written in."""
        tables = open_inputs([s for s in inputs if isinstance(s, str)], _json_schema(request))
        kind = output_kind(request.output, tables[0].kind, request.output_format)
        codec = resolve_codec(kind, request.compress, request.output)
        sharding = Sharding(request.shards, request.shard_records, request.shard_size)
        schema = tables[0].schema  # (JSON Lines: inferred as the run reads them)
        columns = None if schema is None else partial(check_row_columns, kind, request.output, plain_schema(schema))
        return OutputPlan(
            request.output, request.shards, None, table_shard_suffix(kind, codec), sharding, request.split, request.manifest, columns,
        )

    def prepare(self) -> None:
        """Nothing more to check: the output directory and the schema were checked on construction."""

    def _batches(self) -> Generator[Block, None, None]:
        """Every input's rows in batches of about a piece, with their row sizes (and with weighted
        sources their rows per source); fingerprinted when verifying (weighted: once the copies are drawn)."""
        def read() -> Iterator[pa.RecordBatch]:
            # Bytes as stored, in proportion to the rows read, where the file says its row count.
            counts: list[int] = []
            self.file_starts.clear()  # the list placeable() reads
            for source in self.inputs:
                stored, rows, reported, done = source.disk_size(), source.rows, 0, 0
                self.file_starts.append(self.file_starts[-1] + counts[-1] if counts else 0)
                counts.append(0)
                for batch in source.batches(self.piece):
                    counts[-1] += batch.num_rows
                    done += batch.num_rows
                    if rows:
                        now = stored * done // rows
                        self._report(now - reported)
                        reported = now
                    else:
                        self._report(batch.nbytes)
                    yield batch
            self.input_rows = counts

        # With weighted sources a batch's rows are gathered as many times as they have copies, all at once:
        # batches shrink by the most copies a row gets, so that scattered they hold about a piece (memory
        # stays within -S, as for lines). This cuts the batches the draws are made for.
        most = 1 if self.mixer is None else self.mixer.most_copies()
        blocks = placeable(
            _rebatch(read(), max(1, self.piece // most), max(1, plan.piece_records(self.limit) // most)), self.limit,
            [source.path for source in self.inputs], self.file_starts,
        )
        if self.request.sources:  # with --unique, before the mixer is planned (from the rows left)
            yield from self._with_sources(blocks)
            return
        for batch, sizes in blocks:
            if self.request.verify and not self.request.unique:  # --unique: the unique rows, once known
                self.read_fingerprint += self.rows_fingerprint(batch)
            yield batch, sizes

    def rows_fingerprint(self, rows: pa.Table | pa.RecordBatch, mult: np.ndarray | None = None) -> Fingerprint:
        """What ``--verify`` counts of ``rows`` read (each ``mult`` times, with weighted sources): the
        output's fingerprint of the same rows, so a family that hashes its records otherwise overrides both."""
        return row_fingerprint(rows) if mult is None else multiset_fingerprint(rows, mult)

    def _report(self, nbytes: int) -> None:
        """Tell progress about ``nbytes`` more of the input read, keeping count for a renamed bar."""
        self.progress_done += nbytes
        self.progress.update(nbytes)

    def shuffle(self) -> None:
        inputs = self.inputs
        # With --unique the rates apply to the rows left once copies are dropped: the mix is planned
        # once they are counted (by the dedup, in memory or by its buckets).
        unique_mix = self.request.unique and bool(self.request.sources)
        if self.request.sources and not unique_mix:
            self._plan_mix()
        known = all(i.rows is not None for i in inputs)
        total_rows = sum(i.rows or 0 for i in inputs) if known else None
        # The inputs as stored, when every one says its row count (JSON Lines do not: bytes read, no total).
        stored = (sum(i.disk_size() for i in inputs) or None) if known else None
        self.progress.start(IN_MEMORY, stored)
        batches = self._batches()
        self.readers.append(batches)
        held: list[Block] = []
        exact = self.exact_input()
        held_bytes, held_rows, whole = hold_rows(batches, self.limit, total_rows, held, None if exact is None else exact.nbytes)
        mult = labels = None
        if whole and self.mixer is not None:
            # The whole input's copies, drawn as for one block; the multiset must fit beside the rows.
            totals = mix.merge_counts([b[2] for b in held])
            mult = self._copies(streams.selection(streams.IN_MEMORY), totals)
            if not fits_with_copies(held_bytes, held_rows, mult, self.limit):
                whole, mult = False, None
                self.mixer.reset()  # pass 1 draws its own picks, block by block
            elif self.stratifier is not None:
                labels = self._split_labels(streams.stratify(streams.IN_MEMORY), totals, mult)
        if whole and self.request.unique and not dedup_fits(held_bytes, held_rows, self.limit):
            whole = False  # the rows and their unique copy do not fit together: a dedup pass first
        if whole and unique_mix:
            weighed = unique_mix_in_memory(self, held)
            whole = weighed is not None
            if weighed is not None:
                held_bytes, mult, labels = weighed
        if whole:
            if self.request.unique and not unique_mix:
                held_bytes = unique_in_memory(self, held)
            in_memory(self, [b[0] for b in _drain(held)], held_bytes, mult, labels)
            return
        self.progress.start(dedup_phase(0) if self.request.unique else scatter_phase(0), stored)
        self.progress.update(self.progress_done)
        est = exact if exact is not None else row_estimate(held_bytes, held_rows, total_rows, sum(i.disk_size() for i in inputs))
        if self.mixer is not None:
            est = self._multiset_estimate(est)
        with TempSpace(self.tmp_dir, self.resume_name) as temp:
            self.take_up(temp)
            blocks: Iterator[Any] = chain(_drain(held), batches)
            if self.request.unique:
                # Pass 1 scatters the unique rows, at most what the hash buckets hold (known now).
                dedup = RowDedup(self, temp, len(self.request.sources))
                hashed = dedup.resume(blocks) if "dedup" in self.state else dedup.scatter(blocks, est.nbytes or 0, est.records or 0)
                est = Estimate(int(hashed.sizes.sum()), int(hashed.records.sum()), est.per_record)
                if unique_mix:
                    dedup.plan_mix(hashed)
                    est = self._multiset_estimate(est)
                blocks = dedup.unique(hashed)
            self.external(blocks, est, temp, streams.TOP, 0)

    def exact_input(self) -> Estimate | None:
        """The input's rows and their bytes where the format knows them before reading (None: tables
        do not; the path and plan then go by the first rows read)."""
        return None

    def take_up(self, temp: TempSpace) -> None:
        """The external path starts in ``temp``: a format that resumes (``--resume``) loads its checkpoint there."""

    def weighed_bytes(self, table: pa.Table, rows: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """What ``--by bytes`` counts of each of ``table``'s ``rows`` once ``--unique`` has kept them
        (``sizes``: their sizes by ``row_sizes``, as floats): those sizes, as the counting pass counts rows."""
        return sizes

    # The driver's hooks.

    def begin_output(self, total: int, restore: dict[str, Any] | None = None) -> None:
        """Check, with weighted sources, that the run read the rows each source was counted to hold, then open the output."""
        if self.mixer is not None:
            self.mixer.check_complete()
        super().begin_output(total, restore)

    @classmethod
    def dedup_buckets(cls, est: Estimate, limit: int, sources: int) -> int:
        return hash_buckets(est.nbytes or 0, est.records or 0, limit)

    def make_buckets(self, directory: str, k: int, top: bool) -> Buckets:
        if top and self.stratifier is not None:
            self.strata_bounds = self.stratifier.bucket_bounds(k)
        return TableBuckets(directory, k, self.table_out.schema, self.request.compress_temp, self.piece)

    def _bucket_count(self, est: Estimate) -> int:
        """As the driver counts them, and with ``--stratify`` at least one for each split."""
        k = super()._bucket_count(est)
        return k if self.stratifier is None else max(k, self.stratifier.splits)

    def block_bytes(self, block: Any) -> int:
        return int(block[1].sum())

    def scatter(self, block: Any, key: Key, buckets: Buckets, keep: int, depth: int) -> int:
        assert isinstance(buckets, TableBuckets)
        batch, sizes = block[0], block[1]
        index = labels = None
        if len(block) == 3:  # a top-level batch of weighted sources: each copy of a row gets its own bucket
            mult = self._copies(streams.selection(key), block[2])
            if self.stratifier is not None:
                labels = self._split_labels(streams.stratify(key), block[2], mult)
            if self.request.verify:
                self.read_fingerprint += self.rows_fingerprint(batch, mult)
            index = mix.copies_index(mult)
            if index is not None:
                sizes = sizes[index]
        elif depth == 0 and self.request.unique and self.request.verify:
            self.read_fingerprint += self.rows_fingerprint(batch)  # a unique row, as the dedup stage hands it on
        k = buckets.k
        if labels is not None:  # --stratify: a bucket within the copy's split's range
            assert self.strata_bounds is not None
            ids = split_ids(rng_for(self.entropy, key), self.strata_bounds, labels, k)
        else:
            ids = draw_ids(rng_for(self.entropy, key), k, batch.num_rows if index is None else len(index))
        counts = np.bincount(ids, minlength=k)
        counts[keep:] = 0
        buckets.sizes += np.bincount(ids, weights=sizes, minlength=k).astype(np.int64) * (counts > 0)
        order = np.argsort(ids, kind="stable")[: int(counts.sum())]
        del ids
        if index is not None:
            order = index[order]
        buckets.records += counts
        # The rows of consecutive runs of buckets are gathered on the workers at once.
        workers = self.workers.sized(batch.nbytes)
        runs = _bucket_runs(counts, workers.n)
        gathers = ((lambda lo=lo, hi=hi: batch.take(order[lo:hi])) for _first, _last, lo, hi in runs)
        for (first, last, _lo, _hi), rows in zip(runs, workers.ordered(gathers)):
            part = np.zeros_like(counts)
            part[first:last] = counts[first:last]
            self.writer.submit_job(partial(buckets.append, rows, part), rows.nbytes)
        return self.cutoff(buckets, keep)

    def shuffle_bucket(self, buckets: Buckets, j: int, key: Key, left: int | None, room: int) -> int:
        assert isinstance(buckets, TableBuckets)
        rows, nbytes = int(buckets.records[j]), int(buckets.sizes[j])
        table = pa.Table.from_batches(consolidate(buckets.batches(j), self.limit), schema=buckets.schema)
        if table.num_rows != rows:
            raise TempSpaceError(
                f"{buckets.path(j)}: temporary bucket holds {table.num_rows} rows, not the {rows} written; "
                "the temporary directory was changed or is failing"
            )
        count = rows if left is None else min(rows, left)
        emit_permuted(self, table, nbytes, rng_for(self.entropy, key), count)
        return count

    def bucket_blocks(self, buckets: Buckets, j: int) -> tuple[Iterator[Any], Estimate]:
        assert isinstance(buckets, TableBuckets)
        rows, nbytes = int(buckets.records[j]), int(buckets.sizes[j])
        blocks = _rebatch(buckets.batches(j), self.piece, plan.piece_records(self.limit))
        return blocks, Estimate(nbytes, rows, nbytes / rows)


def _json_schema(request: Request) -> pa.Schema | None:
    """The column types ``--schema`` gives JSON Lines read as rows, if any."""
    return parse_schema(request.schema) if request.schema is not None else None


def shared_schema(inputs: list[TableInput], piece: int) -> pa.Schema:
    """The schema rows are shuffled in (views made plain; JSON Lines: given, or inferred from the first
    block of ``piece`` bytes, then given to every input)."""
    first = inputs[0]
    if first.kind == "jsonl":
        first.peek(piece)
        if first.schema is None:
            raise InputError(f"{first.path}: no JSON rows to infer the columns from; give them with {option('schema')}")
        for other in inputs:
            other.schema, other._inferred = first.schema, first._inferred
    assert first.schema is not None
    return plain_schema(first.schema)


def placeable(
    blocks: Iterator[tuple[pa.RecordBatch, np.ndarray]], limit: int, paths: Sequence[str], starts: Sequence[int],
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """``blocks`` as read, refused at the first row larger than the external path can place
    (``plan.largest_record``), named by its input (``paths``, whose first rows ``starts`` gets as
    they are read) and row: a row's size is known only once read, and the run would otherwise
    scatter it ``plan.MAX_DEPTH`` times past the limit."""
    most = plan.largest_record(limit)
    at = 0  # the rows handed out before
    for batch, sizes in blocks:
        if len(sizes) and int(sizes.max()) > most:
            i = int(np.argmax(sizes > most))
            f = bisect_right(starts, at + i) - 1
            raise InputError(
                f"{quote_name(paths[f])}: row {at + i - starts[f]} takes {int(sizes[i])} bytes, "
                f"more than the {most} bytes a row may take at this memory limit; raise {option('memory')}"
            )
        at += len(sizes)
        yield batch, sizes


def fits_whole(request: Request, nbytes: int, rows: int, limit: int) -> bool:
    """Whether rows of ``nbytes`` (as blocks count them) are shuffled in memory, as the run decides:
    with ``--unique`` beside their unique copy (``row_unique.fits``)."""
    return plan.fits_in_memory(nbytes, rows, limit) and (not request.unique or dedup_fits(nbytes, rows, limit))


def hold_rows(
    batches: Iterable[Block], limit: int, total_rows: int | None, held: list[Block], total_bytes: int | None = None,
) -> tuple[int, int, bool]:
    """Take ``batches`` (each with its row sizes, and what else the run gives it) into ``held`` while
    they fit in memory, stopping at the first that does not, or as soon as ``total_bytes`` (where
    known), or else the rows held, show that ``total_rows`` will not fit; return the bytes and rows
    held and whether every batch was taken (the run's choice of path)."""
    if total_bytes is not None and total_rows is not None and not plan.fits_in_memory(total_bytes, total_rows, limit):
        return 0, 0, False
    held_bytes = held_rows = 0
    for block in batches:
        batch, sizes = block[0], block[1]
        held.append(block)
        held_bytes += int(sizes.sum())
        held_rows += batch.num_rows
        if not plan.fits_in_memory(held_bytes, held_rows, limit):
            return held_bytes, held_rows, False
        if total_bytes is None and total_rows is not None and held_rows < total_rows and not plan.fits_in_memory(
            held_bytes * total_rows // held_rows, total_rows, limit
        ):
            return held_bytes, held_rows, False  # the first rows show that the rest will not fit either
    return held_bytes, held_rows, True


def _first_bytes(
    batches: Iterator[tuple[pa.RecordBatch, np.ndarray]], most: int
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """The first of ``batches``, up to and including the one that brings their rows to ``most`` bytes."""
    seen = 0
    for batch, sizes in batches:
        yield batch, sizes
        seen += int(sizes.sum())
        if seen >= most:
            return


def row_estimate(held_bytes: int, held_rows: int, total_rows: int | None, disk_bytes: int) -> Estimate:
    """What pass 1 plans with, from the first ``held_rows`` rows (``held_bytes`` by ``row_sizes``): the
    files' row count when they say it, else their bytes on disk over the mean row (at least 4x the rows held)."""
    per_row = held_bytes / max(1, held_rows)
    est_rows = total_rows if total_rows is not None else max(held_rows * 4, int(disk_bytes / per_row))
    return Estimate(int(per_row * est_rows), est_rows, per_row)


def _bucket_runs(counts: np.ndarray, n: int) -> list[tuple[int, int, int, int]]:
    """``counts`` (rows per bucket) cut into up to ``n`` runs of consecutive buckets of about equal
    rows: each run's first and last-plus-one bucket, and its rows' range in bucket order."""
    ends = np.cumsum(counts)
    total = int(ends[-1]) if len(ends) else 0
    cuts = sorted({0, len(counts)} | {int(np.searchsorted(ends, total * i // n, side="right")) for i in range(1, n)})
    return [(a, b, int(ends[a - 1]) if a else 0, int(ends[b - 1])) for a, b in zip(cuts, cuts[1:]) if a < b]
