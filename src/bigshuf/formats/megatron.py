"""Megatron-style indexed datasets (``PREFIX.bin`` + ``PREFIX.idx``, the MMIDIDX format): the index
read and checked, documents read as Arrow rows, and an index written.

The ``.idx`` (little-endian) holds: the magic ``MMIDIDX\\0\\0``, a u64 version (1), a u8 dtype code
(``DTYPES``), the u64 sequence count S, the u64 count of document-index entries D (documents + 1),
then S int32 sequence lengths (in tokens), S int64 byte pointers into the ``.bin``, D int64
document indices (the first sequence of each document, starting at 0 and ending at S) and, in
multimodal datasets, S int8 sequence modes. The ``.bin`` is the sequences' tokens back to back.
A document is one row: its tokens' bytes, its sequence lengths (and modes), so its sequences
stay together and in order however the rows are shuffled.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from ..core.fingerprint import Fingerprint
from ..core.records import array_block, list_spans
from ..errors import InputError, TempSpaceError
from ..quoting import quote_name
from ..storage import remote
from ..storage.sources import Stamp, changed
from ..storage.threads import descriptor
from .rowhash import row_hashes
from .table_input import TableInput

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
#: The header: magic, version, dtype code, sequence count, document-index entries.
HEADER = struct.Struct("<9sQBQQ")
#: Megatron's dtype codes and the NumPy types of the tokens they name.
DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.uint8), 2: np.dtype(np.int8), 3: np.dtype(np.int16), 4: np.dtype(np.int32),
    5: np.dtype(np.int64), 6: np.dtype(np.float64), 7: np.dtype(np.float32), 8: np.dtype(np.uint16),
}
#: Index entries checked (and documents looked at) at a time, so a large index is never held whole.
WINDOW = 1 << 20
#: Reads a file's bytes from an offset into a buffer; returns how many (0: its end).
ReadAt = Callable[[int, memoryview], int]
#: Most bytes of documents hashed at once by the checks (``--check-manifest``, ``--check-permutation``),
#: as the line checks read 32 MiB blocks: more only holds more memory.
CHECK_BATCH = 32 << 20


def schema(modes: bool) -> pa.Schema:
    """The rows documents are shuffled as: tokens' bytes, sequence lengths, and modes if the dataset has them."""
    fields = [pa.field("tokens", pa.large_binary()), pa.field("lengths", pa.list_(pa.int32()))]
    if modes:
        fields.append(pa.field("modes", pa.list_(pa.int8())))
    return pa.schema(fields)


class Pair(Protocol):
    """A dataset's two files as its checks name them, with the ``.bin``'s size, the tokens' dtype and
    the header's counts."""

    @property
    def idx_path(self) -> str: ...

    @property
    def bin_path(self) -> str: ...

    @property
    def bin_size(self) -> int: ...

    @property
    def dtype(self) -> np.dtype: ...

    @property
    def code(self) -> int: ...

    @property
    def modes(self) -> bool: ...

    @property
    def sequences(self) -> int: ...

    @property
    def count(self) -> int: ...


def check_together(datasets: Sequence[Pair]) -> bool:
    """Datasets shuffled together must share a token dtype and all have sequence modes or none;
    returns whether they have. One of no sequences cannot say (its index is the same size either
    way: bigshuf's ``-n 0`` of a multimodal dataset writes one), so it agrees with the others."""
    first = datasets[0]
    said = [d for d in datasets if d.sequences] or [first]
    for other in datasets[1:]:
        if other.code != first.code:
            raise InputError(
                f"{quote_name(other.idx_path)}: tokens are {DTYPES[other.code]} but {quote_name(first.idx_path)}'s are {DTYPES[first.code]}; "
                "datasets shuffled together must share a dtype"
            )
    for other in said[1:]:
        if other.modes != said[0].modes:
            with_modes, without = (other, said[0]) if other.modes else (said[0], other)
            raise InputError(
                f"{quote_name(with_modes.idx_path)}: has sequence modes but {quote_name(without.idx_path)} has none; shuffle them separately"
            )
    return said[0].modes


def read_header(idx_path: str) -> tuple[bytes, int, int, int, int]:
    """The fields of the local index ``idx_path``'s header, each checked (a regular file, as it is read at offsets)."""
    try:
        if not stat.S_ISREG(os.stat(idx_path).st_mode):
            raise InputError(f"{quote_name(idx_path)}: not a regular file (an index is read at offsets)")
        with open(idx_path, "rb") as f:
            head = f.read(HEADER.size)
    except OSError as e:
        raise InputError(f"{quote_name(idx_path)}: {e.strerror}") from None
    return check_header(idx_path, head)


def check_header(idx_path: str, head: bytes) -> tuple[bytes, int, int, int, int]:
    """The fields of the header ``head`` (an index's first bytes), each checked."""
    if head[: len(MAGIC)] != MAGIC:
        raise InputError(f"{quote_name(idx_path)}: not a Megatron index (bad magic: {head[:len(MAGIC)]!r})")
    if len(head) < HEADER.size:
        raise InputError(f"{quote_name(idx_path)}: index header cut short ({len(head)} of {HEADER.size} bytes)")
    fields: tuple[bytes, int, int, int, int] = HEADER.unpack(head[: HEADER.size])
    if fields[1] != VERSION:
        raise InputError(f"{quote_name(idx_path)}: unknown index version {fields[1]} (bigshuf reads version {VERSION})")
    if fields[2] not in DTYPES:
        raise InputError(f"{quote_name(idx_path)}: unknown dtype code {fields[2]} (known: {', '.join(map(str, DTYPES))})")
    if fields[4] < 1:
        raise InputError(f"{quote_name(idx_path)}: the header counts no document index entries (at least the leading 0)")
    return fields


def has_modes(idx_path: str, size: int, sequences: int, entries: int) -> bool:
    """Whether an index of ``size`` bytes holds sequence modes (the header does not say): its size
    must be what its counts need, with or without them."""
    plain = HEADER.size + 12 * sequences + 8 * entries
    if size == plain:
        return False
    if size == plain + sequences:
        return True
    raise InputError(
        f"{quote_name(idx_path)}: holds {size} bytes; its header's counts ({sequences} sequences, {entries - 1} documents) "
        f"need {plain} (or {plain + sequences} with modes)"
    )


def check_sequences(pair: Pair, lo: int, lengths: np.ndarray, pointers: np.ndarray, end: int) -> int:
    """Check sequences ``lo``.. (their ``lengths`` and ``pointers``): lengths not negative, each within
    the ``.bin`` and starting where the one before ends (the first at ``end``); return where the last ends."""
    if not len(lengths):
        return end
    lengths = np.asarray(lengths, np.int64)
    pointers = np.asarray(pointers, np.int64)
    bad = np.flatnonzero(lengths < 0)
    if len(bad):
        raise InputError(f"{quote_name(pair.idx_path)}: sequence {lo + int(bad[0])} has a negative length ({int(lengths[bad[0]])})")
    ends = pointers + lengths * pair.dtype.itemsize
    past = np.flatnonzero((ends > pair.bin_size) | (pointers < 0))
    if len(past):
        i = int(past[0])
        raise InputError(
            f"{quote_name(pair.idx_path)}: sequence {lo + i} (bytes {int(pointers[i])} to {int(ends[i])}) runs past the end "
            f"of {quote_name(pair.bin_path)} ({pair.bin_size} bytes)"
        )
    starts = np.concatenate(([end], ends[:-1]))
    off = np.flatnonzero(pointers != starts)
    if len(off):
        i = int(off[0])
        raise InputError(
            f"{quote_name(pair.idx_path)}: sequence {lo + i} starts at byte {int(pointers[i])}, not where the sizes before it "
            f"end ({int(starts[i])})"
        )
    return int(ends[-1])


def check_end(pair: Pair, end: int) -> None:
    """The ``.bin`` must end where the last sequence does (``end``)."""
    if end != pair.bin_size:
        raise InputError(f"{quote_name(pair.bin_path)}: holds {pair.bin_size} bytes, but {quote_name(pair.idx_path)} accounts for {end}")


def check_documents(idx_path: str, lo: int, docs: np.ndarray, last: int) -> int:
    """Check document index entries ``lo``.. (``docs``): the first entry 0, none below the one before
    (``last`` before these); return the last."""
    if not len(docs):
        return last
    if lo == 0 and docs[0] != 0:
        raise InputError(f"{quote_name(idx_path)}: the document index starts at sequence {int(docs[0])}, not 0")
    before = np.concatenate(([last], docs[:-1]))
    back = np.flatnonzero(docs < before)
    if len(back):
        i = int(back[0])
        raise InputError(
            f"{quote_name(idx_path)}: document index entry {lo + i} ({int(docs[i])}) is below the one before it "
            f"({int(before[i])}); it must not decrease"
        )
    return int(docs[-1])


def check_last(idx_path: str, last: int, sequences: int) -> None:
    """The document index must end at the sequence count."""
    if last != sequences:
        raise InputError(f"{quote_name(idx_path)}: the document index ends at sequence {last}, not at the sequence count {sequences}")


def row_bytes(documents: int, sequences: int, bin_size: int, modes: bool) -> int:
    """Bytes a dataset's documents take as rows (by ``tables.row_sizes``), from its header's counts and its ``.bin``'s size."""
    per_list = 8 if modes else 4
    return documents * (1 + 8 + per_list) + bin_size + sequences * (4 + (1 if modes else 0))


def document_sizes(docs: np.ndarray, starts: np.ndarray, modes: bool) -> np.ndarray:
    """The row sizes (as ``tables.row_sizes`` counts them) of the documents between entries ``docs``
    (sequence numbers) whose tokens start at bytes ``starts``, from the index alone."""
    per_list = 8 if modes else 4
    per_sequence = 5 if modes else 4
    sizes: np.ndarray = np.diff(starts) + np.diff(docs) * per_sequence + (1 + 8 + per_list)
    return sizes


def batch_cuts(sizes: np.ndarray, max_bytes: int, max_rows: int) -> Iterator[tuple[int, int]]:
    """Documents ``[first, last)`` of each batch of rows of ``sizes``, cut where ``tables._rebatch``
    would cut them: at ``max_bytes`` of rows or ``max_rows``, a larger document alone."""
    ends = np.cumsum(sizes)
    first = 0
    while first < len(sizes):
        before = int(ends[first - 1]) if first else 0
        fit = int(np.searchsorted(ends, before + max_bytes, side="right")) - first
        last = first + max(1, min(fit, max_rows, len(sizes) - first))
        yield first, last
        first = last


def documents_batch(
    rows: pa.Schema, data: Any, docs: np.ndarray, starts: np.ndarray, lengths: np.ndarray, modes: np.ndarray | None,
) -> pa.RecordBatch:
    """The rows of the documents between entries ``docs`` (sequence numbers), their tokens ``data``
    (the ``.bin``'s bytes from ``starts[0]`` to ``starts[-1]``), their sequences' ``lengths`` and ``modes``."""
    n = len(docs) - 1
    s0 = int(docs[0])
    tokens = pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(starts - starts[0]), pa.py_buffer(data)])
    offsets = pa.array((docs - s0).astype(np.int32))
    columns = [tokens, pa.ListArray.from_arrays(offsets, pa.array(np.asarray(lengths, np.int32)))]
    if modes is not None:
        columns.append(pa.ListArray.from_arrays(offsets, pa.array(np.asarray(modes, np.int8))))
    return pa.RecordBatch.from_arrays(columns, schema=rows)


@contextmanager
def local_reader(path: str) -> Iterator[ReadAt]:
    """The local file ``path`` open, as a function that reads its bytes at an offset into a buffer
    (``pread``: a read error is an input error naming it)."""
    try:
        fd = descriptor(lambda: os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)))
    except OSError as e:
        raise InputError(f"{quote_name(path)}: {e.strerror}") from None

    def read(at: int, view: memoryview) -> int:
        try:
            return os.preadv(fd, [view], at)
        except OSError as e:
            raise InputError(f"{quote_name(path)}: read error: {e.strerror}") from None

    try:
        yield read
    finally:
        os.close(fd)


def fill(read: ReadAt, at: int, view: memoryview) -> int:
    """Fill ``view`` with the bytes ``read`` gives from ``at`` on; return how many it gave (fewer: its file ended)."""
    got = 0
    while got < len(view):
        step = read(at + got, view[got:])
        if step == 0:
            break
        got += step
    return got


#: Part of an output file's index: its documents' sequence counts (int64), their sequences' lengths
#: (int32) and modes (int8; None without modes).
Chunk = tuple[np.ndarray, np.ndarray, np.ndarray | None]
#: A chunk's header as it is put in a file (spilled, or logged for ``--resume``): its documents and sequences.
CHUNK = struct.Struct("<qq")
#: A chunk's arrays by position, as a ``.idx`` section reads one alone (``read_field``).
COUNTS, LENGTHS, MODES = 0, 1, 2


#: Buffers handed to one ``writev`` at most (Linux takes 1024).
WRITEV_MOST = 512


def put_chunks(fd: int, chunks: Sequence[Chunk]) -> int:
    """Append ``chunks`` to file ``fd`` as one chunk (their header, every sequence count, every length,
    then every mode), written from the arrays as they are held, none joined or copied; return its bytes."""
    views = [memoryview(CHUNK.pack(sum(len(c[0]) for c in chunks), sum(len(c[1]) for c in chunks)))]
    for k, dtype in ((0, "<i8"), (1, "<i4"), (2, "i1")):
        for chunk in chunks:
            part = chunk[k]
            if part is not None and len(part):
                views.append(np.ascontiguousarray(part, dtype).data.cast("B"))
    size = sum(len(v) for v in views)
    at = 0
    while at < len(views):
        written = os.writev(fd, views[at : at + WRITEV_MOST])
        while written and written >= len(views[at]):
            written -= len(views[at])
            at += 1
        if written:
            views[at] = views[at][written:]
    return size


def _chunk_heads(fd: int, size: int, modes: bool, bad: Callable[[str], Exception]) -> Iterator[tuple[int, int, int]]:
    """Where each chunk of the first ``size`` bytes of file ``fd`` starts, with its documents and
    sequences, each header read and checked to fit (``bad``: the error one that does not fit raises)."""
    at = 0
    while at < size:
        head = os.pread(fd, CHUNK.size, at) if at + CHUNK.size <= size else b""
        docs, seqs = CHUNK.unpack(head) if len(head) == CHUNK.size else (-1, -1)
        body = 8 * docs + (5 if modes else 4) * seqs
        if docs < 0 or seqs < 0 or at + CHUNK.size + body > size:
            raise bad(f"its chunk at byte {at} runs past its end")
        yield at, docs, seqs
        at += CHUNK.size + body


def _checked(at: int, seqs: int, counts: np.ndarray | None, lengths: np.ndarray | None, bad: Callable[[str], Exception]) -> None:
    """Refuse the chunk at byte ``at`` whose ``counts`` (or ``lengths``) do not hold up: counts in
    range, sequences per document adding up to its ``seqs``."""
    if counts is not None and ((counts < 0).any() or int(counts.sum()) != seqs) or lengths is not None and (lengths < 0).any():
        raise bad(f"its chunk at byte {at} does not hold up")


def read_chunks(fd: int, size: int, modes: bool, bad: Callable[[str], Exception]) -> Iterator[Chunk]:
    """The chunks of the first ``size`` bytes of file ``fd``, one read at a time, each checked: counts
    in range, sequences per document adding up (``bad``: the error a chunk that does not hold up raises)."""
    for at, docs, seqs in _chunk_heads(fd, size, modes, bad):
        body = 8 * docs + (5 if modes else 4) * seqs
        data = os.pread(fd, body, at + CHUNK.size)
        if len(data) != body:
            raise bad(f"its chunk at byte {at} runs past its end")
        counts = np.frombuffer(data, "<i8", docs)
        lengths = np.frombuffer(data, "<i4", seqs, 8 * docs)
        _checked(at, seqs, counts, lengths, bad)
        yield counts, lengths, np.frombuffer(data, np.int8, seqs, 8 * docs + 4 * seqs) if modes else None


def read_field(fd: int, size: int, modes: bool, bad: Callable[[str], Exception], k: int) -> Iterator[np.ndarray]:
    """Array ``k`` (``COUNTS``, ``LENGTHS``, ``MODES``) of each chunk ``read_chunks`` reads, only its bytes
    read, checked as far as it tells: a ``.idx`` section needs one array, and with whole chunks read for
    each section, 4 M one-token documents read 144 MB of their 48 MB spill file (now 64 MB)."""
    for at, docs, seqs in _chunk_heads(fd, size, modes, bad):
        # A chunk's arrays back to back after its header: counts, lengths, modes (``put_chunks``).
        dtype, count, skip = ((np.dtype("<i8"), docs, 0), (np.dtype("<i4"), seqs, 8 * docs), (np.dtype("i1"), seqs, 8 * docs + 4 * seqs))[k]
        data = os.pread(fd, count * dtype.itemsize, at + CHUNK.size + skip)
        if len(data) != count * dtype.itemsize:
            raise bad(f"its chunk at byte {at} runs past its end")
        array = np.frombuffer(data, dtype, count)
        _checked(at, seqs, array if k == COUNTS else None, array if k == LENGTHS else None, bad)
        yield array


def document_chunk(batch: pa.RecordBatch, modes: bool) -> tuple[memoryview, Chunk]:
    """``batch``'s documents as the ``.bin`` takes them (their tokens' bytes) and as their ``.idx`` needs them."""
    block, ends = array_block(batch.column(0))
    offsets, values = list_spans(batch.column(1))
    lengths = values.to_numpy(zero_copy_only=False).astype(np.int32)
    kinds = list_spans(batch.column(2))[1].to_numpy(zero_copy_only=False).astype(np.int8) if modes else None
    return memoryview(block[int(ends[0]) : int(ends[-1])].data), (np.diff(offsets), lengths, kinds)


class ChunkStore(Protocol):
    """A file the chunks of one output file's index are put in, in order, and read back from."""

    #: The file's name, for errors.
    name: str

    def put(self, chunks: Sequence[Chunk]) -> None:
        """Append ``chunks``, as one."""

    def field(self, k: int) -> Iterator[np.ndarray]:
        """Array ``k`` of every chunk put, in order, only its bytes read (``read_field``)."""

    def close(self) -> None:
        """The chunks are no longer needed."""


class IndexParts:
    """What an output file's ``.idx`` is made of, kept as its documents are written: their sequence
    lengths, sequences per document and modes (if the dataset has them). With a ``store``, at most
    ``budget`` bytes of them are held in memory, the rest put in it (12 bytes a sequence held whole,
    8 M sequences peaked at 200 MB at ``-S 16M``)."""

    def __init__(self, modes: bool, store: ChunkStore | None = None, budget: int = 0) -> None:
        self.modes = modes
        self.store = store
        self.budget = budget
        self.kept: list[Chunk] = []  # after those in the store
        self.kept_bytes = 0
        self.documents = 0
        self.sequences = 0

    def add(self, batch: pa.RecordBatch) -> memoryview:
        """Keep the sequences of ``batch``'s documents; return their tokens' bytes, for the ``.bin``."""
        tokens, chunk = document_chunk(batch, self.modes)
        self.keep(chunk)
        return tokens

    def keep(self, chunk: Chunk) -> None:
        """Keep ``chunk``: in memory while what is held stays within the budget, else all of it put in the store, as one chunk."""
        counts, lengths, kinds = chunk
        self.documents += len(counts)
        self.sequences += len(lengths)
        self.kept.append(chunk)
        self.kept_bytes += counts.nbytes + lengths.nbytes + (0 if kinds is None else kinds.nbytes)
        if self.store is not None and self.kept_bytes > self.budget:
            self.store.put(self.kept)
            self.kept, self.kept_bytes = [], 0

    def _field(self, k: int) -> Iterator[np.ndarray]:
        """Array ``k`` of every chunk kept, in order (from the store, only its bytes read), checked to
        number every document (``COUNTS``) or sequence kept, as bucket files are checked to hold the
        rows written: the store's file is read again for each part of the ``.idx``."""
        found = 0
        stored = self.store.field(k) if self.store is not None else iter(())
        for array in stored:
            found += len(array)
            yield array
        for chunk in self.kept:
            held = chunk[k]
            assert held is not None  # (modes are asked for only of a dataset with them)
            found += len(held)
            yield held
        kept, unit = (self.documents, "documents") if k == COUNTS else (self.sequences, "sequences")
        if found != kept:
            assert self.store is not None
            raise TempSpaceError(
                f"{quote_name(self.store.name)}: holds {found} {unit}, not the {kept} put in it; "
                "the temporary directory was changed or is failing"
            )

    def close(self) -> None:
        """Let go of the chunks (the ``.idx`` is written, or the run ends)."""
        self.kept, self.kept_bytes = [], 0
        if self.store is not None:
            self.store.close()

    def index_bytes(self, code: int) -> list[bytes]:
        """The ``.idx`` of the documents kept, tokens of dtype ``code``, as one list of parts."""
        return list(self.index_parts(code))

    def index_parts(self, code: int) -> Iterator[bytes]:
        """The ``.idx`` of the documents kept, tokens of dtype ``code``, a chunk at a time: sequence
        lengths back to back in the ``.bin``, their pointers, each document's first sequence (the count
        last) and the modes, the chunks read again for each, only the array it needs. No array of the whole index is made:
        joined, with its pointers and their bytes, an output of 8 M sequences peaked at 530 MB at ``-S 16M``."""
        size = DTYPES[code].itemsize
        yield HEADER.pack(MAGIC, VERSION, code, self.sequences, self.documents + 1)
        for lengths in self._field(LENGTHS):
            yield lengths.astype("<i4", copy=False).tobytes()
        at = 0  # where the chunk's first sequence starts in the .bin
        for lengths in self._field(LENGTHS):
            if len(lengths):
                ends = np.cumsum(lengths, dtype=np.int64) * size + at
                yield np.concatenate([[at], ends[:-1]]).astype("<i8").tobytes()
                at = int(ends[-1])
        yield np.zeros(1, "<i8").tobytes()
        first = 0  # sequences before the chunk's first document
        for counts in self._field(COUNTS):
            if len(counts):
                ends = np.cumsum(counts, dtype=np.int64) + first
                yield ends.astype("<i8", copy=False).tobytes()
                first = int(ends[-1])
        if self.modes:
            for kinds in self._field(MODES):
                yield kinds.astype(np.int8, copy=False).tobytes()


class IndexedInput(TableInput):
    """One dataset, its index checked against itself and its ``.bin`` when opened; read as rows of documents.

    The index is read, not loaded: it is checked and read ``WINDOW`` entries at a time, each part
    read where it is used from the file opened anew (a run of a thousand pairs holding theirs open
    went past the open-file limit). Read, not mapped: a page of a mapping that another process has
    cut from the file ends the process by SIGBUS when touched, and rows made from mapped arrays
    were views of it until written out; a short read is refused as a file changed while being read.
    """

    #: Both files are local (a manifest lists their size and mtime).
    local = True

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.idx_path, self.bin_path = prefix + ".idx", prefix + ".bin"
        # Before anything is read: each read opens the files anew, and what they held now is checked
        # once the documents are read (an index rewritten in place would misplace every document).
        files = [Stamp(path, quote_name(path)) for path in (self.idx_path, self.bin_path)] if self.local else []
        header = self._header()
        _magic, _version, code, self.sequences, entries = header
        self.dtype = DTYPES[code]
        self.code = code
        self.modes = self._has_modes(entries)
        super().__init__(self.idx_path, "megatron", schema(self.modes))
        self.count = entries - 1  # documents
        self.rows = self.count
        self.bin_size = self._bin_size()
        self.stamps = files
        self._check()

    def lengths(self, lo: int, hi: int) -> np.ndarray:
        """Sequences ``[lo, hi)``'s tokens (int32)."""
        return self._array("<i4", HEADER.size + 4 * lo, hi - lo)

    def pointers(self, lo: int, hi: int) -> np.ndarray:
        """Where sequences ``[lo, hi)``'s tokens start in the ``.bin`` (int64)."""
        return self._array("<i8", HEADER.size + 4 * self.sequences + 8 * lo, hi - lo)

    def documents(self, lo: int, hi: int) -> np.ndarray:
        """Document index entries ``[lo, hi)``: each document's first sequence, the sequence count last (int64)."""
        return self._array("<i8", HEADER.size + 12 * self.sequences + 8 * lo, hi - lo)

    def mode_values(self, lo: int, hi: int) -> np.ndarray | None:
        """Sequences ``[lo, hi)``'s modes (int8); None without modes."""
        if not self.modes:
            return None
        return self._array("i1", HEADER.size + 12 * self.sequences + 8 * (self.count + 1) + lo, hi - lo)

    def take_modes(self, modes: bool) -> None:
        """Have sequence modes or not as the datasets shuffled with it do (it holds no sequences)."""
        assert self.sequences == 0, "a dataset with sequences says whether it has modes"
        self.modes = modes
        self.schema = schema(modes)

    def _header(self) -> tuple[bytes, int, int, int, int]:
        """The header's fields, each checked."""
        return read_header(self.idx_path)

    def _has_modes(self, entries: int) -> bool:
        """Whether the index holds sequence modes, from its size (the header does not say)."""
        return has_modes(self.idx_path, os.path.getsize(self.idx_path), self.sequences, entries)

    def _bin_size(self) -> int:
        """The ``.bin``'s size (it must be a regular file)."""
        try:
            st = os.stat(self.bin_path)
        except OSError as e:
            raise InputError(f"{quote_name(self.bin_path)}: {e.strerror} (the token data of {quote_name(self.idx_path)})") from None
        if not os.path.isfile(self.bin_path):
            raise InputError(f"{quote_name(self.bin_path)}: not a regular file (the token data of {quote_name(self.idx_path)})")
        return st.st_size

    def _array(self, dtype: str, offset: int, count: int) -> np.ndarray:
        """``count`` values of ``dtype`` at byte ``offset`` of the index, read."""
        out = np.empty(count, dtype)
        if count:
            with local_reader(self.idx_path) as read:
                if fill(read, offset, out.view(np.uint8).data) < out.nbytes:  # cut shorter since it was checked
                    raise changed(quote_name(self.idx_path), "now shorter than its header says")
        return out

    def _check(self) -> None:
        """Lengths not negative, each sequence's pointer at the previous one's end and within the ``.bin``,
        the ``.bin`` exactly that long, and document indices rising from 0 to the sequence count."""
        end = 0
        for lo in range(0, self.sequences, WINDOW):
            hi = min(self.sequences, lo + WINDOW)
            end = check_sequences(self, lo, self.lengths(lo, hi), self.pointers(lo, hi), end)
        check_end(self, end)
        last = 0
        for lo in range(0, self.count + 1, WINDOW):
            last = check_documents(self.idx_path, lo, self.documents(lo, min(self.count + 1, lo + WINDOW)), last)
        check_last(self.idx_path, last, self.sequences)

    def disk_size(self) -> int:
        """Bytes of both files."""
        return self.bin_size + os.path.getsize(self.idx_path)

    def _byte_at(self, sequences: np.ndarray) -> np.ndarray:
        """Where the tokens of each of ``sequences`` (rising sequence numbers, as document index entries)
        start in the ``.bin`` (the sequence count: its end). Pointers are read at most ``WINDOW`` at a
        time, each read starting at the first number not yet placed, so long documents' other
        sequences are mostly skipped, not read."""
        out = np.full(len(sequences), self.bin_size, np.int64)
        inside = int(np.searchsorted(sequences, self.sequences))
        i = 0
        while i < inside:
            lo = int(sequences[i])
            j = max(i + 1, int(np.searchsorted(sequences[:inside], lo + WINDOW)))
            at = sequences[i:j] - lo
            out[i:j] = self.pointers(lo, lo + int(at.max()) + 1)[at]
            i = j
        return out

    def _windows(self) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """The index ``WINDOW`` documents at a time: the first document's number, the window's document
        entries (one more: its end), where their tokens start, and their row sizes (``document_sizes``)."""
        for lo in range(0, self.count, WINDOW):
            docs = self.documents(lo, min(self.count, lo + WINDOW) + 1)
            starts = self._byte_at(docs)
            yield lo, docs, starts, document_sizes(docs, starts, self.modes)

    def largest_document(self) -> tuple[int, int]:
        """The first largest document's number and row size (as ``sized_batches`` gives it; (-1, 0) for
        none), from the index alone: a run refuses one it cannot hold before reading any token."""
        best, most = -1, 0
        for lo, _docs, _starts, sizes in self._windows():
            i = int(np.argmax(sizes))
            if int(sizes[i]) > most:
                best, most = lo + i, int(sizes[i])
        return best, most

    def document_at(self, i: int) -> tuple[int, int]:
        """Document ``i``'s bytes of tokens and its sequences, from the index."""
        docs = self.documents(i, i + 2)
        starts = self._byte_at(docs)
        return int(starts[1] - starts[0]), int(docs[1] - docs[0])

    def batches(self, block_bytes: int) -> Iterator[pa.RecordBatch]:
        """The documents in order, as rows in batches of about ``block_bytes``."""
        for batch, _sizes in self.sized_batches(block_bytes, 1 << 62):
            yield batch

    def sized_batches(self, max_bytes: int, max_rows: int) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
        """The documents in order, as rows with their sizes (as ``tables.row_sizes`` counts them, from the
        index), in batches cut where ``tables._rebatch`` would cut them: at ``max_bytes`` of rows or
        ``max_rows``, a larger document alone. Read in those batches, they need no re-cutting (a copy)."""
        try:
            with self._open_bin() as read:
                for _lo, docs, starts, sizes in self._windows():
                    for first, last in batch_cuts(sizes, max_bytes, max_rows):
                        yield self._batch(read, docs[first : last + 1], starts[first : last + 1]), sizes[first:last]
        except (InputError, ValueError, IndexError):
            self.check_unchanged()  # what a file changed meanwhile made of its entries is not the error to say
            raise
        self.check_unchanged()

    def _open_bin(self) -> AbstractContextManager[ReadAt]:
        """The ``.bin`` open, as a function that reads its bytes at an offset into a buffer."""
        return local_reader(self.bin_path)

    def _batch(self, read: ReadAt, docs: np.ndarray, starts: np.ndarray) -> pa.RecordBatch:
        """The rows of the documents between entries ``docs`` (sequence numbers) at bytes ``starts``."""
        lo, hi = int(starts[0]), int(starts[-1])
        data = bytearray(hi - lo)
        got = fill(read, lo, memoryview(data))
        if got < len(data):
            raise changed(quote_name(self.bin_path), f"size {self.bin_size} bytes when checked, at most {lo + got} now")
        s0, s1 = int(docs[0]), int(docs[-1])
        assert self.schema is not None
        return documents_batch(self.schema, data, docs, starts, self.lengths(s0, s1), self.mode_values(s0, s1))


class RemoteIndexedInput(IndexedInput):
    """A dataset whose files are URLs (``s3://bucket/corpus.idx`` and ``.bin``), read through fsspec:
    the ``.idx`` read whole (it is small beside the tokens) and checked as a local one, the ``.bin``
    by ranges as its documents are read, in order."""

    local = False

    def __init__(self, prefix: str) -> None:
        idx_path = prefix + ".idx"
        index = bytearray(remote.regular_file_size(idx_path, idx_path))
        remote.read_exactly(idx_path, 0, memoryview(index))
        self.index = bytes(index)
        super().__init__(prefix)

    def _header(self) -> tuple[bytes, int, int, int, int]:
        return check_header(self.idx_path, self.index[: HEADER.size])

    def _has_modes(self, entries: int) -> bool:
        return has_modes(self.idx_path, len(self.index), self.sequences, entries)

    def _bin_size(self) -> int:
        return remote.regular_file_size(self.bin_path, self.bin_path, f" (the token data of {quote_name(self.idx_path)})")

    def _array(self, dtype: str, offset: int, count: int) -> np.ndarray:
        return np.frombuffer(self.index, dtype, count, offset)

    def disk_size(self) -> int:
        """Bytes of both files."""
        return self.bin_size + len(self.index)

    @contextmanager
    def _open_bin(self) -> Iterator[ReadAt]:
        """The ``.bin`` open through fsspec (read ahead, as its documents are read in order)."""
        fs, path = remote.filesystem(self.bin_path)

        def read(at: int, view: memoryview) -> int:
            try:
                f.seek(at)
                return int(f.readinto(view))
            except OSError as e:
                raise InputError(f"{quote_name(self.bin_path)}: read error: {e.strerror or e}") from None

        try:
            f = fs.open(path, "rb", cache_type="readahead")
        except OSError as e:
            raise InputError(f"{quote_name(self.bin_path)}: {e.strerror or e}") from None
        try:
            yield read
        finally:
            f.close()


def document_fingerprint(rows: pa.Table | pa.RecordBatch, mult: np.ndarray | None = None) -> Fingerprint:
    """Documents counted (each ``mult`` times, if given), their tokens' bytes, and the wrapping sum of
    their row hashes (tokens, sequence lengths, modes): what ``--verify``, manifests and
    ``--check-permutation`` compare, so a document's sequence structure counts as well as its tokens."""
    batches = rows.to_batches() if isinstance(rows, pa.Table) else [rows]
    hashes = np.concatenate([np.empty(0, np.uint64), *(row_hashes(b) for b in batches)])
    nbytes = np.concatenate([np.empty(0, np.int64), *(np.diff(array_block(b.column(0))[1]) for b in batches)])
    weights = np.ones(len(hashes), np.int64) if mult is None else mult.astype(np.int64)
    with np.errstate(over="ignore"):
        digest = int(np.sum(hashes * weights.astype(np.uint64), dtype=np.uint64))
    return Fingerprint(int(weights.sum()), int(np.dot(nbytes, weights)), digest)


def dataset_fingerprint(prefix: str, memory: int) -> Fingerprint:
    """The ``document_fingerprint`` of every document of the dataset at ``prefix`` (checked as a run
    checks its inputs), read in batches of a quarter of ``memory``, at most ``CHECK_BATCH``."""
    total = Fingerprint()
    for batch, _sizes in IndexedInput(prefix).sized_batches(max(1 << 20, min(CHECK_BATCH, memory // 4)), 1 << 62):
        total += document_fingerprint(batch)
    return total
