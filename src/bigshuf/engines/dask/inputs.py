"""What a Dask run shuffles, decided once from its inputs by the families of records registered in
``formats.registry`` (lines, Parquet / Arrow rows, tar samples, Megatron documents...).

Each family's ``TaskKind`` (``Family.tasks``) is asked in turn whether the inputs are its own; the
first that claims them plans pass 1 (``Prepared``): a ``TaskFormat``, the pass-1 tasks, the bucket
count, and how output files are compressed and named.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

from ...formats import detect, registry
from ...storage import remote
from .prepared import Inputs, Prepared, Settings, TaskKind

__all__ = ["Prepared", "Settings", "prepare"]


def prepare(names: Sequence[str], settings: Settings, root: str) -> Prepared:
    """Expand the inputs (globs, directories of data files), find the family that claims them, and plan pass 1."""
    inputs = Inputs(_expand_directories(list(names) or ["-"]))
    for family in registry.task_families():
        kind: type[TaskKind] = registry.task_kind(family)  # imported when first asked
        if kind.claims(inputs):
            return replace(kind.prepare(inputs, settings, root), family=family, kind=kind)
    raise AssertionError("the lines take any input")


def _expand_directories(names: list[str]) -> list[str]:
    """Local directories replaced by their data files as the local engine finds them; directories
    on object stores by theirs (data-file suffixes, no name starting with ``.`` or ``_``)."""
    out: list[str] = []
    for name in names:
        if name == "-" or not remote.is_url(name):
            out.extend(detect.expand_directories([name]))
            continue
        fs, path = remote.filesystem(remote.canonical(name))
        with remote.store_errors(name):
            if any(c in path for c in "*?[") or not fs.isdir(path):
                out.append(name)
                continue
            found = [p for p in sorted(fs.find(path)) if _data_file(p[len(path.rstrip("/")) + 1 :])]
        found = detect.without_datasets_metadata(found)
        out.extend(fs.unstrip_protocol(p) for p in found)
        if not found:
            out.append(name)
    return out


def _data_file(relative: str) -> bool:
    """Whether a path inside a dataset directory names a data file (no part hidden or ``_``)."""
    parts = relative.split("/")
    return not any(p.startswith((".", "_")) for p in parts) and detect.data_kind(os.path.basename(relative)) is not None
