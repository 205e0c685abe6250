"""Sinks: where output bytes go — stdout, a device, or a file written beside its target and renamed
into place at the end. Every sink may compress (``--compress`` or the ``-o`` suffix)."""

from __future__ import annotations

import errno
import os
import sys
from typing import BinaryIO

from ..core.resume import ResumePoint, open_output_temp
from ..errors import OutputError, OutputPipeClosed, os_reason
from .commit import OutputFiles
from .paths import followed_path, own_descriptor
from ..quoting import quote_name
from .safefs import create_exclusive, sync_directory, sync_file, take_attributes, written_in_place
from .sliced import open_sliced
from .threads import deferred_signals, each

CodecChoice = tuple[str, "int | None"]


class Sink:
    """Where shuffled bytes go; ``commit`` makes them visible, ``abort`` leaves no trace."""

    name = "standard output"

    @property
    def shown(self) -> str:
        """The output's name in a message, quoted as GNU tools quote a file name."""
        return quote_name(self.name)

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
        except BrokenPipeError as e:
            raise self.pipe_closed(e) from None
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

    def flush(self) -> None:
        """Push the buffered bytes to the file (a compressed stream's state stays as it is), so a
        write error is met now, before a companion file (a Megatron ``.idx``) is written. A file
        already finished (one a ``--resume`` run took up complete) has nothing left to push."""
        if self._raw.closed:
            return
        try:
            self._raw.flush()
        except BrokenPipeError as e:
            raise self.pipe_closed(e) from None
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
        except BrokenPipeError as e:
            raise self.pipe_closed(e) from None
        except OSError as e:
            raise self.write_error(e) from None

    def pipe_closed(self, e: BrokenPipeError) -> OutputPipeClosed:
        """The error for a write to a pipe its reader closed: ``write_error``'s words."""
        return OutputPipeClosed(*self.write_error(e).args)

    def write_error(self, e: OSError) -> OutputError:
        """The error for a failed write, naming this output."""
        return OutputError(f"{self.shown}: write error: {os_reason(e)}")

    def commit(self) -> None:
        """The output is complete."""
        self._finish()

    def abort(self) -> None:
        """The run failed: nothing more is written."""


def stdout_descriptor() -> int:
    """``sys.stdout``'s descriptor, once what a library caller printed to it is flushed (so it comes
    first); an ``OutputError`` if it has none: closed, or replaced (a notebook's, ``io.StringIO``)."""
    stream = sys.stdout
    if stream is None:  # (Python's, for a descriptor 1 closed at start)
        raise OutputError(f"write error: {os.strerror(errno.EBADF)}")
    try:
        stream.flush()
        return stream.fileno()
    except (AttributeError, ValueError):  # no descriptor (io.UnsupportedOperation is a ValueError), or closed
        raise OutputError("standard output is not a file (sys.stdout was replaced or closed): name an output file") from None
    except OSError as e:
        raise OutputError(f"write error: {e.strerror}") from None


class StdoutSink(Sink):
    """Standard output, written through its file descriptor (``WRITE_SLICE`` bytes a call, small writes gathered to 1 MiB)."""

    def __init__(self, codec: CodecChoice | None = None) -> None:
        super().__init__(open_sliced(stdout_descriptor(), "wb", 1 << 20, closefd=False), codec)

    @property
    def shown(self) -> str:
        """Standard output is named in words, not quoted as a file."""
        return self.name

    def write_error(self, e: OSError) -> OutputError:
        """GNU's words for standard output, which they do not name: ``write error: ...``."""
        return OutputError(f"write error: {os_reason(e)}")


class DescriptorSink(Sink):
    """A regular file that ``-o`` names as one of this process's descriptors (``/dev/stdout``,
    ``/dev/fd/N``): written through that descriptor at its offset, as standard output is, so what
    the shell writes to it afterwards follows the output in the same file."""

    def __init__(self, path: str, fd: int, codec: CodecChoice | None) -> None:
        self.name = path
        super().__init__(open_sliced(fd, "wb", 1 << 20, closefd=False), codec)


class DeviceSink(Sink):
    """A character device, FIFO or socket named by ``-o`` (``/dev/null``), or a deleted file reached
    through ``/proc/PID/fd``: written in place."""

    def __init__(self, path: str, codec: CodecChoice | None) -> None:
        self.name = path
        try:
            raw = open(path, "wb", buffering=1 << 20)
        except OSError as e:
            raise OutputError(f"{quote_name(path)}: {e.strerror}") from None
        super().__init__(raw, codec)

    def commit(self) -> None:
        self._finish()
        try:
            self._raw.close()
        except OSError as e:
            raise OutputError(f"{self.shown}: write error: {e.strerror}") from None

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
                fd = open_output_temp(self.tmp_path, resume_at, resume_dir, final=path)
        except OSError as e:
            self._release()
            raise OutputError(f"{self.shown}: {e.strerror}") from None
        except BaseException:
            self._release()
            raise
        stream: BinaryIO | None = None
        try:
            with deferred_signals():  # no handler runs before the stream owns the descriptor
                stream = open_sliced(fd, "wb", 1 << 20, writeback=self.files.sync)
            super().__init__(stream, codec)
        except BaseException:
            if stream is not None:
                stream.close()
            else:  # (a handler raising as the block began: the descriptor is no stream's yet)
                os.close(fd)
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
        permission bits, group (and, for root, owner) set on the descriptor, as shuf writing the
        target in place keeps them, synced (unless ``sync`` is off) and closed."""
        self._finish()
        try:
            if not self._raw.closed:
                take_attributes(self._raw.fileno(), self.path)
                if self.files.sync:
                    sync_file(self._raw.fileno())
            self._raw.close()
        except OSError as e:
            raise OutputError(f"{self.shown}: {e.strerror}") from None
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
            raise OutputError(f"{self.shown}: {e.strerror}") from None
        finally:
            self._release()

    def commit(self) -> None:
        self.finish()
        self.publish()

    def abort(self) -> None:
        """Close and remove the temporary file and let go of the locks, each step even if one before
        it raised (a close a signal handler cut short)."""
        each([self._close_quietly, self._remove_temp, self._release])

    def _close_quietly(self) -> None:
        try:
            self._raw.close()
        except (OSError, ValueError):  # (ValueError: a buffered writer over a raw file closed already)
            pass

    def _remove_temp(self) -> None:
        if not self.keep_on_abort:
            try:
                os.unlink(self.tmp_path)
            except OSError:
                pass  # gone, or its directory made read-only since: the error that ended the run is the one to say


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
    """The sink for ``-o PATH``: stdout for None or ``-``; a symlink is followed to the file it names,
    but a regular file reached as one of this process's descriptors is written through it.
    ``files`` is the run's set of output files (its lock in the directory), if it has one."""
    if path is None or os.fspath(path) == "-":
        return StdoutSink(output_codec(None, compress))
    codec = output_codec(os.fspath(path), compress)
    fd = own_descriptor(os.fspath(path))
    if fd is not None:
        return DescriptorSink(os.fspath(path), fd, codec)
    try:
        # The path itself, links followed by the kernel: /dev/stdout onto a pipe has no real path.
        in_place = written_in_place(os.stat(path))
    except OSError:
        in_place = False
    if in_place:
        return DeviceSink(os.fspath(path), codec)
    return AtomicFileSink(followed_path(os.fspath(path)), codec, os.fspath(path), files=files, sync=sync)
