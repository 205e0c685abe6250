"""``--resume`` for lines: the settings in the job's key, and an output temp file read back as
lines. ``LineRun`` takes this as a mixin; what every format shares is ``resumable.ResumableRun``'s."""

from __future__ import annotations

from ..core import plan
from ..core.checkpoint import advice
from ..core.fingerprint import Fingerprint, fingerprint_records
from ..core.records import RecordFormat
from ..errors import OutputError, option
from ..progress import Progress
from ..quoting import quote_name
from ..storage.manifest import CHECK_BLOCK
from ..storage.sinks import CodecChoice
from ..storage.reader import RecordReader
from ..storage.sources import FileSource, Source
from .resumable import ResumableRun, WrittenFile


class ResumableLines(ResumableRun):
    """What a line run does for ``--resume``; the attributes below are the run's (and its driver's)."""

    sources: list[Source]
    fmt: RecordFormat
    entropy: int
    compress: CodecChoice | None

    def _resume_job(self) -> tuple[str, str]:
        request = self.request
        return self._job_names(
            [s.path for s in self.sources if isinstance(s, FileSource)],
            [
                self.limit, self.entropy, self.fmt.sep, self.fmt.group, request.head_count, request.repeat,
                request.header, request.shards, self.compress, request.compress_temp, request.verify,
            ],
        )

    def _read_output_back(self, path: str, codec: CodecChoice | None) -> Fingerprint:
        """The records of output temp file ``path`` (after its header, which must be the output's), as a fingerprint."""
        reader = RecordReader([WrittenFile(path, codec)], self.fmt, Progress(), self.request.header)
        total = Fingerprint()
        capacity = plan.read_capacity(self.limit)
        for block, _final in reader.blocks(capacity, option("memory"), block=min(CHECK_BLOCK, capacity)):
            total += fingerprint_records(block, self.fmt)
        if reader.header != self.out.header:
            raise OutputError(f"{quote_name(path)}: does not start with the output's header; {advice(self.state_dir)}")
        return total

