"""The package's layering: ``core`` and ``storage`` know no record format, engine or front end.

A module of the lower layers that imported ``formats`` or ``engines`` (even inside a function)
would tie the core to one format; imports made only for type checking are allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import bigshuf

PACKAGE = Path(bigshuf.__file__).parent
#: The layers above ``core`` and ``storage``, which those two must not import when running.
UPPER = ("formats", "engines", "api", "cli", "cliparse", "command", "dryrun", "request")


def _runtime_imports(path: Path, layer: str) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in ``path`` outside ``if TYPE_CHECKING:`` blocks, made absolute."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner) for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for stmt in node.body for inner in ast.walk(stmt)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            base = ["bigshuf", layer][: 3 - node.level] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            targets = [module] if node.module else [f"{module}.{alias.name}" for alias in node.names]
            found += [(node.lineno, t) for t in targets]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def test_core_and_storage_import_no_format_engine_or_front_end() -> None:
    """Every module of ``core`` and ``storage``, read as source: no run-time import of an upper layer."""
    offences = [
        f"{path.relative_to(PACKAGE)}:{line} imports {module}"
        for layer in ("core", "storage")
        for path in sorted((PACKAGE / layer).glob("*.py"))
        for line, module in _runtime_imports(path, layer)
        if module.split(".")[0] == "bigshuf" and module.split(".")[1] in UPPER
    ]
    assert offences == []


def test_the_scan_sees_relative_and_lazy_imports(tmp_path: Path) -> None:
    """The scan itself: a lazy relative import counts, one under TYPE_CHECKING does not."""
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..request import Request\n"
        "def f():\n    from ..formats.megatron import DTYPES\n    from . import plan\n"
    )
    assert _runtime_imports(module, "storage") == [(1, "typing"), (5, "bigshuf.formats.megatron"), (6, "bigshuf.storage.plan")]
