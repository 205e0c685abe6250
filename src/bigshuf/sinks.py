"""Outputs: stdout, a file renamed into place at the end, or N shards committed together.

Every sink may compress (``--compress`` or the ``-o`` suffix). ``Output`` routes shuffled
records to one sink or splits them across shards, with the header at the top of each.
"""

from __future__ import annotations

import bisect
import fcntl
import os
import stat
import sys
import tempfile
from typing import Any, BinaryIO

from .errors import OutputError, UsageError
from .fingerprint import Fingerprint, fingerprint
from .records import array_block, array_bytes
from .tempspace import remove_dead_outputs
from .writeback import WriteBehind

CodecChoice = tuple[str, "int | None"]


class Sink:
    """Where shuffled bytes go; ``commit`` makes them visible, ``abort`` leaves no trace."""

    name = "standard output"

    def __init__(self, raw: BinaryIO, codec: CodecChoice | None) -> None:
        self._raw = raw
        self._codec = codec
        # The compressing stream, opened at the first write (and again after each ``cut``).
        self._stream: BinaryIO | None = None if codec else raw
        self._compressed_any = False
        self.bytes_written = 0

    def _writer(self) -> BinaryIO:
        if self._stream is None:
            from .codecs import open_writer

            assert self._codec is not None
            try:
                self._stream = open_writer(self._raw, self._codec[0], self._codec[1])
            except OSError as e:
                raise self.write_error(e) from None
            self._compressed_any = True
        return self._stream

    def write(self, data: memoryview | bytes) -> None:
        """Write all of ``data``."""
        try:
            self._writer().write(data)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise self.write_error(e) from None
        self.bytes_written += len(data)

    def cut(self) -> int:
        """End the compressed stream here (a later write starts a new member or frame), flush,
        and return the bytes on disk: a point a resumed run can truncate to and append from."""
        try:
            if self._stream is not None and self._stream is not self._raw:
                self._stream.close()
                self._stream = None
            self._raw.flush()
            return self._raw.tell()
        except OSError as e:
            raise self.write_error(e) from None

    def _finish(self) -> None:
        """End the compressed stream, if any, and flush everything to the raw file."""
        try:
            if self._codec is not None and not self._compressed_any:
                self._writer()  # even an empty output is a valid compressed stream
            if self._stream is not None and self._stream is not self._raw:
                self._stream.close()
            self._stream = self._raw  # let the compressor's memory go now
            self._raw.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise self.write_error(e) from None

    def write_error(self, e: OSError) -> OutputError:
        """The error for a failed write, naming this output."""
        return OutputError(f"{self.name}: write error: {e.strerror}")

    def commit(self) -> None:
        """The output is complete."""
        self._finish()

    def abort(self) -> None:
        """The run failed: nothing more is written."""


class StdoutSink(Sink):
    """Standard output, written through its file descriptor in large calls."""

    def __init__(self, codec: CodecChoice | None = None) -> None:
        super().__init__(open(sys.stdout.fileno(), "wb", buffering=1 << 20, closefd=False), codec)

    def write_error(self, e: OSError) -> OutputError:
        """GNU's words for standard output, which they do not name: ``write error: ...``."""
        return OutputError(f"write error: {e.strerror}")


class DeviceSink(Sink):
    """A character device, FIFO or socket named by ``-o`` (``/dev/null``): written in place."""

    def __init__(self, path: str, codec: CodecChoice | None) -> None:
        self.name = path
        try:
            raw = open(path, "wb", buffering=1 << 20)
        except OSError as e:
            raise OutputError(f"{path}: {e.strerror}") from None
        super().__init__(raw, codec)

    def commit(self) -> None:
        self._finish()
        try:
            self._raw.close()
        except OSError as e:
            raise OutputError(f"{self.name}: write error: {e.strerror}") from None

    def abort(self) -> None:
        try:
            self._raw.close()
        except OSError:
            pass


class AtomicFileSink(Sink):
    """A file built under a temporary name in the target's directory and renamed at the end.

    A failed run removes the temporary file, so an existing target is never touched and a
    new one never appears half-written. The target keeps its permission bits if it existed
    (but, being a new file, not its other hard links). ``finish`` and ``publish`` split the
    commit so that shards can all be finished before any is renamed.
    """

    def __init__(
        self, path: str, codec: CodecChoice | None, name: str | None = None,
        resume_tag: str | None = None, resume_size: int | None = None,
    ) -> None:
        self.path = path
        self.name = name or path
        self.keep_on_abort = resume_tag is not None
        directory = os.path.dirname(os.path.abspath(path))
        try:
            if resume_tag is None:
                fd, self.tmp_path = tempfile.mkstemp(
                    prefix=f".{os.path.basename(path)}.", suffix=".bigshuf-tmp", dir=directory
                )
            else:
                # --resume: a name the next run can find, cut back to the last checkpoint.
                self.tmp_path = os.path.join(directory, f".{os.path.basename(path)}.{resume_tag}.bigshuf-tmp")
                fd = os.open(self.tmp_path, os.O_CREAT | os.O_RDWR, 0o600)
                os.ftruncate(fd, resume_size or 0)
                os.lseek(fd, 0, os.SEEK_END)
        
        except OSError as e:
            raise OutputError(f"{self.name}: {e.strerror}") from None
        # Held until the rename: a later run removes only temporary files nobody holds.
        self._lock = os.open(self.tmp_path, os.O_RDONLY)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        remove_dead_outputs(directory)
        try:
            super().__init__(open(fd, "wb", buffering=1 << 20), codec)
        except BaseException:
            os.unlink(self.tmp_path)
            self._unlock()
            raise
        if resume_size:
            self._compressed_any = True  # what is on disk already holds the stream's start

    def _unlock(self) -> None:
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1

    def finish(self) -> None:
        """Complete the temporary file (compressed stream ended, data flushed, file closed)."""
        self._finish()
        try:
            self._raw.close()
            try:
                mode = os.stat(self.path).st_mode & 0o7777
            except FileNotFoundError:
                umask = os.umask(0)
                os.umask(umask)
                mode = 0o666 & ~umask
            os.chmod(self.tmp_path, mode)
        except OSError as e:
            raise OutputError(f"{self.name}: {e.strerror}") from None

    def publish(self) -> None:
        """Rename the finished temporary file over the target."""
        try:
            os.replace(self.tmp_path, self.path)
        except OSError as e:
            raise OutputError(f"{self.name}: {e.strerror}") from None
        finally:
            self._unlock()

    def commit(self) -> None:
        self.finish()
        self.publish()

    def abort(self) -> None:
        try:
            self._raw.close()
        except OSError:
            pass
        if not self.keep_on_abort:
            try:
                os.unlink(self.tmp_path)
            except FileNotFoundError:
                pass
        self._unlock()


def output_codec(path: str | None, compress: CodecChoice | None) -> CodecChoice | None:
    """``--compress`` if given (``none`` means plain), else the codec named by the output's suffix."""
    if compress is not None:
        return None if compress[0] == "none" else compress
    if path is None:
        return None
    from .codecs import codec_for_suffix

    codec = codec_for_suffix(path)
    return None if codec is None else (codec, None)


def open_output(path: str | os.PathLike[str] | None, compress: CodecChoice | None = None) -> Sink:
    """The sink for ``-o PATH``: stdout for None or ``-``; a symlink is followed to the file it names."""
    if path is None or os.fspath(path) == "-":
        return StdoutSink(output_codec(None, compress))
    codec = output_codec(os.fspath(path), compress)
    try:
        # The path itself, links followed by the kernel: /dev/stdout onto a pipe has no real path.
        mode = os.stat(path).st_mode
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        return DeviceSink(os.fspath(path), codec)
    return AtomicFileSink(os.path.realpath(path), codec, os.fspath(path))


def shard_names(
    target: str, shards: int, compress: CodecChoice | None, directory: bool, *, suffix: str | None = None,
    example: str = "out/part-{:05d}.jsonl", directory_words: str = "a directory",
) -> list[str]:
    """The names of ``--shards=N`` files, making nothing: ``DIR/part-NNNNN[.codec]`` (``suffix``, if
    given, instead of the codec's) when ``target`` is a ``directory``, else ``target`` formatted with
    the shard number, which must give N different names. ``example`` and ``directory_words`` word
    the errors (a URL directory ends in ``/``)."""
    if directory:
        from .codecs import CODECS

        if suffix is None:
            codec = output_codec(None, compress)
            suffix = CODECS[codec[0]].suffixes[0] if codec else ""
        return [os.path.join(target, f"part-{i:05d}{suffix}") for i in range(shards)]
    try:
        names = [target.format(i) for i in range(shards)]
    except (IndexError, KeyError, ValueError) as e:
        raise UsageError(f"--shards: -o '{target}' is not a valid pattern ({e}); use e.g. {example}") from None
    if len(set(names)) != shards:
        raise UsageError(f"--shards={shards} needs -o to be {directory_words} or a pattern with {{}}, like {example}")
    return names


def shard_paths(target: str, shards: int, compress: CodecChoice | None, suffix: str | None = None) -> list[str]:
    """The local files of ``--shards=N`` (see ``shard_names``), with their directories made."""
    if os.path.isdir(target) or target.endswith(os.sep):
        paths = shard_names(target, shards, compress, True, suffix=suffix)
        os.makedirs(target, exist_ok=True)
        return paths
    paths = shard_names(target, shards, compress, False)
    for directory in {os.path.dirname(p) for p in paths} - {""}:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{directory}: {e.strerror}") from None
    return paths


def check_output_directory(target: str | None, shards: int | None) -> None:
    """Fail before reading any input if ``-o``'s directory is missing (shards create theirs)."""
    if target is None or target == "-" or shards is not None:
        return
    directory = os.path.dirname(os.path.realpath(target))
    if not os.path.isdir(directory):
        raise OutputError(f"{target}: No such file or directory")


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
    ) -> None:
        self.target = None if target is None else os.fspath(target)
        self.writer = writer
        self.shards = shards
        self.compress = compress
        self.header = header
        self.sinks: list[Sink] = []
        self.verify = False
        self.fingerprint = Fingerprint()  # of the records emitted, when verifying
        self._paths: list[str] = []
        self._bounds: list[int] = []
        self._done = 0  # records emitted so far
        self.resume_tag: str | None = None  # --resume: fixed temporary names, kept on failure
        self.shard_suffix: str | None = None  # of files in a --shards directory, if not the codec's
        if shards is not None and (self.target is None or self.target == "-"):
            raise UsageError("--shards needs -o naming a directory or a pattern like out/part-{:05d}.jsonl")

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
            self._paths = shard_paths(self.target, self.shards, self.compress, self.shard_suffix)
            self._bounds = [i * total // self.shards for i in range(self.shards + 1)]
        if restore is not None:
            self._done = restore["done"]
            self.fingerprint = Fingerprint(*restore["fingerprint"])
            for i in range(restore["opened"]):
                current = i == restore["opened"] - 1
                sink = self._file_sink(i, None if current else restore["finished"][i], restore["size"] if current else None)
                self.sinks.append(sink)
        elif self.shards is None:
            if self.resume_tag is not None:
                self._open(self._file_sink(0, None, None))
            else:
                self._open(open_output(self.target, self._codec_choice()))

    def _file_sink(self, i: int, finished_size: int | None, size: int | None) -> AtomicFileSink:
        """The file of shard ``i`` (or of the single output), fresh, finished, or resumed at ``size``."""
        path = self._paths[i] if self.shards is not None else self.target
        assert path is not None
        codec = None if finished_size is not None else output_codec(path, self._codec_choice())
        sink = AtomicFileSink(
            os.path.realpath(path), codec, path, self.resume_tag,
            finished_size if finished_size is not None else size,
        )
        if finished_size is not None:
            sink.finish()
        return sink

    def checkpoint(self) -> dict[str, Any]:
        """Where the output stands after the queued writes: enough for ``begin(restore=...)``."""
        self.writer.flush()
        finished = [os.path.getsize(s.tmp_path) for s in self.sinks[:-1] if isinstance(s, AtomicFileSink)]
        return {
            "opened": len(self.sinks),
            "finished": finished,
            "size": self.sinks[-1].cut() if self.sinks else 0,
            "done": self._done,
            "fingerprint": [self.fingerprint.records, self.fingerprint.bytes, self.fingerprint.digest],
        }

    # The hooks below are where an output of table rows (tables.TableOutput) differs.

    def _codec_choice(self) -> CodecChoice | None:
        """The stream compression of the output files (``--compress``)."""
        return self.compress

    def _count(self, records: Any) -> None:
        self.fingerprint += fingerprint(*array_block(records))

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

    def _open_next_shard(self) -> None:
        """Finish the current shard (on the writer thread, after its data) and open the next."""
        if self.sinks:
            last = len(self.sinks) - 1
            self.writer.submit_job(lambda: self._finish(last), 0)
        i = len(self.sinks)
        if self.resume_tag is not None:
            self._open(self._file_sink(i, None, None))
        else:
            path = self._paths[i]
            self._open(AtomicFileSink(os.path.realpath(path), output_codec(path, self._codec_choice()), path))

    def emit(self, records: Any) -> None:
        """Queue a chunk of shuffled records (an Arrow array, or a table for table rows), split across shard boundaries."""
        if self.verify:
            # On the writer thread, overlapping the main thread's gathering; read after a flush.
            self.writer.submit_job(lambda: self._count(records), 0)
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
        """Finish every sink, then make them visible (all shards or none)."""
        if self.shards is None:
            self.writer.flush()
            self._close_format(0)
            self.sinks[0].commit()
            return
        while len(self.sinks) < self.shards:
            self._open_next_shard()
        last = len(self.sinks) - 1
        self.writer.submit_job(lambda: self._finish(last), 0)
        self.writer.flush()
        published: list[AtomicFileSink] = []
        try:
            for sink in self.sinks:
                assert isinstance(sink, AtomicFileSink)
                sink.publish()
                published.append(sink)
        except BaseException:
            for sink in published:
                try:
                    os.unlink(sink.path)
                except OSError:
                    pass
            raise

    def describe(self, fp: Fingerprint) -> str:
        """A fingerprint as the verification message gives it."""
        return str(fp)

    def commit_checked(self, read: Fingerprint) -> None:
        """Commit, after checking (``--verify``) that what was emitted is what was ``read``."""
        if self.verify:
            self.writer.flush()
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

    @property
    def bytes_written(self) -> int:
        return sum(s.bytes_written for s in self.sinks)
