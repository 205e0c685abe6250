"""bigshuf: shuffle the lines of files far larger than memory, uniformly at random."""

from .api import ShuffleStats, shuffle, shuffle_range
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
    "shuffle",
    "shuffle_range",
]
