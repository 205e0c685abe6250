"""``--resume`` for tar samples: the settings in the job's key, each input's samples as pass 1
has read them, and an output temp file read back as samples. ``TarRun`` takes this as a mixin;
what every format shares is ``resumable.ResumableRun``'s, the bucket pairs' state ``tar_buckets``'."""

from __future__ import annotations

from typing import Any

from ..core import plan
from ..core.fingerprint import Fingerprint, fingerprint
from ..progress import Progress
from ..storage.sinks import CodecChoice
from ..storage.sources import FileSource, Source
from .resumable import ResumableRun, WrittenFile
from .tar_input import SampleReader, as_source
from .tar_members import BLOCK


class ResumableSamples(ResumableRun):
    """What a tar run does for ``--resume``; the attributes below are the run's (and its driver's)."""

    record_block = BLOCK
    paths: list[str | Source]
    entropy: int
    compress: CodecChoice | None
    reader: SampleReader | None

    def _input_files(self) -> list[str]:
        """The inputs' paths (``--resume`` takes local files only: ``Request`` refuses others)."""
        return [source.path for source in map(as_source, self.paths) if isinstance(source, FileSource)]

    def _resume_job(self) -> tuple[str, str]:
        request = self.request
        return self._job_names(
            self._input_files(),
            ["samples", self.limit, self.entropy, request.head_count, request.shards, self.compress, request.compress_temp, request.verify],
        )

    def _read_output_back(self, path: str, codec: CodecChoice | None) -> Fingerprint:
        """The samples of output temp file ``path`` (a finished tar, or the current one cut at its
        last checkpoint, before its end-of-archive blocks), each read and checked as an input's, as a fingerprint."""
        total = Fingerprint()
        for block, offsets, _final in SampleReader([WrittenFile(path, codec)], Progress()).blocks(plan.read_capacity(self.limit)):
            total += fingerprint(block, offsets)
        return total

    def records_read(self) -> list[list[Any]] | None:
        """Each input's samples as pass 1 has read them so far: a resumed run reading the same blocks
        again must count the same (a header moved where the content check did not look)."""
        if self.resume_name is None or self.reader is None or self.request.unique:
            return None  # --unique: pass 1's blocks come from the hash buckets, each checked against its samples
        sources = self.reader.sources
        return [[s.path, counts[0]] for s, counts in zip(sources, self.reader.per_input) if isinstance(s, FileSource)]
