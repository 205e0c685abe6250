"""What a Dask run's inputs are, as each family of records looks at them, and the plan of pass 1 its
``TaskKind`` makes of them (``Prepared``).

Each family of records the Dask engine runs registers its kind in ``formats.registry``
(``Family.tasks``); ``inputs.prepare`` asks each in turn whether the inputs are its own, so the
engine holds no list of formats, and ``plan`` asks the kind for --dry-run's sample and words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from typing import TYPE_CHECKING

from ...core import plan
from ...quoting import quote_name
from ...storage import remote
from ...storage.expansion import Stored, expanded_sizes
from ...storage.sinks import CodecChoice
from .tasks import ScatterTask, TaskFormat, range_bytes

if TYPE_CHECKING:
    from ...core.driver import Sample
    from ...request import Request
    from .megatron import Pairs

#: The first bytes of each input file read for the kinds' claims: enough for every table magic.
HEAD_BYTES = 8


@dataclass(frozen=True)
class Settings:
    """The options that decide how records are read and written."""

    target: str | None
    shards: int | None
    limit: int
    zero_terminated: bool = False
    compress: str | None = None
    row_group_size: int | None = None
    output_format: str | None = None
    manifest: bool = False
    sharded: bool = False  # cut into files by --shard-records or --shard-size (a directory -o holds them)


class Inputs:
    """A run's inputs as the kinds look at them: the names (directories expanded), and, read only
    when a kind first asks, the files they expand to (globs too), each file's first bytes and the
    names messages show."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    @cached_property
    def files(self) -> list[remote.RemoteFile]:
        """Every input file, globs expanded, with its size and codec."""
        return remote.listed_inputs(self.names)

    @cached_property
    def heads(self) -> list[bytes]:
        """Each file's first ``HEAD_BYTES`` (fewer if it is shorter)."""
        files = self.files
        return remote.read_ranges([(f.name, 0, min(HEAD_BYTES, f.size)) for f in files]) if files else []

    @cached_property
    def shown(self) -> list[str]:
        """The files' names for messages: as given (a relative path stays relative), glob matches as found."""
        files = self.files
        if len(self.names) != len(files):
            return [f.name for f in files]
        return [f.name if any(c in name for c in "*?[") else name for name, f in zip(self.names, files)]


class TaskKind:
    """One family's records on the Dask engine: whether the inputs are its own, pass 1 planned from
    them, and what --dry-run says of them. Subclasses override ``claims``, ``prepare`` and ``sample``."""

    #: What a counting pass over weighted sources reads, for --dry-run's path line.
    counting_reads = "every input"

    @classmethod
    def claims(cls, inputs: Inputs) -> bool:
        """Whether ``inputs`` hold this family's records (refusing nothing: ``prepare`` refuses a mix)."""
        raise NotImplementedError

    @classmethod
    def prepare(cls, inputs: Inputs, settings: Settings, root: str) -> Prepared:
        """Plan pass 1 over ``inputs`` (claimed by ``claims``), refusing settings and inputs that do not apply."""
        raise NotImplementedError

    @classmethod
    def sample(cls, prepared: Prepared, request: Request) -> Sample:
        """The records pass 1 expects (counted, or estimated as the bucket plan estimates them), and each source's."""
        raise NotImplementedError

    @classmethod
    def task_words(cls, limit: int, unique: bool) -> str:
        """How much each pass-1 task reads, for --dry-run's path line."""
        return f" of up to {plan.format_size(range_bytes(limit))}"


@dataclass(frozen=True)
class Prepared:
    """A run's plan of pass 1: how records are handled, its tasks and buckets, and the output's
    stream codec (``compress``) and shard suffix in a directory (None: by the codec)."""

    fmt: TaskFormat
    tasks: list[ScatterTask]
    k: int
    compress: CodecChoice | None
    suffix: str | None
    names: tuple[str, ...] = ()  # every input file, as expanded (for the manifest)
    pairs: Pairs | None = None  # Megatron documents: the output pairs, every file laid out with its .idx
    #: The input files as stored (both files of a Megatron dataset).
    stored: tuple[remote.RemoteFile, ...] = ()
    #: The family of records (``formats.registry``) whose kind made this plan (set by ``inputs.prepare``).
    family: str = ""
    kind: type[TaskKind] = TaskKind

    def task_bytes(self) -> list[int]:
        """Bytes pass 1's tasks read from each stored input file."""
        by_file = [0] * len(self.stored)
        for t in self.tasks:
            by_file[t.file_index] += t.nbytes
        return by_file

    def decoded_bytes(self, groups: Sequence[int]) -> list[int]:
        """Bytes of records pass 1 reads from each stored input file: its tasks' bytes, a compressed
        file's once decoded (``decoded_sizes``, sampled per group: ``groups`` gives each file's)."""
        by_file = self.task_bytes()
        packed = [i for i, f in enumerate(self.stored) if f.codec is not None]
        for i, n in zip(packed, decoded_sizes([self.stored[i] for i in packed], [groups[i] for i in packed])):
            by_file[i] = n
        return by_file

    def stored_shown(self) -> list[str]:
        """Each stored input file's name in messages: as its pass-1 tasks show it (as given), else as expanded."""
        shown = {t.file_index: t.shown for t in self.tasks if t.shown}
        return [shown.get(i, f.name) for i, f in enumerate(self.stored)]


def decoded_sizes(files: Sequence[remote.RemoteFile], groups: Sequence[int]) -> list[int]:
    """Compressed input files' bytes once decoded, as the local engine plans them (``expansion``:
    recorded sizes of local files, else a ratio sampled over a few files of each of ``groups``)."""
    stored = [Stored(quote_name(f.name), f.size, f.codec or "", partial(remote.open_input, f.name)) for f in files]
    local = not any(remote.is_remote(f.name) for f in files)  # a record read per file: cheap only on local disks
    return expanded_sizes(stored, groups, recorded=local)[0]


def decoded_by_source(request: Request, prepared: Prepared) -> tuple[int, ...]:
    """Each source's bytes of records as pass 1 reads them (compressed files' once decoded), which
    weigh the sources' rates in the bucket plan."""
    from ...core import mix

    return by_source(request, prepared.decoded_bytes(mix.source_files(request)))


def by_source(request: Request, per_file: list[int]) -> tuple[int, ...]:
    """Per-file figures summed by the source each file belongs to."""
    from ...core import mix

    totals = [0] * len(request.sources)
    for owner, n in zip(mix.source_files(request), per_file):
        totals[owner] += n
    return tuple(totals)
