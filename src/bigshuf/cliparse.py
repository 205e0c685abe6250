"""Command-line parsing: GNU shuf's options and bigshuf's, read as getopt reads them (abbreviations,
joined arguments, repeated options, ``--`` and its operands), into one namespace."""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, NoReturn, cast

from .core.head import parse_share
from .core.numbers import HOW
from .errors import InputError, UsageError
from .quoting import quote_arg, quote_name

PROG = "bigshuf"

#: The largest number ``-i`` takes, as GNU shuf's ``size_t`` on 64-bit systems.
SIZE_MAX = 2**64 - 1


HELP = f"""\
Usage: {PROG} [OPTION]... [FILE]...
  or:  {PROG} -e [OPTION]... [ARG]...
  or:  {PROG} -i LO-HI [OPTION]...
Write a uniformly random permutation of the input lines to standard output.
Inputs larger than the memory limit are shuffled through temporary files.

With no FILE, or when FILE is -, read standard input. Several FILEs are
shuffled together as one input. Parquet and Arrow files have their rows
shuffled into Parquet, Arrow or JSON Lines, as -o's suffix says. Tar files
(WebDataset shards) have their samples shuffled into tar files (--unique:
samples of the same member suffixes and bytes; --rate up to 1). Megatron
indexed datasets (FILE is PREFIX, PREFIX.idx or PREFIX.bin) have their
documents shuffled into a new pair: -o PREFIX writes PREFIX.bin and PREFIX.idx.

Mandatory arguments to long options are mandatory for short options too.
  -e, --echo                treat each ARG as an input line
  -i, --input-range=LO-HI   treat each number LO through HI as an input line
  -n, --head-count=COUNT    output at most COUNT lines; COUNT may be P% of
                              the lines read (-n 10%, -n 0.5%)
  -o, --output=FILE         write result to FILE instead of standard output
      --random-source=FILE  seed from the first 4 KiB of FILE
  -r, --repeat              output lines can be repeated
  -z, --zero-terminated     line delimiter is NUL, not newline
  -S, --memory=SIZE         use at most SIZE of memory for records (default
                              50%); SIZE takes K (the default unit), M, G, T,
                              b for bytes, or % of physical memory, as sort -S;
                              kB, MB, GB are powers of 1000
  -T, --temporary-directory=DIR
                            put temporary buckets in DIR, not $TMPDIR or /tmp
                              (given again, the last DIR is used)
      --seed=N              seed the random generator: the same inputs, seed
                              and options give the same output
      --files-from=F        read input file names from F, one per line
      --files0-from=F       read input file names from F, NUL-terminated;
                              F of - reads the names from standard input
      --shards=N            write N files that together hold one uniform
                              shuffle, counts equal to within one; -o is a
                              directory or a pattern like out/part-{{:05d}}.jsonl
      --shard-size=SIZE     write shards of at least SIZE bytes of records
                              each (K, M, G, T units; records never cut):
                              a new shard starts once one holds SIZE (rows:
                              their Arrow bytes); -o as for --shards
      --shard-records=N     write shards of N records each (the last fewer)
      --split=NAME=PART,... cut the shuffle into consecutive splits, each a
                              uniform random subset in random order; PART is
                              a record count, a fraction (0.01) or rest, as
                              in valid=10000,train=rest; -o holds {{split}},
                              as in out/{{split}}.jsonl or, with shards,
                              out/{{split}}/part-{{:05d}}.jsonl.zst
      --manifest=FILE       write a JSON record of the run to FILE with the
                              outputs: command, version, seed, inputs, and
                              every output file's records, bytes and
                              fingerprint (costs hashing, as --verify)
      --check-manifest=FILE do not shuffle: re-read the outputs FILE lists;
                              exit 0 if they match it, else 1 naming each
                              problem
      --compress=CODEC[:LEVEL]  compress the output with gzip, zstd, bzip2, xz
                              or none (default: from the -o suffix); inputs
                              are decompressed whatever their name (gzip
                              levels 1-3, 4-5 and 6-9 each give one output)
      --compress-temp       keep temporary buckets zstd-compressed (less
                              temporary disk, more CPU)
      --header=N            keep the first N lines of the first input on top
                              of every output file; drop the first N lines of
                              every later input
      --lines-per-record=N  shuffle groups of N lines as one record (FASTQ: 4)
      --resume              with --seed: checkpoint an external run, and
                              continue an interrupted one with the same
                              arguments where it stopped (inputs must not
                              have changed; a rerun of the output with other
                              options is refused, naming the checkpoint)
      --verify              fingerprint the records read and written; if they
                              differ, fail and leave the output untouched
      --unique              keep one copy of byte-identical lines (as sort -u),
                              table rows, tar samples or Megatron documents
                              (same tokens, same sequence lengths), and shuffle
                              those; at most one more pass; with --source, the
                              first copy in source order, before the rates apply
      --no-sync             do not fsync output files and their directories
                              around the final rename (faster; a machine crash
                              may then lose the new output)
  -j, --threads=N           run N worker threads (default: every core this
                              process may use); the output does not depend on N
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
                              (tars: their samples; Megatron datasets:
                              their documents)
      --engine=local|dask   run on this machine (default), or as Dask tasks
                              (pip install 'bigshuf[dask]'); FILEs and -o may
                              then be fsspec URLs such as s3://bucket/in/*.zst
      --scheduler=ADDRESS   Dask scheduler (default: $DASK_SCHEDULER_ADDRESS,
                              else a cluster of processes on this machine)
      --temp-url=URL        temporary objects of --engine=dask, somewhere every
                              worker can reach (default: under -T)
      --source=NAME=PATH    read PATH (a file, a directory or a quoted glob
                              pattern) as part of source NAME; repeat for
                              more sources or paths (then give no FILE)
      --rate=NAME=R         copy each record of source NAME floor(R) times,
                              plus a uniform sample of round(frac(R) x its
                              records) once more (default 1; 0 drops it)
      --mix=A=P,B=Q         give each source its share P of --total records
                              (default: the most that repeats no record), the
                              rates solved from counts made in a first pass
      --total=N             records of a --mix; with --by=bytes, bytes (50G)
      --by=records|bytes    what the shares of --mix count (default: records;
                              Megatron datasets: documents, or token bytes)
      --max-rate=R          refuse a rate above R (default: 10; at least 1)
      --stratify            with --split: give each split its share of every
                              source's records (valid gets valid's share of
                              web and of code), still uniform in each split
      --dry-run             write nothing: print what the run would do and
                              need (inputs, records, memory, passes, buckets,
                              temporary space, open files, outputs) and exit
                              0, or 1 naming each check that would fail
      --progress            show progress bars on standard error
  -q, --quiet               never show progress bars (the default when
                              standard error is not a terminal)
      --help        display this help and exit
      --version     output version information and exit

A directory FILE stands for its data files, searched recursively in name order:
line files (.txt .jsonl .json .ndjson .csv .tsv .fastq .fq, also ending .gz .zst
.bz2 .xz), tables (.parquet .pq .arrow .feather .ipc), tars (.tar* .tgz .tzst
.tbz2 .txz) or Megatron indexes (.idx, each read with the .bin beside it), one
kind only; names that start with . or _ are skipped. FILEs may be URLs (s3://,
https://, ...) read through fsspec; a URL is a tar when its name is one.

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
  {PROG} tok/web_text_document tok/code_text_document --seed 1 -o mixed
                            the documents of two Megatron datasets shuffled
                              into mixed.bin and mixed.idx
  {PROG} --source web=data/ --source code='*.zst' --rate code=2.5 -o mix.jsonl
                            web once and code 2.5 times, shuffled together
                              (a quoted pattern: bigshuf expands it)
  {PROG} --source w=data/ --source c='*.zst' --mix w=0.7,c=0.3 --total 100
                            100 records, 70% from w and 30% from c
"""


class CommandSyntaxError(UsageError):
    """A malformed command line: its message is followed by the pointer to --help, as in shuf."""


def _gnu_wording(message: str, argv: Sequence[str]) -> str:
    """Reword argparse's complaints as getopt (and so GNU shuf) words them."""
    m = re.match(r"unrecognized arguments: (\S+)", message)
    if m:
        word = m.group(1)
        if word.startswith("--"):  # named whole, '=' and all, as getopt names it (argparse split it at blanks)
            return f"unrecognized option {quote_arg(next((a for a in argv if a.startswith(word)), word))}"
        return f"invalid option -- {quote_arg(word[1:2])}"
    m = re.match(r"argument (-\w)?/?(--[\w-]+)?: expected one argument", message)
    if m:
        short, long = m.group(1), m.group(2)
        typed_long = long and any(a.startswith("--") and long.startswith(a) for a in argv)
        return f"option {quote_arg(long)} requires an argument" if typed_long or not short else f"option requires an argument -- {quote_arg(short[1:])}"
    m = re.match(r"argument (?:-\w/)?(--[\w-]+): ignored explicit argument", message)
    if m:
        return f"option {quote_arg(m.group(1))} doesn't allow an argument"
    m = re.match(r"ambiguous option: (\S+?)(=\S*)? could match (.*)", message)
    if m:
        options = " ".join(f"{quote_arg(o)}" for o in m.group(3).split(", "))
        return f"option {quote_arg(m.group(1))} is ambiguous; possibilities: {options}"
    return message


class _Parser(argparse.ArgumentParser):
    argv: Sequence[str] = ()

    def error(self, message: str) -> NoReturn:
        raise CommandSyntaxError(_gnu_wording(message, self.argv))

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        """An option's argument ``--`` is that word, as getopt takes it (``-o --`` writes a file
        named ``--``); argparse drops it and hands the option an empty list."""
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            value = self._get_value(action, "--")
            self._check_value(action, value)
            return value
        return super()._get_values(action, arg_strings)


class _FirstOf(argparse.Action):
    """``--help`` and ``--version``: the first given is the one answered, as getopt-driven GNU shuf does."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        if getattr(namespace, self.dest) is None:
            setattr(namespace, self.dest, option_string)


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
    """``-n``: a non-negative count, or a percentage of the records read (``10%``); repeated, the
    smallest wins (a count and a percentage cannot be compared before reading, so not both).

    As in GNU shuf, a count too large for the machine (above SIZE_MAX) is no limit at all.
    """

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        old = getattr(namespace, self.dest)
        share = parse_share(values)
        if share is not None:
            if isinstance(old, int):
                raise UsageError(f"invalid line count: {quote_arg(values)} (-n was given as a count already)")
            if old is None or share < cast(Fraction, parse_share(old)):
                setattr(namespace, self.dest, values)
            return
        count = _unsigned(values)
        if count is None and values.endswith("%"):
            raise UsageError(f"invalid line count: {quote_arg(values)} (a percentage from 0% to 100% such as 10% or 0.5%: {HOW})")
        if count is None:
            raise UsageError(f"invalid line count: {quote_arg(values)}")
        if isinstance(old, str):
            raise UsageError(f"invalid line count: {quote_arg(values)} (-n was given as a percentage already)")
        if count > SIZE_MAX:
            return
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
        if not (text.isascii() and text.isdigit()) or int(text) < least:  # not '²', which int() refuses
            raise UsageError(f"invalid {flag} value: {quote_arg(text)}")
        return int(text)

    return parse


def read_file_list(path: str, sep: bytes, flag: str) -> list[str]:
    """The input names listed in ``path`` (``-`` for stdin), as GNU sort's --files0-from reads them."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except OSError as e:
        raise InputError(f"{quote_name(path)}: cannot read file names: {e.strerror}") from None
    names = data.split(sep)
    if names and names[-1] == b"":
        names.pop()
    for i, name in enumerate(names):
        if not name:
            raise InputError(f"{quote_name(path)}:{i + 1}: invalid zero-length file name")
        if b"\0" in name:  # only --files-from's lines can hold one; no file is named so
            raise InputError(f"{quote_name(path)}:{i + 1}: invalid file name holding a NUL byte")
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
    p.add_argument("--shard-size")
    p.add_argument("--shard-records", type=_count("--shard-records", 1))
    p.add_argument("--split", action=_Once, metavar="multiple --split options specified")
    p.add_argument("--manifest", action=_Once, metavar="multiple --manifest options specified")
    p.add_argument("--check-manifest", action=_Once, metavar="multiple --check-manifest options specified")
    p.add_argument("--compress")
    p.add_argument("--compress-temp", action="store_true")
    p.add_argument("--header", type=_count("--header", 0), default=0)
    p.add_argument("--lines-per-record", type=_count("--lines-per-record", 1), default=1)
    p.add_argument("--verify", action="store_true")
    p.add_argument("--unique", action="store_true")
    p.add_argument("--stratify", action="store_true")
    p.add_argument("--no-sync", action="store_true")
    p.add_argument("-j", "--threads", type=_count("--threads", 1))
    p.add_argument("--resume", action="store_true")
    p.add_argument("--row-group-size", type=_count("--row-group-size", 1))
    p.add_argument("--schema")
    p.add_argument("--output-format")
    p.add_argument("--check-permutation", action="store_true")
    p.add_argument("--against", action="extend", nargs="+", default=[])
    p.add_argument("--engine", default="local")
    p.add_argument("--scheduler")
    p.add_argument("--temp-url")
    p.add_argument("--source", action="append", default=[])
    p.add_argument("--rate", action="append", default=[])
    p.add_argument("--mix", action="append", default=[])
    p.add_argument("--total")
    p.add_argument("--by", default="records")
    p.add_argument("--max-rate")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--progress", dest="progress", action="store_true", default=None)
    p.add_argument("-q", "--quiet", dest="progress", action="store_false")
    p.add_argument("--help", action=_FirstOf, nargs=0, dest="info")
    p.add_argument("--version", action=_FirstOf, nargs=0, dest="info")
    p.add_argument("operands", nargs="*")
    return p


def _range_end(part: str) -> int:
    """One end of ``-i LO-HI``: a number up to SIZE_MAX, or GNU shuf's message naming ``part``."""
    value = _unsigned(part)
    if value is None:
        raise UsageError(f"invalid input range: {quote_arg(part)}")
    if value > SIZE_MAX:
        raise UsageError(f"invalid input range: {quote_arg(part)}: {os.strerror(errno.EOVERFLOW)}")
    return value


def _parse_range(text: str) -> tuple[int, int]:
    """``LO-HI`` split at its first ``-``, as GNU shuf 9.1 splits it: empty (``HI`` = ``LO`` - 1)
    up to SIZE_MAX numbers; ``0-SIZE_MAX`` is one number too many, as in shuf."""
    lo_text, dash, hi_text = text.partition("-")
    lo = _range_end(lo_text) if dash else 0
    hi = _range_end(hi_text if dash else text)
    if not dash or lo > hi + 1 or hi - lo + 1 > SIZE_MAX:
        raise UsageError(f"invalid input range: {quote_arg(text)}")
    return lo, hi


def parse_sources(args: argparse.Namespace) -> dict[str, Any]:
    """``--source``, ``--rate``, ``--mix``, ``--total``, ``--by`` and ``--max-rate`` as the library's
    keywords (a source named again gains the paths; a rate or share named twice is refused)."""
    sources: dict[str, list[str]] = {}
    for text in args.source:
        name, eq, path = text.partition("=")
        if not eq or not path:
            raise UsageError(f"invalid --source value: {quote_arg(text)} (expected NAME=PATH)")
        sources.setdefault(name, []).append(path)
    out: dict[str, Any] = {"sources": sources or None, "total": args.total, "by": args.by}
    from .core.mix import named_values  # here, not on import: core.mix loads NumPy (see cli.main)

    for flag, values in (("--rate", args.rate), ("--mix", args.mix)):
        named: dict[str, str] = {}
        for text in values:
            for name, value in named_values(text, flag):
                if name in named:
                    raise UsageError(f"{flag} names source {quote_arg(name)} twice")
                named[name] = value
        out["rates" if flag == "--rate" else "mix"] = named or None
    if args.max_rate is not None:
        if not sources:
            raise UsageError("--max-rate needs --source NAME=PATH to name the sources it caps")
        out["max_rate"] = args.max_rate
    return out


def parse_seed(text: str | None) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()):
        raise UsageError(f"invalid seed: {quote_arg(text)}: a non-negative integer is needed")
    return int(text)


#: What ``--check-manifest`` takes besides its file: the memory it reads with, and whether bars show.
CHECK_MANIFEST_OPTIONS = frozenset({"check_manifest", "memory", "progress", "operands"})

#: What ``--check-permutation`` takes besides its files: how records are cut, the memory and threads it reads with, whether bars show.
CHECK_PERMUTATION_OPTIONS = frozenset({
    "check_permutation", "against", "memory", "zero_terminated", "lines_per_record", "header", "threads", "progress", "operands",
})


def options_given(args: argparse.Namespace, allowed: frozenset[str]) -> list[str]:
    """The options of ``args`` other than ``allowed`` ones that were given (differ from their
    defaults), each spelt as its long option, in the order the parser lists them."""
    given = []
    for action in _parser()._actions:
        if action.dest in allowed or not action.option_strings or getattr(args, action.dest, None) == action.default:
            continue
        given.append(next((s for s in action.option_strings if s.startswith("--")), action.option_strings[0]))
    return given


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line as options and operands (GNU shuf's checks made as getopt meets them)."""
    parser = _parser()
    words, rest = _attach_arguments(parser, list(argv))
    parser.argv = words
    args = parser.parse_intermixed_args(words)
    args.operands += rest
    return args


#: GNU shuf's long options: an abbreviation of one of them means it, as in shuf, though it also
#: abbreviates an option of bigshuf's (``--re`` is ``--repeat``, not ambiguous with ``--resume``).
GNU_LONG_OPTIONS = (
    "--echo", "--input-range", "--head-count", "--output", "--random-source", "--repeat", "--zero-terminated",
    "--help", "--version",
)


def _check_long(word: str, matches: list[str], gnu: list[str], flags: set[str]) -> None:
    """Refuse a long option word as getopt does when it meets it, before any word after it is read:
    unknown, ambiguous (GNU shuf's possibilities when it has several, as its options win an
    abbreviation), or given an argument it does not take."""
    if not matches:
        raise CommandSyntaxError(f"unrecognized option {quote_arg(word)}")
    if len(matches) > 1:
        shown = " ".join(quote_arg(o) for o in (gnu or matches))
        raise CommandSyntaxError(f"option {quote_arg(word)} is ambiguous; possibilities: {shown}")
    if "=" in word and matches[0] in flags:
        raise CommandSyntaxError(f"option {quote_arg(matches[0])} doesn't allow an argument")


def _attach_arguments(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], list[str]]:
    """Join each option that takes an argument to the word after it, as getopt takes that word
    whatever it looks like: ``-i -1-3`` is the range ``-1-3`` (refused as shuf refuses it), where
    argparse would see an option and say the argument is missing. Returns those words, and the
    operands after ``--``. As with getopt, ``--`` right after an option that needs an argument is
    that argument (``-o -- f`` writes a file named ``--``). GNU shuf's abbreviations are spelt out
    (``GNU_LONG_OPTIONS``). Each word is checked as getopt meets it, and ``--help`` or
    ``--version`` ends the words read, as it ends GNU shuf. With ``POSIXLY_CORRECT`` set, as for
    getopt, the first operand ends the options: every word from it on is an operand."""
    posix = "POSIXLY_CORRECT" in os.environ
    takes_argument = {o for a in parser._actions if a.nargs is None for o in a.option_strings}
    flags = {o[1] for a in parser._actions if a.nargs == 0 for o in a.option_strings if len(o) == 2}
    longs = [o for o in parser._option_string_actions if o.startswith("--")]
    flags_long = {o for a in parser._actions if a.nargs == 0 for o in a.option_strings if o.startswith("--")}
    out: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":  # everything after it is an operand, as with getopt (argparse would still parse it)
            return out, list(words)
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            matches = [name] if name in longs else [o for o in longs if o.startswith(name)]
            gnu = [o for o in GNU_LONG_OPTIONS if o.startswith(name)]
            if len(matches) > 1 and len(gnu) == 1:
                matches, word = gnu, gnu[0] + eq + value
            _check_long(word, matches, gnu, flags_long)
            if matches[0] in ("--help", "--version"):  # answered at once: getopt never reads the words after it
                out.append(matches[0])
                return out, []
            if not eq and matches[0] in takes_argument:
                following = next(words, None)
                word = word if following is None else f"{word}={following}"
        elif word.startswith("-") and len(word) >= 2 and word[1] != "-":
            # Flags, then perhaps one that takes the rest as its argument, as getopt reads a cluster:
            # argparse took "-1" and "-a b" for operands and worded "-zx" as an argument to -z.
            for at, letter in enumerate(word[1:], 2):
                if f"-{letter}" in takes_argument:
                    if word[at:].startswith("="):  # "-n=2" is -n with "=2", which argparse would cut at "="
                        out.append(word[:at])
                        word = word[at:]
                    break
                if letter not in flags:
                    raise CommandSyntaxError(f"invalid option -- {quote_arg(letter)}")
            # -i, or a cluster of flags ending with one that takes an argument (-ri).
            head, last = word[1:-1], word[-1]
            if f"-{last}" in takes_argument and all(c in flags for c in head):
                following = next(words, None)
                if following is not None and following.startswith("-"):
                    word += following  # argparse takes any other word (even "") as the argument
                elif following is not None:
                    out.append(word)
                    word = following
        elif posix:
            return out, [word, *words]
        out.append(word)
    return out, []

