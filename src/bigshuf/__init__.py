"""bigshuf: shuffle the lines of files far larger than memory, uniformly at random."""

from __future__ import annotations

# Not typing's: importing typing would take 15 ms before the command can hold Ctrl-C back.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .api import ShuffleStats, check_manifest, check_permutation, plan_shuffle, shuffle, shuffle_range
    from .core.fingerprint import Fingerprint
    from .run_plan import RunPlan
    from .errors import BigShufError, InputError, OutputError, TempSpaceError, UsageError

__version__ = "0.1.0"

__all__ = [
    "BigShufError",
    "Fingerprint",
    "InputError",
    "OutputError",
    "RunPlan",
    "ShuffleStats",
    "TempSpaceError",
    "UsageError",
    "__version__",
    "check_manifest",
    "check_permutation",
    "plan_shuffle",
    "shuffle",
    "shuffle_range",
]

#: Loaded on first use, so that the command can hold Ctrl-C back before anything else loads
#: (``bigshuf.command``): importing the package itself loads nothing of bigshuf's.
_FROM_API = ("Fingerprint", "ShuffleStats", "check_manifest", "check_permutation", "plan_shuffle", "shuffle", "shuffle_range")
_FROM_ERRORS = ("BigShufError", "InputError", "OutputError", "TempSpaceError", "UsageError")


def __getattr__(name: str) -> Any:
    """The library's functions, imported from ``bigshuf.api`` when first asked for, and its
    modules (``bigshuf.progress``, ``bigshuf.storage.sources``...) as ``import bigshuf`` once gave them."""
    if name in _FROM_API:
        from .storage.threads import deferred_signals

        # A Ctrl-C while NumPy or PyArrow first load would leave them half-imported, failing every
        # later call in the process (a notebook's): it is delivered once they are in.
        with deferred_signals():
            from . import api
            import pyarrow  # noqa: F401  (every run loads it)
        return getattr(api, name)
    if name in _FROM_ERRORS:
        from . import errors

        return getattr(errors, name)
    if name == "RunPlan":
        from .run_plan import RunPlan

        return RunPlan
    import importlib
    import importlib.util

    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'bigshuf' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names and the library's, loaded on first use, so ``dir`` and tab completion list them."""
    return sorted(set(globals()) | set(__all__))
