"""bigshuf: shuffle the lines of files far larger than memory, uniformly at random."""

from .api import ShuffleStats, check_permutation, shuffle, shuffle_range
from .errors import BigShufError, InputError, OutputError, TempSpaceError, UsageError

__version__ = "0.1.0"

__all__ = [
    "BigShufError",
    "InputError",
    "OutputError",
    "ShuffleStats",
    "TempSpaceError",
    "UsageError",
    "__version__",
    "check_permutation",
    "shuffle",
    "shuffle_range",
]
