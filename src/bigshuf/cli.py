"""Command line: GNU shuf's options plus bigshuf's, parsed into one call of the library.

This is the only place where errors become messages and exit statuses:
0 success; 1 any error (as GNU shuf); 130 interrupted (SIGINT); 129 hung up (SIGHUP); 143 terminated
(SIGTERM); a closed standard output ends the process by SIGPIPE, as it does shuf. The command
(``command.main``) then ends its process by the signal itself, as GNU shuf dies of it.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import __version__, address_space
from .cliparse import (
    CHECK_MANIFEST_OPTIONS, CHECK_PERMUTATION_OPTIONS, HELP, PROG, CommandSyntaxError, options_given, parse_args, parse_seed, parse_sources, read_file_list,
)
from .errors import BigShufError, InputError, OutputError, UsageError, interruption, option, os_reason, render
from .progress import BarProgress, Progress, make_progress, summary
from .quoting import quote_arg, quote_name
from .storage.paths import LiteralName

if TYPE_CHECKING:
    from .api import ShuffleStats
    from .storage.sources import Source


#: Held back while the interpreter loads the engine and parses the command line: a Ctrl-C
#: there would interrupt an import or argparse half-way (a NumPy traceback, or an
#: AttributeError from argparse's half-undone state); held, it arrives as soon as they are done.
STARTUP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}

#: Signals that end a run through ``_Terminated``, so that it removes its temporary files on the way
#: out (as GNU sort does), rather than dying with them left for the next run to tidy.
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class _Terminated(BaseException):
    """Raised by the SIGTERM and SIGHUP handler so that cleanup runs on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.status = 128 + signum


#: The signal that ended the last ``main`` (its status 128 + the signal's number), for the command
#: to end its process by (``end_by_signal``); None if none did.
ended_by: int | None = None


def run(argv: Sequence[str]) -> int:
    """Parse ``argv`` and shuffle; raises BigShufError for the caller to report."""
    return _execute(parse_args(argv))


def _write_stdout(text: str) -> None:
    """Print ``text`` on standard output now, a failure reported as GNU tools report it."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        # What could not be written is dropped, so the interpreter's own flush at exit fails no more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        raise OutputError(f"write error: {os_reason(e)}") from None


def _execute(args: argparse.Namespace) -> int:
    """Do what the parsed command line asks."""
    from .api import shuffle, shuffle_range
    from .storage.sources import BytesSource, RangeSource

    if args.info == "--help":
        _write_stdout(HELP)
        return 0
    if args.info == "--version":
        _write_stdout(f"{PROG} {__version__}\n")
        return 0
    if args.check_permutation and args.check_manifest is not None:
        raise UsageError(f"{option('check_manifest')} cannot be combined with {option('check_permutation')}: choose one check")
    if args.check_permutation:
        return _check(args)
    if args.check_manifest is not None:
        return _check_manifest(args)
    if args.against:  # else its files would be taken for nothing and standard input shuffled
        raise UsageError(f"--against names the files {option('check_permutation')} compares the inputs with: "
                         "give both, --check-permutation FILE... --against OUT...")
    if args.echo and args.input_range is not None:
        raise CommandSyntaxError("cannot combine -e and -i options")
    if args.output == "-":  # GNU shuf's -o - is the file named "-" (the library's "-" is standard output)
        args.output = os.path.join(os.curdir, "-")
    inputs = _listed_inputs(args)
    _refuse_closed_streams(args.output, inputs, args.random_source)
    _choose_arrow_pool([*inputs, *(text.partition("=")[2] for text in args.source)], args)  # sources' paths too
    progress = make_progress(args.progress, records_shown=args.output is None and os.isatty(1))
    common = _settings(args, progress)
    sep = b"\0" if args.zero_terminated else b"\n"
    subject: Source | list[str] | tuple[()]
    if args.source or args.rate or args.mix or args.total is not None or args.by != "records" or args.max_rate is not None:
        common.update(parse_sources(args))
    if args.source:
        listed = args.files_from is not None or args.files0_from is not None
        if args.echo or args.input_range is not None or listed:
            given = "-e" if args.echo else "-i" if args.input_range is not None else "--files-from"
            given = "--files0-from" if args.files0_from is not None else given
            raise UsageError(f"{option('source')} cannot be combined with {given}: name every input in a source (NAME=PATH)")
        if args.operands:
            raise CommandSyntaxError(f"extra operand {quote_arg(args.operands[0])}: --source names every input, so put FILEs in a source")
        subject = ()
    elif args.input_range is not None:
        if args.operands:
            raise CommandSyntaxError(f"extra operand {quote_arg(args.operands[0])}")
        lo, hi = args.input_range
        if not args.dry_run:
            _summarize(progress, shuffle_range(lo, hi, args.output, **common))
            return 0
        subject = RangeSource(lo, hi, sep)
    elif args.echo:
        subject = BytesSource.of_records("-e", [os.fsencode(a) for a in args.operands], sep)
    elif args.files_from is not None or args.files0_from is not None:
        if not inputs:
            raise UsageError("no input files listed")
        subject = inputs
    else:
        subject = inputs or ["-"]
    if args.dry_run:
        return _dry_run(subject, args.output, common)
    _summarize(progress, shuffle(subject, args.output, **common))
    return 0


def _dry_run(subject: Source | list[str] | tuple[()], output: str | None, settings: dict[str, Any]) -> int:
    """``--dry-run``: print the plan on standard output; each failed check also on standard error, status 1."""
    from .api import plan_shuffle

    found = plan_shuffle(subject, output, **{k: v for k, v in settings.items() if k != "progress"})
    _write_stdout(found.render(cli=True))
    for check in found.failures:
        _report(f"{PROG}: {render(check.message, cli=True)}")
    return 0 if found.ok else 1


def _listed_inputs(args: argparse.Namespace) -> list[str]:
    """The operands, or the files ``--files-from`` / ``--files0-from`` list (which take no operands)."""
    inputs: list[str] = args.operands
    for flag, value, sep in (("--files-from", args.files_from, b"\n"), ("--files0-from", args.files0_from, b"\0")):
        if value is None:
            continue
        if args.operands or args.echo or args.input_range is not None:
            extra = args.operands[0] if args.operands else ("-e" if args.echo else "-i")
            raise CommandSyntaxError(f"extra operand {quote_arg(extra)}\nfile operands cannot be combined with {flag}")
        inputs = inputs + [LiteralName(name) for name in read_file_list(value, sep, flag)]  # names, not patterns
    return inputs


def _settings(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    """The library's keyword arguments, one per option of the command line."""
    return dict(
        memory=args.memory,
        seed=parse_seed(args.seed),
        tmp_dir=args.temporary_directory,
        head_count=args.head_count,
        zero_terminated=args.zero_terminated,
        repeat=args.repeat,
        random_source=args.random_source,
        progress=progress,
        header=args.header,
        lines_per_record=args.lines_per_record,
        shards=args.shards,
        shard_size=args.shard_size,
        shard_records=args.shard_records,
        split=args.split,
        manifest=args.manifest,
        compress=args.compress,
        compress_temp=args.compress_temp,
        verify=args.verify,
        resume=args.resume,
        row_group_size=args.row_group_size,
        schema=args.schema,
        output_format=args.output_format,
        sync=not args.no_sync,
        threads=args.threads,
        engine=args.engine,
        scheduler=args.scheduler,
        temp_url=args.temp_url,
        unique=args.unique,
        stratify=args.stratify,
    )


def _summarize(progress: Progress, stats: ShuffleStats) -> None:
    """With progress bars on, one line at the end saying what the run did (the bars vanish); none
    after a run too short for the bars shown by default to appear."""
    if isinstance(progress, BarProgress) and progress.visible():
        _report(f"{PROG}: {summary(stats)}")
        for source in stats.sources:
            dropped = f", {source.dropped:,} duplicates dropped" if source.dropped else ""
            _report(
                f"{PROG}: source {source.name}: {source.read:,} {stats.unit} read{dropped}, rate {source.rate:.6g}, "
                f"{source.written:,} in the mix"
            )


def _choose_arrow_pool(inputs: list[str], args: argparse.Namespace) -> None:
    """Arrow's jemalloc pool for table runs (``inputs``: operands and the paths of ``--source``), before Arrow allocates anything.

    It hands freed memory back sooner than the default (mimalloc): 1 GiB of Parquet rows at
    -S 256M peaked at 256-263 MB RSS against 400 MB, in 5.8-6.1 s against 5.1-6.4 s. For lines
    it only added system time (4.3-4.7 s against 4.0-4.2 s for 550 MB at -S 256M), so lines keep
    the default, except with --unique, whose Arrow gathers and comparisons the default pool held on
    to: 162 MB peak against 122 MB with jemalloc (80 MB of duplicate-heavy lines at -S 32M). The pool is read from the environment when pyarrow is first imported (so this
    runs before), and C++ readers and writers ignore ``pyarrow.set_memory_pool``. pyarrow's Linux
    wheels include jemalloc; elsewhere asking for it prints a warning.
    """
    from .formats import registry
    from .formats.detect import is_table_input, megatron_prefix, suffix_kind

    tables = args.output_format is not None or registry.is_table(suffix_kind(args.output or "-"))
    rows_in = any(is_table_input(p) or megatron_prefix(p) is not None for p in inputs)
    if sys.platform.startswith("linux") and (tables or args.unique or rows_in):
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")


def _check(args: argparse.Namespace) -> int:
    """``--check-permutation IN... --against OUT...``: compare record fingerprints."""
    others = options_given(args, CHECK_PERMUTATION_OPTIONS)
    if others:  # else ignored: -n, -o, --shards... (-e read its words as files)
        raise UsageError(
            f"{option('check_permutation')} cannot be combined with {others[0]}: it compares the records of the files "
            f"given with those of the --against files (it takes {option('memory')}, {option('zero_terminated')}, "
            f"{option('lines_per_record')}, {option('header')} and {option('threads')})"
        )
    if not args.operands or not args.against:
        raise CommandSyntaxError("--check-permutation needs input FILEs and --against OUTPUT files")
    from .api import check_permutation

    got_in, got_out = check_permutation(
        args.operands, args.against, memory=args.memory, zero_terminated=args.zero_terminated,
        lines_per_record=args.lines_per_record, header=args.header, threads=args.threads,
    )
    if got_in == got_out:
        print(f"{PROG}: same records: {got_in}", file=sys.stderr)
        return 0
    print(f"{PROG}: records differ: inputs {got_in}; outputs {got_out}", file=sys.stderr)
    return 1


def _check_manifest(args: argparse.Namespace) -> int:
    """``--check-manifest FILE``: check the outputs it lists; one line per problem and exit 1, else a summary."""
    if args.operands:
        raise CommandSyntaxError(f"extra operand {quote_arg(args.operands[0])}: --check-manifest takes only the manifest")
    others = options_given(args, CHECK_MANIFEST_OPTIONS)
    if others:
        raise UsageError(
            f"{option('check_manifest')} cannot be combined with {others[0]}: it only checks the outputs the manifest lists "
            f"(it takes {option('memory')})"
        )
    from .api import checked_manifest

    problems, summary = checked_manifest(args.check_manifest, args.memory, cli=True)
    for problem in problems:
        _report(f"{PROG}: {problem}")
    if problems:
        return 1
    _report(f"{PROG}: {summary}")
    return 0


def _on_ending_signal(signum: int, frame: Any) -> None:
    _ending(True)
    raise _Terminated(signum)


def _on_interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C: Python's own handler, once the run's writes are told not to be waited for."""
    _ending(True)
    raise KeyboardInterrupt


def _ending(ending: bool) -> None:
    """Whether the process ends on a signal: if so, its queued writes go and no one waits for one
    under way (a pipe nobody reads holds it). The module is imported already if anything was written;
    a signal arriving while it is imported finds it without its flag yet, and nothing written by it."""
    flag = getattr(sys.modules.get("bigshuf.storage.writeback"), "ENDING", None)
    if flag is not None and ending:
        flag.set()
    elif flag is not None:
        flag.clear()


def _take_ending_signals() -> None:
    """Handle ENDING_SIGNALS, except one the process started with ignored (SIGHUP under ``nohup``)."""
    for sig in ENDING_SIGNALS:
        if signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, _on_ending_signal)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # (not one ignored, nor a caller's own)
        signal.signal(signal.SIGINT, _on_interrupt)


def _report(message: str) -> None:
    """Print one message on standard error; a closed or failing stderr loses it (the status still tells)."""
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


#: The standard descriptors closed when the process started (held open on /dev/null since).
CLOSED_STREAMS: set[int] = set()

#: Names of a standard descriptor: ``/dev/stdout``, ``/dev/fd/1``, ``/proc/self/fd/1``.
_STREAM_NAME = re.compile(r"/dev/(stdin|stdout|stderr)|(?:/dev/fd|/proc/(?:self|thread-self|[0-9]+)/fd)/([0-9]+)")


def _closed_stream(name: str) -> bool:
    """Whether ``name``, or a symbolic link on its way, names a standard descriptor that was closed
    at the start: opened by name it would reach the /dev/null held there, and read nothing or
    swallow the output, where the closed descriptor fails (EBADF) as GNU shuf reports it."""
    if not CLOSED_STREAMS:
        return False
    for _ in range(40):
        m = _STREAM_NAME.fullmatch(os.path.normpath(name))
        if m is not None:
            pid = m.group(0).split("/")[2] if m.group(0).startswith("/proc/") else "self"
            fd = ("stdin", "stdout", "stderr").index(m.group(1)) if m.group(1) else int(m.group(2))
            if fd in CLOSED_STREAMS and pid in ("self", "thread-self", str(os.getpid())):
                return True
        try:
            name = os.path.join(os.path.dirname(name), os.readlink(name))
        except OSError:
            return False
    return False


def _refuse_closed_streams(output: str | None, inputs: list[str], random_source: str | None) -> None:
    """Refuse, as the closed descriptor would (EBADF), a file named after a standard descriptor closed at the start."""
    if output is not None and _closed_stream(output):
        raise OutputError(f"{quote_name(output)}: {os.strerror(errno.EBADF)}")
    for name in [*inputs, *([random_source] if random_source is not None else [])]:
        if _closed_stream(name):
            raise InputError(f"{quote_name(name)}: {os.strerror(errno.EBADF)}")


def _guard_standard_streams() -> None:
    """Hold a closed standard input, output or error open on /dev/null the wrong way round.

    A file opened later would otherwise take the free descriptor, so that "standard input"
    would read it or "standard output" write into it. Held this way, every read of fd 0 and
    write of fd 1 or 2 fails with EBADF as on the closed descriptor, as GNU shuf reports it.
    """
    for fd, flags in ((0, os.O_WRONLY), (1, os.O_RDONLY), (2, os.O_RDONLY)):
        try:
            os.fstat(fd)
        except OSError:
            CLOSED_STREAMS.add(fd)
            held = os.open(os.devnull, flags)
            if held != fd:
                os.dup2(held, fd)
                os.close(held)
    if sys.stdin is None:
        sys.stdin = open(0, closefd=False)
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)
    if sys.stderr is None:
        # Nowhere to report to: messages are dropped (a failed flush at exit would change the status).
        sys.stderr = open(os.devnull, "w")


def main(argv: Sequence[str] | None = None, *, signal_mask: set[int | signal.Signals] | None = None) -> int:
    """Entry point of the ``bigshuf`` command; returns the exit status.

    ``signal_mask``: the mask the process started with, when the caller (``python -m bigshuf``)
    already held STARTUP_SIGNALS back; restored once the engine is loaded.
    """
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STARTUP_SIGNALS)
    held = blocked if signal_mask is None else signal_mask
    try:
        try:
            _take_ending_signals()
            return _main(sys.argv[1:] if argv is None else argv, held)
        finally:
            # A signal held back since the start is delivered here, and handled below.
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
    except KeyboardInterrupt:
        _ended_by(signal.SIGINT)
        return 130
    except _Terminated as e:
        _ended_by(e.signum)
        return e.status
    finally:  # (a caller running the command in its own process goes on: so do its later runs' writes)
        _ending(False)


def _ended_by(signum: int) -> None:
    """Note that ``signum`` ended the run (see ``ended_by``)."""
    global ended_by
    ended_by = signum


def end_by_signal() -> None:
    """End the process by the signal that ended the command's run, if one did (its clean-up done),
    as GNU shuf dies of it: a shell's loop, or xargs, stops there, where a status of 130 tells them
    the command handled the signal and they go on."""
    if ended_by is None:
        return
    signal.signal(ended_by, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {ended_by})
    os.kill(os.getpid(), ended_by)


def _main(argv: Sequence[str], held: set[int | signal.Signals]) -> int:
    """Start (signals ``held`` back), run, and turn every failure into a message and a status."""
    try:
        _guard_standard_streams()
        args = parse_args(argv)
        # bigshuf does no linear algebra: OpenBLAS's per-thread buffers only cost address space,
        # and under a tight ``ulimit -v`` OpenBLAS aborts the process while NumPy loads.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        try:
            from . import api  # noqa: F401  (loads NumPy while Ctrl-C is held back)

            address_space.load_arrow()
        except (ImportError, MemoryError) as e:
            _report(f"{PROG}: {address_space.load_failure(e)}")
            return 1
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        return _execute(args)
    except BrokenPipeError:  # (before BigShufError: a closed output pipe is both)
        if signal.SIGPIPE in signal.pthread_sigmask(signal.SIG_BLOCK, []):
            # Blocked by the caller, it would not end the process: shuf's write fails as any other there.
            _report(f"{PROG}: write error: {os.strerror(errno.EPIPE)}")
            return 1
        # Die of SIGPIPE like shuf; cleanup already ran on the way out.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGPIPE)
        return 141
    except CommandSyntaxError as e:
        _report(f"{PROG}: {e.cli_message()}\nTry '{PROG} --help' for more information.")
        return 1
    except BigShufError as e:
        _report(f"{PROG}: {e.cli_message()}")
        return 1
    except MemoryError:
        _report(f"{PROG}: memory exhausted{address_space.limit_text()}; lower -S")
        return 1
    except ImportError as e:
        _report(f"{PROG}: {address_space.load_failure(e)}")
        return 1
    except OSError as e:
        where = f"{quote_name(os.fsdecode(e.filename))}: " if isinstance(e.filename, (str, bytes)) and e.filename else ""
        _report(f"{PROG}: {where}{e.strerror or e}")
        return 1
    except Exception as e:
        interrupted = interruption(e)
        if interrupted is not None:
            raise interrupted from None  # main() ends the run as interrupted (130) or terminated (129, 143)
        if isinstance(e, RuntimeError) and str(e) == "can't start new thread":  # (no memory for its stack, or ulimit -u)
            _report(f"{PROG}: cannot start a worker thread{address_space.limit_text()}; lower -j or -S")
            return 1
        if os.environ.get("BIGSHUF_DEBUG"):
            raise
        _report(f"{PROG}: internal error: {type(e).__name__}: {e} (set BIGSHUF_DEBUG=1 for a traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
