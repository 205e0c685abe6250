"""Output names and the checks made on them before any input is read: shard names from a directory or
a pattern, the directories they need, and whether every target can be written and replaced."""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
from collections.abc import Callable, Sequence
from functools import partial
from string import Formatter
from typing import TypeVar

from ..errors import OutputError, UsageError, option
from .commit import OutputFiles, backup_name, name_max
from .layout import Sharding, SplitPart, shard_option, split_target
from ..quoting import quote_arg, quote_name
from .sinks import CodecChoice, output_codec
from .paths import MOST_LINKS, followed_path, generated_path, own_descriptor
from .safefs import creation_problem, foreign_entry, written_in_place
from .tempspace import remove_dead_outputs
from .threads import deferred_signals


def shard_names(
    target: str, shards: int, compress: CodecChoice | None, directory: bool, *, suffix: str | None = None,
    example: str = "out/part-{:05d}.jsonl", directory_words: str = "a directory",
    indices: Sequence[int] | None = None, option_name: str | None = None,
) -> list[str]:
    """The names of ``--shards=N`` files, making nothing: ``DIR/part-NNNNN[.codec]`` (``suffix``, if
    given, instead of the codec's) when ``target`` is a ``directory``, else ``target`` formatted with
    the shard number, which must give N different names. ``example`` and ``directory_words`` word
    the errors (a URL directory ends in ``/``). ``indices``: only those shards' names (and those
    must differ), for shard counts not known in advance; ``option_name`` names the option in errors."""
    flag = option("shards") if option_name is None else option_name
    numbers = range(shards) if indices is None else indices
    if directory:
        from .codecs import CODECS

        if suffix is None:
            codec = output_codec(None, compress)
            suffix = CODECS[codec[0]].suffixes[0] if codec else ""
        return [os.path.join(target, f"part-{i:05d}{suffix}") for i in numbers]
    one_field = UsageError(
        f"{flag}: {option('output')} {quote_arg(target)} is not a valid pattern: its one field is the shard number, "
        f"{{}} or {{:05d}}; use e.g. {example}"
    )
    try:
        # Only the number itself: an attribute or index ({0.bit_length}, {0[1]}) formats to no name or an address.
        parsed = [(name, spec or "") for _, name, spec, _ in Formatter().parse(target) if name is not None]
        named = {name for name, _ in parsed}
        if not named <= {"", "0"} or named == {"", "0"} or any("{" in spec for _, spec in parsed):
            raise one_field  # (a width from a nested field, {:>{w}}, would be looked up by name)
        if any(int(digits) > PATH_MAX for _, spec in parsed for digits in re.findall(r"[0-9]+", spec)):
            # A width or precision past any path ({:200000000}) would build names of that size first.
            raise OutputError(f"{quote_name(target)}: {os.strerror(errno.ENAMETOOLONG)}")
        names = [target.format(i) for i in numbers]
    except IndexError:  # {}-{}: a second number asked for
        raise one_field from None
    except (ValueError, OverflowError) as e:  # a lone brace, a format an integer does not take
        raise UsageError(f"{flag}: {option('output')} {quote_arg(target)} is not a valid pattern ({e}); use e.g. {example}") from None
    count = f"{shards} shards" if indices is None else "shards"
    if len(set(names)) != len(names):
        fields = [
            f"{{{name}{'!' + conv if conv else ''}{':' + spec if spec else ''}}}"
            for _, name, spec, conv in Formatter().parse(target) if name is not None
        ]
        if fields:  # a field that gives shards the same name: its format is the fault, not its absence
            raise UsageError(f"{count}: {quote_arg(fields[0])} in {option('output')} {quote_arg(target)} cannot number shards; use {{}} or {{:05d}}")
        raise UsageError(f"{count} need {option('output')} to be {directory_words} or a pattern with {{}}, like {example}")
    if any("\0" in name for name in names):
        raise UsageError(f"{option('output')} {quote_arg(target)} gives shard names with a NUL byte, which no file may have; use {{}} or {{:05d}}")
    return names


#: The longest path Linux takes (PATH_MAX): a pattern's width or precision past it makes no name.
PATH_MAX = 4096

#: Shard numbers whose names must differ (within a split, across splits and from the manifest)
#: when the count is known only at the end (``--shard-size``, ``--shard-records``): the first
#: thousand, where a pattern's precision ({:.0e}: 10 and 11) or another split's prefix (a, a1: a10)
#: first collides, and one past any width a pattern pads to. The commit checks the names it has.
#: Only their names are compared: what is at them now matters only if the run reaches them.
OPEN_ENDED_PROBE = (*range(1000), 10**9)

#: Of those, the shard numbers whose files are checked before pass 1 (writable, not a link, a
#: directory or a file this user may not replace), as the run may never reach the others.
OPEN_ENDED_FILES = (0, 1, 10**9)

T = TypeVar("T")


def _file_checked(items: list[T], open_ended: str | None) -> list[T]:
    """Of the items (names, paths) of a run's shards in probe order, those whose files are checked:
    all, or with an ``open_ended`` shard count those of ``OPEN_ENDED_FILES``."""
    return items if open_ended is None else [item for n, item in zip(OPEN_ENDED_PROBE, items) if n in OPEN_ENDED_FILES]


def note_stale_shards(shards_after: Sequence[tuple[str, int]]) -> None:
    """After the commit of shards counted only at the end: name, in one line, a shard file past the
    last one a split got that was there before (an earlier run's with more shards). It is the
    user's, so it stays: the count was not known when ``--shards N`` would have refused it."""
    for after, written in shards_after:
        if os.path.lexists(after):
            print(
                f"bigshuf: note: {after} (and any later shard) was there before this run and is not one of the {written} "
                "shards it wrote; it was left in place", file=sys.stderr,
            )


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
                raise OutputError(f"{quote_name(d)}: {e.strerror}") from None
    return made


#: Memory the bookkeeping of one shard takes at most (its names, bounds and commit journal entry).
SHARD_BYTES = 1024


def _existing_ancestor(path: str) -> str:
    """``path`` or its nearest ancestor that exists."""
    path = os.path.abspath(path)
    while not os.path.lexists(path) and path != os.path.dirname(path):
        path = os.path.dirname(path)
    return path


def check_shard_count(target: str, shards: int) -> None:
    """Refuse more shards than the file system has files left, or than memory can name."""
    place = _existing_ancestor(target)
    try:
        fs = os.statvfs(place)
    except OSError:
        return
    if fs.f_files and shards > fs.f_favail:
        raise OutputError(f"{shards} shards: the file system of {quote_name(place)} has room for only {fs.f_favail} more files")
    from ..core.plan import format_size, physical_memory

    need, have = shards * SHARD_BYTES, physical_memory()
    if need > have:
        raise UsageError(
            f"{shards} shards: naming and committing that many files needs about {format_size(need)} of memory; "
            f"this machine has {format_size(have)}"
        )


def check_output_directory(
    target: str | None, shards: int | None, compress: CodecChoice | None = None, suffix: str | None = None,
    *, open_ended: str | None = None, makes_directory: bool = False, dry_run: bool = False,
) -> list[str]:
    """Before any input is read: refuse (one line) an output that cannot be written, its directory
    missing (shards create theirs), not writable, a directory where a file is expected, or a
    name too long; and tidy what killed runs left in its directories, finishing their commits.
    ``open_ended`` names the option (``--shard-size``, ``--shard-records``) whose shard count is
    known only at the end: then the names of the first thousand are compared, and a few are
    checked as files (``OPEN_ENDED_FILES``). A ``makes_directory`` single file
    (a ``--split`` target) has its missing directories made, as shards do. ``dry_run`` makes the
    same checks touching nothing: a directory's permissions and file system tell whether a file
    can be created there, and nothing is tidied. Returns the final paths checked."""
    tidied = None
    if not dry_run and target is not None and target != "-" and (shards is not None or open_ended is not None):
        tidied = _tidy_shard_directory(target)
    finals = _final_paths(target, shards, compress, suffix, open_ended, makes_directory)
    if not finals:
        return []
    checked = _file_checked(finals, open_ended)
    longest: dict[str, int] = {}
    for final in checked:
        directory, base = os.path.split(final)
        longest[directory] = max(longest.get(directory, 0), len(os.fsencode(base)))
    probe = None if dry_run else OutputFiles()  # its lock, claimed in each directory, proves a file can be created there
    try:
        for directory, most in longest.items():
            place = _existing_ancestor(directory)
            if not os.path.isdir(place):
                raise OutputError(f"{quote_name(str(target))}: {quote_name(place)} is not a directory")
            # A refusal names the output as given (a single file as shuf names -o), then the directory.
            if probe is None:
                problem = creation_problem(place)
                if problem is not None:
                    raise OutputError(f"{quote_name(str(target))}: cannot create a file in {quote_name(place)}: {problem}")
            else:
                if place == directory and os.path.realpath(directory) != tidied:
                    remove_dead_outputs(directory)
                probe.claim(place, str(target))  # writable, not a read-only file system, one that creates files
            if most > name_max(place):
                raise OutputError(f"{quote_name(str(target))}: File name too long")
        single = target is not None and shards is None and open_ended is None
        for final in checked:
            # One file is named as given, as shuf names -o; shards by the names made for them.
            _check_replaceable(final, probe, target if single and target is not None else final)
    finally:
        if probe is not None:
            probe.release()
    return finals


def _tidy_shard_directory(target: str) -> str | None:
    """Finish a killed run's commit in the directory shards of ``target`` go to, before their names
    are checked: a shard that commit puts in place counts as there (``--shards N`` refusing a
    shard N left by a run with more). Returns that directory's real path, or None if none was tidied."""
    directory = target if target.endswith(os.sep) or os.path.isdir(target) else os.path.dirname(target) or os.curdir
    if "{" in directory or not os.path.isdir(directory):
        return None
    remove_dead_outputs(directory)
    return os.path.realpath(directory)


def _final_paths(
    target: str | None, shards: int | None, compress: CodecChoice | None, suffix: str | None,
    open_ended: str | None, makes_directory: bool,
) -> list[str]:
    """The real paths the output's files take (none for standard output, a device or a FIFO), after
    the checks that only read: a directory where a file is expected, a missing directory, shard names."""
    if target is None or target == "-":
        return []
    if shards is None and open_ended is None:
        shown = quote_name(target)  # as GNU shuf names -o: 'a b', 'no'$'\n''dir/x', ''
        if target == "":
            raise OutputError(f"{shown}: {os.strerror(errno.ENOENT)}")
        slash = _slash_error(target)
        if slash is not None:
            raise OutputError(f"{shown}: {slash}")
        if makes_directory:  # a name bigshuf made (a split's file) or the manifest: never through a link
            finals = [_resolved(generated_path, target)]
            _check_generated(finals[0], target, target)
            if os.path.isdir(finals[0]):
                raise OutputError(f"{shown}: Is a directory")
            return finals
        try:
            st: os.stat_result | None = os.stat(target)
        except FileNotFoundError:
            st = None  # a new file (or a dangling link, followed to the file it names)
        except OSError as e:  # a file where a directory is expected, a link loop, no permission
            raise OutputError(f"{shown}: {e.strerror}") from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{shown}: Is a directory")
        if st is not None and (written_in_place(st) or own_descriptor(target) is not None):
            return []  # no file of its own: written as it stands
        finals = [_resolved(followed_path, target)]  # "d/x/../y" needs d/x, as does a link's text
        if _FD_DIRECTORY.fullmatch(os.path.dirname(finals[0])):
            # /dev/fd/5 with descriptor 5 not open: no file can be made there (as shuf says, by the name given).
            raise OutputError(f"{shown}: {os.strerror(errno.ENOENT)}")
    else:
        if shards is not None:
            check_shard_count(target, shards)
        as_directory = os.path.isdir(target) or target.endswith(os.sep)
        if as_directory and os.path.lexists(target.rstrip(os.sep) or os.sep) and not os.path.isdir(target):
            raise OutputError(f"{quote_name(target)}: Not a directory")
        if open_ended is not None:
            names = shard_names(
                target, len(OPEN_ENDED_PROBE), compress, as_directory, suffix=suffix, indices=OPEN_ENDED_PROBE,
                option_name=open_ended,
            )
        else:
            assert shards is not None
            # The example in errors ends as the files do (.tar, .bin, .jsonl), not always in .jsonl.
            example = f"out/part-{{:05d}}{suffix}" if suffix else "out/part-{:05d}.jsonl"
            names = shard_names(target, shards, compress, as_directory, suffix=suffix, example=example)
        directories: dict[str, str] = {}  # (a pattern's thousand names share one directory)
        finals = [_resolved(partial(generated_path, directories=directories), p) for p in names]
        for name, final in _file_checked(list(zip(names, finals)), open_ended):
            _check_generated(final, name, target)
        if open_ended is None:
            assert shards is not None
            _check_no_stale_shard(target, shards, names, compress, as_directory, suffix)
        first: dict[str, int] = {}
        for i, final in enumerate(finals):
            # Two shards renamed onto one file (a symlink, or '..' in the pattern) would lose one.
            if first.setdefault(final, i) != i:
                raise OutputError(f"{quote_name(target)}: shards {first[final]} and {i} would both be written to {quote_name(final)}")
    return finals


#: A process's directory of open descriptors, where /dev/fd/N leads.
_FD_DIRECTORY = re.compile(r"/proc/(?:self|thread-self|[0-9]+)(?:/task/[0-9]+)?/fd")


def _resolved(resolve: Callable[[str], str], name: str) -> str:
    """``resolve(name)``, a directory the kernel would refuse on the way (not one, no permission,
    a link loop) reported as open(2) reports it."""
    try:
        return resolve(name)
    except OSError as e:
        raise OutputError(f"{quote_name(name)}: {e.strerror}") from None


def _slash_error(target: str) -> str | None:
    """Why creating the file ``target`` fails because it, or the symbolic link it is, names a
    directory (ends in ``/``, ``/.`` or ``/..``), worded as open(2) with O_CREAT fails on Linux (and
    so GNU shuf): "No such file or directory" or "Not a directory" for a missing or non-directory
    parent, else "Is a directory". None where no such name is involved; it never becomes a file."""
    name = target
    for _ in range(MOST_LINKS + 1):  # the name, then each link's text
        probe = None
        if os.path.basename(name) in (os.curdir, os.pardir):
            probe = name  # "d/." and "d/.." name d's own directory, or fail as d does
        elif name.endswith(os.sep):
            probe = os.path.join(os.path.dirname(name.rstrip(os.sep)) or os.curdir, "")  # only the parent must be one
        if probe is not None:
            try:
                os.stat(probe)
            except OSError as e:
                return e.strerror
            try:  # the last step's lookup, which a parent this user cannot search refuses
                os.lstat(name.rstrip(os.sep))
            except PermissionError as e:
                return e.strerror
            except OSError:
                pass  # a new name: open(2) still refuses to create it as a directory
            return os.strerror(errno.EISDIR)
        try:
            text = os.readlink(name)
        except OSError:
            return None  # not a link (or not one this user can read): the checks that follow decide
        name = os.path.join(os.path.dirname(name), text)
    return None  # a loop: stat reports it


def _check_no_stale_shard(
    target: str, shards: int, names: list[str], compress: CodecChoice | None, as_directory: bool, suffix: str | None,
) -> None:
    """Refuse ``--shards N`` where shard N (the first past this run's) exists: an earlier run with
    more shards (or the inputs, resharded in place) would be left beside the new shards, and a
    reader of the directory would count its records twice. Nothing of the user's is removed."""
    after = shard_names(target, shards + 1, compress, as_directory, suffix=suffix, indices=[shards])[0]
    if after not in names and os.path.lexists(after):
        raise OutputError(
            f"{after}: is not one of the {shards} shards this run writes, and would be left beside them "
            f"(its records read twice by whoever reads them all): move it away, or write the shards elsewhere"
        )


def _check_generated(final: str, name: str, target: str) -> None:
    """Refuse a name bigshuf makes (a shard's, a split's, the manifest's) whose file, at the real
    path ``final``, is a symbolic link, a device or a FIFO: the commit's rename would replace it."""
    why = foreign_entry(final)
    if why is not None and why != os.strerror(errno.EISDIR):
        shown = quote_name(name) if name == target else f"{quote_name(name)} (from {quote_name(target)})"
        raise OutputError(f"{shown}: {why}; bigshuf writes its shards, splits and manifest only as regular files")


def _sticky_elsewhere(final: str, st: os.stat_result) -> bool:
    """Whether ``final`` (status ``st``) is another user's file in a sticky directory (``/tmp``) that
    is not this user's either: only they may rename over it or unlink a link to it."""
    if os.geteuid() == 0 or st.st_uid == os.geteuid():
        return False
    try:
        parent = os.stat(os.path.dirname(final) or ".")
    except OSError:
        return False
    return bool(parent.st_mode & stat.S_ISVTX) and parent.st_uid != os.geteuid()


def _check_replaceable(final: str, probe: OutputFiles | None, shown: str) -> None:
    """Refuse, before any input is read, a target the commit could not put in place or that this
    user may not write (as GNU shuf's open(2) refuses it): a directory, a file without write
    permission, or an existing file that cannot be hard-linked (immutable or append-only), since
    the commit keeps the old file as a hard-linked backup until the new one is in (tried only
    with a ``probe``: a dry run links nothing). Messages name the file ``shown``."""
    try:
        st = os.stat(final)
    except OSError:
        return  # a new file
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{quote_name(shown)}: Is a directory")
    if not stat.S_ISREG(st.st_mode):
        return
    writable = os.access(final, os.W_OK)
    # shuf's open(2) refuses a file this user may not write (the rename would replace it anyway):
    # another user's, said before the probe, which the kernel's protected_hardlinks would refuse.
    denied = OutputError(f"{quote_name(shown)}: {os.strerror(errno.EACCES)}")
    if not writable and st.st_uid != os.geteuid():
        raise denied
    # Another user's file in a sticky directory: the rename over it would fail, and a probe's link
    # could not be removed again.
    sticky = _sticky_elsewhere(final, st)
    if sticky:
        raise OutputError(
            f"{quote_name(shown)}: cannot be replaced: {os.strerror(errno.EPERM)} (another user's file in a sticky directory)"
        )
    if probe is not None:
        backup = backup_name(probe.temp_name(final))
        # Signals held from the link to its removal: between the two, a Ctrl-C left a hidden
        # second name of the old file that no run removes (no journal names it).
        with deferred_signals():
            try:
                os.link(final, backup, follow_symlinks=False)
            except OSError as e:
                raise OutputError(f"{quote_name(shown)}: cannot be replaced: {e.strerror}") from None
            try:
                os.unlink(backup)
            except OSError as e:
                raise OutputError(f"{quote_name(shown)}: cannot be replaced: {e.strerror} (its probe {quote_name(backup)} is left)") from None
    if not writable:
        raise denied


def _every_name(_name: str) -> bool:
    """``taken``'s default: every file in an input directory is read back."""
    return True


def check_outputs(
    target: str | None, sharding: Sharding, split: tuple[SplitPart, ...] | None, manifest: str | None,
    compress: CodecChoice | None = None, suffix: str | None = None, *, dry_run: bool = False,
    inputs: Sequence[str] = (), input_directories: Sequence[str] = (), taken: Callable[[str], bool] = _every_name,
) -> None:
    """``check_output_directory`` for every split's target, then no two splits (nor the manifest)
    on one file, no output that a later read of ``input_directories`` takes beside the inputs it
    leaves (``check_not_read_back``; ``taken``: whether such a read takes a file), the manifest's
    own directory writable (``dry_run``: touching nothing), and the manifest neither one of the
    ``inputs`` (paths) nor beside an output written in place."""
    open_ended = shard_option(sharding) if sharding.open_ended else None
    targets = [target] if split is None or target is None else [split_target(target, p.name) for p in split]
    owner: dict[str, str] = {}
    for name, each in zip([None] if split is None else [p.name for p in split], targets):
        checked = check_output_directory(
            each, sharding.count, compress, suffix, open_ended=open_ended, makes_directory=split is not None, dry_run=dry_run,
        )
        for final in checked:
            if final in owner:
                raise OutputError(f"{option('split')}: splits {quote_arg(owner[final])} and {quote_arg(name)} would both be written to {quote_name(final)}")
            owner[final] = str(name)
    if not owner and target is not None and target != "-":
        _check_in_place_not_input(target, inputs)
    if owner and target is not None:
        check_not_read_back(target, list(owner), inputs, input_directories, taken)
    if manifest is not None:
        if not owner:  # -o names a device or FIFO: there is no file for the manifest to describe
            raise OutputError(f"{option('manifest')} needs {option('output')} naming regular files, not {quote_name(target or '-')}")
        slash = _slash_error(manifest)  # "keep/" names no file: never resolved to ./keep
        if slash is not None:
            raise OutputError(f"{quote_name(manifest)}: {slash}")
        final = _resolved(generated_path, manifest)  # (its link check waits: a manifest over an input is said first)
        if final in owner or any(os.path.dirname(f) == final for f in owner):
            raise OutputError(f"{quote_name(manifest)}: the manifest would be written over an output")
        _check_not_input(manifest, final, inputs)
        check_output_directory(manifest, None, makes_directory=True, dry_run=dry_run)


def _check_not_input(manifest: str, final: str, inputs: Sequence[str]) -> None:
    """Refuse a manifest (whose file is at the real path ``final``) that would replace one of the
    run's input files (by any name: a link, a symlink, a ``file://`` URL): the outputs do not hold
    that file's bytes."""
    try:
        st = os.stat(final)
    except OSError:
        return  # a new file
    path = _input_at(st, inputs)
    if path is not None:
        raise OutputError(f"{quote_name(manifest)}: the manifest would be written over an input ({quote_name(path)})")


class _Holders:
    """Which of the directories named as inputs (by device and inode) a path lies in or below, by
    any name (a symlink, ``..``), each directory of the paths asked about looked at once (a corpus
    directory of 100,000 files has few)."""

    def __init__(self, directories: Sequence[str]) -> None:
        self.named: dict[tuple[int, int], str] = {}
        for directory in directories:
            try:
                st = os.stat(directory)
            except OSError:
                continue
            self.named.setdefault((st.st_dev, st.st_ino), directory)
        self._seen: dict[str, tuple[str, tuple[str, ...]] | None] = {}

    def holding(self, path: str) -> tuple[str, tuple[str, ...]] | None:
        """The named directory ``path`` lies in or below, with the names of its parts below it; None
        if none. A directory not made yet is passed over: shards make their directories."""
        parent, name = os.path.split(os.path.abspath(path))
        above = self._directory(parent)
        return None if above is None else (above[0], (*above[1], name))

    def _directory(self, place: str) -> tuple[str, tuple[str, ...]] | None:
        if place not in self._seen:
            try:
                st: os.stat_result | None = os.stat(place)
            except OSError:
                st = None
            name = None if st is None else self.named.get((st.st_dev, st.st_ino))
            parent = os.path.dirname(place)
            if name is not None:
                self._seen[place] = (name, ())
            elif parent == place:
                self._seen[place] = None
            else:
                above = self._directory(parent)
                self._seen[place] = None if above is None else (above[0], (*above[1], os.path.basename(place)))
        return self._seen[place]


def _file_id(path: str) -> tuple[int, int] | None:
    """The device and inode of the file ``path`` names (a link followed), or None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_not_read_back(
    target: str, finals: Sequence[str], inputs: Sequence[str], input_directories: Sequence[str],
    taken: Callable[[str], bool] = _every_name,
) -> None:
    """Refuse outputs that a later read of an input directory would take beside records this run
    leaves there: an output file in (or below) a directory named as an input (``bigshuf d/ --shards
    2 -o d/``, ``-o d/new/``) while a file it read there is not replaced by one of the outputs. A
    directory written back whole (resharded in place into as many files or more) is not refused;
    nor is an output the read of a directory skips (a name starting with ``.`` or ``_`` below it,
    or one ``taken`` says it does not read: ``formats.detect.read_back``)."""
    from .remote import is_url

    holders = _Holders(input_directories)
    if not holders.named:
        return
    written: set[str] = set()  # the input directories that outputs go into, for a later read of them to take
    for final in finals:
        found = holders.holding(final)
        if found is not None and not any(part.startswith((".", "_")) for part in found[1]) and taken(final):
            written.add(found[0])
    if not written:
        return
    replaced = {_file_id(f) for f in finals} - {None}  # the files there now that outputs replace
    for path in inputs:
        found = None if is_url(path) else holders.holding(path)
        if found is not None and found[0] in written and _file_id(path) not in replaced:
            raise OutputError(
                f"{quote_name(target)}: writes into the input directory {quote_name(found[0])}, where {quote_name(path)} is not "
                f"replaced: a later read of {quote_name(found[0])} would take both; write the outputs to another directory"
            )


def _check_in_place_not_input(target: str, inputs: Sequence[str]) -> None:
    """Refuse ``-o`` naming a deleted file (``/dev/fd/N`` of an unlinked file or a memfd) that is also
    an input: written in place, it would be cut short while still being read."""
    try:
        st = os.stat(target)
    except OSError:
        return
    # A regular file with a name here is one written through a descriptor at its offset (as standard
    # output is), never cut short; only a deleted one is reopened and truncated.
    path = _input_at(st, inputs) if stat.S_ISREG(st.st_mode) and st.st_nlink == 0 else None
    if path is not None:
        raise OutputError(
            f"{quote_name(target)}: a deleted file, which can only be written in place, is also an input "
            f"({quote_name(path)}); write the output to another file"
        )


def _input_at(st: os.stat_result, inputs: Sequence[str]) -> str | None:
    """The first of ``inputs`` (by any name: a link, a symlink, a ``file://`` URL) that is the file ``st``."""
    from .remote import local_paths

    for path in (each for name in inputs for each in local_paths(name)):
        try:
            other = os.stat(path)
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            return path
    return None
