"""Weighted sources over lines (``--source``, ``--rate``, ``--mix``, ``--stratify``): the counting
pass, the rates solved, each block's copies and picks, and the stratified in-memory shuffle.

``LineRun`` takes these as a mixin, so that its own module keeps to reading, scattering and
gathering lines; the draws themselves live in ``core.mix`` and ``core.stratify``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..core import mix, plan, streams
from ..core.gather import shuffle_block
from ..core.mix import Mixer
from ..core.records import RecordFormat, count_separators
from ..core.scatter import cut_pieces
from ..core.streams import Key
from ..core.parallel import Workers
from ..core.stratify import Stratifier
from ..errors import option
from ..progress import Progress
from ..request import Request
from ..storage.layout import parse_split
from ..storage.output import Output
from ..storage.reader import RecordReader
from ..storage.sources import Source
from .line_unique import unique_with_sources


class WeightedLines:
    """What a line run does with weighted sources; the attributes below are the run's."""

    request: Request
    sources: list[Source]
    fmt: RecordFormat
    progress: Progress
    limit: int
    entropy: int
    workers: Workers
    piece: int
    records: int
    out: Output
    emit: Callable[[Any], None]
    mixer: Mixer | None
    stratifier: Stratifier | None
    duplicates: int
    input_records: list[int] | None
    _fits_whole: Callable[[int, int], bool]
    _to_memory: Callable[..., None]
    _in_memory: Callable[..., None]
    #: Each input's bytes once decompressed (the reader's ``decoded_sizes``), weighing uncounted sources.
    decoded: Callable[[], list[int | None]]

    def source_stats(self) -> tuple[mix.SourceStats, ...]:
        return () if self.mixer is None else self.mixer.stats()

    def _plan_mix(self, counted: tuple[list[int], list[int]] | None = None) -> float:
        """Weighted sources: count each source's records (and bytes) first when a share or a
        fractional rate needs them (unless ``counted`` gives them: ``--unique``'s), solve the rates,
        and return the bytes of the multiset over the bytes read, expected (for sizing the buckets)."""
        request = self.request
        names = [name for name, _files in request.sources]
        file_source = mix.source_files(request)
        rates = request.source_rates
        counts: list[int] | None = None
        nbytes: list[int] | None = None
        sizes: list[int | None]
        if counted is not None:
            counts, nbytes = counted
            sizes = list(nbytes)
        elif mix.needs_counts(rates, bool(request.mix)) or request.stratify:
            counts, nbytes = self._count_sources(file_source, len(names))
            sizes = list(nbytes)
        else:
            sizes = source_sizes(self.decoded(), file_source, len(names))
        self.mixer = mix.mixer_for(request, counts, nbytes)
        if request.stratify:
            assert request.split is not None
            self.stratifier = Stratifier(names, self.mixer.multiset_sizes(), parse_split(request.split))
            self.out.split_totals = self.stratifier.totals
        return self.mixer.expected_factor(sizes)

    def _unique_mix_in_memory(
        self, block: np.ndarray, offsets: np.ndarray, runs: list[tuple[int, int]], mapped: bool, reader: RecordReader,
        phase: str | None, stored: int | None,
    ) -> bool:
        """``--unique`` with weighted sources, the input read whole: deduplicate it, plan the mix from
        each source's records left, and shuffle the multiset in memory if it fits beside the input
        (False: it does not, and nothing stays planned)."""
        if not self._fits_whole(len(block), len(offsets) - 1):
            return False
        n = len(self.request.sources)
        unique, kept_offsets, kept_runs, (counts, nbytes, dropped) = unique_with_sources(
            block, offsets, runs, mix.source_files(self.request), n, self.piece, self.workers
        )
        self._plan_mix((counts, nbytes))
        assert self.mixer is not None
        self.mixer.dropped = dropped
        mult, per_source = self._copies(unique, kept_offsets, kept_runs)
        if not plan.fits_in_memory(len(block) + len(unique), len(offsets) + len(kept_offsets) + int(mult.sum()), self.limit):
            self.mixer, self.stratifier, self.out.split_totals = None, None, None
            return False
        self.duplicates = len(offsets) - len(kept_offsets)
        self._to_memory(phase, stored, reader, mapped, len(offsets) - 1, len(block))
        self._in_memory(unique, kept_offsets, mult, per_source, beside=len(block))
        return True

    def _count_sources(self, file_source: list[int], n: int) -> tuple[list[int], list[int]]:
        """Records and bytes of each source, read once without writing (the counting pass); each
        input's records kept for a ``--resume`` checkpoint, which a resumed run's count must match."""
        self.progress.start("counting", RecordReader(self.sources, self.fmt, Progress()).progress_total())
        self.input_records = []
        counts, nbytes = count_sources(
            self.sources, file_source, n, self.fmt, self.request.header, self.limit, self.progress, self.input_records,
        )
        self.progress.close()
        return counts, nbytes

    def _copies(self, block: np.ndarray, offsets: np.ndarray, runs: list[tuple[int, int]]) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Weighted sources, the whole input in memory: the copies of each record in the multiset,
        and of each source's run of records (``(source, copies)`` in order)."""
        assert self.mixer is not None
        counts = []
        for s, lo, hi in self.mixer.segments(runs, len(block)):
            first, last = np.searchsorted(offsets, [lo, hi])
            counts.append((s, int(last - first)))
        chosen = self.mixer.pick(self.entropy, streams.selection(streams.IN_MEMORY), counts)
        per_source = [(s, self.mixer.copies[s] * c + len(picks)) for (s, c), picks in zip(counts, chosen)]
        return self.mixer.multiplicity(counts, chosen), per_source

    def _in_memory_strata(
        self, block: np.ndarray, offsets: np.ndarray, index: np.ndarray | None, per_source: list[tuple[int, int]], held: int
    ) -> None:
        """``--stratify``, the whole multiset in memory: each copy's split drawn as pass 1 would for one
        block, then each split's copies shuffled on their own (stream ``stratum(v)``), splits in order."""
        assert self.stratifier is not None
        if index is None:
            index = np.arange(len(offsets) - 1, dtype=np.int32 if len(offsets) <= 1 << 31 else np.int64)
        labels = np.concatenate(
            [np.empty(0, np.uint8), *self.stratifier.assign(self.entropy, streams.stratify(streams.IN_MEMORY), per_source)]
        )
        held += 5 * len(index)  # each copy's split, and one split's index at a time
        for v in range(self.stratifier.splits):
            self.records += shuffle_block(
                block, offsets, self.entropy, streams.stratum(v), self.emit, self.workers, limit=self.limit, held=held,
                index=index[labels == v],
            )

    def _pick_copies(
        self, block: np.ndarray, runs: list[tuple[int, int]], key: Key
    ) -> tuple[np.ndarray, list[tuple[tuple[int, int], list[tuple[int, int]], list[np.ndarray], np.ndarray | None]]]:
        """A top-level block of weighted sources: its pieces, each with its records per source,
        which of them get a copy more (drawn from the block's selection stream, in block order),
        and with ``--stratify`` each of its copies' split (from the block's stratify stream)."""
        assert self.mixer is not None
        segments = self.mixer.segments(runs, len(block))
        # A piece's copies are gathered at once: pieces shrink by the most copies a record gets, so
        # that scattered they hold about a piece, as without sources (memory stays within -S).
        pieces = list(cut_pieces(block, self.fmt, max(1, self.piece // self.mixer.most_copies())))
        counts = self.workers.sized(len(block)).map(lambda p: mix.count_in(block, segments, *pieces[p], self.fmt), len(pieces))
        totals = mix.merge_counts(counts)
        chosen = self.mixer.pick(self.entropy, streams.selection(key), totals)
        shares = mix.split_picks(totals, chosen, counts)
        labels: list[np.ndarray | None] = [None] * len(pieces)
        if self.stratifier is not None:
            copies = self.mixer.copies
            per_source = [(s, copies[s] * c + len(picks)) for (s, c), picks in zip(totals, chosen)]
            drawn = self.stratifier.assign(self.entropy, streams.stratify(key), per_source)
            per_piece = [[(s, copies[s] * c + len(picks)) for (s, c), picks in zip(piece, mine)] for piece, mine in zip(counts, shares)]
            labels = list(self.stratifier.cut(per_source, drawn, per_piece))
        return block, list(zip(pieces, counts, shares, labels))


def source_sizes(sizes: Iterable[int | None], file_source: list[int], n: int) -> list[int | None]:
    """Each source's bytes once decompressed, from its files' (``sizes``: ``expansion.decoded_sizes``,
    compressed ones by their own source's ratio, not all as compressed alike): what the run weighs
    the multiset with when it does not count. None: a source with a file of unknown size (a pipe)."""
    out: list[int | None] = [0] * n
    for s, size in zip(file_source, sizes):
        had = out[s]
        out[s] = None if size is None or had is None else had + size
    return out


def count_sources(
    sources: list[Source], file_source: list[int], n: int, fmt: RecordFormat, header: int, limit: int, progress: Progress,
    per_input: list[int] | None = None,
) -> tuple[list[int], list[int]]:
    """Records and bytes of each of ``n`` sources, read once (the counting pass, and ``--dry-run`` on
    inputs it reads whole anyway); each input's records appended to ``per_input`` if given."""
    counts, nbytes = [0] * n, [0] * n
    capacity = plan.read_capacity(limit)
    for s, source in zip(file_source, sources):
        reader = RecordReader([source], fmt, progress, header)
        blocks = reader.blocks(capacity, option("memory"), block=min(capacity, 32 << 20))
        records = 0
        try:
            for block, _final in blocks:
                records += count_separators(block, fmt.sep) // fmt.group
                nbytes[s] += len(block)
        finally:
            blocks.close()
        counts[s] += records
        if per_input is not None:
            per_input.append(records)
    return counts, nbytes
