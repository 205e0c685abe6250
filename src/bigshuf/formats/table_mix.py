"""Weighted sources over table rows (``--source``, ``--rate``, ``--mix``, ``--stratify``): each source's
rows (from the files' metadata, or a counting pass), the rates solved, each batch's copies and their splits.

``TableRun`` takes this as a mixin. The draws are the line runs' (``core.mix.Mixer``): every row
gets floor(r) copies and a uniform round(frac(r) n) subset of a source's rows one more, picked
batch by batch in input order from the batch's selection stream; a batch's copies are an index
into it, which the scatter or the in-memory shuffle gathers with Arrow's ``take``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ..core import mix, plan
from ..core.driver import Estimate
from ..core.fingerprint import Fingerprint
from ..core.mix import Mixer
from ..core.stratify import Stratifier
from ..core.streams import Key
from ..progress import Progress
from ..request import Request
from ..storage.layout import parse_split
from ..storage.output import Output
from .rowhash import row_hashes
from .table_input import TableInput
from .tables import row_sizes


#: A batch of rows, its row sizes, and with weighted sources its rows per source (``(source, count)``).
Block = tuple[Any, ...]


class WeightedRows:
    """What a table run does with weighted sources; the attributes below are the run's."""

    request: Request
    inputs: list[TableInput]
    progress: Progress
    piece: int
    entropy: int
    mixer: Mixer | None
    stratifier: Stratifier | None
    strata_bounds: np.ndarray | None
    file_starts: list[int]
    out: Output

    def _no_weights(self) -> None:
        """Start unweighted: ``_plan_mix`` sets these when the request names sources. Every run of
        rows (tables, Megatron documents) starts here, so none lacks a field the shuffle reads."""
        # Weighted sources: the copies each row gets, and the first row of each input (as read).
        self.mixer = None
        self.file_starts = []
        # --stratify: which split each copy goes to, and the top level's buckets each split owns.
        self.stratifier = None
        self.strata_bounds = None

    def source_stats(self) -> tuple[mix.SourceStats, ...]:
        return () if self.mixer is None else self.mixer.stats()

    def _plan_mix(self, counted: tuple[list[int], list[int]] | None = None) -> None:
        """Each source's rows from the files' metadata (a counting pass for JSON Lines when a share or a
        fractional rate needs them, and for every kind with ``--by bytes``), or as ``counted`` gives them
        with their bytes (``--unique``'s rows left), the rates solved, the mixer made."""
        request = self.request
        names = [name for name, _files in request.sources]
        file_source = mix.source_files(request)
        assert len(file_source) == len(self.inputs), "every input is a source's file"
        rates = request.source_rates
        counts: list[int] | None = None
        nbytes: list[int] | None = None
        if counted is not None:
            counts, nbytes = counted
        elif request.unique:
            pass  # the files' rows still hold the copies: weighed without counts (integer rates)
        else:
            if all(i.rows is not None for i in self.inputs):
                counts = [0] * len(names)
                for s, table in zip(file_source, self.inputs):
                    counts[s] += table.rows or 0
            if request.by == "bytes" or (counts is None and (mix.needs_counts(rates, bool(request.mix)) or request.stratify)):
                counts, nbytes = self._count_sources(file_source, len(names))
        self.mixer = mix.mixer_for(request, counts, nbytes)
        if request.stratify:
            assert request.split is not None
            self.stratifier = Stratifier(names, self.mixer.multiset_sizes(), parse_split(request.split))
            self.out.split_totals = self.stratifier.totals

    def _count_sources(self, file_source: list[int], n: int) -> tuple[list[int], list[int]]:
        """Rows and bytes (by ``row_sizes``) of each source, read once without writing (the counting pass)."""
        self.progress.start("counting", sum(i.disk_size() for i in self.inputs) or None)
        counts, nbytes = count_rows(self.inputs, file_source, n, self.piece, self.progress)
        self.progress.close()
        return counts, nbytes

    def _with_sources(self, blocks: Iterator[tuple[pa.RecordBatch, np.ndarray]]) -> Iterator[Block]:
        """``blocks`` in input order, each with its rows per source (``file_starts``: the first row of
        each input read so far, which covers every row of a block once it is handed out)."""
        file_source = mix.source_files(self.request)
        at = 0
        for batch, sizes in blocks:
            end = at + batch.num_rows
            starts = self.file_starts
            counts: list[tuple[int, int]] = []
            for f, lo in enumerate(starts):
                hi = starts[f + 1] if f + 1 < len(starts) else end
                lo, hi = max(lo, at), min(hi, end)
                if lo >= hi:
                    continue
                s = file_source[f]
                if counts and counts[-1][0] == s:
                    counts[-1] = (s, counts[-1][1] + hi - lo)
                else:
                    counts.append((s, hi - lo))
            at = end
            yield batch, sizes, counts

    def _copies(self, key: Key, counts: Sequence[tuple[int, int]]) -> np.ndarray:
        """The copies of each row of a run of rows holding ``counts`` of each source, picks drawn from stream ``key``."""
        assert self.mixer is not None
        return self.mixer.multiplicity(counts, self.mixer.pick(self.entropy, key, counts))

    def _split_labels(self, key: Key, counts: Sequence[tuple[int, int]], mult: np.ndarray) -> np.ndarray:
        """``--stratify``: the split of each copy of a run of rows holding ``counts`` of each source
        (``mult`` copies each), in the copies' order, drawn from stream ``key``."""
        assert self.stratifier is not None
        per_source, at = [], 0
        for s, c in counts:
            per_source.append((s, int(mult[at : at + c].sum())))
            at += c
        drawn = self.stratifier.assign(self.entropy, key, per_source)
        return np.concatenate([np.empty(0, self.stratifier.dtype), *drawn])

    def _multiset_estimate(self, est: Estimate) -> Estimate:
        """What pass 1 scatters with weighted sources: the multiset's rows, exact when each source's
        rows are known, else the rows read scaled by the mean rate (weighted by the inputs' size on disk)."""
        assert self.mixer is not None
        if self.mixer.counts is not None:
            rows = sum(self.mixer.multiset_sizes())
        else:
            sizes: list[int | None] = [0] * len(self.mixer.names)
            for s, table in zip(self.mixer.file_source.tolist(), self.inputs):
                sizes[s] = (sizes[s] or 0) + table.disk_size()
            rows = int((est.records or 0) * self.mixer.expected_factor(sizes))
        return Estimate(int(est.per_record * rows), max(1, rows), est.per_record)


def count_rows(inputs: Sequence[TableInput], file_source: Sequence[int], n: int, piece: int, progress: Progress) -> tuple[list[int], list[int]]:
    """Rows and bytes (by ``row_sizes``) of each of ``n`` sources, read once (the counting pass, and
    ``--dry-run`` on inputs it reads whole anyway)."""
    counts, nbytes = [0] * n, [0] * n
    for s, table in zip(file_source, inputs):
        for batch in table.batches(piece):
            counts[s] += batch.num_rows
            nbytes[s] += int(row_sizes(batch).sum())
            progress.update(batch.nbytes)
    return counts, nbytes


def multiset_fingerprint(batch: pa.RecordBatch | pa.Table, mult: np.ndarray) -> Fingerprint:
    """The row fingerprint of ``batch`` with each row counted ``mult`` times (what is shuffled)."""
    hashes = np.concatenate([np.empty(0, np.uint64), *(row_hashes(b) for b in _batches(batch))])
    with np.errstate(over="ignore"):
        digest = int(np.sum(hashes * mult.astype(np.uint64), dtype=np.uint64))
    return Fingerprint(int(mult.sum()), 0, digest)


def _batches(rows: pa.RecordBatch | pa.Table) -> list[pa.RecordBatch]:
    """``rows`` as record batches."""
    return rows.to_batches() if isinstance(rows, pa.Table) else [rows]


def fits_with_copies(held_bytes: int, held_rows: int, mult: np.ndarray, limit: int) -> bool:
    """Whether rows held in memory can be shuffled as the multiset ``mult`` makes of them (its index of
    copies beside them; none when every row is there once)."""
    once = not len(mult) or int(mult.min()) == int(mult.max()) == 1
    return plan.fits_in_memory(held_bytes, held_rows + (0 if once else int(mult.sum())), limit)
