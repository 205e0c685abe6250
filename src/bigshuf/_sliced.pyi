"""Types of the compiled sliced writes (``_sliced.c``)."""

from typing import Any

def write_sliced(fd: int, data: Any, slice: int, first: int, /) -> int: ...
