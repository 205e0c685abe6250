"""A shuffle of the documents of Megatron indexed datasets on the two-pass driver.

Documents are rows (``formats.megatron``), so the table run's scatter, buckets (Arrow IPC streams
of documents with their sequence lengths) and in-memory permutation serve them unchanged; what
is particular is reading ``PREFIX.idx``/``PREFIX.bin`` pairs and writing them: each output file's
tokens go to its ``.bin`` as they come, its sequence lengths are kept (beyond a small share of
``-S``, in a temporary file), and its ``.idx`` is written from them when the ``.bin`` is complete,
both committed together through the output's journal.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Generator, Iterator, Sequence
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa

from ..core import mix, plan
from ..core.driver import Estimate, OutputPlan, Sample, TwoPass
from ..core.fingerprint import Fingerprint
from ..core.records import array_block
from ..errors import InputError, OutputError, TempSpaceError, UsageError, option
from ..progress import Progress
from ..quoting import quote_arg, quote_name
from ..request import Request, resolve_memory
from ..storage.layout import Sharding, SplitPart, parse_split
from ..storage.manifest import input_entries
from ..storage.remote import filesystem, is_remote
from ..storage.paths import generated_path
from ..storage.safefs import create_exclusive, foreign_entry
from ..storage.shards import check_outputs
from ..storage.sinks import AtomicFileSink, CodecChoice, Sink
from ..storage.tempspace import TempSpace, full_disk_hint
from ..storage.threads import each
from ..storage.writeback import WriteBehind
from .detect import megatron_prefix, read_back
from .megatron import (
    DTYPES, Chunk, IndexedInput, IndexParts, Pair, RemoteIndexedInput, check_together, document_chunk,
    document_fingerprint, put_chunks, read_field, row_bytes, schema,
)
from .megatron_resume import IndexLogs, LogStore, ResumableMegatron, written_fingerprint
from .row_unique import check_comparable
from .table_mix import Block
from .table_output import TableOutput
from .table_run import fits_whole
from .tables import TABLE_PIECE


#: The share of ``-S`` an output file's index parts may hold in memory before they go to a temporary file.
SPILL_SHARE = 64
#: The fewest bytes of them held in memory, whatever ``-S``.
SPILL_LEAST = 64 << 10


class SpillFile:
    """Where an output file's ``IndexParts`` go beyond what memory holds: a private file, created
    exclusively in the output's own run directory (made when first needed, see ``MegatronOutput.spill_path``),
    read back for its ``.idx`` and removed once that is written."""

    def __init__(self, output: MegatronOutput, i: int) -> None:
        self.output = output
        self.i = i
        self.name = ""
        self.fd = -1
        self.size = 0

    def put(self, chunks: Sequence[Chunk]) -> None:
        if self.fd < 0:
            path = self.output.spill_path(self.i)
            try:
                self.fd = create_exclusive(path)
            except OSError as e:
                raise TempSpaceError(f"{quote_name(path)}: {e.strerror}") from None
            self.name = path
        try:
            self.size += put_chunks(self.fd, chunks)
        except OSError as e:
            raise TempSpaceError(f"{quote_name(self.name)}: write error: {e.strerror}{full_disk_hint(e)}") from None

    def field(self, k: int) -> Iterator[np.ndarray]:
        if self.fd < 0:
            return iter(())
        return read_field(self.fd, self.size, self.output.modes, self._changed, k)

    def _changed(self, why: str) -> TempSpaceError:
        return TempSpaceError(f"{quote_name(self.name)}: {why}; the temporary directory was changed or is failing")

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
            try:
                os.unlink(self.name)
            except OSError:
                pass  # removed with its directory


class MegatronOutput(TableOutput):
    """One ``.bin``/``.idx`` pair, or one per shard: the ``.bin`` files are the output's sinks, each
    with its ``.idx`` beside it, written when it is finished and committed with it."""

    def __init__(
        self, target: str, writer: WriteBehind, *, code: int, modes: bool, sharding: Sharding,
        split: tuple[SplitPart, ...] | None, sync: bool, manifest: str | None = None, tmp_dir: str | None = None,
        spill_at: int | None = None,
    ) -> None:
        super().__init__(
            target, writer, kind="megatron", shards=sharding.count, codec=("none", None), schema=schema(modes),
            group_rows=None, group_bytes=1, sync=sync, shard_records=sharding.records, split=split, manifest=manifest,
        )
        self.sharding = sharding  # with --shard-size, which the table output does not take
        self.code = code
        self.modes = modes
        self.shard_suffix = ".bin"
        self.indexes: list[AtomicFileSink] = []
        #: Per file: what its ``.idx`` is made of, kept as its documents are written.
        self.parts: list[IndexParts] = []
        self.logs: IndexLogs | None = None  # --resume, past the in-memory path: the documents of each file logged
        self.tmp_dir = tmp_dir
        #: Bytes of a file's parts held in memory, the rest in a SpillFile (without logs); None: all held,
        #: as on the in-memory path, whose input held whole already bounds them (set as the external path starts).
        self.spill_at = spill_at
        self.spill_space: TempSpace | None = None

    @property
    def _plain(self) -> bool:
        """Never one sink alone: every ``.bin`` has its ``.idx``, so even one pair is committed as several files."""
        return False

    def _open(self, sink: Sink) -> None:
        self.sinks.append(sink)
        self._open_index(sink)
        i = len(self.sinks) - 1
        if self.logs is not None:
            self.logs.open(i, None)
            self.parts.append(IndexParts(self.modes, LogStore(self.logs, i)))
        else:
            store = None if self.spill_at is None else SpillFile(self, i)
            self.parts.append(IndexParts(self.modes, store, self.spill_at or 0))

    def spill_path(self, i: int) -> str:
        """The name of output file ``i``'s ``SpillFile``, in a run directory of the output's own under
        ``-T`` (made now if this is the first: an external run's is gone before the last ``.idx`` is
        written, and a run in memory has none), removed with it however the run ends."""
        if self.spill_space is None:
            space = TempSpace(self.tmp_dir)
            space.__enter__()
            self.spill_space = space
        return os.path.join(self.spill_space.path, f"index-{i:05d}.spill")

    def _drop_spill(self) -> None:
        """Remove the spill files' directory, if one was made."""
        space, self.spill_space = self.spill_space, None
        if space is not None:
            space.__exit__(None, None, None)

    def _open_index(self, sink: Sink) -> None:
        """The ``.idx`` beside ``sink``, a ``.bin`` (as named: a link there is never written through)."""
        if not isinstance(sink, AtomicFileSink) or not sink.name.endswith(".bin"):
            raise OutputError(f"{quote_name(sink.name)}: a dataset is written as PREFIX.bin and PREFIX.idx files, not to a device")
        named = sink.name[:-4] + ".idx"
        self.indexes.append(AtomicFileSink(
            generated_path(named), None, named, self.resume_tag, None, self.resume_dir, files=self.files, index=len(self.indexes),
        ))

    def _restore(self, restore: dict[str, Any]) -> None:
        """Take up an interrupted ``--resume`` run's files (``Output._restore``) and, from the index logs,
        each one's documents as its ``.idx`` needs them; a finished file's ``.idx`` is written now."""
        assert self.logs is not None
        self.parts = self.logs.restore(restore)
        super()._restore(restore)
        for i, sink in enumerate(self.sinks):
            self._open_index(sink)
            if i < len(self.sinks) - 1:
                self._close_format(i)

    def read_back(self, path: str, _codec: CodecChoice | None) -> Fingerprint:
        """The documents of output temp file ``path``, taken up from a checkpoint, as a fingerprint."""
        i = next(i for i, sink in enumerate(self.sinks) if isinstance(sink, AtomicFileSink) and sink.tmp_path == path)
        assert self.logs is not None  # (taken up from a checkpoint: --resume)
        return written_fingerprint(path, DTYPES[self.code].itemsize, self.logs, i)

    def checkpoint(self) -> dict[str, Any]:
        """``Output.checkpoint``, the index logs synced and their point recorded first."""
        state = super().checkpoint()
        if self.logs is not None:
            self.logs.checkpoint(state["done"])
        return state

    def _write(self, shard: int, records: Any) -> None:
        self.writer.submit_job(lambda: self._write_documents(shard, records), records.nbytes)

    def _write_documents(self, shard: int, table: pa.Table) -> None:
        """Append ``table``'s documents: tokens to the ``.bin`` now, sequence lengths kept for the ``.idx``
        (with ``--resume``, logged)."""
        for batch in table.to_batches():
            tokens, chunk = document_chunk(batch, self.modes)
            self.sinks[shard].write(tokens)
            self.parts[shard].keep(chunk)

    def _close_format(self, shard: int) -> None:
        """Write and finish the ``.idx`` of file ``shard`` (its ``.bin`` is complete: flushed first, so a
        full disk is reported for the ``.bin`` whose tokens it stopped, not for the ``.idx`` after it);
        its parts go then (its spill file, or its log, closed)."""
        self.sinks[shard].flush()
        parts = self.parts[shard]
        sink = self.indexes[shard]
        for part in parts.index_parts(self.code):
            sink.write(part)
        parts.close()
        self.parts[shard] = IndexParts(self.modes)
        sink.finish()

    def commit(self) -> None:
        """``Output.commit``, the spill files' directory removed once every ``.idx`` is written."""
        super().commit()
        self._drop_spill()

    def _fingerprint(self, records: Any) -> Fingerprint:
        return document_fingerprint(records)

    def _record_bytes(self, records: Any) -> np.ndarray:
        """Each document's bytes of tokens, for ``--shard-size``."""
        return token_bytes(records)

    def _companion_moves(self) -> list[tuple[str, str]]:
        return [(sink.tmp_path, sink.path) for sink in self.indexes]

    def describe_kind(self) -> str:
        return "documents"

    def abort(self) -> None:
        """The indexes' files go too, every step taken even if one before it raised (see ``Output.abort``)."""
        logs = self.logs
        each([
            self.writer.wait_idle, *([] if logs is None else [logs.close]), *(parts.close for parts in self.parts),
            self._drop_spill, *(sink.abort for sink in self.indexes), super().abort,
        ])

    @property
    def bytes_written(self) -> int:
        return sum(s.bytes_written for s in self.sinks) + sum(s.bytes_written for s in self.indexes)


def check_manifest_name(manifest: str, prefixes: list[str]) -> None:
    """Refuse a manifest named as a dataset's prefix (an input's, or the output pair's): a later run
    naming that prefix would read the manifest, as the file the name now gives, not the dataset."""
    name = os.path.abspath(manifest)
    for prefix in prefixes:
        if os.path.abspath(prefix) == name:
            raise UsageError(
                f"{quote_name(manifest)}: the manifest would take the name of dataset {quote_name(prefix)} (its .bin and .idx are named by it), "
                "and a later run naming it would read the manifest instead; name it .json"
            )


class MegatronRun(ResumableMegatron):
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
        files = [name for d in datasets for name in (d.bin_path, d.idx_path)]
        if request.manifest is not None:
            single = [] if sharding.on or split is not None else [target[:-4]]
            check_manifest_name(request.manifest, [d.prefix for d in datasets] + single)
        for suffix in (".bin", ".idx"):  # each file of every pair (a pattern's too), before any input is read
            named = target[:-4] + suffix if target.endswith(".bin") else target
            # (each file an input of its own kind: a .bin output replaces a .bin, never an .idx)
            check_outputs(
                named, sharding, split, request.manifest, suffix=suffix, inputs=[f for f in files if f.endswith(suffix)],
                input_directories=request.input_directories, taken=read_back,
            )
        if not sharding.on and split is None:
            check_pair_files(target)
        if request.sources:
            _check_sources_distinct(request, datasets)
        if request.unique:
            check_comparable(schema(datasets[0].modes))
        self.writer = WriteBehind(plan.IN_FLIGHT_PIECES * self.piece)
        first = datasets[0]
        self.table_out = MegatronOutput(
            target, self.writer, code=first.code, modes=first.modes, sharding=sharding, split=split, sync=request.sync,
            manifest=request.manifest, tmp_dir=request.tmp_dir,
        )
        self.table_out.verify = request.verify
        self.out = self.table_out
        self.out.hashers = self.workers
        self.input_rows = None
        self.out.manifest_info = self._manifest_info
        self._no_weights()
        self._start_job()  # --resume: the job's key, and the name of its lock, temp directory and output temp files

    def take_up(self, temp: TempSpace) -> None:
        """The external path starts: from here the output's index parts past a share of ``-S`` go to ``-T``
        (on the in-memory path they stay held, bounded by the input held beside them)."""
        super().take_up(temp)
        self.table_out.spill_at = max(SPILL_LEAST, self.limit // SPILL_SHARE)

    def _input_entries(self) -> list[dict[str, Any]]:
        """Each dataset as the manifest lists it: its ``.bin`` (path, size, mtime), documents and token bytes (from its index)."""
        datasets = self.datasets
        read_as = [next((s.stamped() for s in d.stamps if s.path == d.bin_path), None) for d in datasets]
        return input_entries([d.bin_path for d in datasets], [(d.count, d.bin_size) for d in datasets], [d.local for d in datasets], read_as)

    def _records_format(self) -> dict[str, Any]:
        """The manifest's ``format``: Megatron pairs, their token dtype and whether sequences have modes."""
        first = self.datasets[0]
        return {"documents": "megatron", "dtype": DTYPES[first.code].name, "modes": first.modes}

    def rows_fingerprint(self, rows: pa.Table | pa.RecordBatch, mult: np.ndarray | None = None) -> Fingerprint:
        return document_fingerprint(rows, mult)

    def _count_sources(self, file_source: list[int], n: int) -> tuple[list[int], list[int]]:
        """Documents and token bytes of each source, from the indexes (no counting pass: they say both)."""
        return source_sums(self.datasets, file_source, n)

    def weighed_bytes(self, table: pa.Table, rows: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """The token bytes of ``table``'s documents ``rows``: ``--by bytes`` weighs documents by their
        tokens, with ``--unique`` as the indexes do without it."""
        weights: np.ndarray = token_bytes(table)[rows].astype(np.float64)
        return weights

    def exact_input(self) -> Estimate:
        """The documents' bytes as rows, exact from the indexes (as ``--dry-run`` gives them), not the
        first batch's mean times the count: one long document first planned 260 GiB for 44 MB."""
        return documents_estimate(self.datasets)

    def _batches(self) -> Generator[Block, None, None]:
        """Every dataset's documents in batches of about a piece, with their row sizes (and with weighted
        sources their documents per source); fingerprinted when verifying (weighted: once the copies are
        drawn; ``--unique``: once the unique documents are known)."""
        # As for table rows: with weighted sources, batches shrink by the most copies a document gets.
        most = 1 if self.mixer is None else self.mixer.most_copies()
        blocks = self._read(max(1, self.piece // most), max(1, plan.piece_records(self.limit) // most))
        if self.request.sources:  # with --unique, before the mixer is planned (from the documents left)
            yield from self._with_sources(blocks)
            return
        for batch, sizes in blocks:
            if self.request.verify and not self.request.unique and not self.request.resume:  # --resume: as scattered
                self.read_fingerprint += document_fingerprint(batch)
            yield batch, sizes

    def _read(self, nbytes: int, nrows: int) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
        """Every dataset's documents in batches of about ``nbytes`` (at most ``nrows``), with their row
        sizes; ``file_starts`` gets each dataset's first document before its first batch is handed out."""
        self.file_starts = []
        at = 0
        for dataset in self.datasets:
            self.file_starts.append(at)
            per_sequence = 12 + (1 if dataset.modes else 0)  # the .idx bytes of a sequence, for progress
            for batch, sizes in dataset.sized_batches(nbytes, nrows):
                _block, ends = array_block(batch.column(0))
                self._report(int(ends[-1] - ends[0]) + 8 * len(sizes) + per_sequence * len(batch.column(1).values))
                yield batch, sizes
            at += dataset.count
        self.input_rows = [d.count for d in self.datasets]

    @classmethod
    def for_request(cls, request: Request, inputs: list[Any], entropy: int, progress: Progress) -> MegatronRun:
        """The documents of every dataset named (one dtype), into the pair (or shards) ``-o`` names."""
        datasets = open_datasets(inputs)
        check_document_sizes(datasets, resolve_memory(request.memory))
        return cls(request, datasets, output_target(request.output, _sharded(request)), entropy, progress)

    @classmethod
    def sample(cls, request: Request, inputs: list[Any]) -> Sample:
        """Exact counts from the indexes: documents, and their bytes as rows."""
        datasets = open_datasets(inputs)
        check_document_sizes(datasets, resolve_memory(request.memory))
        return documents_sample(request, datasets, [d.disk_size() for d in datasets])

    @classmethod
    def output_plan(cls, request: Request, inputs: list[Any]) -> OutputPlan:
        """The ``.bin`` files, as the run checks them (each ``.idx`` is beside its ``.bin``)."""
        target = output_target(request.output, _sharded(request))
        sharding = Sharding(request.shards, request.shard_records, request.shard_size)
        single = not sharding.on and request.split is None
        return OutputPlan(
            target, request.shards, None, ".bin", sharding, request.split, request.manifest,
            own_check=partial(check_pair_files, target) if single else None,
        )


def token_bytes(records: pa.Table | pa.RecordBatch) -> np.ndarray:
    """Each document's bytes of tokens (its first column's value)."""
    column = records.column(0)
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    return np.concatenate([np.diff(array_block(c)[1]) for c in chunks]) if chunks else np.empty(0, np.int64)


def _sharded(request: Request) -> bool:
    """Whether the output is cut into shards (a directory ``-o`` then holds them)."""
    return any(n is not None for n in (request.shards, request.shard_records, request.shard_size))


def open_datasets(inputs: list[Any]) -> list[IndexedInput]:
    """Every input as a checked dataset (a local pair, or a pair of URLs read through fsspec); all
    must share one token dtype and agree on sequence modes."""
    datasets: list[IndexedInput] = []
    for item in inputs:
        if not isinstance(item, str):
            raise InputError(f"{quote_name(str(item))}: {NOT_A_DATASET}")
        on_url = is_remote(item)
        datasets.extend(RemoteIndexedInput(p) if on_url else IndexedInput(p) for p in dataset_prefixes(item))
    modes = check_together(datasets)
    for dataset in datasets:
        if dataset.modes != modes:
            dataset.take_modes(modes)
    return datasets


def check_document_sizes(datasets: Sequence[IndexedInput], limit: int) -> None:
    """Refuse a dataset holding a document larger than the external path can place under memory
    ``limit`` (``plan.largest_record``), from the indexes: the run would otherwise read it and scatter
    it ``plan.MAX_DEPTH`` times, past the limit, before failing. Lines and tars are refused as read."""
    most = plan.largest_record(limit)
    for dataset in datasets:
        index, size = dataset.largest_document()
        if size > most:
            tokens, sequences = dataset.document_at(index)
            raise InputError(
                f"{quote_name(dataset.idx_path)}: document {index} takes {size} bytes ({tokens} of tokens in {sequences} "
                f"sequence{'' if sequences == 1 else 's'}), more than the {most} bytes a document may take "
                f"at this memory limit; raise {option('memory')}"
            )


#: How ``--dry-run`` says Megatron documents were counted: no token is read to count them.
HEADERS = "from the .idx headers"


def documents_estimate(datasets: Sequence[Pair]) -> Estimate:
    """The datasets' documents and their bytes as rows, exact from the indexes."""
    nbytes = sum(row_bytes(d.count, d.sequences, d.bin_size, d.modes) for d in datasets)
    docs = sum(d.count for d in datasets)
    return Estimate(nbytes, docs, nbytes / max(1, docs))


def documents_sample(request: Request, datasets: Sequence[Pair], disk_sizes: Sequence[int]) -> Sample:
    """What ``--dry-run`` plans with, exact from the indexes (either engine): documents, their bytes as
    rows, and with weighted sources each source's documents, token bytes and size on disk (``disk_sizes``:
    each dataset's two files)."""
    est = documents_estimate(datasets)
    nbytes, docs = est.nbytes or 0, est.records or 0
    in_memory = fits_whole(request, nbytes, docs, resolve_memory(request.memory))
    if not request.sources:
        return Sample(est, nbytes, exact=True, sized=True, in_memory=in_memory, temp_bytes=nbytes, counted=HEADERS)
    # Weighted sources: each source's documents and token bytes, as the run takes them from the indexes.
    file_source = mix.source_files(request)
    counts, tokens = source_sums(datasets, file_source, len(request.sources))
    sizes = [0] * len(request.sources)
    for s, size in zip(file_source, disk_sizes):
        sizes[s] += size
    return Sample(
        est, nbytes, exact=True, sized=True, in_memory=in_memory, temp_bytes=nbytes, counted=HEADERS,
        source_records=tuple(counts), source_bytes=tuple(tokens), source_sizes=tuple(sizes),
    )


#: What an operand that names no dataset is told.
NOT_A_DATASET = "not a Megatron indexed dataset; give PREFIX, PREFIX.idx or PREFIX.bin (with PREFIX.idx beside it)"


def dataset_prefixes(name: str) -> list[str]:
    """The dataset prefixes an input names: a local one, or every ``.idx`` (or ``.bin``) a URL (a glob) finds."""
    if not is_remote(name):
        prefix = megatron_prefix(name)
        if prefix is None:
            if not any(os.path.lexists(name + end) for end in ("", ".idx", ".bin")):
                raise InputError(f"{quote_name(name)}: {os.strerror(errno.ENOENT)}")  # a mistyped name, said as of any file
            raise InputError(f"{quote_name(name)}: {NOT_A_DATASET}")
        return [prefix]
    fs, path = filesystem(name)
    matches = sorted(fs.glob(path)) if any(c in path for c in "*?[") and not fs.exists(path) else [path]
    if not matches:
        raise InputError(f"{quote_name(name)}: No such file or directory")
    found = [fs.unstrip_protocol(m) for m in matches]
    bad = next((f for f in found if not f.endswith((".idx", ".bin"))), None)
    if bad is not None:
        raise InputError(f"{quote_name(bad)}: not a Megatron indexed dataset; name a dataset on a URL by its PREFIX.idx")
    return list(dict.fromkeys(f[:-4] for f in found))


def source_sums(datasets: Sequence[Pair], file_source: list[int], n: int) -> tuple[list[int], list[int]]:
    """Documents and token bytes of each of ``n`` sources (``file_source``: each dataset's), from the indexes."""
    counts, tokens = [0] * n, [0] * n
    for s, dataset in zip(file_source, datasets):
        counts[s] += dataset.count
        tokens[s] += dataset.bin_size
    return counts, tokens


def _check_sources_distinct(request: Request, datasets: list[IndexedInput]) -> None:
    """Refuse one dataset in two sources (or twice in one) by any of its names (``PREFIX``, ``.idx``,
    ``.bin``, a link): its documents would be weighted twice."""
    owner: dict[tuple[int, int], str] = {}
    for s, dataset in zip(mix.source_files(request), datasets):
        st = os.stat(dataset.idx_path)
        name, key = request.sources[s][0], (st.st_dev, st.st_ino)
        if key in owner:
            where = f"twice in source {quote_arg(name)}" if owner[key] == name else f"in source {quote_arg(owner[key])} and in {quote_arg(name)}"
            raise UsageError(f"{quote_name(dataset.idx_path)}: named {where}; a dataset may be in one source, once")
        owner[key] = name


def check_pair_files(target: str) -> None:
    """Refuse a link, device or FIFO at either file of the single output pair ``target`` (a ``.bin``) names."""
    for name in (target, target[:-4] + ".idx"):
        check_pair_file(name)


def check_pair_file(name: str) -> None:
    """Refuse a symbolic link, device or FIFO at ``name``, a file of the output pair: written through,
    it would replace one file of another dataset's pair (an input's ``.idx`` under its ``.bin``)."""
    why = foreign_entry(name)
    if why is not None:
        raise OutputError(f"{quote_name(name)}: {why}; a dataset is written as two regular files, PREFIX.bin and PREFIX.idx")


def output_target(output: str | None, sharded: bool) -> str:
    """The ``.bin`` path (or pattern, or shard directory) that ``-o`` names: ``PREFIX``, ``PREFIX.bin`` or ``PREFIX.idx``."""
    if output is None or output == "-":
        raise UsageError(f"a Megatron dataset is written to files: give {option('output')} PREFIX (PREFIX.bin and PREFIX.idx are written)")
    if sharded and (os.path.isdir(output) or output.endswith(os.sep)):
        return output
    if os.path.isdir(output) or output.endswith(os.sep):
        raise UsageError(f"{output}: is a directory; give {option('output')} a dataset prefix such as {os.path.join(output, 'corpus')}")
    prefix = output[:-4] if output.endswith((".bin", ".idx")) else output
    _refuse_a_stream_prefix(prefix)
    return prefix + ".bin"


def _refuse_a_stream_prefix(prefix: str) -> None:
    """Refuse ``-o`` whose prefix names a device, FIFO, socket or descriptor (``/dev/null``, ``/dev/null.bin``,
    ``/dev/stdout``): it made ``/dev/null.bin`` and ``.idx``, full-size files in ``/dev`` (in memory),
    where the user meant to write to the stream or throw the output away."""
    from ..storage.paths import own_descriptor

    try:
        st = os.stat(prefix)
    except (OSError, ValueError):
        return  # a new prefix: its files' own checks follow
    if stat.S_ISREG(st.st_mode) and own_descriptor(prefix) is None:
        return  # a file beside which PREFIX.bin and PREFIX.idx go
    raise UsageError(
        f"{quote_name(prefix)}: a dataset is two files, PREFIX.bin and PREFIX.idx, and cannot be written to a "
        f"device, FIFO or open descriptor; give {option('output')} a dataset prefix"
    )
