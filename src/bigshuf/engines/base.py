"""Engines as plug-ins: what every engine implements, and a registry that imports each on first use.

An engine refuses what it cannot run (``supports``: one message for the library and the command
line) and runs the rest; registered as ``"module:Class"``, as fsspec does, none loads on ``import bigshuf``.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from ..errors import UsageError, option
from ..quoting import quote_arg

if TYPE_CHECKING:
    from ..progress import Progress
    from ..request import Request, ShuffleStats


class Engine(ABC):
    """Where and how a shuffle runs: in this process (local), or as tasks on a cluster (dask)."""

    #: The name it is chosen by: ``engine="local"``, ``--engine=local``.
    name: ClassVar[str]

    @abstractmethod
    def supports(self, request: Request) -> str | None:
        """None if this engine runs ``request``, else why not: a UsageError message whose settings
        are named with ``errors.option``, so that each caller reads its own spelling."""

    @abstractmethod
    def run(self, request: Request, progress: Progress) -> ShuffleStats:
        """Shuffle as the (validated, supported) ``request`` says, reporting to ``progress``."""


#: Engines by name: a class, or where to import it from ("module:Class") when first chosen.
_ENGINES: dict[str, str | type[Engine]] = {
    "local": "bigshuf.engines.local:LocalEngine",
    "dask": "bigshuf.engines.cluster:DaskEngine",
}


def register_engine(name: str, engine: str | type[Engine], *, clobber: bool = False) -> None:
    """Make ``engine`` (a class, or ``"dotted.module:Class"`` imported on first use) the engine ``name``."""
    if name in _ENGINES and not clobber:
        raise ValueError(f"an engine named {name!r} is already registered; pass clobber=True to replace it")
    _ENGINES[name] = engine


def engine_names() -> tuple[str, ...]:
    """The registered engines' names, in the order they were registered."""
    return tuple(_ENGINES)


def get_engine(name: str) -> Engine:
    """The engine registered as ``name``, imported now if it was not yet; an unknown name is a
    UsageError listing the choices."""
    found = _ENGINES.get(name)
    if found is None:
        names = engine_names()
        choices = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        raise UsageError(f"invalid {option('engine')} value: {quote_arg(name)}; choose {choices}")
    if isinstance(found, str):
        module, _, attribute = found.partition(":")
        found = getattr(importlib.import_module(module), attribute)
        if not (isinstance(found, type) and issubclass(found, Engine)):
            raise TypeError(f"engine {name!r}: {_ENGINES[name]} is not an Engine class")
        _ENGINES[name] = found
    return found()


def run_request(request: Request, progress: Progress) -> ShuffleStats:
    """Run ``request`` on its engine: the one dispatch of the library and the command line. A dry
    run's request is planned (``plan_shuffle``), never run."""
    if request.dry_run:
        raise UsageError(f"a request made with {option('dry_run')} is planned, not run")
    return get_engine(request.engine).run(request, progress)
