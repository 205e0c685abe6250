"""``--resume`` for lines: the job's key from the line settings, and output files read back as
records. ``LineRun`` takes this as a mixin; the lock and the checkpoint are ``resume_job``'s."""

from __future__ import annotations

import os
from typing import BinaryIO

from ..core import plan
from ..core.fingerprint import Fingerprint, fingerprint_records
from ..core.records import RecordFormat
from ..core.resume import advice
from ..errors import OutputError, option
from ..progress import Progress
from ..storage.decoding import open_reader
from ..storage.manifest import CHECK_BLOCK
from ..storage.safefs import open_nofollow
from ..storage.sinks import CodecChoice
from ..storage.sources import FileSource, RecordReader, Source
from .resume_job import ResumableRun


class _WrittenFile:
    """An output temp file of this job, read back through the codec it was written with (never
    guessed from its first bytes), without following a link."""

    def __init__(self, path: str, codec: CodecChoice | None) -> None:
        self.name = path
        self.codec = codec

    def size(self) -> int | None:
        return None

    def open(self) -> BinaryIO:
        raw = os.fdopen(open_nofollow(self.name), "rb")
        return raw if self.codec is None else open_reader(raw, self.codec[0], self.name)


class ResumableLines(ResumableRun):
    """What a line run does for ``--resume``; the attributes below are the run's (and its driver's)."""

    sources: list[Source]
    fmt: RecordFormat
    limit: int
    entropy: int
    compress: CodecChoice | None

    def _resume_job(self) -> tuple[str, str]:
        """A ``--resume`` job's key and name (see ``ResumableRun._job_key``): the file inputs, and
        the settings that shape a line output."""
        request = self.request
        return self._job_key(
            [s.path for s in self.sources if isinstance(s, FileSource)],
            [
                self.limit, self.entropy, self.fmt.sep, self.fmt.group, request.head_count, request.repeat,
                request.header, request.shards, self.compress, request.compress_temp, request.verify,
            ],
        )

    def _read_output_back(self, path: str, codec: CodecChoice | None) -> Fingerprint:
        """The records of output temp file ``path`` (after its header, which must be the output's), as
        a fingerprint: a resumed run counts what its files hold rather than what its checkpoint says."""
        reader = RecordReader([_WrittenFile(path, codec)], self.fmt, Progress(), self.request.header)
        total = Fingerprint()
        capacity = plan.read_capacity(self.limit)
        for block, _final in reader.blocks(capacity, option("memory"), block=min(CHECK_BLOCK, capacity)):
            total += fingerprint_records(block, self.fmt)
        if reader.header != self.out.header:
            raise OutputError(f"{path}: does not start with the output's header; {advice(self.state_dir)}")
        return total
