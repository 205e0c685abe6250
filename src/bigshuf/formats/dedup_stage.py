"""What the ``--unique`` stages of lines, rows and tar samples share: each source's copies
dropped, the depth guard of their hash levels, and a weighted mix planned from what is left."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import mix, plan
from ..core.checkpoint import refusal
from ..errors import InputError, option
from ..progress import dedup_phase

if TYPE_CHECKING:
    from ..storage.tempspace import TempSpace

#: The top level's hash buckets' directory, under the run's temporary space (a ``--resume`` job's too).
TOP = "unique"


class DedupStage:
    """The part of a format's dedup stage that does not depend on its records: subclasses give
    the buckets' bytes (``bucket_bytes``) and their unique records (``_unique_buckets``)."""

    #: How the depth guard names the records a level could not split, and the share of -S one may take.
    repeated = "the records repeated to be shorter than about a quarter"

    def __init__(self, run: Any, temp: TempSpace, sources: int) -> None:
        self.run = run
        self.temp = temp
        self.sources = sources
        self.dropped = [0] * sources
        # --resume: the top level's hash buckets are a checkpoint, and stay until the output is in
        # place, so that a resumed run reads pass 1's blocks from them again (see ``resume``).
        self.keep_top = bool(run.state_dir)

    def scatter_all(self, blocks: Iterable[Any], buckets: Any, level: int, nbytes: int, scatter: Callable[[Any], int]) -> None:
        """Scatter each of ``blocks`` into the hash ``buckets`` of ``level`` (``scatter`` takes one and
        returns its bytes) through the run's write-behind thread, the top level's synced for
        ``--resume``; the writes waited for, ``buckets`` closed and ``blocks`` ended however it ends."""
        run = self.run
        try:
            if level:
                run.progress.start(dedup_phase(level), nbytes)
            for block in blocks:
                done = scatter(block)
                if level:
                    run.progress.update(done)
            run.writer.flush()
            if level == 0 and self.keep_top:
                buckets.sync()
        finally:
            run.writer.wait_idle()
            buckets.close()
            if isinstance(blocks, Generator):
                blocks.close()

    def bucket_bytes(self, buckets: Any) -> int:
        """The bytes the hash ``buckets`` hold."""
        raise NotImplementedError

    def _unique_buckets(self, buckets: Any, level: int, name: str, tally: list[list[int]] | None = None) -> Iterator[Any]:
        """Each hash bucket's unique records (with ``tally``: only each source's counted into it)."""
        raise NotImplementedError

    def settle_resumed(self, k: int, kept: np.ndarray, read: np.ndarray) -> None:
        """``--resume`` past the dedup pass (its ``k`` hash buckets taken up): the copies it dropped (per
        source) are what the inputs hold (``read``, counted again) less what its hash buckets kept;
        refused if they kept more."""
        run = self.run
        run.buckets += k
        run.extra_passes = max(run.extra_passes, 1)
        if (kept > read).any():
            raise refusal(
                run.state_dir, f"counts {kept.tolist()} {run.unit} kept in its hash buckets, the inputs hold {read.tolist()}"
            )
        gone = (read - kept).tolist()
        run.duplicates = sum(gone)
        if self.sources:
            self.dropped = gone
        if "k" not in run.state:
            run.announce()  # pass 1 starts here; a later checkpoint's note waits for its own files' checks

    def enter_level(self, level: int) -> None:
        """Refuse a hash level past ``plan.MAX_DEPTH`` (copies too long to be split further), and
        count its pass over the data."""
        run = self.run
        if level > plan.MAX_DEPTH:
            raise InputError(
                f"copies could not be split below {plan.format_size(run.limit)} after {level} passes: {option('unique')} "
                f"needs {self.repeated} of {option('memory')}; raise {option('memory')}"
            )
        run.extra_passes = max(run.extra_passes, level + 1)

    def plan_mix(self, buckets: Any) -> Any:
        """Weighted sources: the run's mix planned from each source's records left once their copies
        are dropped (counted from the hash ``buckets`` when a share, a fractional rate or
        ``--stratify`` needs them); returns what the run's ``_plan_mix`` returns."""
        request = self.run.request
        counted = None
        if mix.needs_counts(request.source_rates, bool(request.mix)) or request.stratify:
            counted = self.count(buckets)
        planned = self.run._plan_mix(counted)
        assert self.run.mixer is not None
        self.run.mixer.dropped = self.dropped  # the rest are counted as the buckets are read
        return planned

    def count(self, buckets: Any) -> tuple[list[int], list[int]]:
        """Each source's unique records and their bytes, deduplicated bucket by bucket without
        writing (what a mix is solved from); the buckets stay for ``unique``, and a bucket too big
        for memory is split one level deeper once, here."""
        tally = [[0] * self.sources, [0] * self.sources]
        self.run.progress.start("counting", self.bucket_bytes(buckets))
        for _none in self._unique_buckets(buckets, 0, TOP, tally):
            pass
        self.run.progress.close()
        return tally[0], tally[1]

    def drop(self, labels: np.ndarray, kept: np.ndarray) -> None:
        """Count the records not ``kept`` (``labels``: each one's source) as their sources' copies dropped."""
        for s, c in enumerate(dropped_per_source(labels, kept, self.sources)):
            self.dropped[s] += c


def dropped_per_source(labels: np.ndarray, kept: np.ndarray, sources: int) -> list[int]:
    """Each source's records not among ``kept`` (indexes into ``labels``, each record's source): its copies dropped."""
    gone = np.ones(len(labels), np.bool_)
    gone[kept] = False
    return np.bincount(labels[gone], minlength=sources).tolist()  # type: ignore[no-any-return]
