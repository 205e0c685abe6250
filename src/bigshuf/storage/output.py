"""The output of a run: shuffled records routed to one sink or split over N shards, with the
header on top of each, and committed together at the end (or removed together on failure).
``--resume``'s checkpoints of the files, and the taking up of them again, are ``output_resume``'s."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import numpy as np

from ..core.fingerprint import Fingerprint, fingerprint, verification_failure
from ..core.parallel import Workers
from ..core.records import array_block, array_bytes
from ..core.resume import FileCheck
from ..errors import OutputError, UsageError, option
from . import output_resume
from .commit import CommitInterrupted, OutputFiles
from .threads import deferred_signals, each
from .layout import Sharding, SplitPart, output_directories, shard_option, split_counts, split_target
from .manifest import OutputFile, build_manifest, write_manifest
from .paths import followed_path, generated_path
from .shards import check_shard_count, make_directories, note_stale_shards, shard_names
from .sinks import AtomicFileSink, CodecChoice, Sink, open_output, output_codec
from .writeback import WriteBehind

#: Shards open at once at most (queued, not yet finished by the writer thread).
OPEN_SHARDS = 8


class Output:
    """Routes shuffled records to the output: one sink, or files cut by ``--split`` and by shards.

    The output's ``m`` records are cut, in order, into the splits (``layout.split_counts``), each
    written to ``-o`` with ``{split}`` replaced by its name; each split (or the whole output) is
    one file, or shards: ``N`` of near-equal counts (shard ``i`` of a split of ``c`` records gets
    its records ``[i*c//N, (i+1)*c//N)``), of ``shard_records`` each, or of at least
    ``shard_size`` record bytes. The files, concatenated in order, are the whole shuffle.
    Every file starts with ``header``. Files are opened one at a time and finished as soon as
    they are full (a compressor's memory is held by one file at a time), and renamed into
    place all together at the end (with the ``manifest``, if asked for), or removed all together
    on failure. Writes go through ``writer`` (write-behind); call ``begin`` with ``m`` before ``emit``.
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
        shard_size: int | None = None,
        shard_records: int | None = None,
        split: tuple[SplitPart, ...] | None = None,
        manifest: str | None = None,
    ) -> None:
        self.target = None if target is None else os.fspath(target)
        self.files = OutputFiles(sync)  # this run's lock in each output directory, and the commit
        self._made: list[str] = []  # directories made for the shards, removed again on failure
        self._finished = 0  # shards finished (closed) by the writer thread
        self.writer = writer
        self.shards = shards
        self.sharding = Sharding(shards, shard_records, shard_size)
        self.split = split
        #: Each split's records as the run resolved them (``--stratify``), instead of from ``split`` and the total.
        self.split_totals: list[int] | None = None
        self.manifest = manifest
        #: The manifest's run-wide entries (command, seed, inputs), filled in by the run before the commit.
        self.manifest_info: Callable[[], dict[str, Any]] | None = None
        self.compress = compress
        self.header = header
        self.sinks: list[Sink] = []
        self.outputs: list[OutputFile] = []  # one per sink, in order
        self.verify = False
        self.fingerprint = Fingerprint()  # of the records emitted, when verifying
        self.hashers: Workers | None = None  # the run's workers, which fingerprint what is emitted
        self._hashing: deque[tuple[int | None, Future[Fingerprint]]] = deque()  # fingerprints not yet added
        self._paths: list[str] = []
        self._bounds: list[int] = []
        self._groups: list[tuple[str | None, str, int, int]] = []  # each split's name, target, first record, records
        self._group = -1  # the split being written
        self._index = -1  # the file of that split being written
        self._end = 0  # the record number the current file ends at (the split's end, cut by size)
        self._done = 0  # records emitted so far
        self.resume_tag: str | None = None  # --resume: fixed temporary names, kept on failure
        self.resume_dir = ""  # --resume: the checkpoint's directory, named in refusals
        self._checks: list[FileCheck] = []  # --resume: size and CRC of each file as checkpointed
        self.shard_suffix: str | None = None  # of files in a --shards directory, if not the codec's
        #: --resume: reads an output temp file back (written with a codec, or None) as its fingerprint.
        self.rescan: Callable[[str, CodecChoice | None], Fingerprint] | None = None
        if self.sharding.on and (self.target is None or self.target == "-"):
            raise UsageError(
                f"{shard_option(self.sharding)} needs {option('output')} naming a directory or a pattern like out/part-{{:05d}}.jsonl"
            )

    def note_start(self) -> None:
        """The run starts, killed runs' commits in the output's directories finished or undone (its
        ``prepare``): with open-ended shards, remember the files there, so that a later shard there
        at the commit may be an earlier run's (left in place, named in a note) but not one made since."""
        if self.sharding.open_ended:
            self.files.note_present(self.temp_directories())

    @property
    def _plain(self) -> bool:
        """One output, nothing to count per file: records go straight to its sink (``-r`` may write without end)."""
        return not self.sharding.on and self.split is None and self.manifest is None

    @property
    def plain(self) -> bool:
        """``_plain`` (which a format may override), for a run's ``--resume`` checkpoint checks."""
        return self._plain

    def begin(self, total: int, restore: dict[str, Any] | None = None) -> None:
        """Plan the output now that the input has been read and ``total`` output records are known.

        ``restore`` is a ``checkpoint()`` of an interrupted ``--resume`` run: its finished
        files are taken as they are and its current file is cut back and appended to.
        """
        if self._bounds:
            return
        self._bounds = [0, total]
        if not self._plain:
            self._plan(total)
        if restore is not None:
            self._restore(restore)
        elif self._plain:
            if self.resume_tag is not None:
                assert self.target is not None
                self._open(output_resume.resumable_sink(self, 0, self.target, None))
            else:
                self._open(open_output(self.target, self._codec_choice(), files=self.files))
            self.outputs.append(OutputFile(None, self.target or "-"))

    def _restore(self, restore: dict[str, Any]) -> None:
        """Take up an interrupted ``--resume`` run's files (``output_resume.take_up``); a format
        whose files have more than their records to take up (Megatron's ``.idx``) adds to it."""
        output_resume.take_up(self, restore)

    def temp_directories(self) -> list[str]:
        """Where this output's files (so ``--resume``'s temporary names) go, as far as ``-o`` says
        before the input is read: the single output's real directory, or each split's (or
        shards') directory, the part of its pattern before a placeholder."""
        assert self.target is not None
        if not self.sharding.on and self.split is None:
            return [os.path.dirname(followed_path(self.target))]
        return output_directories(self.target, None if self.split is None else [p.name for p in self.split], self.sharding.on)

    def _plan(self, total: int) -> None:
        """Cut ``total`` records into the splits and each split's files (``_groups``)."""
        assert self.target is not None
        counts = [total] if self.split is None else self.split_totals or split_counts(self.split, total)
        assert sum(counts) == total, f"the splits hold {sum(counts)} records, the output {total}"
        names: list[str | None] = [None] if self.split is None else [p.name for p in self.split]
        start = 0
        for name, count in zip(names, counts):
            target = self.target if name is None else split_target(self.target, name)
            self._groups.append((name, target, start, count))
            files = self.sharding.files(count)
            if self.sharding.records is not None and files is not None and files > 1:
                check_shard_count(target, files * len(names))
            start += count
        if self.shards is not None and self.split is None:
            self._paths = shard_names(self.target, self.shards, self.compress, self._is_directory(self.target), suffix=self.shard_suffix)
            self._made = make_directories(self._paths)

    def _is_directory(self, target: str) -> bool:
        """Whether shards of ``target`` go into it as a directory (it is one, or ends in a separator)."""
        return os.path.isdir(target) or target.endswith(os.sep)

    def _file_path(self, group: int, index: int) -> str:
        """The path of file ``index`` of split number ``group``: its target, or its shard's name."""
        target = self._groups[group][1]
        if not self.sharding.on:
            return target
        if self._paths:
            return self._paths[index]
        return shard_names(
            target, index + 1, self.compress, self._is_directory(target), suffix=self.shard_suffix, indices=[index],
            option_name=shard_option(self.sharding),
        )[0]

    def checkpoint(self) -> dict[str, Any]:
        """Where the output stands after the queued writes, every file synced up to there:
        enough for ``begin(restore=...)`` (each file's size and CRC-32, records emitted, fingerprint)."""
        return output_resume.checkpoint(self)

    # The hooks below are where an output of table rows (tables.TableOutput) differs.

    def _codec_choice(self) -> CodecChoice | None:
        """The stream compression of the output files (``--compress``)."""
        return self.compress

    def _fingerprint(self, records: Any) -> Fingerprint:
        """The fingerprint of a chunk of emitted records."""
        return fingerprint(*array_block(records))

    def _record_bytes(self, records: Any) -> np.ndarray:
        """The byte length of each record of a chunk, for ``shard_size`` (rows have none: refused for them)."""
        _block, offsets = array_block(records)
        return np.diff(offsets)

    def _count(self, records: Any, file: int | None = None) -> None:
        """Fingerprint a chunk emitted (to output file number ``file``): on a worker if the run has
        several, else on the writer thread (overlapping the gathering); ``_tally`` adds them up."""
        if self.hashers is None or self.hashers.n == 1:
            self.writer.submit_job(lambda: self._add(self._fingerprint(records), file), 0)
            return
        self._hashing.append((file, self.hashers.submit(lambda: self._fingerprint(records))))
        while len(self._hashing) > 2 * self.hashers.n:  # the chunks waiting to be hashed stay few
            done, fp = self._hashing.popleft()
            self._add(fp.result(), done)

    def _add(self, fp: Fingerprint, file: int | None = None) -> None:
        self.fingerprint += fp
        if file is not None:
            self.outputs[file].fingerprint += fp

    def _tally(self) -> None:
        """Add the fingerprints still being computed (after a writer flush: those on its thread are in)."""
        while self._hashing:
            file, fp = self._hashing.popleft()
            self._add(fp.result(), file)

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
        """Finish the current file (on the writer thread, after its data) and open the next, of
        this split or the next one, first waiting for the writer if ``OPEN_SHARDS`` files are
        still open (small shards would otherwise be opened faster than they are finished, a
        descriptor each)."""
        if self.sinks:
            last = len(self.sinks) - 1
            self.writer.submit_job(lambda: self._finish(last), 0)
            if len(self.sinks) - self._finished >= OPEN_SHARDS:
                self.writer.flush()
        if self._group >= 0 and self._more_in_group():
            self._index += 1
        else:
            self._group, self._index = self._group + 1, 0
        split, _target, start, count = self._groups[self._group]
        self._end = self.sharding.file_end(start, count, self._index)
        i = len(self.sinks)
        path = self._file_path(self._group, self._index)
        if self.resume_tag is not None:
            self._open(output_resume.resumable_sink(self, i, path, None))
        elif not self.sharding.on and self.split is None:
            self._open(open_output(path, self._codec_choice(), files=self.files))
        else:
            self._made += make_directories([path])
            self._open(AtomicFileSink(
                generated_path(path), output_codec(path, self._codec_choice()), path, files=self.files, index=i,
            ))
        self.outputs.append(OutputFile(split, path))

    def _more_in_group(self) -> bool:
        """Whether the current split has another file to come after the current one."""
        _split, _target, start, count = self._groups[self._group]
        files = self.sharding.files(count)
        return self._done < start + count if files is None else self._index + 1 < files

    def _full(self) -> bool:
        """Whether the current file takes no more records (none is open, it holds its count, or its size)."""
        if not self.sinks or self._done >= self._end:
            return True
        size = self.sharding.size
        return size is not None and self.outputs[-1].bytes >= size

    def _all_opened(self) -> bool:
        """Whether every file of the output has been opened (the last split's last file)."""
        return bool(self.sinks) and self._group == len(self._groups) - 1 and not (
            self.sharding.size is None and self._more_in_group()
        )

    def emit(self, records: Any) -> None:
        """Queue a chunk of shuffled records (an Arrow array, or a table for table rows), cut at the files' ends."""
        if self._plain:
            if self.verify:
                self._count(records)
            self._write(0, records)
            return
        hashing = self.verify or self.manifest is not None
        start = 0
        while start < len(records):
            while self._full():
                self._open_next_shard()
            take = min(len(records) - start, self._end - self._done)
            file = self.outputs[-1]
            if self.sharding.size is not None:
                lengths = np.cumsum(self._record_bytes(records.slice(start, take)))
                # Up to and including the record that brings the file to its size.
                take = min(take, int(np.searchsorted(lengths, self.sharding.size - file.bytes)) + 1)
                file.bytes += int(lengths[take - 1])
            chunk = records.slice(start, take)
            if hashing:
                self._count(chunk, len(self.sinks) - 1)
            self._write(len(self.sinks) - 1, chunk)
            file.records += take
            start += take
            self._done += take

    def commit(self) -> None:
        """Finish every sink, then make them visible (all files and the manifest or none, through ``OutputFiles.commit``)."""
        if self._plain:
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
        while not self._all_opened():
            self._open_next_shard()
        last = len(self.sinks) - 1
        self.writer.submit_job(lambda: self._finish(last), 0)
        self.writer.flush()
        self._tally()
        moves = []
        for sink in self.sinks:
            if isinstance(sink, AtomicFileSink):
                moves.append((sink.tmp_path, sink.path))
            else:
                sink.commit()  # a device named by -o, written in place
        moves.extend(self._companion_moves())
        if self.manifest is not None:
            moves.append(self._write_manifest(moves))
        after = self._shards_after()
        try:
            self.files.commit(moves, [path for path, _ in after])
        except CommitInterrupted:
            for sink in self.sinks:
                if isinstance(sink, AtomicFileSink):
                    sink.keep_on_abort = True  # the journal needs them to finish the commit
            raise
        if self.sharding.open_ended:
            note_stale_shards(after)

    def _shards_after(self) -> list[tuple[str, int]]:
        """The name of the shard after each split's last, and how many that split has (none unsharded)."""
        if not self.sharding.on:
            return []
        after = []
        for split, target, _start, _count in self._groups:
            written = sum(1 for o in self.outputs if o.split == split)
            name = shard_names(
                target, written + 1, self.compress, self._is_directory(target), suffix=self.shard_suffix, indices=[written],
                option_name=shard_option(self.sharding),
            )[0]
            after.append((name, written))
        return after

    def _write_manifest(self, moves: list[tuple[str, str]]) -> tuple[str, str]:
        """Write the manifest to a temporary file beside its target (created exclusively, private,
        synced), to be committed with the outputs; return its move."""
        assert self.manifest is not None
        self._made += make_directories([self.manifest])  # as the outputs' are made
        final = generated_path(self.manifest)
        temp = self.files.temp_name(final, len(self.sinks))
        sizes = {}
        for tmp, path in moves:
            sizes[path] = os.stat(tmp).st_size
        info = self.manifest_info() if self.manifest_info is not None else {}
        document = build_manifest(info, self.outputs, self.sinks, sizes, os.path.dirname(final), self.describe_kind())
        write_manifest(temp, final, document, self.files.sync, self.manifest)
        return temp, final

    def describe_kind(self) -> str:
        """The kind of records in the files, as the manifest names it (``lines``; table outputs: ``rows``)."""
        return "lines"

    def commit_checked(self, read: Fingerprint) -> None:
        """Commit, after checking (``--verify``) that what was emitted is what was ``read``."""
        if self.verify:
            self.writer.flush()
            self._tally()
            if self.fingerprint != read:
                raise OutputError(verification_failure(read, self.fingerprint, self.describe_kind() == "rows"))
        self.commit()

    def _companion_moves(self) -> list[tuple[str, str]]:
        """Finished files a format writes beside its output files (a ``.bin``'s ``.idx``), committed with them."""
        return []

    def _close_format(self, shard: int) -> None:
        """End the file format's own framing in sink number ``shard`` (nothing for lines)."""

    def abort(self) -> None:
        """Remove every temporary file; leave existing targets untouched. Every step is taken even if
        one before it raised (a signal handler's exception mid-way left the run's files behind)."""
        each([self.writer.wait_idle, *(sink.abort for sink in self.sinks), self._discard, self.files.release, self._unmake])

    def _discard(self) -> None:
        if not self.files.committed:
            self.files.discard()

    def _unmake(self) -> None:
        """Remove the directories made for the output, if it was not put in place and they are empty."""
        if not self.files.committed:
            for directory in reversed(self._made):
                try:
                    os.rmdir(directory)
                except OSError:
                    pass  # not empty: something else is in it now

    @property
    def bytes_written(self) -> int:
        return sum(s.bytes_written for s in self.sinks)
