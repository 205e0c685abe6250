"""Reading WebDataset tar shards as samples: each sample is the raw tar blocks (headers, extension
headers and padded data) of consecutive members sharing a key, copied byte for byte.

The key is WebDataset's: a member's path up to the first dot of its base name (``a/000123.jpg``
and ``a/000123.seg.png`` are one sample, ``b/000123.jpg`` another). Consecutive members with one
key are one sample; a sample may not continue from one tar into the next (an error naming both).
Directory entries are skipped, as WebDataset skips them, and so is a pax global header holding
only a ``comment`` (``git archive`` writes one). Everything WebDataset would drop, merge or fail
on and that would be lost here is refused instead, one line each: links and other special
members, sparse members, members with no key or named as metadata (``__x__``), a suffix twice in
one sample, a key used by two samples anywhere in the inputs (two samples with one key that the
shuffle puts side by side are read back as one), and other pax global headers (their settings
apply to every later member, which a shuffle reorders). The members themselves are read, and their
headers checked, by ``tar_members``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np

from ..core import plan
from ..core.fingerprint import Fingerprint, fingerprint
from ..errors import InputError, UsageError, option
from ..progress import Progress
from ..quoting import quote_name
from ..storage.expansion import DecodedSizes
from ..storage.sources import FileSource, Source, changed, input_sizes
from .tar_keys import KeyLedger, given_twice, shown
from .tar_members import BLOCK, _Members, _padded, looks_like_tar

if TYPE_CHECKING:
    from .registry import Operands


def sample_key(name: bytes) -> tuple[bytes, bytes] | None:
    """WebDataset's (key, suffix) of a member path: the path up to its base name's first dot, and
    the rest, lower-cased; None when the base name has no dot or starts with one."""
    slash = name.rfind(b"/") + 1
    dot = name.find(b".", slash)
    if dot <= slash:
        return None
    suffix = name[dot + 1 :]
    if suffix.isascii():
        return name[:dot], suffix.lower()
    # As WebDataset lower-cases it: as text (tarfile's UTF-8 names), so JPÉ is jpé.
    return name[:dot], suffix.decode("utf-8", "surrogateescape").lower().encode("utf-8", "surrogateescape")


#: Suffixes naming the fields WebDataset puts in every sample itself (lower case, as suffixes are compared).
SAMPLE_FIELDS = frozenset({b"__key__", b"__url__"})


def is_metadata(name: bytes) -> bool:
    """Whether WebDataset skips a member as metadata: its first path part starts and ends with ``__``."""
    first = name.split(b"/", 1)[0]
    return len(first) >= 4 and first.startswith(b"__") and first.endswith(b"__")


def as_source(item: str | Source) -> Source:
    """An input as a source: a local path as a ``FileSource``; a source (a URL's) as it is."""
    return FileSource(item) if isinstance(item, str) else item


class SampleReader(DecodedSizes):
    """Reads tar inputs (local paths, or sources such as URLs read through fsspec) into blocks of
    whole samples: ``(bytes, offsets, final)``, the samples of a block being
    ``bytes[offsets[i]:offsets[i+1]]``. A sample longer than the block's capacity is refused
    (naming its file and member): pass 2 must hold a bucket with it in memory."""

    def __init__(
        self, inputs: list[str | Source], progress: Progress, key_hash: Callable[[bytes], int] = hash,
        groups: Sequence[int] | None = None,
    ) -> None:
        self.sources = [as_source(item) for item in inputs]
        #: Each input's weighted source, whose files' compression ratio is sampled together (None: one group).
        self.groups = groups
        self.paths = [source.name for source in self.sources]
        #: How sample keys are hashed (``tar_keys.stable_hash`` where another process compares them).
        self.key_hash = key_hash
        #: The keys of every sample read (``blocks`` fills it in), as hashes.
        self.keys = KeyLedger(self.paths, self._locate, key_hash)
        #: Each input's first and last sample key (None: it has no sample), for checks across readers.
        self.edges: list[tuple[bytes | None, bytes | None]] = []
        self.progress = progress
        #: Each input's samples and their bytes as read (filled in by ``blocks``), for a manifest.
        self.per_input: list[list[int]] = []
        #: The input (its index) of each sample of the block last handed out, for weighted sources.
        self.block_files = np.zeros(0, np.int64)

    def total_size(self) -> int | None:
        """The inputs' bytes as read, when every one is a plain (uncompressed) file or object."""
        total = 0
        for size in input_sizes(self.sources):
            if size is None:
                return None
            total += size
        return total

    def estimate_total(self) -> int | None:
        """The inputs' bytes once decompressed (their ``decoded_sizes``; ``total_size`` when every one is
        plain), None if one's is unknown (a compressed URL): what plans the buckets and temporary space."""
        planned = self.decoded_sizes()
        return None if None in planned else sum(cast(list[int], planned))

    def _locate(self, name: str, want: int) -> tuple[str, bytes, bytes]:
        """``locate_sample`` of the input called ``name``."""
        return locate_sample(self.sources[self.paths.index(name)], want)

    def blocks(self, capacity: int, first: int | None = None) -> Generator[tuple[np.ndarray, np.ndarray, bool], None, None]:
        """The inputs' samples in blocks of at most ``capacity`` bytes, reusing one buffer: a block
        is valid until the next is asked for. ``first``: the first block ends once it holds that
        many bytes (``--dry-run`` reads no more), unless it is the last."""
        buf = np.empty(capacity, np.uint8)
        ends: list[int] = []  # the ends of the whole samples in buf
        filled = 0  # bytes in buf: whole samples, then the sample being read
        last: tuple[str, bytes] | None = None  # the previous input's last sample: its file and key
        previous: Source | None = None  # the previous input
        keys = self.keys = KeyLedger(self.paths, self._locate, self.key_hash)
        self.per_input = []
        self.edges = []
        files: list[int] = []  # the input of each sample ended in buf
        for index, source in enumerate(self.sources):
            path = source.name
            size = source.size()
            stream = source.open()
            keys.start_file()
            counts = [0, 0]  # this input's samples and their bytes
            self.per_input.append(counts)
            try:
                members = _Members(stream, path, size)
                key: bytes | None = None  # the sample being read
                opening: bytes | None = None  # this input's first sample's key
                suffixes: set[bytes] = set()
                reported = 0  # bytes of this input the progress has been told of
                for raw, name, size in members:
                    parsed = sample_key(name)
                    if parsed is None or is_metadata(name):
                        base = name.rsplit(b"/", 1)[-1]
                        why = (
                            "is named as WebDataset metadata" if parsed is not None
                            else "has no name" if not name
                            else "has no key (its base name starts with a dot)" if base.startswith(b".")
                            else "has no key (its base name has no dot)"
                        )
                        member = f"member {shown(name)}" if name else "a member"
                        raise InputError(f"{path}: {member} {why}, so belongs to no sample")
                    this, suffix = parsed
                    if suffix in SAMPLE_FIELDS:
                        raise InputError(
                            f"{path}: member {shown(name)} has suffix '{shown(suffix)}', a field WebDataset gives "
                            "every sample itself (it fails on the duplicate)"
                        )
                    if this != key:
                        counts[0] += 1
                        if key is None:
                            opening = this
                            if last is not None:
                                refuse_continued(path, this, last, previous is not None and _same_file(source, previous))
                        if key is not None:
                            ends.append(filled)
                            files.append(index)
                        key, suffixes = this, set()
                        keys.add(this)
                    elif suffix in suffixes:
                        raise InputError(f"{path}: member {shown(name)} repeats suffix '{shown(suffix)}' in sample {shown(key)}")
                    suffixes.add(suffix)
                    need = len(raw) + _padded(size)
                    start = ends[-1] if ends else 0
                    if first is not None and ends and ends[-1] >= first:
                        self.block_files = np.array(files, np.int64)
                        yield buf[: ends[-1]], np.array([0, *ends], np.int64), False
                        return
                    if filled + need > capacity:
                        if filled - start + need > capacity:
                            # Past what any -S could hold here, the header is corrupt, not the limit too low (a
                            # compressed tar's size is unknown, so its claims are not checked against it).
                            remedy = (
                                "a corrupt header?" if 2 * (filled - start + need) > plan.physical_memory()
                                else f"raise {option('memory')}"
                            )
                            raise InputError(
                                f"{path}: sample {shown(this)} reaches {filled - start + need} bytes at member {shown(name)}, "
                                f"more than the {plan.format_size(capacity)} a sample may take at this memory limit; {remedy}"
                            )
                        self.block_files = np.array(files, np.int64)
                        yield buf[: ends[-1]], np.array([0, *ends], np.int64), False
                        buf[: filled - start] = buf[start:filled]
                        filled -= start
                        ends, files = [], []
                    buf[filled : filled + len(raw)] = np.frombuffer(raw, np.uint8)
                    filled += len(raw)
                    members.read_data(buf[filled : filled + _padded(size)].data)
                    filled += _padded(size)
                    counts[1] += need
                    self.progress.update(need)
                    reported += need
                self.progress.update(members.offset - reported)  # skipped members, end blocks
                self.edges.append((opening, key))
                if key is not None:
                    ends.append(filled)
                    files.append(index)
                    last = (path, key)
                    previous = source
                else:
                    last = None
                if isinstance(source, FileSource):
                    source.check_unchanged()
            finally:
                stream.close()
            keys.check_file()
        keys.check_all()
        self.block_files = np.array(files, np.int64)
        yield buf[:filled], np.array([0, *ends], np.int64), True


def _same_file(one: Source, other: Source) -> bool:
    """Whether two inputs are one local file (by any names)."""
    if not (isinstance(one, FileSource) and isinstance(other, FileSource)):
        return False
    try:
        return os.path.samefile(one.path, other.path)
    except (OSError, ValueError):
        return False


def refuse_continued(path: str, first: bytes, last: tuple[str, bytes], again: bool | None = None) -> None:
    """Refuse tar ``path`` whose first sample's key is ``first`` when the previous input's last
    sample (``last``: its file and key) has that key: one sample would span two tars, or the tar
    (``again``: known to be the previous file; else told by the names) is given twice."""
    if last[1] != first:
        return
    if again is None:
        try:
            again = os.path.samefile(path, last[0])
        except (OSError, ValueError):
            again = False  # (a URL)
    if again:  # a tar of one sample given twice: said as of a longer one
        raise InputError(given_twice(path, first))
    raise InputError(f"{path}: sample {shown(first)} continues from the end of {last[0]}; a sample must be within one tar")


def locate_sample(source: Source, want: int) -> tuple[str, bytes, bytes]:
    """Sample ``want`` of tar ``source``: its name, the sample's key and its first member, read again
    (only when a key repeats, to word the refusal and rule out a hash collision)."""
    path = source.name
    stream = source.open()
    try:
        members = _Members(stream, path)
        n, key = -1, None
        for _raw, name, _size in members:
            parsed = sample_key(name)
            this = name if parsed is None else parsed[0]  # the first read refused members without a key
            if this != key:
                n, key = n + 1, this
                if n == want:
                    return path, this, name
            members.skip_data()
    finally:
        stream.close()
    raise changed(path, f"sample {want + 1} is gone")


def is_tar_path(path: str) -> bool:
    """Whether a local regular file holds a tar: named ``.tar`` (``.tar.gz``, ``.tar.zst``... too),
    or, if its name names no other format, starting (once decompressed) with a ustar header."""
    from .detect import data_kind
    from .registry import WEBDATASET

    if path == "-":
        return False  # standard input, not a file named "-": its first block must not be read here
    named = data_kind(os.path.basename(path))
    if named is not None:
        return named == WEBDATASET
    if not os.path.isfile(path):
        return False
    try:
        stream = FileSource(path).open()
        try:
            head = stream.read(BLOCK)
        finally:
            stream.close()
    except (InputError, OSError):
        return False  # the run's read says what is wrong with it
    return looks_like_tar(head)


def tar_inputs(operands: Operands) -> bool:
    """Whether a request shuffles tar samples: every input a local tar file or a URL named as a tar
    (``.tar``, ``.tar.gz``, ``.tgz``...; a query string aside: URLs are told by their names, not read);
    refused when some are and others are not, or a tar output is asked of other inputs."""
    from .detect import data_kind
    from .registry import WEBDATASET

    paths = operands.paths
    remote_tars = [u for u in operands.urls if data_kind(u.split("?", 1)[0].rsplit("/", 1)[-1]) == WEBDATASET]
    tars = [p for p in paths if is_tar_path(p)] + remote_tars
    if tars and len(tars) == operands.count:
        return True
    if tars:
        other = next((p for p in paths if p not in tars), None)
        if other is None:
            raise UsageError(
                f"{quote_name(tars[0])} is a tar archive and another input is not (a URL is read as a tar when its name is one: "
                ".tar, .tar.gz, .tgz...): shuffle WebDataset tars in a run of their own"
            )
        try:
            os.stat(other)
        except OSError as e:  # a mistyped name is not another kind of input
            raise InputError(f"{quote_name(other)}: {e.strerror}") from None
        raise UsageError(f"{quote_name(tars[0])} is a tar archive and {quote_name(other)} is not: shuffle WebDataset tars in a run of their own")
    target = operands.output
    if target not in (None, "-") and data_kind(os.path.basename(target or "")) == WEBDATASET:
        if "-" in paths:
            raise UsageError("standard input cannot be read as tar shards: name the tar file(s) (tars are read from files)")
        raise UsageError(f"{quote_name(target)}: tar output needs tar inputs (WebDataset shards)")
    return False


def tar_fingerprint(inputs: list[str], memory: int) -> Fingerprint:
    """The fingerprint of the WebDataset samples of the tars ``inputs`` (each sample's raw tar
    blocks, as a run copies them and ``--verify`` hashes them), each tar read on its own in blocks
    of at most ``memory`` bytes (a longer sample is refused, naming ``-S``)."""
    total = Fingerprint()
    for path in inputs:
        for block, offsets, _final in SampleReader([path], Progress()).blocks(memory):
            total += fingerprint(block, offsets)
    return total
