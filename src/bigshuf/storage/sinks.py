"""Outputs: stdout, a file renamed into place at the end, or N shards committed together.

Every sink may compress (``--compress`` or the ``-o`` suffix). ``Output`` routes shuffled
records to one sink or splits them across shards, with the header at the top of each.
"""

from __future__ import annotations

import os
import stat
import sys
from string import Formatter
from typing import Any, BinaryIO

from .commit import CommitInterrupted, OutputFiles, backup_name, deferred_signals, name_max
from ..errors import OutputError, UsageError, option
from ..core.fingerprint import Fingerprint, fingerprint
from ..core.records import array_block, array_bytes
from ..core.resume import FileCheck, ResumePoint, open_output_temp
from .safefs import create_exclusive, sync_directory, sync_file
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
    new one never appears half-written. The temporary file is created exclusively (never
    through a symbolic link) and private until ``finish`` gives it the target's permission
    bits (a new file's from the umask) on its descriptor, and syncs it unless ``sync`` is off.
    The target keeps its permission bits if it existed (but, being a new file, not its other
    hard links). ``finish`` and ``publish`` split the commit so that shards can all be finished
    before any is renamed; ``files`` holds the run's lock in the directory (one per run, not
    one per file: a finished file keeps no descriptor open).
    """

    def __init__(
        self, path: str, codec: CodecChoice | None, name: str | None = None,
        resume_tag: str | None = None, resume_at: ResumePoint | None = None, resume_dir: str = "", *,
        files: OutputFiles | None = None, index: int | None = None, sync: bool = True,
    ) -> None:
        self.path = path
        self.name = name or path
        self.keep_on_abort = resume_tag is not None
        self._own_files = files is None
        self.files = files if files is not None else OutputFiles(sync)
        self._lock = -1
        directory = os.path.dirname(os.path.abspath(path))
        try:
            if resume_tag is None:
                self.tmp_path = self.files.temp_name(path, index)
                fd = create_exclusive(self.tmp_path, 0o600)
            else:
                # --resume: a name the next run can find, checked against the checkpoint in
                # resume_dir and cut back to it; never followed through a link, never created over.
                self.tmp_path = os.path.join(directory, f".{os.path.basename(path)}.{resume_tag}.bigshuf-tmp")
                # The job's lock (resume.JobLock) keeps other runs of the job away, and
                # leftover cleaning never touches --resume names, so no per-file lock is needed.
                fd = open_output_temp(self.tmp_path, resume_at, resume_dir)
        except OSError as e:
            self._release()
            raise OutputError(f"{self.name}: {e.strerror}") from None
        except BaseException:
            self._release()
            raise
        try:
            super().__init__(open(fd, "wb", buffering=1 << 20), codec)
        except BaseException:
            os.unlink(self.tmp_path)
            self._release()
            raise
        if resume_at is not None and resume_at.size:
            self._compressed_any = True  # what is on disk already holds the stream's start

    def _release(self) -> None:
        """Let go of the file's lock, and of the run's directory lock if this sink owns it."""
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1
        if self._own_files:
            self.files.release()

    def finish(self) -> None:
        """Complete the temporary file: compressed stream ended, data flushed, the target's
        permission bits set on the descriptor, synced (unless ``sync`` is off) and closed."""
        self._finish()
        try:
            if not self._raw.closed:
                try:
                    mode = os.stat(self.path).st_mode & 0o7777
                except FileNotFoundError:
                    umask = os.umask(0)
                    os.umask(umask)
                    mode = 0o666 & ~umask
                os.fchmod(self._raw.fileno(), mode)
                if self.files.sync:
                    sync_file(self._raw.fileno())
            self._raw.close()
        except OSError as e:
            raise OutputError(f"{self.name}: {e.strerror}") from None
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1

    def publish(self) -> None:
        """Rename the finished temporary file over the target, and sync the directory."""
        try:
            self.files.step()
            os.replace(self.tmp_path, self.path)
            self.files.step()
            if self.files.sync:
                sync_directory(os.path.dirname(self.path))
        except OSError as e:
            raise OutputError(f"{self.name}: {e.strerror}") from None
        finally:
            self._release()

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
        self._release()


def output_codec(path: str | None, compress: CodecChoice | None) -> CodecChoice | None:
    """``--compress`` if given (``none`` means plain), else the codec named by the output's suffix."""
    if compress is not None:
        return None if compress[0] == "none" else compress
    if path is None:
        return None
    from .codecs import codec_for_suffix

    codec = codec_for_suffix(path)
    return None if codec is None else (codec, None)


def open_output(
    path: str | os.PathLike[str] | None, compress: CodecChoice | None = None, *,
    files: OutputFiles | None = None, sync: bool = True,
) -> Sink:
    """The sink for ``-o PATH``: stdout for None or ``-``; a symlink is followed to the file it names.
    ``files`` is the run's set of output files (its lock in the directory), if it has one."""
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
    return AtomicFileSink(os.path.realpath(path), codec, os.fspath(path), files=files, sync=sync)


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
        raise UsageError(f"{option('shards')}: {option('output')} '{target}' is not a valid pattern ({e}); use e.g. {example}") from None
    if len(set(names)) != shards:
        fields = [
            f"{{{name}{'!' + conv if conv else ''}{':' + spec if spec else ''}}}"
            for _, name, spec, conv in Formatter().parse(target) if name is not None
        ]
        if fields:  # a field that gives shards the same name: its format is the fault, not its absence
            raise UsageError(f"{shards} shards: '{fields[0]}' in {option('output')} '{target}' cannot number shards; use {{}} or {{:05d}}")
        raise UsageError(f"{shards} shards need {option('output')} to be {directory_words} or a pattern with {{}}, like {example}")
    if any("\0" in name for name in names):
        raise UsageError(f"{option('output')} '{target}' gives shard names with a NUL byte, which no file may have; use {{}} or {{:05d}}")
    return names


def make_directories(paths: list[str]) -> list[str]:
    """Create the missing directories of ``paths``; return the ones this call made, parents first."""
    made: list[str] = []
    for directory in dict.fromkeys(os.path.dirname(p) for p in paths):
        missing = []
        d = directory
        while d and not os.path.isdir(d) and d != os.path.dirname(d):
            missing.append(d)
            d = os.path.dirname(d)
        for d in reversed(missing):
            try:
                os.mkdir(d)
                made.append(d)
            except FileExistsError:
                pass  # made meanwhile by someone else
            except OSError as e:
                raise OutputError(f"{d}: {e.strerror}") from None
    return made


def shard_paths(target: str, shards: int, compress: CodecChoice | None, suffix: str | None = None) -> list[str]:
    """The local files of ``--shards=N`` (see ``shard_names``), with their directories made."""
    paths = shard_names(target, shards, compress, os.path.isdir(target) or target.endswith(os.sep), suffix=suffix)
    make_directories(paths)
    return paths


#: Memory the bookkeeping of one shard takes at most (its names, bounds and commit journal entry).
SHARD_BYTES = 1024


def _existing_ancestor(path: str) -> str:
    """``path`` or its nearest ancestor that exists."""
    path = os.path.abspath(path)
    while not os.path.lexists(path) and path != os.path.dirname(path):
        path = os.path.dirname(path)
    return path


def _check_shard_count(target: str, shards: int) -> None:
    """Refuse more shards than the file system has files left, or than memory can name."""
    place = _existing_ancestor(target)
    try:
        fs = os.statvfs(place)
    except OSError:
        return
    if fs.f_files and shards > fs.f_favail:
        raise OutputError(f"{shards} shards: the file system of {place} has room for only {fs.f_favail} more files")
    from ..core.plan import format_size, physical_memory

    need, have = shards * SHARD_BYTES, physical_memory()
    if need > have:
        raise UsageError(
            f"{shards} shards: naming and committing that many files needs about {format_size(need)} of memory; "
            f"this machine has {format_size(have)}"
        )


def check_output_directory(
    target: str | None, shards: int | None, compress: CodecChoice | None = None, suffix: str | None = None
) -> None:
    """Before any input is read: refuse (one line) an output that cannot be written, its directory
    missing (shards create theirs), not writable, a directory where a file is expected, or a
    name too long; and tidy what killed runs left in its directories, finishing their commits."""
    if target is None or target == "-":
        return
    if shards is None:
        try:
            mode: int | None = os.stat(target).st_mode
        except OSError:
            mode = None
        if mode is not None and stat.S_ISDIR(mode):
            raise OutputError(f"{target}: Is a directory")
        if mode is not None and not stat.S_ISREG(mode):
            return  # a device or FIFO, written in place
        finals = [os.path.realpath(target)]
        if not os.path.isdir(os.path.dirname(finals[0])):
            raise OutputError(f"{target}: No such file or directory")
    else:
        _check_shard_count(target, shards)
        as_directory = os.path.isdir(target) or target.endswith(os.sep)
        if as_directory and os.path.lexists(target.rstrip(os.sep) or os.sep) and not os.path.isdir(target):
            raise OutputError(f"{target}: Not a directory")
        finals = [os.path.realpath(p) for p in shard_names(target, shards, compress, as_directory, suffix=suffix)]
        first: dict[str, int] = {}
        for i, final in enumerate(finals):
            # Two shards renamed onto one file (a symlink, or '..' in the pattern) would lose one.
            if first.setdefault(final, i) != i:
                raise OutputError(f"{target}: shards {first[final]} and {i} would both be written to {final}")
    longest: dict[str, int] = {}
    for final in finals:
        directory, base = os.path.split(final)
        longest[directory] = max(longest.get(directory, 0), len(os.fsencode(base)))
    probe = OutputFiles()  # its lock, claimed in each directory, proves a file can be created there
    try:
        for directory, most in longest.items():
            place = _existing_ancestor(directory)
            if not os.path.isdir(place):
                raise OutputError(f"{target}: {place} is not a directory")
            if place == directory:
                remove_dead_outputs(directory)
            probe.claim(place)  # writable, not a read-only file system
            if most > name_max(place):
                raise OutputError(f"{target}: File name too long")
        for final in finals:
            _check_replaceable(final, probe)
    finally:
        probe.release()


def _check_replaceable(final: str, probe: OutputFiles) -> None:
    """Refuse, before any input is read, a target the commit could not put in place: a
    directory, or an existing file that cannot be hard-linked (immutable or append-only), since
    the commit keeps the old file as a hard-linked backup until the new one is in."""
    try:
        st = os.stat(final)
    except OSError:
        return  # a new file
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{final}: Is a directory")
    if not stat.S_ISREG(st.st_mode):
        return
    backup = backup_name(probe.temp_name(final))
    try:
        os.link(final, backup, follow_symlinks=False)
    except OSError as e:
        raise OutputError(f"{final}: cannot be replaced: {e.strerror}") from None
    os.unlink(backup)


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
