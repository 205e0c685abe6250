"""Output names and the checks made on them before any input is read: shard names from a directory or
a pattern, the directories they need, and whether every target can be written and replaced."""

from __future__ import annotations

import os
import stat
from string import Formatter

from ..errors import OutputError, UsageError, option
from .commit import OutputFiles, backup_name, name_max
from .sinks import CodecChoice, output_codec
from .safefs import creation_problem
from .tempspace import remove_dead_outputs

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
    target: str | None, shards: int | None, compress: CodecChoice | None = None, suffix: str | None = None,
    *, dry_run: bool = False,
) -> None:
    """Before any input is read: refuse (one line) an output that cannot be written, its directory
    missing (shards create theirs), not writable, a directory where a file is expected, or a
    name too long; and tidy what killed runs left in its directories, finishing their commits.
    ``dry_run`` makes the same checks touching nothing: a directory's permissions and file system
    tell whether a file can be created there, and nothing is tidied."""
    finals = _final_paths(target, shards, compress, suffix)
    if not finals:
        return
    longest: dict[str, int] = {}
    for final in finals:
        directory, base = os.path.split(final)
        longest[directory] = max(longest.get(directory, 0), len(os.fsencode(base)))
    probe = None if dry_run else OutputFiles()  # its lock, claimed in each directory, proves a file can be created there
    try:
        for directory, most in longest.items():
            place = _existing_ancestor(directory)
            if not os.path.isdir(place):
                raise OutputError(f"{target}: {place} is not a directory")
            if probe is None:
                problem = creation_problem(place)
                if problem is not None:
                    raise OutputError(f"{place}: cannot create a file: {problem}")
            else:
                if place == directory:
                    remove_dead_outputs(directory)
                probe.claim(place)  # writable, not a read-only file system
            if most > name_max(place):
                raise OutputError(f"{target}: File name too long")
        for final in finals:
            _check_replaceable(final, probe)
    finally:
        if probe is not None:
            probe.release()


def _final_paths(target: str | None, shards: int | None, compress: CodecChoice | None, suffix: str | None) -> list[str]:
    """The real paths the output's files take (none for standard output, a device or a FIFO), after
    the checks that only read: a directory where a file is expected, a missing directory, shard names."""
    if target is None or target == "-":
        return []
    if shards is None:
        try:
            mode: int | None = os.stat(target).st_mode
        except OSError:
            mode = None
        if mode is not None and stat.S_ISDIR(mode):
            raise OutputError(f"{target}: Is a directory")
        if mode is not None and not stat.S_ISREG(mode):
            return []  # a device or FIFO, written in place
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
    return finals


def _check_replaceable(final: str, probe: OutputFiles | None) -> None:
    """Refuse, before any input is read, a target the commit could not put in place: a
    directory, or an existing file that cannot be hard-linked (immutable or append-only), since
    the commit keeps the old file as a hard-linked backup until the new one is in (tried only
    with a ``probe``: a dry run links nothing)."""
    try:
        st = os.stat(final)
    except OSError:
        return  # a new file
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{final}: Is a directory")
    if not stat.S_ISREG(st.st_mode) or probe is None:
        return
    backup = backup_name(probe.temp_name(final))
    try:
        os.link(final, backup, follow_symlinks=False)
    except OSError as e:
        raise OutputError(f"{final}: cannot be replaced: {e.strerror}") from None
    os.unlink(backup)
