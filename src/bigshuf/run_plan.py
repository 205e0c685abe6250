"""What a shuffle would do and need (``plan_shuffle``, ``--dry-run``): its figures, lines and checks.

Kept apart from ``dryrun``, which works plans out, so that the library's signatures name it
without loading the planning code.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import render


@dataclass(frozen=True)
class Check:
    """One thing the run needs: ``name`` (as its plan line), whether it holds, and if not why, as
    the run would fail (``message``: with ``errors.option`` names, which ``reason`` spells for the
    library and ``RunPlan.render`` for either)."""

    name: str
    passed: bool
    message: str = ""

    @property
    def reason(self) -> str:
        """Why the check fails, its settings spelt as the library's keywords (``memory=``)."""
        return render(self.message, cli=False)


@dataclass(frozen=True)
class RunPlan:
    """What a shuffle would do and need (``plan_shuffle``): its figures, its ``name: value`` lines,
    and its checks. None stands for a figure that cannot be known without running."""

    #: Input files (or sources) and their bytes as stored.
    inputs: int
    input_bytes: int | None
    #: Bytes and count of the records (decompressed), counted when ``exact``, else estimated.
    nbytes: int | None
    records: int | None
    exact: bool
    #: ``-S`` in bytes.
    memory: int
    #: Whether the records are shuffled in memory (one pass) or through temporary buckets.
    in_memory: bool | None
    passes: int | None
    #: Buckets of the first scatter (0 in memory).
    buckets: int | None
    tmp_dir: str
    temp_needed: int | None
    temp_free: int | None
    descriptors: int | None
    #: ``ulimit -n``: -1 unlimited, None unknown.
    descriptor_limit: int | None
    #: The files the output is written to (empty for standard output).
    outputs: tuple[str, ...]
    lines: tuple[tuple[str, str], ...]
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """Whether every check passed: the run would start."""
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        """The checks that failed, in the order of the plan."""
        return tuple(c for c in self.checks if not c.passed)

    def render(self, cli: bool = False) -> str:
        """The plan as text, one ``name: value`` line each, then ``ok`` or a ``failed:`` line per failed
        check; settings spelt for the command line (``cli``) or the library."""
        text = [f"{name}: {value}" for name, value in self.lines]
        text += [f"failed: {c.name}: {c.message}" for c in self.failures] or ["ok"]
        return render("".join(line + "\n" for line in text), cli)
