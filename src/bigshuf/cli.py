"""Command line: GNU shuf's options plus bigshuf's, parsed into one call of the library.

This is the only place where errors become messages and exit statuses:
0 success; 1 any error (as GNU shuf); 130 interrupted (SIGINT); 143 terminated (SIGTERM);
a closed standard output ends the process by SIGPIPE, as it does shuf.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import resource
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from .errors import BigShufError, InputError, OutputError, UsageError
from .progress import BarProgress, Progress, make_progress, summary

if TYPE_CHECKING:
    from .api import ShuffleStats

PROG = "bigshuf"

#: The largest number ``-i`` takes, as GNU shuf's ``size_t`` on 64-bit systems.
SIZE_MAX = 2**64 - 1

#: Held back while the interpreter loads the engine and parses the command line: a Ctrl-C
#: there would interrupt an import or argparse half-way (a NumPy traceback, or an
#: AttributeError from argparse's half-undone state); held, it arrives as soon as they are done.
STARTUP_SIGNALS = {signal.SIGINT, signal.SIGTERM}

HELP = f"""\
Usage: {PROG} [OPTION]... [FILE]...
  or:  {PROG} -e [OPTION]... [ARG]...
  or:  {PROG} -i LO-HI [OPTION]...
Write a uniformly random permutation of the input lines to standard output.
Inputs larger than the memory limit are shuffled through temporary files.

With no FILE, or when FILE is -, read standard input. Several FILEs are
shuffled together as one input. Parquet and Arrow files have their rows
shuffled into Parquet, Arrow or JSON Lines, as -o's suffix says.

Mandatory arguments to long options are mandatory for short options too.
  -e, --echo                treat each ARG as an input line
  -i, --input-range=LO-HI   treat each number LO through HI as an input line
  -n, --head-count=COUNT    output at most COUNT lines
  -o, --output=FILE         write result to FILE instead of standard output
      --random-source=FILE  seed from the first 4 KiB of FILE
  -r, --repeat              output lines can be repeated
  -z, --zero-terminated     line delimiter is NUL, not newline
  -S, --memory=SIZE         use at most SIZE of memory for records (default
                              50%); SIZE takes K (the default unit), M, G, T,
                              b for bytes, or % of physical memory, as sort -S
  -T, --temporary-directory=DIR
                            put temporary buckets in DIR, not $TMPDIR or /tmp
      --seed=N              seed the random generator: the same inputs, seed
                              and options give the same output
      --files-from=F        read input file names from F, one per line
      --files0-from=F       read input file names from F, NUL-terminated;
                              F of - reads the names from standard input
      --shards=N            write N files that together hold one uniform
                              shuffle, counts equal to within one; -o is a
                              directory or a pattern like out/part-{{:05d}}.jsonl
      --compress=CODEC[:LEVEL]  compress the output with gzip, zstd, bzip2, xz
                              or none (default: from the -o suffix); inputs
                              are decompressed whatever their name
      --compress-temp       keep temporary buckets zstd-compressed (less
                              temporary disk, more CPU)
      --header=N            keep the first N lines of the first input on top
                              of every output file; drop the first N lines of
                              every later input
      --lines-per-record=N  shuffle groups of N lines as one record (FASTQ: 4)
      --resume              with --seed: checkpoint an external run, and
                              continue an interrupted one with the same
                              arguments where it stopped (inputs must not
                              have changed)
      --verify              fingerprint the records read and written; if they
                              differ, fail and leave the output untouched
      --no-sync             do not fsync output files and their directories
                              around the final rename (faster; a machine crash
                              may then lose the new output)
      --row-group-size=N    rows per Parquet row group (Arrow record batch)
                              in a table output (default: about 64 MiB)
      --schema=SPEC         column types of JSON Lines read into a .parquet or
                              .arrow output: NAME:TYPE,... (Arrow type names)
                              or a Parquet/Arrow file to copy (default:
                              inferred)
      --output-format=FMT   write table rows as parquet, arrow or jsonl whatever
                              -o's suffix (to standard output, say)
      --check-permutation FILE... --against OUT...
                            do not shuffle: exit 0 if the OUT files hold
                              exactly the records of the FILEs, else 1
      --engine=local|dask   run on this machine (default), or as Dask tasks
                              (pip install 'bigshuf[dask]'); FILEs and -o may
                              then be fsspec URLs such as s3://bucket/in/*.zst
      --scheduler=ADDRESS   Dask scheduler (default: $DASK_SCHEDULER_ADDRESS,
                              else a cluster of processes on this machine)
      --temp-url=URL        temporary objects of --engine=dask, somewhere every
                              worker can reach (default: under -T)
      --progress            show progress bars on standard error
  -q, --quiet               never show progress bars (the default when
                              standard error is not a terminal)
      --help        display this help and exit
      --version     output version information and exit

A directory FILE stands for its data files, searched recursively in name order:
line files (.txt .jsonl .json .ndjson .csv .tsv .fastq .fq, also ending .gz .zst
.bz2 .xz) or tables (.parquet .pq .arrow .feather .ipc), not both; names that
start with . or _ are skipped. FILEs may be URLs (s3://, https://, ...) read
through fsspec.

Examples:
  {PROG} -n 1000000 corpus.jsonl.zst -o sample.jsonl
                            a uniform sample of a million lines
  {PROG} --header=1 part-*.csv -o shuffled.csv
                            CSV files shuffled together, one header kept
  {PROG} --lines-per-record=4 reads.fastq.gz -o shuffled.fastq.gz
                            FASTQ reads, four lines each
  {PROG} data/ -S 16G --seed 1 --shards 32 -o out/part-{{:05d}}.jsonl.zst
                            a directory of .jsonl.zst shards into 32 shards
                              that together hold one uniform shuffle
  {PROG} train.parquet -n 1000 -o sample.jsonl
                            Parquet rows sampled into JSON Lines
"""


class _Terminated(BaseException):
    """Raised by the SIGTERM handler so that cleanup runs on the way out."""


class _SyntaxError(UsageError):
    """A malformed command line: its message is followed by the pointer to --help, as in shuf."""


def _gnu_wording(message: str, argv: Sequence[str]) -> str:
    """Reword argparse's complaints as getopt (and so GNU shuf) words them."""
    m = re.match(r"unrecognized arguments: (\S+)", message)
    if m:
        word = m.group(1)
        if word.startswith("--"):
            return f"unrecognized option '{word.split('=')[0]}'"
        return f"invalid option -- '{word[1:2]}'"
    m = re.match(r"argument (-\w)?/?(--[\w-]+)?: expected one argument", message)
    if m:
        short, long = m.group(1), m.group(2)
        typed_long = long and any(a.startswith("--") and long.startswith(a) for a in argv)
        return f"option '{long}' requires an argument" if typed_long or not short else f"option requires an argument -- '{short[1:]}'"
    m = re.match(r"ambiguous option: (\S+?)(=\S*)? could match (.*)", message)
    if m:
        options = " ".join(f"'{o}'" for o in m.group(3).split(", "))
        return f"option '{m.group(1)}' is ambiguous; possibilities: {options}"
    return message


class _Parser(argparse.ArgumentParser):
    argv: Sequence[str] = ()

    def error(self, message: str) -> NoReturn:
        raise _SyntaxError(_gnu_wording(message, self.argv))


class _Once(argparse.Action):
    """An option that may be repeated only with the same value (-o, --random-source)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        old = getattr(namespace, self.dest)
        if old is not None and old != values:
            raise UsageError(self.metavar)
        setattr(namespace, self.dest, values)


_UNSIGNED = re.compile(r"[ \t\n\v\f\r]*\+?([0-9]+)\Z")


def _unsigned(text: str) -> int | None:
    """``text`` read as GNU's xstrtoumax reads a plain number (leading blanks and a ``+`` allowed,
    nothing after the digits); None if it is not one. The value may exceed SIZE_MAX."""
    m = _UNSIGNED.match(text)
    return int(m.group(1)) if m else None


class _HeadCount(argparse.Action):
    """``-n``: a non-negative count; repeated, the smallest wins.

    As in GNU shuf, a count too large for the machine (above SIZE_MAX) is no limit at all.
    """

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        count = _unsigned(values)
        if count is None:
            raise UsageError(f"invalid line count: '{values}'")
        if count > SIZE_MAX:
            return
        old = getattr(namespace, self.dest)
        setattr(namespace, self.dest, count if old is None else min(old, count))


class _InputRange(argparse.Action):
    """``-i LO-HI``: parsed where it appears, as GNU shuf does, and given at most once."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        if getattr(namespace, self.dest) is not None:
            raise UsageError("multiple -i options specified")
        setattr(namespace, self.dest, _parse_range(values))


def _count(flag: str, least: int) -> Callable[[str], int]:
    """A parser of whole numbers of at least ``least`` for ``flag``."""

    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < least:
            raise UsageError(f"invalid {flag} value: '{text}'")
        return int(text)

    return parse


def _read_file_list(path: str, sep: bytes, flag: str) -> list[str]:
    """The input names listed in ``path`` (``-`` for stdin), as GNU sort's --files0-from reads them."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except OSError as e:
        raise InputError(f"{path}: cannot read file names: {e.strerror}") from None
    names = data.split(sep)
    if names and names[-1] == b"":
        names.pop()
    for i, name in enumerate(names):
        if not name:
            raise InputError(f"{path}:{i + 1}: invalid zero-length file name")
        if path == "-" and name == b"-":
            raise InputError(f"when reading file names from standard input, no file name of '-' allowed ({flag})")
    return [os.fsdecode(n) for n in names]


def _parser() -> _Parser:
    p = _Parser(prog=PROG, add_help=False, allow_abbrev=True)
    p.add_argument("-e", "--echo", action="store_true")
    p.add_argument("-i", "--input-range", action=_InputRange)
    p.add_argument("-n", "--head-count", action=_HeadCount)
    p.add_argument("-o", "--output", action=_Once, metavar="multiple output files specified")
    p.add_argument("--random-source", action=_Once, metavar="multiple random sources specified")
    p.add_argument("-r", "--repeat", action="store_true")
    p.add_argument("-z", "--zero-terminated", action="store_true")
    p.add_argument("-S", "--memory")
    p.add_argument("-T", "--temporary-directory")
    p.add_argument("--seed")
    p.add_argument("--files-from", action=_Once, metavar="multiple --files-from options specified")
    p.add_argument("--files0-from", action=_Once, metavar="multiple --files0-from options specified")
    p.add_argument("--shards", type=_count("--shards", 1))
    p.add_argument("--compress")
    p.add_argument("--compress-temp", action="store_true")
    p.add_argument("--header", type=_count("--header", 0), default=0)
    p.add_argument("--lines-per-record", type=_count("--lines-per-record", 1), default=1)
    p.add_argument("--verify", action="store_true")
    p.add_argument("--no-sync", action="store_true")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--row-group-size", type=_count("--row-group-size", 1))
    p.add_argument("--schema")
    p.add_argument("--output-format")
    p.add_argument("--check-permutation", action="store_true")
    p.add_argument("--against", action="extend", nargs="+", default=[])
    p.add_argument("--engine", default="local")
    p.add_argument("--scheduler")
    p.add_argument("--temp-url")
    p.add_argument("--progress", dest="progress", action="store_true", default=None)
    p.add_argument("-q", "--quiet", dest="progress", action="store_false")
    p.add_argument("--help", action="store_true")
    p.add_argument("--version", action="store_true")
    p.add_argument("operands", nargs="*")
    return p


def _range_end(part: str) -> int:
    """One end of ``-i LO-HI``: a number up to SIZE_MAX, or GNU shuf's message naming ``part``."""
    value = _unsigned(part)
    if value is None:
        raise UsageError(f"invalid input range: '{part}'")
    if value > SIZE_MAX:
        raise UsageError(f"invalid input range: '{part}': {os.strerror(errno.EOVERFLOW)}")
    return value


def _parse_range(text: str) -> tuple[int, int]:
    """``LO-HI`` split at its first ``-``, as GNU shuf 9.1 splits it: empty (``HI`` = ``LO`` - 1)
    up to SIZE_MAX numbers; ``0-SIZE_MAX`` is one number too many, as in shuf."""
    lo_text, dash, hi_text = text.partition("-")
    lo = _range_end(lo_text) if dash else 0
    hi = _range_end(hi_text if dash else text)
    if not dash or lo > hi + 1 or hi - lo + 1 > SIZE_MAX:
        raise UsageError(f"invalid input range: '{text}'")
    return lo, hi


def _parse_seed(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit():
        raise UsageError(f"invalid seed: '{text}': a non-negative integer is needed")
    return int(text)


def run(argv: Sequence[str]) -> int:
    """Parse ``argv`` and shuffle; raises BigShufError for the caller to report."""
    return _execute(_parse(argv))


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    """The command line as options and operands (GNU shuf's checks made as getopt meets them)."""
    argv = list(argv)
    # Everything after "--" is an operand, as with getopt (argparse would still parse it).
    rest: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, rest = argv[:cut], argv[cut + 1 :]
    # GNU shuf's --hea and --head abbreviate --head-count; bigshuf's --header must not
    # make them ambiguous (it is abbreviated from --heade on).
    argv = [re.sub(r"^--head?(?==|$)", "--head-count", a) if a.startswith("--hea") else a for a in argv]
    parser = _parser()
    parser.argv = argv
    args = parser.parse_intermixed_args(_attach_arguments(parser, argv))
    args.operands += rest
    return args


def _attach_arguments(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """Join each option that takes an argument to the word after it, as getopt takes that word
    whatever it looks like: ``-i -1-3`` is the range ``-1-3`` (refused as shuf refuses it), where
    argparse would see an option and say the argument is missing."""
    takes_argument = {o for a in parser._actions if a.nargs is None for o in a.option_strings}
    flags = {o[1] for a in parser._actions if a.nargs == 0 for o in a.option_strings if len(o) == 2}
    longs = [o for o in parser._option_string_actions if o.startswith("--")]
    out: list[str] = []
    words = iter(argv)
    for word in words:
        if word.startswith("--") and "=" not in word:
            exact = [word] if word in longs else [o for o in longs if o.startswith(word)]
            if len(exact) == 1 and exact[0] in takes_argument:
                following = next(words, None)
                word = word if following is None else f"{word}={following}"
        elif word.startswith("-") and len(word) >= 2 and word[1] != "-":
            # -i, or a cluster of flags ending with one that takes an argument (-ri).
            head, last = word[1:-1], word[-1]
            if f"-{last}" in takes_argument and all(c in flags for c in head):
                following = next(words, None)
                if following is not None and following.startswith("-"):
                    word += following  # argparse takes any other word (even "") as the argument
                elif following is not None:
                    out.append(word)
                    word = following
        out.append(word)
    return out


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
        raise OutputError(f"write error: {e.strerror}") from None


def _execute(args: argparse.Namespace) -> int:
    """Do what the parsed command line asks."""
    from .api import shuffle, shuffle_range
    from .storage.sources import BytesSource

    if args.help:
        _write_stdout(HELP)
        return 0
    if args.version:
        _write_stdout(f"{PROG} {__version__}\n")
        return 0
    if args.check_permutation:
        return _check(args)
    if args.echo and args.input_range is not None:
        raise _SyntaxError("cannot combine -e and -i options")
    inputs: list[str] = args.operands
    for flag, value, sep in (("--files-from", args.files_from, b"\n"), ("--files0-from", args.files0_from, b"\0")):
        if value is None:
            continue
        if args.operands or args.echo or args.input_range is not None:
            extra = args.operands[0] if args.operands else ("-e" if args.echo else "-i")
            raise _SyntaxError(f"extra operand '{extra}'\nfile operands cannot be combined with {flag}")
        inputs = inputs + _read_file_list(value, sep, flag)
    if args.engine != "local" or args.scheduler is not None or args.temp_url is not None:
        return _dask(args, inputs)
    _choose_arrow_pool(inputs, args)
    progress = make_progress(args.progress)
    common: dict[str, Any] = dict(
        memory=args.memory,
        seed=_parse_seed(args.seed),
        tmp_dir=args.temporary_directory,
        head_count=args.head_count,
        zero_terminated=args.zero_terminated,
        repeat=args.repeat,
        random_source=args.random_source,
        progress=progress,
        header=args.header,
        lines_per_record=args.lines_per_record,
        shards=args.shards,
        compress=args.compress,
        compress_temp=args.compress_temp,
        verify=args.verify,
        resume=args.resume,
        row_group_size=args.row_group_size,
        schema=args.schema,
        output_format=args.output_format,
        sync=not args.no_sync,
    )
    if args.input_range is not None:
        if args.operands:
            raise _SyntaxError(f"extra operand '{args.operands[0]}'")
        lo, hi = args.input_range
        stats = shuffle_range(lo, hi, args.output, **common)
    elif args.echo:
        sep = b"\0" if args.zero_terminated else b"\n"
        data = b"".join(os.fsencode(a) + sep for a in args.operands)
        stats = shuffle(BytesSource("-e", data), args.output, **common)
    elif args.files_from is not None or args.files0_from is not None:
        if not inputs:
            raise UsageError("no input files listed")
        stats = shuffle(inputs, args.output, **common)
    else:
        stats = shuffle(inputs or ["-"], args.output, **common)
    _summarize(progress, stats)
    return 0


def _summarize(progress: Progress, stats: ShuffleStats) -> None:
    """With progress bars on, one line at the end saying what the run did (the bars vanish)."""
    if isinstance(progress, BarProgress):
        _report(f"{PROG}: {summary(stats)}")


def _choose_arrow_pool(inputs: list[str], args: argparse.Namespace) -> None:
    """Arrow's jemalloc pool for table runs, before Arrow allocates anything.

    It hands freed memory back sooner than the default (mimalloc): 1 GiB of Parquet rows at
    -S 256M peaked at 256-263 MB RSS against 400 MB, in 5.8-6.1 s against 5.1-6.4 s. For lines
    it only added system time (4.3-4.7 s against 4.0-4.2 s for 550 MB at -S 256M), so lines keep
    the default. The pool is read from the environment when pyarrow is first imported (so this
    runs before), and C++ readers and writers ignore ``pyarrow.set_memory_pool``. pyarrow's Linux
    wheels include jemalloc; elsewhere asking for it prints a warning.
    """
    from .formats.detect import is_table_input, suffix_kind

    tables = args.output_format is not None or suffix_kind(args.output or "-") in ("parquet", "arrow")
    if sys.platform.startswith("linux") and (tables or any(is_table_input(p) for p in inputs)):
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")


def _dask(args: argparse.Namespace, inputs: list[str]) -> int:
    """``--engine=dask``: the options that engine supports, or a usage error naming the first other one."""
    if args.engine != "dask":
        raise UsageError(f"invalid --engine value: '{args.engine}'; choose local or dask")
    unsupported = [
        ("-e", args.echo), ("-i", args.input_range is not None), ("--repeat", args.repeat),
        ("--header", args.header), ("--lines-per-record", args.lines_per_record != 1),
        ("--resume", args.resume), ("--compress-temp", args.compress_temp), ("--schema", args.schema is not None),
    ]
    for flag, used in unsupported:
        if used:
            raise UsageError(f"--engine=dask does not support {flag}")
    from .engines.dask import shuffle as dask_shuffle

    progress = make_progress(args.progress)
    stats = dask_shuffle(
        inputs, args.output, memory=args.memory, seed=_parse_seed(args.seed), random_source=args.random_source,
        tmp_dir=args.temporary_directory, temp_url=args.temp_url, scheduler=args.scheduler,
        head_count=args.head_count, zero_terminated=args.zero_terminated, shards=args.shards,
        compress=args.compress, verify=args.verify, row_group_size=args.row_group_size,
        output_format=args.output_format, progress=progress, sync=not args.no_sync,
    )
    _summarize(progress, stats)
    return 0


def _check(args: argparse.Namespace) -> int:
    """``--check-permutation IN... --against OUT...``: compare record fingerprints."""
    if not args.operands or not args.against:
        raise _SyntaxError("--check-permutation needs input FILEs and --against OUTPUT files")
    from .api import check_permutation

    got_in, got_out = check_permutation(
        args.operands, args.against, memory=args.memory, zero_terminated=args.zero_terminated,
        lines_per_record=args.lines_per_record, header=args.header,
    )
    if got_in == got_out:
        print(f"{PROG}: same records: {got_in}", file=sys.stderr)
        return 0
    print(f"{PROG}: records differ: inputs {got_in}; outputs {got_out}", file=sys.stderr)
    return 1


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


def _report(message: str) -> None:
    """Print one message on standard error; a closed or failing stderr loses it (the status still tells)."""
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


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


def _virtual_memory_limit() -> str:
    """`` (ulimit -v N)`` when the address space is limited, else empty: the usual cause of a failed load."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    return "" if soft == resource.RLIM_INFINITY else f" (ulimit -v {soft // 1024})"


def _load_failure(e: ImportError | MemoryError) -> str:
    """The message for a library that could not be loaded: most often memory too small to map it."""
    text = str(e)
    # One line: NumPy's ImportError is a page of advice that ends with the loader's own error.
    detail = ([line.strip() for line in text.splitlines() if line.strip()] or [type(e).__name__])[-1]
    if isinstance(e, MemoryError) or "failed to map segment" in text or "annot allocate memory" in text:
        return f"memory too small to load the libraries bigshuf needs{_virtual_memory_limit()}: {detail}"
    return f"cannot load {e.name or 'a library bigshuf needs'}: {detail}"


def main(argv: Sequence[str] | None = None, *, signal_mask: set[int | signal.Signals] | None = None) -> int:
    """Entry point of the ``bigshuf`` command; returns the exit status.

    ``signal_mask``: the mask the process started with, when the caller (``python -m bigshuf``)
    already held STARTUP_SIGNALS back; restored once the engine is loaded.
    """
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STARTUP_SIGNALS)
    held = blocked if signal_mask is None else signal_mask
    try:
        try:
            signal.signal(signal.SIGTERM, _on_sigterm)
            return _main(sys.argv[1:] if argv is None else argv, held)
        finally:
            # A signal held back since the start is delivered here, and handled below.
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
    except KeyboardInterrupt:
        return 130
    except _Terminated:
        return 143


def _main(argv: Sequence[str], held: set[int | signal.Signals]) -> int:
    """Start (signals ``held`` back), run, and turn every failure into a message and a status."""
    try:
        _guard_standard_streams()
        args = _parse(argv)
        # bigshuf does no linear algebra: OpenBLAS's per-thread buffers only cost address space,
        # and under a tight ``ulimit -v`` OpenBLAS aborts the process while NumPy loads.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        try:
            from . import api  # noqa: F401  (loads NumPy while Ctrl-C is held back)
        except (ImportError, MemoryError) as e:
            _report(f"{PROG}: {_load_failure(e)}")
            return 1
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        return _execute(args)
    except _SyntaxError as e:
        _report(f"{PROG}: {e.cli_message()}\nTry '{PROG} --help' for more information.")
        return 1
    except BigShufError as e:
        _report(f"{PROG}: {e.cli_message()}")
        return 1
    except MemoryError:
        _report(f"{PROG}: memory exhausted{_virtual_memory_limit()}; lower -S")
        return 1
    except ImportError as e:
        _report(f"{PROG}: {_load_failure(e)}")
        return 1
    except KeyboardInterrupt:
        return 130
    except _Terminated:
        return 143
    except BrokenPipeError:
        # Die of SIGPIPE like shuf; cleanup already ran on the way out.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGPIPE)
        return 141
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        _report(f"{PROG}: {where}{e.strerror or e}")
        return 1
    except Exception as e:
        if os.environ.get("BIGSHUF_DEBUG"):
            raise
        _report(f"{PROG}: internal error: {type(e).__name__}: {e} (set BIGSHUF_DEBUG=1 for a traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
