"""One key per sample across a run's tar inputs: WebDataset reads two samples with one key that
end up side by side as one, and a key whose members are not consecutive as two. Keys are kept as
64-bit hashes; the rare repeated hash is confirmed by reading the two samples again."""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Callable

import numpy as np

from ..errors import InputError

#: Sample-key hashes gathered into one array at a time (the rest of a file's are in a list).
KEYS_CHUNK = 1 << 16


def stable_hash(key: bytes) -> int:
    """A key's 64-bit hash that every process computes alike (Python's ``hash`` of bytes is salted
    per process): for keys hashed on Dask workers and compared on the client."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little", signed=True)


def shown(name: bytes) -> str:
    """A member name for a one-line message: invalid UTF-8 as ``\\xNN`` and every non-printable
    character (newline, escape...) as Python writes it in a literal, so no name can start a second
    line or send the terminal an escape sequence."""
    text = name.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class KeyLedger:
    """Every sample key of a run's inputs, kept as a 64-bit hash (8 bytes a sample; 16 while a
    check sorts them): a key used by two samples is refused once its file, or the last file, has
    been read, naming both places. WebDataset reads two samples with one key that end up side by
    side as one sample (or fails on a suffix they share), and a key whose members are not
    consecutive in a tar (``tar -cf x.tar *.jpg *.cls``) as two samples.

    Hashes that match are confirmed by reading the two samples' files again for their keys, so a
    collision of two different keys (about n²/2⁶⁵ for n samples) costs a re-read, never a refusal."""

    def __init__(
        self, paths: list[str], locate: Callable[[str, int], tuple[str, bytes, bytes]], hasher: Callable[[bytes], int] = hash,
    ) -> None:
        self.paths = paths
        #: Reads a file again for its n-th sample's (file, key, first member).
        self.locate = locate
        #: A key's 64-bit hash: Python's within one process, ``stable_hash`` across processes.
        self.hasher = hasher
        self.chunks: list[np.ndarray] = []  # int64 hashes, in reading order
        self.pending: list[int] = []  # the latest hashes, not yet in an array
        self.count = 0  # samples so far
        self.starts: list[int] = []  # each file's first sample number
        self.first_chunk: list[int] = []  # each file's first chunk (a file starts a new one)

    def start_file(self) -> None:
        """The next samples are the next file's."""
        self._flush()
        self.starts.append(self.count)
        self.first_chunk.append(len(self.chunks))

    def add(self, key: bytes) -> None:
        """Record the key of the next sample."""
        self.pending.append(self.hasher(key))
        self.count += 1
        if len(self.pending) == KEYS_CHUNK:
            self._flush()

    def add_file(self, hashes: np.ndarray) -> None:
        """Record the key hashes (int64, in reading order) of the next file's samples, hashed elsewhere
        by ``hasher`` (a Dask task's reader: see ``hashes``)."""
        self.start_file()
        if len(hashes):
            self.chunks.append(hashes)
        self.count += len(hashes)

    def hashes(self) -> np.ndarray:
        """Every key hash recorded so far, in reading order (int64)."""
        self._flush()
        return np.concatenate([np.empty(0, np.int64), *self.chunks])

    def _flush(self) -> None:
        """Move the pending hashes into an array."""
        if self.pending:
            self.chunks.append(np.array(self.pending, np.int64))
            self.pending = []

    def check_file(self) -> None:
        """Refuse a key used by two samples of the file just read (its members not consecutive)."""
        self._flush()
        self._check(self.chunks[self.first_chunk[-1] :], self.starts[-1])

    def check_all(self) -> None:
        """Refuse a key used by samples of two files (once each file has passed ``check_file``)."""
        self._flush()
        if len(self.paths) > 1:
            self._check(self.chunks, 0)

    def _check(self, chunks: list[np.ndarray], base: int) -> None:
        """Refuse the first sample (in reading order) of ``chunks`` (sample ``base`` on) whose key an earlier one has."""
        if not chunks:
            return
        flat = np.concatenate(chunks)
        flat.sort()
        repeated = np.unique(flat[1:][flat[1:] == flat[:-1]])
        del flat
        if not len(repeated):
            return
        seen: dict[int, list[int]] = {}  # a repeated hash: its samples so far, each of a different key
        places: dict[int, tuple[str, bytes, bytes, int]] = {}

        def place(n: int) -> tuple[str, bytes, bytes, int]:
            """Sample ``n``'s file, key and first member, read once."""
            if n not in places:
                places[n] = self._place(n)
            return places[n]

        number = base
        for chunk in chunks:
            for at in np.flatnonzero(np.isin(chunk, repeated)).tolist():
                earlier = seen.setdefault(int(chunk[at]), [])
                for other in earlier:
                    if place(other)[1] == place(number + at)[1]:
                        raise InputError(_repeat_message(place(other), place(number + at)))
                earlier.append(number + at)
            number += len(chunk)

    def _place(self, number: int) -> tuple[str, bytes, bytes, int]:
        """Sample ``number``'s file, key, first member and input number, read again (only when a key repeats)."""
        f = bisect_right(self.starts, number) - 1
        return (*self.locate(self.paths[f], number - self.starts[f]), f)


def given_twice(path: str, key: bytes) -> str:
    """The refusal of tar ``path`` read twice, sample ``key`` found in both readings."""
    return (
        f"{path}: given twice (sample {shown(key)} is in both); each tar may be read once: WebDataset merges "
        "samples of one key that the shuffle puts side by side"
    )


def _repeat_message(one: tuple[str, bytes, bytes, int], two: tuple[str, bytes, bytes, int]) -> str:
    """The refusal of two samples with one key: out of order in one tar, one tar given twice, or in two tars."""
    (path, key, first, input_one), (other, _key, second, input_two) = one, two
    if path == other and input_one != input_two:
        return given_twice(path, key)
    if path == other:
        return (
            f"{path}: members of sample {shown(key)} are not consecutive in {path} ({shown(first)}, then other samples' "
            f"members, then {shown(second)}); WebDataset reads a sample's members only together: recreate the tar "
            "with its members in name order (tar --sort=name)"
        )
    return (
        f"{other}: sample {shown(key)} (member {shown(second)}) is also in {path} (member {shown(first)}); "
        "WebDataset merges samples of one key that the shuffle puts side by side: keys must be unique across the inputs"
    )
