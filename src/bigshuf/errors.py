"""Library exceptions: the CLI turns each into one line on stderr and exit status 1."""

from __future__ import annotations


class BigShufError(Exception):
    """Base class of every error bigshuf reports to its user."""


class UsageError(BigShufError):
    """Options or operands that cannot work together or cannot be parsed."""


class InputError(BigShufError):
    """An input cannot be read or holds a record bigshuf cannot handle."""


class OutputError(BigShufError):
    """The output cannot be written or put in place."""


class TempSpaceError(BigShufError):
    """The temporary directory is missing, unwritable or too small."""
