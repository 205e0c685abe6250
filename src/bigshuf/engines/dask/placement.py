"""Where the Dask engine's pass 2 writes and how its output is put in place: shard names (local
paths or URLs), temporary names beside local targets or under the temp URL, and the commit
(shards renamed all or none through the journal, or parts concatenated into one output)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...errors import OutputError, UsageError, option
from ...formats.detect import read_back
from ...quoting import quote_name
from ...storage import remote
from ...storage.commit import OutputFiles
from ...storage.safefs import open_nofollow, own_file, sync_file, take_attributes
from ...storage.shards import (
    check_not_read_back,
    check_output_directory,
    make_directories,
    shard_names,
)
from ...storage.sinks import CodecChoice, Sink, output_codec
from .outputs import PlannedFile
from .tasks import FETCH_BYTES


@dataclass
class Placement:
    """Where pass 2 writes and what the commit does: shard files renamed into place, or parts
    concatenated into one file (or standard output)."""

    target: str | None
    shards: int | None
    codec: CodecChoice | None  # of a single output's parts
    finals: list[str] = field(default_factory=list)
    codecs: list[CodecChoice | None] = field(default_factory=list)  # of each shard
    temps: list[str] = field(default_factory=list)
    markers: list[str] = field(default_factory=list)  # each URL directory's _SUCCESS
    files: OutputFiles | None = None  # local shards: the run's locks and the journalled commit
    spans: list[tuple[int, int]] | None = None  # each shard's output records, if not equal shares
    made: list[str] = field(default_factory=list)  # directories made for the files, removed on failure
    manifest_move: tuple[str, str] | None = None  # the manifest's temporary file and its target
    #: Files written beside the outputs, none or one per output file in its order (a Megatron ``.bin``'s ``.idx``):
    #: temporary name and target, committed with them.
    companions: list[tuple[str, str]] = field(default_factory=list)
    #: Local shards: the name after each split's last, which must not be there at the commit (but for an earlier
    #: run's found as the run started, with shards counted only at the end: ``OutputFiles.commit``).
    absent: list[str] = field(default_factory=list)


def output_names(
    target: str, shards: int, compress: CodecChoice | None, suffix: str | None, indices: Sequence[int] | None = None,
) -> list[str]:
    """The shard files of ``-o`` (only ``indices``, if given) as URLs or local paths (a URL ending in ``/`` is a directory), making nothing."""
    if not remote.is_url(target):
        directory = os.path.isdir(target) or target.endswith(os.sep)
        return [os.path.abspath(p) for p in shard_names(target, shards, compress, directory, suffix=suffix, indices=indices)]
    return shard_names(
        target, shards, compress, target.endswith("/"), suffix=suffix, example="s3://bucket/out/part-{:05d}.jsonl",
        directory_words="a directory (a URL ending in /)", indices=indices,
    )


def plan_placement(
    output: str | None, shards: int | None, compress: CodecChoice | None, root: str, sync: bool, suffix: str | None,
    inputs: Sequence[str] = (), input_directories: Sequence[str] = (),
) -> Placement:
    """Name the pass-2 objects: shard temps beside local targets (a rename puts them in place),
    under the temp URL for remote ones; parts of a single output under the temp URL. Local
    targets are checked as the local engine checks them, none read back by a later read of one
    of the ``input_directories`` beside ``inputs`` left there."""
    target = None if output in (None, "-") else output
    if shards is None:
        if target is not None and not remote.is_url(target):
            check_not_read_back(target, check_output_directory(target, None), inputs, input_directories, read_back)
        codec = output_codec(target, compress) if target is not None else output_codec(None, compress)
        return Placement(target, None, codec)
    check_shard_target(target)
    assert target is not None
    if not remote.is_url(target):
        finals = check_output_directory(target, shards, compress, suffix)  # up front: writable, no two shards on one file
        check_not_read_back(target, finals, inputs, input_directories, read_back)
    out = Placement(target, shards, None, finals=output_names(target, shards, compress, suffix))
    out.codecs = [output_codec(final, compress) for final in out.finals]
    if remote.is_url(target):
        out.temps = [remote.join(root, "out", f"{i:05d}") for i in range(shards)]
    else:
        # Named and locked as the local engine's shards are, so the same commit and cleanup apply;
        # directories made for them are removed again if the run fails.
        out.made = make_directories(out.finals)
        out.files = OutputFiles(sync)
        out.temps = [out.files.temp_name(final, i) for i, final in enumerate(out.finals)]
        out.absent = output_names(target, shards + 1, compress, suffix, indices=[shards])
    if remote.is_url(target) and target.endswith("/"):
        out.markers = [target + "_SUCCESS"]
    return out


def check_shard_target(target: str | None) -> None:
    """``--shards`` needs ``-o`` naming files (a directory or a pattern), not standard output."""
    if target is None:
        raise UsageError(
            f"{option('shards')} needs {option('output')} naming a directory or a pattern like out/part-{{:05d}}.jsonl"
        )


def lay_out(out: Placement, planned: list[PlannedFile], root: str, compress: CodecChoice | None) -> None:
    """Make ``out`` the files of a laid-out output (``outputs.plan_files``), each a pass-2 task's:
    local ones under temporary names beside their targets, URL ones under the temp URL."""
    out.shards = len(planned)
    out.finals = [p.final for p in planned]
    out.codecs = [output_codec(p.final, compress) for p in planned]
    out.spans = [(p.first, p.stop) for p in planned]
    if out.files is None:
        out.temps = [remote.join(root, "out", f"{i:05d}") for i in range(len(planned))]
        out.markers = [t + "_SUCCESS" for t in dict.fromkeys(p.target for p in planned) if t.endswith("/")]
        return
    out.made = make_directories(out.finals)
    out.temps = [out.files.temp_name(final, i) for i, final in enumerate(out.finals)]


def commit(out: Placement, parts: list[str], sink: Sink | None, direct: bool) -> None:
    """Put the output in place: shards renamed (all, or none left on failure), parts concatenated
    into ``sink`` (a local file, standard output) or the output object, or the file the tasks
    wrote in place renamed."""
    if out.shards is None:
        if not direct:
            concatenate(parts, out.target, sink)
        if sink is not None:
            sink.commit()
        return
    if out.files is not None:
        for temp, final in zip(out.temps, out.finals):
            # The workers wrote it as any new file; it replaces ``final`` as the local engine's do.
            fd = open_nofollow(temp)
            try:
                try:
                    take_attributes(fd, final)
                except PermissionError:
                    pass  # written by a worker of another user (a shared cluster): its attributes stay the worker's
                except OSError as e:
                    raise OutputError(f"{quote_name(final)}: {e.strerror}") from None
                if out.files.sync:
                    sync_file(fd)
            finally:
                os.close(fd)
        moves = list(zip(out.temps, out.finals)) + out.companions
        out.files.commit(moves + ([out.manifest_move] if out.manifest_move is not None else []), out.absent)
        remove_abandoned_parts(out.temps)
        return
    for marker in out.markers:
        with remote.store_errors(marker, writing=True):
            remote.remove(marker)
    for i, (temp, final) in enumerate(zip(out.temps, out.finals)):
        try:
            with remote.store_errors(final, writing=True):
                remote.move(temp, final)
                for companion, beside in out.companions[i : i + 1]:  # a pair's second file right after its first
                    remote.move(companion, beside)
        except OutputError as e:
            # Shards moved so far are the new ones and stay: removing them would lose the old
            # and the new data alike. The marker stays absent, so readers know it is incomplete.
            raise OutputError(f"{e}; {i} of {len(out.finals)} shards were replaced, the rest keep their old contents") from None
    for marker in out.markers:
        with remote.store_errors(marker, writing=True):
            remote.write_whole(marker, lambda f: None)


def remove_abandoned_parts(temps: list[str]) -> None:
    """Remove what a task killed while writing local file ``temps`` left: ``remote.write_whole``'s
    part of it (``remote.local_part_name``; its retry wrote the file again under another), this
    user's regular files only."""
    for temp in temps:
        if remote.is_url(temp):
            continue
        for part in remote.local_parts(temp):
            try:
                st = os.lstat(part)
                if own_file(st) and stat.S_ISREG(st.st_mode):
                    os.unlink(part)
            except OSError:
                pass  # gone already


def concatenate(parts: list[str], target: str | None, sink: Sink | None) -> None:
    """Copy the parts, in order, into ``sink``, or else into the object ``target`` (written whole)."""

    def copy(write: Callable[[bytes], Any]) -> None:
        for part in parts:
            with remote.open_input(part) as f:
                while chunk := f.read(FETCH_BYTES):
                    write(chunk)

    if sink is not None:
        copy(sink.write)
    else:
        assert target is not None
        with remote.store_errors(target, writing=True):
            remote.write_whole(target, lambda f: copy(f.write))
