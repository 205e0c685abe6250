"""Megatron indexed datasets (``PREFIX.bin`` + ``PREFIX.idx``) on the Dask engine: documents
shuffled as Arrow rows (``rows.RowTasks``: IPC buckets, permuted takes), read by runs of documents,
written as pairs.

The client reads each dataset's ``.idx`` header (counts, dtype, modes) and plans pass-1 tasks as
runs of documents. A task reads its part of the index and checks it as the local engine checks the
whole (``formats.megatron``'s checks: each sequence against the one before it, the first and the
last against the ``.bin``'s ends, the document entries rising), then reads its documents' tokens
from the ``.bin`` by the pointers. Pass 2 writes each output ``.bin`` whole and returns its
``.idx`` bytes; the client writes each ``.idx`` beside its ``.bin`` and commits them together.
``--unique`` and weighted sources run as for rows (documents compared and fingerprinted with their
sequence lengths and modes, weighed ``--by bytes`` by their tokens); the counting pass of weighted
sources counts each task's blocks from its part of the index alone (``block_counts``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ...core import plan
from ...core.fingerprint import Fingerprint
from ...errors import InputError
from ...formats.detect import megatron_prefix, megatron_url_prefix
from ...formats.megatron import (
    DTYPES, HEADER, IndexParts, batch_cuts, check_documents, check_end, check_header, check_last, check_sequences,
    check_together, document_fingerprint, document_sizes, documents_batch, has_modes, row_bytes, schema,
)
from ...formats.megatron_run import check_manifest_name, check_pair_files, dataset_prefixes, documents_sample, token_bytes
from ...storage import remote
from ...storage.paths import generated_path
from ...storage.sinks import AtomicFileSink, CodecChoice
from .outputs import Layout
from .placement import Placement
from .prepared import Inputs, Prepared, Settings, TaskKind
from .rows import RowTasks
from .tasks import Config, GatherResult, RecordWriter, ScatterTask, Writable, bucket_count, range_bytes

if TYPE_CHECKING:
    from ...core.driver import Sample
    from ...request import Request


@dataclass(frozen=True)
class Dataset:
    """One dataset as the client read its header: its files as messages name them and as workers
    open them, the header's counts and dtype code, whether it has modes, and both files' sizes."""

    idx_path: str
    bin_path: str
    idx_url: str
    bin_url: str
    code: int
    sequences: int
    entries: int
    modes: bool
    bin_size: int
    idx_size: int

    @property
    def dtype(self) -> np.dtype:
        """The tokens' NumPy type."""
        return DTYPES[self.code]

    @property
    def count(self) -> int:
        """Documents."""
        return self.entries - 1

    def _array(self, dtype: str, offset: int, count: int) -> np.ndarray:
        """``count`` values of ``dtype`` at byte ``offset`` of the index, read."""
        out = np.empty(count, dtype)
        if count:
            remote.read_exactly(self.idx_url, offset, out.view(np.uint8).data)
        return out

    def documents(self, lo: int, hi: int) -> np.ndarray:
        """Document index entries ``[lo, hi)``."""
        return self._array("<i8", HEADER.size + 12 * self.sequences + 8 * lo, hi - lo)

    def sequences_at(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The lengths, pointers and modes (None without) of sequences ``[lo, hi)``."""
        base, s = HEADER.size, self.sequences
        modes = self._array("i1", base + 12 * s + 8 * self.entries + lo, hi - lo) if self.modes else None
        return self._array("<i4", base + 4 * lo, hi - lo), self._array("<i8", base + 4 * s + 8 * lo, hi - lo), modes


@dataclass(frozen=True)
class MegatronTasks(RowTasks):
    """The ``TaskFormat`` of documents of ``datasets`` (one dtype, modes in all or none): rows of
    ``formats.megatron.schema``, read by runs of documents, written as ``.bin`` files whose ``.idx``
    bytes each gather task returns (``GatherResult.companion``)."""

    datasets: tuple[Dataset, ...] = ()
    records_kind = "documents"
    unit = "documents"
    input_bytes = True  # each dataset's token bytes, from its header (``Pairs.counts``)

    def format_entry(self) -> dict[str, Any]:
        """The manifest's ``format``, as the local engine writes it: the tokens' dtype and whether sequences have modes."""
        first = self.datasets[0]
        return {"documents": "megatron", "dtype": first.dtype.name, "modes": first.modes}

    def blocks(self, task: ScatterTask, cfg: Config) -> Iterator[pa.RecordBatch]:
        """Documents ``[task.start, task.end)`` of dataset ``task.file_index``, their part of the index
        checked first, in batches of about ``range_bytes`` of rows."""
        ds = self.datasets[task.file_index]
        run = _Run.read(ds, task)
        for first, last in run.cuts(cfg):
            a, b = int(run.docs[first]) - run.lo, int(run.docs[last]) - run.lo
            data = bytearray(int(run.starts[last] - run.starts[first]))
            if data:
                remote.read_exactly(ds.bin_url, int(run.starts[first]), memoryview(data))
            yield documents_batch(
                self.schema, data, run.docs[first : last + 1], run.starts[first : last + 1], run.lengths[a:b],
                None if run.modes is None else run.modes[a:b],
            )

    def block_counts(self, task: ScatterTask, cfg: Config) -> list[tuple[int, int]]:
        """Each of ``blocks``' batches' documents and token bytes, from the task's part of the index
        alone (checked as ``blocks`` checks it): the counting pass of weighted sources reads no tokens."""
        run = _Run.read(self.datasets[task.file_index], task)
        return [(last - first, int(run.starts[last] - run.starts[first])) for first, last in run.cuts(cfg)]

    def fingerprint(self, records: Any) -> Fingerprint:
        """Documents as ``--verify``, manifests and ``--check-manifest`` count them (``document_fingerprint``)."""
        return document_fingerprint(records)

    def copies_fingerprint(self, block: Any, mult: np.ndarray) -> Fingerprint:
        """The documents of ``block``, each counted ``mult`` times, as ``fingerprint`` counts them."""
        return document_fingerprint(block, mult)

    def sizes(self, records: Any) -> np.ndarray:
        """Each document's bytes of tokens, as ``--shard-size`` and ``--by bytes`` (with ``--unique``) count them."""
        return token_bytes(records)

    def count(self, block: Any) -> tuple[int, int]:
        """Documents and their bytes of tokens, as the local engine weighs sources ``--by bytes`` (their ``.bin`` sizes)."""
        return block.num_rows, int(token_bytes(block).sum())

    def open_output(self, f: Writable, codec: CodecChoice | None) -> RecordWriter:
        """A writer of documents' tokens into the ``.bin`` ``f``, keeping what its ``.idx`` is made of."""
        return _PairWriter(f, IndexParts(self.datasets[0].modes), self.datasets[0].code)


@dataclass(frozen=True)
class _Run:
    """A pass-1 task's part of a dataset's index, checked: its document entries, each one's first
    token's byte in the ``.bin`` (and the end), the lengths and modes of sequences ``[lo, ...)``, and
    each document's bytes as a row."""

    docs: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    modes: np.ndarray | None
    lo: int
    sizes: np.ndarray

    @classmethod
    def read(cls, ds: Dataset, task: ScatterTask) -> _Run:
        """Documents ``[task.start, task.end)`` of ``ds`` from its index, checked as the local engine checks the whole."""
        docs = ds.documents(task.start, task.end + 1)
        check_documents(ds.idx_path, task.start, docs, int(docs[0]))
        if task.end == ds.count:
            check_last(ds.idx_path, int(docs[-1]), ds.sequences)
        s0, s1 = int(docs[0]), int(docs[-1])
        if s0 < 0 or s1 > ds.sequences:
            raise InputError(
                f"{ds.idx_path}: document index entries {task.start} to {task.end} ({s0} to {s1}) are outside the "
                f"sequence count {ds.sequences}"
            )
        lo = max(0, s0 - 1)  # the sequence before the first: where the first must start
        lengths, pointers, modes = ds.sequences_at(lo, s1)
        end = check_sequences(ds, lo, lengths, pointers, 0 if lo == s0 else int(pointers[0]))
        if s1 == ds.sequences:
            check_end(ds, end)
        starts = np.append(pointers, end)[docs - lo]
        return cls(docs, starts, lengths, modes, lo, document_sizes(docs, starts, ds.modes))

    def cuts(self, cfg: Config) -> Iterator[tuple[int, int]]:
        """The documents ``[first, last)`` of each block a task reads: about ``range_bytes`` of rows."""
        return batch_cuts(self.sizes, range_bytes(cfg.limit), sys.maxsize)


class _PairWriter:
    """Tokens to the ``.bin`` as documents come; at the end, the ``.idx`` bytes as ``companion``."""

    def __init__(self, f: Writable, parts: IndexParts, code: int) -> None:
        self.f = f
        self.parts = parts
        self.code = code
        self.companion: list[bytes] | None = None

    def write(self, records: Any) -> int:
        """Append the tokens of a table of documents; return their bytes."""
        written = 0
        for batch in records.to_batches():
            data = self.parts.add(batch)
            self.f.write(data)
            written += data.nbytes
        return written

    def close(self) -> int:
        """Make the ``.idx`` (the ``.bin`` has no footer)."""
        self.companion = self.parts.index_bytes(self.code)
        return 0


# ---------------------------------------------------------------------------------------------
# On the client


@dataclass(frozen=True)
class Pairs:
    """How documents are written: as a ``.bin``/``.idx`` pair (or one per file) at ``target``, the ``.bin``
    name (pattern, directory) that ``-o`` (``given``) names; every file laid out and committed with its ``.idx``."""

    given: str | None
    sharded: bool
    datasets: tuple[Dataset, ...]

    @cached_property
    def target(self) -> str:
        """The ``.bin`` name, refused as the local engine refuses it (``output_target``): named when the
        output is, not as the inputs are prepared, so that ``--dry-run`` files a refusal under the output."""
        from ...formats.megatron_run import output_target

        return output_target(self.given, self.sharded)

    def check(self, layout: Layout) -> None:
        """As the local engine checks a local output: no manifest named as a dataset, and no link,
        device or FIFO at either file of a single pair."""
        if remote.is_url(self.target):
            return
        single = not layout.sharding.on and layout.split is None
        if layout.manifest is not None:
            inputs = [d.idx_path[:-4] for d in self.datasets if not remote.is_url(d.idx_path)]
            check_manifest_name(layout.manifest, inputs + ([self.target[:-4]] if single else []))
        if single:
            check_pair_files(self.target)

    def counts(self) -> list[tuple[int, int | None]]:
        """Each dataset's documents and token bytes, as the manifest lists them (from the headers)."""
        return [(d.count, d.bin_size) for d in self.datasets]

    def place(self, out: Placement, results: Sequence[GatherResult], root: str) -> None:
        """Write each output ``.bin``'s ``.idx`` (``results[i].companion``) under a temporary name beside it
        (local) or under ``root`` (URLs), to be committed with the ``.bin`` files (``out.companions``)."""
        for i, (final, result) in enumerate(zip(out.finals, results)):
            parts = result.companion
            assert parts is not None, "every Megatron gather task returns its .idx"
            name = final[:-4] + ".idx"
            result.bytes += sum(len(p) for p in parts)
            if out.files is None:
                temp = remote.join(root, "out", f"{i:05d}.idx")
                remote.write_whole(temp, lambda f: _write_parts(f, parts))
                out.companions.append((temp, name))
                continue
            sink = AtomicFileSink(generated_path(name), None, name, files=out.files, index=i)
            try:
                for part in parts:
                    sink.write(part)
                sink.finish()
            except BaseException:
                sink.abort()
                raise
            out.companions.append((sink.tmp_path, sink.path))


def _write_parts(f: Any, parts: list[bytes]) -> None:
    """Write ``parts`` to ``f`` one after another."""
    for part in parts:
        f.write(part)


def prepare(
    names: Sequence[str], target: str | None, sharded: bool, shards: int | None, limit: int, root: str,
) -> tuple[MegatronTasks, list[ScatterTask], int, Pairs]:
    """Open every dataset named (one dtype, modes in all or none), plan pass 1 as runs of documents
    and the buckets, and say where the output pair(s) go (``-o``: ``target``, named as the output is placed)."""
    datasets = [open_dataset(p) for n in names for p in dataset_prefixes(n)]
    modes = check_together(datasets)
    datasets = [d if d.modes == modes else replace(d, modes=modes) for d in datasets]  # (those of no sequences)
    first = datasets[0]
    fmt = MegatronTasks(schema(first.modes), "megatron", ("none", None), None, 1, datasets=tuple(datasets))
    need = sum(row_bytes(d.count, d.sequences, d.bin_size, d.modes) + plan.META_PER_RECORD * d.count for d in datasets)
    k = bucket_count(need, limit, shards)
    return fmt, scatter_tasks(datasets, limit, root), k, Pairs(target, sharded, tuple(datasets))


def is_dataset(name: str) -> bool:
    """Whether an input names a Megatron dataset: a local ``PREFIX``, ``.idx`` or ``.bin`` (with its ``.idx``), a URL's ``.idx``."""
    return megatron_url_prefix(name) is not None if remote.is_remote(name) else megatron_prefix(name) is not None


def open_dataset(prefix: str) -> Dataset:
    """The dataset at ``prefix`` (a local path or a URL) by its ``.idx`` header and both files' sizes, checked as far as they tell."""
    idx_path, bin_path = prefix + ".idx", prefix + ".bin"
    idx_url, bin_url = remote.canonical(idx_path), remote.canonical(bin_path)
    idx_size = remote.regular_file_size(idx_url, idx_path)
    bin_size = remote.regular_file_size(bin_url, bin_path, f" (the token data of {idx_path})")
    head = bytearray(min(HEADER.size, idx_size))
    remote.read_exactly(idx_url, 0, memoryview(head))
    _magic, _version, code, sequences, entries = check_header(idx_path, bytes(head))
    modes = has_modes(idx_path, idx_size, sequences, entries)
    return Dataset(idx_path, bin_path, idx_url, bin_url, code, sequences, entries, modes, bin_size, idx_size)


def scatter_tasks(datasets: Sequence[Dataset], limit: int, root: str) -> list[ScatterTask]:
    """Pass-1 tasks: each dataset cut into runs of documents of about ``range_bytes`` of rows each (by
    their average size: a task cuts its own blocks by size), at least one a dataset, so every index is checked."""
    step = range_bytes(limit)
    tasks = []
    for i, d in enumerate(datasets):
        runs = max(1, min(d.count, -(-row_bytes(d.count, d.sequences, d.bin_size, d.modes) // step)))
        for r in range(runs):
            lo, hi = r * d.count // runs, (r + 1) * d.count // runs
            nbytes = d.bin_size * (hi - lo) // max(1, d.count)
            prefix = remote.join(root, "p1", f"{i:06d}-{r:06d}")
            tasks.append(ScatterTask(d.bin_url, d.bin_size, None, i, r, lo, hi, prefix, nbytes, "megatron"))
    return tasks


class Documents(TaskKind):
    """Megatron documents on the Dask engine (``formats.registry``'s megatron family): an input that
    names a dataset (``PREFIX``, ``.idx``, ``.bin``; a URL's ``.idx``) makes the run one of datasets."""

    counting_reads = "every dataset's index (not its tokens)"

    @classmethod
    def claims(cls, inputs: Inputs) -> bool:
        """Whether any input names a dataset, by its name (nothing is read to decide)."""
        return any(is_dataset(name) for name in inputs.names)

    @classmethod
    def prepare(cls, inputs: Inputs, settings: Settings, root: str) -> Prepared:
        """Plan a run of Megatron datasets: headers read and checked, pass 1 as runs of documents, ``.bin`` files out."""
        sharded = settings.sharded or settings.shards is not None
        fmt, tasks, k, pairs = prepare(inputs.names, settings.target, sharded, settings.shards, settings.limit, root)
        stored = tuple(
            remote.RemoteFile(name, size, None)
            for d in pairs.datasets for name, size in ((d.idx_url, d.idx_size), (d.bin_url, d.bin_size))
        )
        return Prepared(fmt, tasks, k, None, ".bin", tuple(d.bin_path for d in fmt.datasets), pairs, stored=stored)

    @classmethod
    def sample(cls, prepared: Prepared, request: Request) -> Sample:
        """Documents as the datasets' headers count them."""
        assert prepared.pairs is not None
        datasets = prepared.pairs.datasets
        return documents_sample(request, datasets, [d.bin_size + d.idx_size for d in datasets])
