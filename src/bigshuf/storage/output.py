"""The output of a run: shuffled records routed to one sink or split over N shards, with the
header on top of each, and committed together at the end (or removed together on failure)."""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future
from typing import Any

from ..core.fingerprint import Fingerprint, fingerprint
from ..core.parallel import Workers
from ..core.records import array_block, array_bytes
from ..core.resume import FileCheck, ResumePoint
from ..errors import OutputError, UsageError, option
from .commit import CommitInterrupted, OutputFiles, deferred_signals
from .shards import make_directories, shard_names
from .sinks import AtomicFileSink, CodecChoice, Sink, open_output, output_codec
from .writeback import WriteBehind

#: Shards open at once at most (queued, not yet finished by the writer thread).
OPEN_SHARDS = 8


class Output:
    """Routes shuffled records to the output: one sink, or ``shards`` files of near-equal record counts.

    Shard ``i`` of ``N`` gets records ``[i*m//N, (i+1)*m//N)`` of the ``m`` in the output,
    so counts differ by at most one and the shards, concatenated, are the whole shuffle.
    Every file starts with ``header``. Shards are opened one at a time and finished as soon as
    they are full (a compressor's memory is held by one shard at a time), and renamed into
    place all together at the end, or removed all together on failure. Writes go through
    ``writer`` (write-behind); call ``begin`` with ``m`` before ``emit``.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | None,
        writer: WriteBehind,
        *,
        shards: int | None = None,
        compress: CodecChoice | None = None,
        header: bytes = b"",
        sync: bool = True,
    ) -> None:
        self.target = None if target is None else os.fspath(target)
        self.files = OutputFiles(sync)  # this run's lock in each output directory, and the commit
        self._made: list[str] = []  # directories made for the shards, removed again on failure
        self._finished = 0  # shards finished (closed) by the writer thread
        self.writer = writer
        self.shards = shards
        self.compress = compress
        self.header = header
        self.sinks: list[Sink] = []
        self.verify = False
        self.fingerprint = Fingerprint()  # of the records emitted, when verifying
        self.hashers: Workers | None = None  # the run's workers, which fingerprint what is emitted
        self._hashing: deque[Future[Fingerprint]] = deque()  # fingerprints not yet added
        self._paths: list[str] = []
        self._bounds: list[int] = []
        self._done = 0  # records emitted so far
        self.resume_tag: str | None = None  # --resume: fixed temporary names, kept on failure
        self.resume_dir = ""  # --resume: the checkpoint's directory, named in refusals
        self._checks: list[FileCheck] = []  # --resume: size and CRC of each file as checkpointed
        self.shard_suffix: str | None = None  # of files in a --shards directory, if not the codec's
        if shards is not None and (self.target is None or self.target == "-"):
            raise UsageError(
                f"{option('shards')} needs {option('output')} naming a directory or a pattern like out/part-{{:05d}}.jsonl"
            )

    def begin(self, total: int, restore: dict[str, Any] | None = None) -> None:
        """Plan the output now that the input has been read and ``total`` output records are known.

        ``restore`` is a ``checkpoint()`` of an interrupted ``--resume`` run: its finished
        files are taken as they are and its current file is cut back and appended to.
        """
        if self._bounds:
            return
        if self.shards is None:
            self._bounds = [0, total]
        else:
            assert self.target is not None
            directory = os.path.isdir(self.target) or self.target.endswith(os.sep)
            self._paths = shard_names(self.target, self.shards, self.compress, directory, suffix=self.shard_suffix)
            self._made = make_directories(self._paths)
            self._bounds = [i * total // self.shards for i in range(self.shards + 1)]
        if restore is not None:
            self._done = restore["done"]
            self.fingerprint = Fingerprint(*restore["fingerprint"])
            for i, (size, crc) in enumerate(restore["files"]):
                at = ResumePoint(size, crc, finished=i < len(restore["files"]) - 1)
                sink = self._file_sink(i, at)
                self.sinks.append(sink)
                self._checks.append(FileCheck(sink.tmp_path, at))
                self._finished += at.finished
        elif self.shards is None:
            if self.resume_tag is not None:
                self._open(self._file_sink(0, None))
            else:
                self._open(open_output(self.target, self._codec_choice(), files=self.files))

    def _file_sink(self, i: int, at: ResumePoint | None) -> AtomicFileSink:
        """The --resume file of shard ``i`` (or of the single output): fresh, or reopened ``at`` a checkpoint."""
        path = self._paths[i] if self.shards is not None else self.target
        assert path is not None
        finished = at is not None and at.finished
        codec = None if finished else output_codec(path, self._codec_choice())
        sink = AtomicFileSink(
            os.path.realpath(path), codec, path, self.resume_tag, at, self.resume_dir,
            files=self.files, index=None if self.shards is None else i,
        )
        if finished:
            sink.finish()
        return sink

    def checkpoint(self) -> dict[str, Any]:
        """Where the output stands after the queued writes, every file synced up to there:
        enough for ``begin(restore=...)`` (each file's size and CRC-32, records emitted, fingerprint)."""
        self.writer.flush()
        self._tally()
        size = self.sinks[-1].cut() if self.sinks else 0
        for sink in self.sinks[len(self._checks) :]:
            assert isinstance(sink, AtomicFileSink)
            self._checks.append(FileCheck(sink.tmp_path))
        last = len(self._checks) - 1
        try:
            files = [check.advance(size if i == last else None) for i, check in enumerate(self._checks)]
        except OSError as e:
            raise OutputError(f"{self._checks[-1].path}: cannot checkpoint: {e.strerror}") from None
        return {
            "files": files,
            "done": self._done,
            "fingerprint": [self.fingerprint.records, self.fingerprint.bytes, self.fingerprint.digest],
        }

    # The hooks below are where an output of table rows (tables.TableOutput) differs.

    def _codec_choice(self) -> CodecChoice | None:
        """The stream compression of the output files (``--compress``)."""
        return self.compress

    def _fingerprint(self, records: Any) -> Fingerprint:
        """The fingerprint of a chunk of emitted records."""
        return fingerprint(*array_block(records))

    def _count(self, records: Any) -> None:
        """Fingerprint a chunk emitted: on a worker if the run has several, else on the writer
        thread (overlapping the gathering); ``_tally`` adds them up."""
        if self.hashers is None or self.hashers.n == 1:
            self.writer.submit_job(lambda: self._add(self._fingerprint(records)), 0)
            return
        self._hashing.append(self.hashers.submit(lambda: self._fingerprint(records)))
        while len(self._hashing) > 2 * self.hashers.n:  # the chunks waiting to be hashed stay few
            self._add(self._hashing.popleft().result())

    def _add(self, fp: Fingerprint) -> None:
        self.fingerprint += fp

    def _tally(self) -> None:
        """Add the fingerprints still being computed (after a writer flush: those on its thread are in)."""
        while self._hashing:
            self._add(self._hashing.popleft().result())

    def _open(self, sink: Sink) -> None:
        self.sinks.append(sink)
        if self.header:
            self.writer.submit(sink.write, memoryview(self.header))

    def _write(self, shard: int, records: Any) -> None:
        """Queue ``records`` for sink number ``shard``."""
        self.writer.submit(self.sinks[shard].write, array_bytes(records))

    def _finish(self, shard: int) -> None:
        """Complete the file of sink number ``shard`` (run on the writer thread)."""
        self._close_format(shard)
        sink = self.sinks[shard]
        assert isinstance(sink, AtomicFileSink)
        sink.finish()
        self._finished += 1

    def _open_next_shard(self) -> None:
        """Finish the current shard (on the writer thread, after its data) and open the next,
        first waiting for the writer if ``OPEN_SHARDS`` shards are still open (small shards
        would otherwise be opened faster than they are finished, a descriptor each)."""
        if self.sinks:
            last = len(self.sinks) - 1
            self.writer.submit_job(lambda: self._finish(last), 0)
            if len(self.sinks) - self._finished >= OPEN_SHARDS:
                self.writer.flush()
        i = len(self.sinks)
        if self.resume_tag is not None:
            self._open(self._file_sink(i, None))
        else:
            path = self._paths[i]
            self._open(AtomicFileSink(
                os.path.realpath(path), output_codec(path, self._codec_choice()), path, files=self.files, index=i,
            ))

    def emit(self, records: Any) -> None:
        """Queue a chunk of shuffled records (an Arrow array, or a table for table rows), split across shard boundaries."""
        if self.verify:
            self._count(records)
        if self.shards is None:
            self._write(0, records)
            return
        start = 0
        while start < len(records):
            # Open shards up to the one holding record number self._done (skipping empty ones).
            while len(self.sinks) < self.shards and self._bounds[len(self.sinks)] <= self._done:
                self._open_next_shard()
            shard = len(self.sinks) - 1
            take = min(len(records) - start, self._bounds[shard + 1] - self._done)
            self._write(shard, records.slice(start, take))
            start += take
            self._done += take

    def commit(self) -> None:
        """Finish every sink, then make them visible (all shards or none, through ``OutputFiles.commit``)."""
        if self.shards is None:
            self.writer.flush()
            self._close_format(0)
            sink = self.sinks[0]
            if not isinstance(sink, AtomicFileSink):
                sink.commit()
                return
            sink.finish()
            with deferred_signals():
                sink.publish()
                self.files.committed = True
                self.files.release()
            return
        while len(self.sinks) < self.shards:
            self._open_next_shard()
        last = len(self.sinks) - 1
        self.writer.submit_job(lambda: self._finish(last), 0)
        self.writer.flush()
        moves = []
        for sink in self.sinks:
            assert isinstance(sink, AtomicFileSink)
            moves.append((sink.tmp_path, sink.path))
        try:
            self.files.commit(moves)
        except CommitInterrupted:
            for sink in self.sinks:
                assert isinstance(sink, AtomicFileSink)
                sink.keep_on_abort = True  # the journal needs them to finish the commit
            raise

    def describe(self, fp: Fingerprint) -> str:
        """A fingerprint as the verification message gives it."""
        return str(fp)

    def commit_checked(self, read: Fingerprint) -> None:
        """Commit, after checking (``--verify``) that what was emitted is what was ``read``."""
        if self.verify:
            self.writer.flush()
            self._tally()
            if self.fingerprint != read:
                raise OutputError(
                    f"verification failed: read {self.describe(read)}, wrote {self.describe(self.fingerprint)}; "
                    "output not put in place"
                )
        self.commit()

    def _close_format(self, shard: int) -> None:
        """End the file format's own framing in sink number ``shard`` (nothing for lines)."""

    def abort(self) -> None:
        """Remove every temporary file; leave existing targets untouched."""
        self.writer.wait_idle()
        for sink in self.sinks:
            sink.abort()
        if not self.files.committed:
            self.files.discard()
        self.files.release()
        if not self.files.committed:
            for directory in reversed(self._made):
                try:
                    os.rmdir(directory)
                except OSError:
                    pass  # not empty: something else is in it now

    @property
    def bytes_written(self) -> int:
        return sum(s.bytes_written for s in self.sinks)
