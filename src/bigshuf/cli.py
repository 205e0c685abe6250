"""Command line: GNU shuf's options plus bigshuf's, parsed into one call of the library.

This is the only place where errors become messages and exit statuses:
0 success; 1 any error (as GNU shuf); 130 interrupted (SIGINT); 143 terminated (SIGTERM);
a closed standard output ends the process by SIGPIPE, as it does shuf.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from . import __version__
from .api import shuffle, shuffle_range
from .errors import BigShufError, UsageError
from .progress import make_progress
from .sources import BytesSource

PROG = "bigshuf"

HELP = f"""\
Usage: {PROG} [OPTION]... [FILE]...
  or:  {PROG} -e [OPTION]... [ARG]...
  or:  {PROG} -i LO-HI [OPTION]...
Write a uniformly random permutation of the input lines to standard output.
Inputs larger than the memory limit are shuffled through temporary files.

With no FILE, or when FILE is -, read standard input. Several FILEs are
shuffled together as one input.

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
      --progress            show progress bars on standard error
  -q, --quiet               never show progress bars (the default when
                              standard error is not a terminal)
      --help        display this help and exit
      --version     output version information and exit
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


class _HeadCount(argparse.Action):
    """``-n``: a non-negative count; repeated, the smallest wins."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        try:
            count = int(values)
            if count < 0:
                raise ValueError
        except ValueError:
            raise UsageError(f"invalid line count: '{values}'") from None
        old = getattr(namespace, self.dest)
        setattr(namespace, self.dest, count if old is None else min(old, count))


def _parser() -> _Parser:
    p = _Parser(prog=PROG, add_help=False, allow_abbrev=True)
    p.add_argument("-e", "--echo", action="store_true")
    p.add_argument("-i", "--input-range")
    p.add_argument("-n", "--head-count", action=_HeadCount)
    p.add_argument("-o", "--output", action=_Once, metavar="multiple output files specified")
    p.add_argument("--random-source", action=_Once, metavar="multiple random sources specified")
    p.add_argument("-r", "--repeat", action="store_true")
    p.add_argument("-z", "--zero-terminated", action="store_true")
    p.add_argument("-S", "--memory")
    p.add_argument("-T", "--temporary-directory")
    p.add_argument("--seed")
    p.add_argument("--progress", dest="progress", action="store_true", default=None)
    p.add_argument("-q", "--quiet", dest="progress", action="store_false")
    p.add_argument("--help", action="store_true")
    p.add_argument("--version", action="store_true")
    p.add_argument("operands", nargs="*")
    return p


def _parse_range(text: str) -> tuple[int, int]:
    lo, dash, hi = text.partition("-")
    for part in (lo, hi) if dash else (text,):
        if not part.isdigit():
            raise UsageError(f"invalid input range: '{part}'")
    if not dash:
        raise UsageError(f"invalid input range: '{text}'")
    if int(lo) > int(hi) + 1:
        raise UsageError(f"invalid input range: '{text}'")
    return int(lo), int(hi)


def _parse_seed(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit():
        raise UsageError(f"invalid seed: '{text}': a non-negative integer is needed")
    return int(text)


def run(argv: Sequence[str]) -> int:
    """Parse ``argv`` and shuffle; raises BigShufError for the caller to report."""
    argv = list(argv)
    # Everything after "--" is an operand, as with getopt (argparse would still parse it).
    rest: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, rest = argv[:cut], argv[cut + 1 :]
    parser = _parser()
    parser.argv = argv
    args = parser.parse_intermixed_args(argv)
    args.operands += rest
    if args.help:
        sys.stdout.write(HELP)
        return 0
    if args.version:
        sys.stdout.write(f"{PROG} {__version__}\n")
        return 0
    if args.echo and args.input_range is not None:
        raise _SyntaxError("cannot combine -e and -i options")
    common: dict[str, Any] = dict(
        memory=args.memory,
        seed=_parse_seed(args.seed),
        tmp_dir=args.temporary_directory,
        head_count=args.head_count,
        zero_terminated=args.zero_terminated,
        repeat=args.repeat,
        random_source=args.random_source,
        progress=make_progress(args.progress),
    )
    if args.input_range is not None:
        if args.operands:
            raise _SyntaxError(f"extra operand '{args.operands[0]}'")
        lo, hi = _parse_range(args.input_range)
        shuffle_range(lo, hi, args.output, **common)
    elif args.echo:
        sep = b"\0" if args.zero_terminated else b"\n"
        data = b"".join(os.fsencode(a) + sep for a in args.operands)
        shuffle(BytesSource("-e", data), args.output, **common)
    else:
        shuffle(args.operands or ["-"], args.output, **common)
    return 0


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bigshuf`` command; returns the exit status."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except _SyntaxError as e:
        print(f"{PROG}: {e}\nTry '{PROG} --help' for more information.", file=sys.stderr)
        return 1
    except BigShufError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"{PROG}: memory exhausted; lower -S", file=sys.stderr)
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
        print(f"{PROG}: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except Exception as e:
        if os.environ.get("BIGSHUF_DEBUG"):
            raise
        print(f"{PROG}: internal error: {type(e).__name__}: {e} (set BIGSHUF_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
