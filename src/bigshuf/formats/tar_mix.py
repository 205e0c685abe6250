"""Weighted sources of tar samples (``--source``, ``--rate``, ``--mix``, ``--stratify``): which
samples of each source go into the shuffle, and with ``--stratify`` into which split, drawn as for
lines (``core.mix``, ``core.stratify``).

A tar source takes rates up to 1: each sample is in the mix once or not at all. A rate above 1
would write a sample twice under its one key, and WebDataset reads two samples of one key that
end up side by side as one (the reason a key used twice in the inputs is refused): the tar format's
``no_copies`` in ``registry``, which ``core.mix.refuse_copies`` reads wherever rates are resolved. ``TarRun``
takes this as a mixin; the draws live in ``core.mix``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator

import numpy as np

from ..core import mix, plan, streams
from ..core.mix import Mixer
from ..core.stratify import Stratifier
from ..progress import Progress
from ..request import Request
from ..storage.layout import parse_split
from ..storage.output import Output
from ..storage.sources import Source
from .line_mix import source_sizes
from .tar_input import SampleReader


class WeightedSamples:
    """What a tar run does with weighted sources; the attributes below are the run's."""

    request: Request
    paths: list[str | Source]
    limit: int
    entropy: int
    progress: Progress
    out: Output
    mixer: Mixer | None
    stratifier: Stratifier | None
    input_records: list[int] | None
    #: Each input's bytes once decompressed (the reader's ``decoded_sizes``), weighing uncounted sources.
    decoded: Callable[[], list[int | None]]

    def source_stats(self) -> tuple[mix.SourceStats, ...]:
        return () if self.mixer is None else self.mixer.stats()

    def _plan_mix(self, counted: tuple[list[int], list[int]] | None = None) -> float:
        """Count each source's samples and bytes first when a share or a fractional rate needs them
        (unless ``counted`` gives them: ``--unique``'s samples left), solve the rates (refusing one
        above 1), and return the expected bytes of the mix over the bytes read (for sizing the buckets)."""
        request = self.request
        file_source = mix.source_files(request)
        n = len(request.sources)
        counts: list[int] | None = None
        nbytes: list[int] | None = None
        sizes: list[int | None]
        if counted is not None:
            counts, nbytes = counted
            sizes = list(nbytes)
        elif mix.needs_counts(request.source_rates, bool(request.mix)) or request.stratify:
            counts, nbytes = self._count_sources(file_source, n)
            sizes = list(nbytes)
        else:
            sizes = source_sizes(self.decoded(), file_source, n)
        self.mixer = mix.mixer_for(request, counts, nbytes)  # refuses a rate above 1 (the tar format's no_copies)
        if request.stratify:
            assert request.split is not None
            self.stratifier = Stratifier(self.mixer.names, self.mixer.multiset_sizes(), parse_split(request.split))
            self.out.split_totals = self.stratifier.totals
        return self.mixer.expected_factor(sizes)

    def _count_sources(self, file_source: list[int], n: int) -> tuple[list[int], list[int]]:
        """Samples and their bytes in each source, read once without writing (the counting pass); each
        input's samples kept for a ``--resume`` checkpoint, which a resumed run's count must match."""
        reader = SampleReader(self.paths, self.progress)
        self.progress.start("counting", reader.total_size())
        blocks = reader.blocks(plan.read_capacity(self.limit))
        try:
            for _block, _offsets, _final in blocks:
                pass
        finally:
            blocks.close()
        self.progress.close()
        self.input_records = [records for records, _size in reader.per_input]
        counts, nbytes = [0] * n, [0] * n
        for s, (records, size) in zip(file_source, reader.per_input):
            counts[s] += records
            nbytes[s] += size
        return counts, nbytes

    def _picked(self, files: np.ndarray, key: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
        """Whether each sample of a block (``files``: each one's input, in order) is in the mix,
        drawn from stream ``selection(key)``, and with ``--stratify`` the split of each sample in
        it (in order), from stream ``stratify(key)``; the blocks must come in input order."""
        assert self.mixer is not None
        sources = self.mixer.file_source[files]
        bounds = [0, *(np.flatnonzero(np.diff(sources)) + 1).tolist(), len(sources)]
        counts = [(int(sources[lo]), hi - lo) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]
        chosen = self.mixer.pick(self.entropy, streams.selection(key), counts)
        mult = self.mixer.multiplicity(counts, chosen)
        picked: np.ndarray = mult > 0
        if self.stratifier is None:
            return picked, None
        per_source = [(s, self.mixer.copies[s] * c + len(picks)) for (s, c), picks in zip(counts, chosen)]
        drawn = self.stratifier.assign(self.entropy, streams.stratify(key), per_source)
        labels = np.concatenate([np.empty(0, self.stratifier.dtype), *drawn])
        return picked, labels

def with_files(
    reader: SampleReader, blocks: Iterator[tuple[np.ndarray, np.ndarray]]
) -> Generator[tuple[np.ndarray, np.ndarray, np.ndarray], None, None]:
    """Each block of ``blocks`` (read by ``reader``) with the input of each of its samples."""
    for data, offsets in blocks:
        yield data, offsets, reader.block_files
