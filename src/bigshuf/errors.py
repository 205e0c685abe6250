"""Library exceptions: the CLI turns each into one line on stderr and exit status 1.

Messages that tell the user which setting to change name it with ``option(setting)``: a
placeholder that a library caller sees as the keyword argument (``memory=``) and the command
line as its flag (``-S``), so neither is told to change something it never passed.
"""

from __future__ import annotations

import re

#: Every setting a message may name: its command-line spelling, then its library spelling.
OPTION_SPELLINGS: dict[str, tuple[str, str]] = {
    "memory": ("-S", "memory="),
    "tmp_dir": ("-T", "tmp_dir="),
    "output": ("-o", "output="),
    "echo": ("-e", "a BytesSource"),
    "input_range": ("-i", "shuffle_range()"),
    "head_count": ("-n", "head_count="),
    "repeat": ("--repeat", "repeat=True"),
    "zero_terminated": ("-z", "zero_terminated=True"),
    "seed": ("--seed", "seed="),
    "random_source": ("--random-source", "random_source="),
    "shards": ("--shards", "shards="),
    "shard_size": ("--shard-size", "shard_size="),
    "shard_records": ("--shard-records", "shard_records="),
    "split": ("--split", "split="),
    "manifest": ("--manifest", "manifest="),
    "check_manifest": ("--check-manifest", "check_manifest()"),
    "compress": ("--compress", "compress="),
    "compress_temp": ("--compress-temp", "compress_temp=True"),
    "header": ("--header", "header="),
    "lines_per_record": ("--lines-per-record", "lines_per_record="),
    "verify": ("--verify", "verify=True"),
    "resume": ("--resume", "resume=True"),
    "unique": ("--unique", "unique=True"),
    "stratify": ("--stratify", "stratify=True"),
    "row_group_size": ("--row-group-size", "row_group_size="),
    "threads": ("-j", "threads="),
    "schema": ("--schema", "schema="),
    "output_format": ("--output-format", "output_format="),
    "check_permutation": ("--check-permutation", "check_permutation()"),
    "engine": ("--engine", "engine="),
    "dask": ("--engine=dask", "engine='dask'"),
    "scheduler": ("--scheduler", "scheduler="),
    "temp_url": ("--temp-url", "temp_url="),
    "source": ("--source", "sources="),
    "source_pair": ("--source NAME=PATH", "sources={NAME: PATH}"),
    "rate": ("--rate", "rates="),
    "rate_pair": ("--rate NAME=R", "rates={NAME: R}"),
    "output_file": ("-o FILE", "output= a file"),
    "mix": ("--mix", "mix="),
    "total": ("--total", "total="),
    "by": ("--by", "by="),
    "max_rate": ("--max-rate", "max_rate="),
    "dry_run": ("--dry-run", "plan_shuffle()"),
}

#: NUL cannot occur in a file name, so it cannot be mistaken for a placeholder's delimiter.
_PLACEHOLDER = re.compile("\0([a-z_]+)\0")


def option(setting: str) -> str:
    """A placeholder for ``setting`` (a key of ``OPTION_SPELLINGS``) to put in a message."""
    if setting not in OPTION_SPELLINGS:
        raise KeyError(setting)
    return f"\0{setting}\0"


def os_reason(e: OSError) -> str:
    """The C library's words for ``e``'s error number, as GNU tools print them; Python's own (a
    ``BlockingIOError``'s "write could not complete without blocking") only where it has none."""
    import os

    return os.strerror(e.errno) if e.errno else str(e.strerror or e)


def render(message: str, cli: bool) -> str:
    """``message`` with its placeholders spelt for the command line (``cli``) or for the library."""
    return _PLACEHOLDER.sub(lambda m: OPTION_SPELLINGS[m.group(1)][0 if cli else 1], message)


def interruption(e: BaseException) -> BaseException | None:
    """The signal's exception (Ctrl-C's KeyboardInterrupt, the command's SIGTERM) that ``e`` wraps, if
    any: Python 3.11 turns one raised while a module loads a class (``__set_name__``, as a dataclass's
    fields do) into a RuntimeError caused by it, which a handler of errors must pass on as it is."""
    seen: set[int] = set()
    cause: BaseException | None = e
    while cause is not None and id(cause) not in seen:
        if not isinstance(cause, Exception):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__
    return None


class BigShufError(Exception):
    """Base class of every error bigshuf reports to its user; ``str()`` words settings as the library names them."""

    def __str__(self) -> str:
        return render(super().__str__(), cli=False)

    def cli_message(self) -> str:
        """The message as the command line words it (``-S`` rather than ``memory=``)."""
        return render(super().__str__(), cli=True)


class UsageError(BigShufError):
    """Options or operands that cannot work together or cannot be parsed."""


class InputError(BigShufError):
    """An input cannot be read or holds a record bigshuf cannot handle."""


class OutputError(BigShufError):
    """The output cannot be written or put in place."""


class OutputPipeClosed(OutputError, BrokenPipeError):
    """The output is a pipe its reader closed: an ``OutputError`` for a library caller, and a
    ``BrokenPipeError``, of which the command dies by SIGPIPE, as GNU shuf does."""


class TempSpaceError(BigShufError):
    """The temporary directory is missing, unwritable or too small."""
