"""A shuffle of the documents of Megatron indexed datasets on the two-pass driver.

Documents are rows (``formats.megatron``), so the table run's scatter, buckets (Arrow IPC streams
of documents with their sequence lengths) and in-memory permutation serve them unchanged; what
is particular is reading ``PREFIX.idx``/``PREFIX.bin`` pairs and writing them: each output file's
tokens go to its ``.bin`` as they come, its sequence lengths are kept, and its ``.idx`` is written
when the ``.bin`` is complete, both committed together through the output's journal.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import numpy as np
import pyarrow as pa

from ..core import plan
from ..core.driver import Estimate, OutputPlan, Sample, TwoPass
from ..core.records import array_block, list_spans
from ..errors import InputError, OutputError, UsageError, option
from ..progress import Progress
from ..request import Request, resolve_memory
from ..storage.layout import Sharding, SplitPart, parse_split
from ..storage.safefs import foreign_entry, generated_path
from ..storage.shards import check_outputs
from ..storage.sinks import AtomicFileSink, Sink
from ..storage.writeback import WriteBehind
from .detect import megatron_prefix
from .rowhash import row_fingerprint
from .megatron import DTYPES, IndexedInput, index_bytes, schema
from .table_output import TableOutput
from .table_run import TableRun
from .tables import TABLE_PIECE


class MegatronOutput(TableOutput):
    """One ``.bin``/``.idx`` pair, or one per shard: the ``.bin`` files are the output's sinks, each
    with its ``.idx`` beside it, written when it is finished and committed with it."""

    def __init__(
        self, target: str, writer: WriteBehind, *, code: int, modes: bool, sharding: Sharding,
        split: tuple[SplitPart, ...] | None, sync: bool,
    ) -> None:
        super().__init__(
            target, writer, kind="megatron", shards=sharding.count, codec=("none", None), schema=schema(modes),
            group_rows=None, group_bytes=1, sync=sync, shard_records=sharding.records, split=split,
        )
        self.sharding = sharding  # with --shard-size, which the table output does not take
        self.code = code
        self.modes = modes
        self.shard_suffix = ".bin"
        self.indexes: list[AtomicFileSink] = []
        #: Per file: its sequence lengths, sequences per document and modes, in chunks as written.
        self.parts: list[tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]] = []

    @property
    def _plain(self) -> bool:
        """Never one sink alone: every ``.bin`` has its ``.idx``, so even one pair is committed as several files."""
        return False

    def _open(self, sink: Sink) -> None:
        self.sinks.append(sink)
        if not isinstance(sink, AtomicFileSink) or not sink.name.endswith(".bin"):
            raise OutputError(f"{sink.name}: a dataset is written as PREFIX.bin and PREFIX.idx files, not to a device")
        index = len(self.sinks) - 1
        named = sink.name[:-4] + ".idx"  # beside the .bin as named: a link there is never written through
        self.indexes.append(AtomicFileSink(generated_path(named), None, named, files=self.files, index=index))
        self.parts.append(([], [], []))

    def _write(self, shard: int, records: Any) -> None:
        self.writer.submit_job(lambda: self._write_documents(shard, records), records.nbytes)

    def _write_documents(self, shard: int, table: pa.Table) -> None:
        """Append ``table``'s documents: tokens to the ``.bin`` now, sequence lengths kept for the ``.idx``."""
        lengths, counts, modes = self.parts[shard]
        for batch in table.to_batches():
            block, ends = array_block(batch.column(0))
            self.sinks[shard].write(block[int(ends[0]) : int(ends[-1])].data)
            offsets, values = list_spans(batch.column(1))
            lengths.append(values.to_numpy(zero_copy_only=False).astype(np.int32))
            counts.append(np.diff(offsets))
            if self.modes:
                modes.append(list_spans(batch.column(2))[1].to_numpy(zero_copy_only=False).astype(np.int8))

    def _close_format(self, shard: int) -> None:
        """Write and finish the ``.idx`` of file ``shard`` (its ``.bin`` is complete)."""
        lengths, counts, modes = self.parts[shard]
        sink = self.indexes[shard]
        joined = np.concatenate(lengths) if lengths else np.empty(0, np.int32)
        per_document = np.concatenate(counts) if counts else np.empty(0, np.int64)
        kept = (np.concatenate(modes) if modes else np.empty(0, np.int8)) if self.modes else None
        self.parts[shard] = ([], [], [])
        for part in index_bytes(self.code, joined, per_document, kept):
            sink.write(part)
        sink.finish()

    def _record_bytes(self, records: Any) -> np.ndarray:
        """Each document's bytes of tokens, for ``--shard-size``."""
        chunks = records.column(0).chunks
        return np.concatenate([np.diff(array_block(c)[1]) for c in chunks]) if chunks else np.empty(0, np.int64)

    def _companion_moves(self) -> list[tuple[str, str]]:
        return [(sink.tmp_path, sink.path) for sink in self.indexes]

    def describe_kind(self) -> str:
        return "documents"

    def abort(self) -> None:
        self.writer.wait_idle()
        for sink in self.indexes:
            sink.abort()
        super().abort()

    @property
    def bytes_written(self) -> int:
        return sum(s.bytes_written for s in self.sinks) + sum(s.bytes_written for s in self.indexes)


class MegatronRun(TableRun):
    """One shuffle of documents: datasets read as rows, written as one ``.bin``/``.idx`` pair or shards of pairs."""

    unit = "documents"

    def __init__(self, request: Request, datasets: list[IndexedInput], target: str, entropy: int, progress: Progress) -> None:
        TwoPass.__init__(
            self, entropy, resolve_memory(request.memory), request.head_count, request.tmp_dir, progress, request.workers,
            request.head_share,
        )
        self.request = request
        self.inputs = list(datasets)
        self.datasets = datasets
        self.piece = min(plan.piece_bytes(self.limit), TABLE_PIECE)
        self.progress_done = 0
        sharding = Sharding(request.shards, request.shard_records, request.shard_size)
        split = None if request.split is None else parse_split(request.split)
        check_outputs(target, sharding, split, None, suffix=".bin")
        if not sharding.on and split is None:
            for name in (target, target[:-4] + ".idx"):
                _check_pair_file(name)
        self.writer = WriteBehind(plan.IN_FLIGHT_PIECES * self.piece)
        first = datasets[0]
        self.table_out = MegatronOutput(
            target, self.writer, code=first.code, modes=first.modes, sharding=sharding, split=split, sync=request.sync,
        )
        self.table_out.verify = request.verify
        self.out = self.table_out
        self.out.hashers = self.workers
        self.input_rows = None
        self._no_weights()  # weighted sources and --stratify are refused for documents

    def _batches(self) -> Generator[tuple[pa.RecordBatch, np.ndarray], None, None]:
        """Every dataset's documents in batches of about a piece, with their row sizes; fingerprinted when verifying."""
        for dataset in self.datasets:
            per_sequence = 12 + (1 if dataset.modes else 0)  # the .idx bytes of a sequence, for progress
            for batch, sizes in dataset.sized_batches(self.piece, plan.piece_records(self.limit)):
                _block, ends = array_block(batch.column(0))
                self._report(int(ends[-1] - ends[0]) + 8 * len(sizes) + per_sequence * len(batch.column(1).values))
                if self.request.verify:
                    self.read_fingerprint += row_fingerprint(batch)
                yield batch, sizes
        self.input_rows = [d.count for d in self.datasets]

    @classmethod
    def for_request(cls, request: Request, inputs: list[Any], entropy: int, progress: Progress) -> MegatronRun:
        """The documents of every dataset named (one dtype), into the pair (or shards) ``-o`` names."""
        datasets = open_datasets(inputs)
        return cls(request, datasets, output_target(request.output, _sharded(request)), entropy, progress)

    @classmethod
    def sample(cls, request: Request, inputs: list[Any]) -> Sample:
        """Exact counts from the indexes: documents, and their bytes as rows."""
        datasets = open_datasets(inputs)
        nbytes, docs = sum(d.row_bytes() for d in datasets), sum(d.count for d in datasets)
        est = Estimate(nbytes, docs, nbytes / max(1, docs))
        in_memory = plan.fits_in_memory(nbytes, docs, resolve_memory(request.memory))
        return Sample(est, nbytes, exact=True, sized=True, in_memory=in_memory, temp_bytes=nbytes)

    @classmethod
    def output_plan(cls, request: Request, inputs: list[Any]) -> OutputPlan:
        """The ``.bin`` files, as the run checks them (each ``.idx`` is beside its ``.bin``)."""
        target = output_target(request.output, _sharded(request))
        sharding = Sharding(request.shards, request.shard_records, request.shard_size)
        return OutputPlan(target, request.shards, None, ".bin", sharding, request.split)


def _sharded(request: Request) -> bool:
    """Whether the output is cut into shards (a directory ``-o`` then holds them)."""
    return any(n is not None for n in (request.shards, request.shard_records, request.shard_size))


def open_datasets(inputs: list[Any]) -> list[IndexedInput]:
    """Every input as a checked dataset; all must share one token dtype and agree on sequence modes."""
    datasets: list[IndexedInput] = []
    for item in inputs:
        prefix = megatron_prefix(item) if isinstance(item, str) else None
        if prefix is None:
            raise InputError(
                f"{item}: not a Megatron indexed dataset; give PREFIX, PREFIX.idx or PREFIX.bin (with PREFIX.idx beside it)"
            )
        datasets.append(IndexedInput(prefix))
    first = datasets[0]
    for other in datasets[1:]:
        if other.code != first.code:
            raise InputError(
                f"{other.idx_path}: tokens are {DTYPES[other.code]} but {first.idx_path}'s are {DTYPES[first.code]}; "
                "datasets shuffled together must share a dtype"
            )
        if other.modes != first.modes:
            with_modes, without = (other, first) if other.modes else (first, other)
            raise InputError(
                f"{with_modes.idx_path}: has sequence modes but {without.idx_path} has none; shuffle them separately"
            )
    return datasets


def _check_pair_file(name: str) -> None:
    """Refuse a symbolic link, device or FIFO at ``name``, a file of the output pair: written through,
    it would replace one file of another dataset's pair (an input's ``.idx`` under its ``.bin``)."""
    why = foreign_entry(name)
    if why is not None:
        raise OutputError(f"{name}: {why}; a dataset is written as two regular files, PREFIX.bin and PREFIX.idx")


def output_target(output: str | None, sharded: bool) -> str:
    """The ``.bin`` path (or pattern, or shard directory) that ``-o`` names: ``PREFIX``, ``PREFIX.bin`` or ``PREFIX.idx``."""
    if output is None or output == "-":
        raise UsageError(f"a Megatron dataset is written to files: give {option('output')} PREFIX (PREFIX.bin and PREFIX.idx are written)")
    if sharded and (os.path.isdir(output) or output.endswith(os.sep)):
        return output
    if os.path.isdir(output) or output.endswith(os.sep):
        raise UsageError(f"{output}: is a directory; give {option('output')} a dataset prefix such as {os.path.join(output, 'corpus')}")
    prefix = output[:-4] if output.endswith((".bin", ".idx")) else output
    return prefix + ".bin"
