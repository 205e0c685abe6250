"""``--manifest``: a JSON record of a run (command, version, seed, inputs as read, and every output
file with its records, bytes and fingerprint), committed with the outputs, and read back as
untrusted input (``load_manifest``) for ``--check-manifest`` (``formats.manifest_check``)."""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.fingerprint import Fingerprint
from ..errors import InputError, OutputError
from ..quoting import quote_name
from .safefs import create_exclusive, sync_file, take_attributes, write_all
from .threads import deferred_signals

if TYPE_CHECKING:
    from .sinks import Sink

#: The format number every manifest carries; a reader refuses another.
MANIFEST_VERSION = 1

#: A manifest larger than this is not one bigshuf wrote (about 400 bytes a file, millions of files).
MAX_MANIFEST = 1 << 30

#: Bytes read at once from an output file being checked.
CHECK_BLOCK = 32 << 20


@dataclass
class OutputFile:
    """One file of the output as written: its split (None without ``--split``), its path as named,
    the records and record bytes routed to it, and their fingerprint (with a manifest or ``--verify``)."""

    split: str | None
    path: str
    records: int = 0
    bytes: int = 0
    fingerprint: Fingerprint = field(default_factory=Fingerprint)


def fingerprint_entry(fp: Fingerprint) -> dict[str, Any]:
    """A fingerprint as the manifest holds it (the digest in hex: JSON numbers lose 64-bit precision)."""
    return {"records": fp.records, "bytes": fp.bytes, "digest": f"{fp.digest:016x}"}


def input_entries(
    names: Sequence[str], counts: Sequence[tuple[int, int | None]] | None, files: Sequence[bool],
    read_as: Sequence[tuple[int, int] | None] | None = None,
) -> list[dict[str, Any]]:
    """Each input's manifest entry: its path, size and mtime (local files), records and bytes as read.
    Size and mtime are the file's as the run read it (``read_as``: size and mtime in ns, where
    known), not as it is by the end: a file appended to after it was read listed the new size."""
    entries = []
    for i, (name, is_file) in enumerate(zip(names, files)):
        entry: dict[str, Any] = {"path": name, "size": None, "mtime": None}
        if is_file and name != "-":
            seen = None if read_as is None else read_as[i]
            if seen is None:
                try:
                    st = os.stat(name)
                    seen = st.st_size, st.st_mtime_ns
                except OSError:
                    pass
            if seen is not None:
                entry.update(path=os.path.abspath(name), size=seen[0], mtime=seen[1] / 1e9)
        records, nbytes = counts[i] if counts is not None else (None, None)
        entry.update(records=records, bytes=nbytes)
        entries.append(entry)
    return entries


def run_entries(
    request: Any, inputs: list[dict[str, Any]], records_format: dict[str, Any], head_count: int | None,
    sources: tuple[Any, ...] = (), duplicates: int = 0, entropy: int | None = None,
) -> dict[str, Any]:
    """The run-wide part of a manifest: version, command line, seed and the ``entropy`` every draw
    came from (given or fresh: ``--seed`` with it reruns the run), settings that shape the output,
    inputs, the copies ``--unique`` dropped, and with weighted sources each source's files, records
    read, copies dropped (``--unique``; the rate applies to the rest), rate and records in the mix.
    ``head_count`` is ``-n``'s count as the run resolved it (``-n 10%`` of the records read)."""
    from .. import __version__

    read = [e["records"] for e in inputs]
    records_read = None if any(r is None for r in read) else sum(read)
    files = dict(request.sources)
    share = request.head_share
    return {
        "version": __version__,
        "command": list(sys.argv),
        "seed": request.seed,
        "random_source": None if request.random_source is None else os.path.abspath(request.random_source),
        # The root of every draw, the seed's or the OS's: --seed with it reruns the run byte for byte.
        "entropy": None if entropy is None else str(entropy),
        "head_count": head_count,
        "head_share": None if share is None else f"{float(share * 100):g}%",
        "repeat": request.repeat,
        "split": request.split,
        "format": records_format,
        "inputs": inputs,
        "records_read": records_read,
        "unique": request.unique,
        "duplicates": duplicates if request.unique else None,
        # What -n samples from: the records read (less the copies --unique dropped), or with
        # weighted sources their copies.
        "records_shuffled": (
            sum(s.written for s in sources) if sources else None if records_read is None else records_read - duplicates
        ),
        "sources": [
            {"name": s.name, "files": [os.path.abspath(f) for f in files.get(s.name, ())], "read": s.read,
             "dropped": s.dropped if request.unique else None, "rate": s.rate, "written": s.written}
            for s in sources
        ] or None,
    }


def strata_entries(splits: Sequence[str], sources: Sequence[str], table: Sequence[Sequence[int]]) -> list[dict[str, Any]]:
    """``--stratify``: each split's records, and of them each source's (``table``: per split, per source)."""
    return [
        {"split": name, "records": sum(row), "sources": dict(zip(sources, row))}
        for name, row in zip(splits, table)
    ]


def build_manifest(
    info: dict[str, Any], outputs: list[OutputFile], sinks: Sequence[Sink | None], sizes: dict[str, int], base: str, kind: str
) -> dict[str, Any]:
    """The manifest document: ``info`` (``run_entries``) and every output file, its path relative to
    ``base`` (the manifest's directory), records, bytes, size on disk (``sizes``) and fingerprint;
    a file's final path is its sink's, or (no sink: the Dask engine's) the path it was named by."""
    files = []
    for out, sink in zip(outputs, sinks):
        final = getattr(sink, "path", out.path)
        files.append({
            "split": out.split,
            "path": os.path.relpath(final, base),
            "records": out.records,
            "bytes": out.fingerprint.bytes,
            "file_bytes": sizes.get(final),
            "fingerprint": fingerprint_entry(out.fingerprint),
        })
    return {
        "bigshuf_manifest": MANIFEST_VERSION,
        **info,
        "kind": kind,
        "records_written": sum(out.records for out in outputs),
        "outputs": files,
    }


def write_manifest(temp: str, final: str, document: dict[str, Any], sync: bool, shown: str) -> None:
    """Write ``document`` as JSON to the new file ``temp`` (created exclusively, private until
    whole, then given the mode, group and owner of the manifest ``final`` it replaces, or as the
    umask allows; synced if ``sync``), to be committed with the outputs; ``shown`` names the
    manifest in an error."""
    data = (json.dumps(document, indent=1) + "\n").encode()
    try:
        fd = create_exclusive(temp, 0o600, os.O_WRONLY)
        try:
            write_all(fd, data)
            take_attributes(fd, final)
            if sync:
                sync_file(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise OutputError(f"{shown}: {e.strerror}") from None


def is_count(value: object) -> bool:
    """A non-negative JSON integer (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def load_manifest(path: str, check_format: Callable[[str, Any], str | None]) -> dict[str, Any]:
    """The manifest at ``path``, every field the check uses validated; a malformed one is an InputError.
    ``check_format(kind, format)`` says what is wrong with the record format entry (None: nothing):
    the formats know their own entries, and this module imports no format."""
    fd = -1
    try:
        with deferred_signals():  # no handler runs before the file object owns the descriptor
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
            st = os.fstat(fd)  # before wrapping it: a directory cannot become a Python file object
            if not stat.S_ISREG(st.st_mode):
                raise InputError(f"{quote_name(path)}: {os.strerror(errno.EISDIR) if stat.S_ISDIR(st.st_mode) else 'not a regular file'}")
            opened, fd = os.fdopen(fd, "rb"), -1
    except OSError as e:
        raise InputError(f"{quote_name(path)}: {e.strerror}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    with opened as f:
        if st.st_size > MAX_MANIFEST:
            raise InputError(f"{quote_name(path)}: too large to be a bigshuf manifest")
        try:
            data = json.loads(f.read(MAX_MANIFEST + 1))
        except OSError as e:
            raise InputError(f"{quote_name(path)}: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise InputError(f"{quote_name(path)}: not a bigshuf manifest: {e}") from None
        except UnicodeDecodeError:
            raise InputError(f"{quote_name(path)}: not a bigshuf manifest: not UTF-8 text") from None
        except (ValueError, RecursionError):  # a number of thousands of digits, arrays nested thousands deep
            raise InputError(f"{quote_name(path)}: not a bigshuf manifest: a value too large or nested too deeply") from None

    def bad(what: str) -> InputError:
        return InputError(f"{quote_name(path)}: not a valid bigshuf manifest: {what}")

    if not isinstance(data, dict) or not is_count(data.get("bigshuf_manifest")) or data["bigshuf_manifest"] != MANIFEST_VERSION:
        raise bad(f"no 'bigshuf_manifest': {MANIFEST_VERSION}")
    kind = data.get("kind")
    problem = check_format(kind if isinstance(kind, str) else "", data.get("format"))
    if problem is not None:
        raise bad(problem)
    outputs = data.get("outputs")
    if not isinstance(outputs, list):
        raise bad("'outputs' is not a list")
    for i, out in enumerate(outputs):
        fp = out.get("fingerprint") if isinstance(out, dict) else None
        if not (
            isinstance(out, dict) and isinstance(out.get("path"), str) and out["path"] and "\0" not in out["path"]
            and not os.path.isabs(out["path"])
            and is_count(out.get("records")) and is_count(out.get("bytes"))
            and isinstance(fp, dict) and is_count(fp.get("records")) and is_count(fp.get("bytes"))
            and isinstance(fp.get("digest"), str) and len(fp["digest"]) == 16
            and all(c in "0123456789abcdef" for c in fp["digest"])
            and (out.get("file_bytes") is None or is_count(out.get("file_bytes")))
        ):
            raise bad(f"output {i} needs path (relative to the manifest), records, bytes and fingerprint {{records, bytes, digest}}")
    for key in ("records_written", "records_read", "records_shuffled", "duplicates", "head_count", "seed"):
        if data.get(key) is not None and not is_count(data.get(key)):
            raise bad(f"'{key}' is not a count")
    for key, kind, words in (("repeat", bool, "true or false"), ("unique", bool, "true or false"), ("sources", list, "a list"),
                             ("split", str, "text"), ("head_share", str, "text"), ("version", str, "text")):
        if data.get(key) is not None and not isinstance(data[key], kind):  # fields a reader of the manifest takes as written
            raise bad(f"'{key}' is not {words}")
    if not is_count(data.get("records_written")):
        raise bad("'records_written' is not a count")
    return data


def expected_written(data: dict[str, Any]) -> int | None:
    """How many records the run should have written, from the records it shuffled (those read, or
    with weighted sources their copies), ``-n`` and ``-r``."""
    head = data.get("head_count")
    shuffled = data.get("records_shuffled", data.get("records_read"))
    if head is not None and not is_count(head):
        return None
    if data.get("repeat") is True:
        return None if head is None else int(head)
    if shuffled is None:
        return None
    return int(shuffled) if head is None else min(int(shuffled), int(head))
