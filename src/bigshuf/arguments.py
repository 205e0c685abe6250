"""Library arguments checked for their types: each wrong one a UsageError naming the argument,
as a library caller wrote it."""

from __future__ import annotations

import io
import operator
import os
from collections.abc import Iterable
from typing import cast

from .errors import UsageError
from .quoting import quote_arg
from .storage.paths import LiteralName
from .storage.sources import BytesSource, CallerSource, FileSource, GeneratedSource, Source


def _describe(value: object) -> str:
    """A wrongly typed argument for a message: its type and (shortened) value."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _path(name: str, value: object) -> str:
    """``value`` as a path (str or os.PathLike of str); bytes and other types are a UsageError."""
    try:
        path = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    except TypeError:  # an __fspath__ that gives neither str nor bytes
        path = None
    if not isinstance(path, str):
        raise UsageError(f"{name} must be a path (str or os.PathLike), not {_describe(value)}")
    if "\0" in path:  # the OS would raise ValueError at the first call that takes it
        raise UsageError(f"{name} {quote_arg(path)} holds a NUL byte, which no file name may have")
    return path


def _optional_path(name: str, value: object) -> str | None:
    """``_path`` that also takes None."""
    return None if value is None else _path(name, value)


def _integer(name: str, value: object) -> int:
    """``value`` as an int (NumPy integers too); a bool, float or str is a UsageError."""
    if isinstance(value, bool):
        raise UsageError(f"{name} must be an integer, not {_describe(value)}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise UsageError(f"{name} must be an integer, not {_describe(value)}") from None


def _optional_integer(name: str, value: object) -> int | None:
    """``_integer`` that also takes None."""
    return None if value is None else _integer(name, value)


def _check_types(names: tuple[str, ...], kind: type, values: tuple[object, ...], *, optional: bool) -> None:
    """Every value is a ``kind`` (or None when ``optional``), else a UsageError naming the argument."""
    for name, value in zip(names, values):
        if not isinstance(value, kind) and not (optional and value is None):
            what = {bool: "True or False", str: "a str"}.get(kind, kind.__name__)
            raise UsageError(f"{name} must be {what}{' or None' if optional else ''}, not {_describe(value)}")


def _memory_argument(memory: object) -> int | str | None:
    """``memory``: None, a byte count or a size string; anything else is a UsageError."""
    if memory is None or isinstance(memory, str):
        return memory
    if isinstance(memory, bool) or not isinstance(memory, int):
        try:
            return _integer("memory", memory)
        except UsageError:
            raise UsageError(
                f"memory must be a byte count (int) or a size such as '256M' or '25%', not {_describe(memory)}"
            ) from None
    return memory


def _is_source(value: object) -> bool:
    """Whether ``value`` looks like a ``Source`` (a name, ``size()`` and ``open()``)."""
    return hasattr(value, "name") and callable(getattr(value, "size", None)) and callable(getattr(value, "open", None))


def _not_open_file(name: str, value: object) -> None:
    """Refuse an open file, which iterates as its lines (a ``NamedTemporaryFile`` is no ``io.IOBase``)."""
    if isinstance(value, io.IOBase) or callable(getattr(value, "readline", None)):
        raise UsageError(f"{name} must be paths, not an open file ({_describe(value)}): give its name")


def _unlistable(name: str, value: object) -> None:
    """Refuse what iterates as something other than a list of paths: an open file (its lines) and
    an unordered set (whose order, so the output for a seed, changes from one process to the next)."""
    _not_open_file(name, value)
    if isinstance(value, (set, frozenset)):
        raise UsageError(f"{name} must be a path or an ordered list of them, not a set: its order changes from run to run")


def _input_list(inputs: object) -> list[str | Source]:
    """``inputs`` as a non-empty list of paths and sources: one path or source, or an iterable of them."""
    if isinstance(inputs, (bytes, bytearray, memoryview)):
        raise UsageError(
            f"inputs must be paths or Source objects, not {_describe(inputs)}: decode a bytes path with "
            "os.fsdecode(); wrap records in memory in bigshuf.storage.sources.BytesSource"
        )
    if isinstance(inputs, (str, os.PathLike)) or _is_source(inputs):  # (a Source may have a readline of its own)
        items: list[object] = [inputs]
    elif isinstance(inputs, Iterable):
        _unlistable("inputs", inputs)
        items = list(inputs)
    else:
        raise UsageError(f"inputs must be a path, a Source or a list of them, not {_describe(inputs)}")
    if not items:
        raise UsageError("no inputs given: pass '-' to read standard input")
    # A Path names one file; a str may be a glob pattern (``formats.detect.named_files``).
    return [
        _source(item) if _is_source(item) else LiteralName(_path("each input", item)) if isinstance(item, os.PathLike)
        else _path("each input", item) for item in items
    ]


def _source(item: object) -> Source:
    """A ``Source`` as the run takes it: bigshuf's own as they are, a caller's with its answers checked."""
    if isinstance(item, (FileSource, BytesSource, GeneratedSource)):
        return item
    return CallerSource(cast(Source, item))


def _path_list(name: str, paths: object) -> list[str]:
    """One path (a str is one path, not its characters) or an iterable of them, at least one."""
    if isinstance(paths, (str, os.PathLike)):
        return [_path(name, paths)]
    if isinstance(paths, (bytes, bytearray)) or not isinstance(paths, Iterable):
        raise UsageError(f"{name} must be a path or a list of paths, not {_describe(paths)}")
    _not_open_file(name, paths)  # (a set is fine here: the order of what is compared does not matter)
    listed = [_path(f"each of {name}", p) for p in paths]
    if not listed:
        raise UsageError(f"{name}: no files given")
    return listed
