"""``--resume``'s checkpoint file, ``state.json``: written durably, read back as untrusted input,
and validated field by field before a resumed run counts on it.

A checkpoint holds the job's key (its inputs' paths, output, seed and options), the inputs'
identities, and where pass 1, pass 2 and the output stood, with each bucket's sizes, records and
CRC-32s. Every field is checked for its type and range, against the others and against the job as
it is now; a mismatch is a one-line refusal naming the directory to remove.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
from dataclasses import dataclass
from typing import Any

from ..errors import InputError, TempSpaceError
from .fingerprint import SCHEME
from ..quoting import quote_name
from ..storage.safefs import create_exclusive, open_nofollow, sync_directory, sync_file, write_all

#: Version of the checkpoint's layout and of the record hash behind its fingerprints; a
#: checkpoint of another is refused (its fingerprints could not be added to this run's).
FORMAT = f"1/hash{SCHEME}"

#: Largest checkpoint file read back (a real one holds a few lists of at most 4,096 numbers).
MAX_STATE_BYTES = 16 << 20

_MAX_INT = 2**63 - 1

#: Tests only: "1" stops the run (SIGSTOP) after each ``state.json`` it saves, so that a test can
#: read the checkpoint and kill the run at exactly that state, however fast the run's storage.
TEST_STOP_VARIABLE = "BIGSHUF_TEST_STOP_AT_CHECKPOINTS"


def advice(directory: str) -> str:
    """The way out of a checkpoint that cannot be used, for the end of a refusal."""
    return f"cannot resume; remove {quote_name(directory)} to start afresh"


def refusal(directory: str, problem: str) -> TempSpaceError:
    """The error for a checkpoint in ``directory`` that cannot be trusted."""
    return TempSpaceError(f"{quote_name(directory)}: checkpoint {problem}; {advice(directory)}")


def open_failure(e: OSError) -> str:
    """An OSError in words, a symlink met by ``O_NOFOLLOW`` named as such."""
    return "it is a symbolic link" if e.errno == errno.ELOOP else str(e.strerror)


#: The checkpoint's file in a resumable run's directory: the run's temporary space removes it last.
STATE_NAME = "state.json"


def load_state(directory: str, name: str = STATE_NAME) -> dict[str, Any] | None:
    """The parsed ``state.json`` (or ``name``) of ``directory`` (opened without following a link), or None if there is none."""
    path = os.path.join(directory, name)
    try:
        fd = open_nofollow(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise refusal(directory, f"{quote_name(path)} cannot be opened ({open_failure(e)})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_STATE_BYTES:  # (a directory, a FIFO: before reading it)
        os.close(fd)
        raise refusal(directory, f"{quote_name(path)} is not a checkpoint file")
    if st.st_uid != os.geteuid():  # as every bucket and log it counts must be this user's
        os.close(fd)
        raise refusal(directory, f"{quote_name(path)} is not a file this user made")
    with open(fd, "rb") as f:
        data = f.read(MAX_STATE_BYTES + 1)
    try:
        state = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise refusal(directory, f"{quote_name(path)} is not valid JSON ({e})") from None
    except RecursionError:  # arrays or objects nested past the parser's depth: no checkpoint of ours
        raise refusal(directory, f"{quote_name(path)} is not a checkpoint file (nested too deeply)") from None
    if not isinstance(state, dict):
        raise refusal(directory, f"{quote_name(path)} is not a JSON object")
    return state


def save_state(directory: str, state: dict[str, Any], name: str = STATE_NAME) -> None:
    """Write ``state.json`` (or ``name``: a format may keep a file of its own beside it) durably: an
    exclusively created temp file, fsync'd, renamed, directory fsync'd."""
    path = os.path.join(directory, name)
    fresh = path + ".new"
    try:
        try:
            os.unlink(fresh)  # left by a run killed mid-save; never followed, only removed
        except FileNotFoundError:
            pass
        fd = create_exclusive(fresh, 0o600, os.O_WRONLY)
        try:
            write_all(fd, json.dumps(state).encode())
            sync_file(fd)
        finally:
            os.close(fd)
        os.replace(fresh, path)
        sync_directory(directory)
    except OSError as e:
        raise TempSpaceError(f"{quote_name(path)}: cannot write the checkpoint: {e.strerror}") from None
    if name == STATE_NAME and os.environ.get(TEST_STOP_VARIABLE) == "1":
        os.kill(os.getpid(), signal.SIGSTOP)


@dataclass(frozen=True)
class Job:
    """What a checkpoint must match: the job's key, its inputs as they are now, and the options
    that shape the checkpoint's fields."""

    key: str
    inputs: list[list[Any]]
    verify: bool
    head_count: int | None
    #: One output file and nothing counted per file (no shards, splits or manifest): ``Output._plain``.
    plain: bool
    compress_temp: bool
    #: The output's records are fingerprinted as written (``--verify``, or a manifest).
    hashed: bool
    #: Weighted sources: the buckets hold copies of the records read (as many bytes or not).
    weighted: bool = False
    #: ``--unique``: every checkpoint holds the dedup pass's hash buckets (``dedup``), and with
    #: weighted sources each bucket's records per source (``sources`` of them).
    unique: bool = False
    sources: int = 0
    #: Each input's records as this run's counting pass saw them (None: it has none), which the
    #: checkpoint's must match: a byte turned into a separator where the content check did not look.
    records: list[int] | None = None
    #: Tar samples: each record is whole blocks of this many bytes (0: not so), and each bucket's
    #: state holds that of the file of its records' lengths beside it (``lengths``, 8 bytes a record).
    block: int = 0
    #: The fingerprints count Megatron documents' token bytes, not the buckets' bytes.
    tokens: bool = False


class _Bad(Exception):
    """A field of the checkpoint that does not hold up (its message says which)."""


def _int(value: Any, what: str, lo: int = 0, hi: int = _MAX_INT) -> int:
    """``value`` if it is an integer (not a bool or float) in ``[lo, hi]``, else ``_Bad`` naming ``what``."""
    if type(value) is not int or not lo <= value <= hi:
        shown = repr(value)
        raise _Bad(f"{what} is {shown if len(shown) <= 40 else shown[:37] + '...'}, not an integer from {lo} to {hi}")
    return value


def _ints(value: Any, what: str, n: int, hi: int = _MAX_INT) -> list[int]:
    """``value`` if it is a list of ``n`` integers in ``[0, hi]``, else ``_Bad``."""
    if not isinstance(value, list) or len(value) != n:
        raise _Bad(f"{what} is not a list of {n} integers")
    return [_int(v, f"{what}[{i}]", 0, hi) for i, v in enumerate(value)]


def _fingerprint(value: Any, what: str) -> list[int]:
    """A fingerprint's ``[records, bytes, digest]``: counts up to 2**63-1, the digest a 64-bit sum."""
    records, nbytes, digest = _ints(value, what, 3, 2**64 - 1)
    return [_int(records, f"{what} records"), _int(nbytes, f"{what} bytes"), digest]


_PASS1 = {
    "format", "job", "inputs", "records", "read_fingerprint", "k", "keep", "blocks_done", "bytes_done", "buckets", "records_read",
}
_PASS1_DONE = _PASS1 | {"pass1_done"}
_PASS2 = _PASS1_DONE | {"buckets_done", "records_out", "output"}
#: ``--unique``'s first checkpoint, once its dedup pass's hash buckets are complete and synced.
_DEDUP = {"format", "job", "inputs", "records", "read_fingerprint", "dedup"}


#: Why a checkpoint whose key is not the job's is refused (its directory is named by the output alone).
OTHER_JOB = (
    "it belongs to a run of this output with other inputs, seed or options (-S, -n, shards, split, manifest, "
    "sources...) or another version of bigshuf"
)


def refuse_other_job(directory: str, key: str) -> None:
    """Refuse, before any input is read, a checkpoint in ``directory`` that another job left (a run
    of the same output with other options): resumed, it would write another output; started
    afresh, it would be lost."""
    state = load_state(directory)
    if state is not None and state.get("job") != key:
        raise refusal(directory, f"{quote_name(os.path.join(directory, STATE_NAME))} does not hold up: {OTHER_JOB}")


def validate_state(state: dict[str, Any], job: Job, directory: str, committed: frozenset[str] = frozenset()) -> None:
    """Refuse a checkpoint any field of which is missing, mistyped, out of range or inconsistent
    with another, with the job or with the inputs as they are now. ``committed``: inputs that are
    the job's own output, already put in place by the interrupted run (changed by it, so not refused)."""
    try:
        _validate(state, job)
    except _Bad as e:
        raise refusal(directory, f"{quote_name(os.path.join(directory, STATE_NAME))} does not hold up: {e}") from None
    for (path, size, mtime, check), (_, size0, mtime0, check0) in zip(job.inputs, state["inputs"]):
        if (size, mtime, check) != (size0, mtime0, check0) and path not in committed:
            what = "size or modification time differ" if (size, mtime) != (size0, mtime0) else "content differs"
            raise InputError(f"{quote_name(path)}: changed since the interrupted run ({what}); {advice(directory)}")
    for (path, *_), now, then in zip(job.inputs, job.records or [], state["records"] or []):
        if now != then:
            raise InputError(
                f"{quote_name(path)}: changed since the interrupted run (it holds {now} records, the interrupted run counted {then}); "
                f"{advice(directory)}"
            )


def _validate(state: dict[str, Any], job: Job) -> None:
    """Raise ``_Bad`` for the first field of ``state`` that does not hold up (see ``validate_state``)."""
    keys = set(state)
    stages = (_DEDUP, _PASS1 | _DEDUP, _PASS1_DONE | _DEDUP, _PASS2 | _DEDUP) if job.unique else (_PASS1, _PASS1_DONE, _PASS2)
    if keys not in stages:
        raise _Bad(f"its fields are {sorted(keys)}")
    if state["format"] != FORMAT:
        raise _Bad("it was written by another version of bigshuf")
    if state["job"] != job.key:
        raise _Bad(OTHER_JOB)
    inputs = state["inputs"]
    if not isinstance(inputs, list) or len(inputs) != len(job.inputs):
        raise _Bad(f"inputs is not a list of {len(job.inputs)} inputs")
    for i, (entry, now) in enumerate(zip(inputs, job.inputs)):
        if not isinstance(entry, list) or len(entry) != 4 or entry[0] != now[0] or not isinstance(entry[3], str):
            raise _Bad(f"inputs[{i}] is not [{now[0]!r}, size, mtime, check]")
        _int(entry[1], f"inputs[{i}] size")
        _int(entry[2], f"inputs[{i}] mtime", -_MAX_INT)
    if job.records is None:
        if state["records"] is not None:
            raise _Bad("records is there, though this run counts no input's records")
    else:
        _ints(state["records"], "records", len(job.records))
    hashed_bytes = _validate_dedup(state["dedup"], job) if job.unique else None
    if keys == _DEDUP:
        if _fingerprint(state["read_fingerprint"], "read_fingerprint") != [0, 0, 0]:
            raise _Bad("read_fingerprint is not [0, 0, 0] before pass 1")
        return
    k = _int(state["k"], "k", 1, 1 << 20)
    keep = _int(state["keep"], "keep", 1, k)
    if job.head_count is None and keep != k:
        raise _Bad(f"keep is {keep} without -n, not k ({k})")
    _int(state["blocks_done"], "blocks_done", 1)
    bytes_done = _int(state["bytes_done"], "bytes_done")
    if hashed_bytes is not None and bytes_done > hashed_bytes:
        raise _Bad(f"bytes_done is {bytes_done}, more than the hash buckets' {hashed_bytes} bytes")
    records_read = state["records_read"]
    if records_read is not None:
        if not isinstance(records_read, list) or len(records_read) > len(job.inputs):
            raise _Bad(f"records_read is not a list of at most {len(job.inputs)} inputs")
        for i, (entry, now) in enumerate(zip(records_read, job.inputs)):
            if not isinstance(entry, list) or len(entry) != 2 or entry[0] != now[0]:
                raise _Bad(f"records_read[{i}] is not [{now[0]!r}, records]")
            _int(entry[1], f"records_read[{i}] records")
    if "pass1_done" in state and state["pass1_done"] is not True:
        raise _Bad("pass1_done is not true")
    sizes, records = _top_buckets(state["buckets"], "buckets", job, k, keep)
    if not job.weighted and (sum(sizes) > bytes_done or (keep == k and sum(sizes) != bytes_done)):
        raise _Bad(f"the buckets hold {sum(sizes)} bytes, bytes_done is {bytes_done}")
    read = _fingerprint(state["read_fingerprint"], "read_fingerprint")
    # What was read, or with weighted sources the copies scattered (--verify takes no -n: nothing
    # dropped); Megatron documents: their token bytes, which the buckets' do not give.
    read_bytes = read[1] if job.tokens else sum(sizes) if job.weighted else bytes_done
    if read != ([sum(records), read_bytes, read[2]] if job.verify else [0, 0, 0]):
        raise _Bad(f"read_fingerprint {read} does not match the buckets")
    if "buckets_done" in state:  # (with --unique, beside the dedup's fields: they were not checked)
        _validate_pass2(state, job, keep, records)


def _top_buckets(buckets: Any, what: str, job: Job, k: int, keep: int) -> tuple[list[int], list[int]]:
    """Sizes and records of ``k`` buckets of the job's records (``_bucket_state``): pass 1's, or the
    dedup pass's; tar samples' in whole blocks, with the files of their lengths beside them
    counting the same samples."""
    if not job.block:
        return _bucket_state(buckets, what, k, keep, job.compress_temp)
    if not isinstance(buckets, dict) or "lengths" not in buckets:
        raise _Bad(f"{what} is not {{sizes, records, crcs, disk, lengths}}")
    samples = {name: value for name, value in buckets.items() if name != "lengths"}
    sizes, records = _bucket_state(samples, what, k, keep, job.compress_temp, block=job.block)
    _, lengths = _bucket_state(buckets["lengths"], f"{what}.lengths", k, keep, job.compress_temp, width=8)
    if lengths != records:
        raise _Bad(f"{what}.lengths do not count the buckets' samples")
    return sizes, records


def _bucket_state(
    buckets: Any, what: str, k: int, keep: int, compress_temp: bool, width: int = 0, block: int = 0,
) -> tuple[list[int], list[int]]:
    """Sizes and records of ``k`` buckets' state ``{sizes, records, crcs, disk}`` (``what``), each
    bucket's fields consistent (none past ``keep``; ``width``: each record's fixed size; ``block``:
    each record whole blocks of that size, at least one; else a line of at least a byte)."""
    if not isinstance(buckets, dict) or set(buckets) != {"sizes", "records", "crcs", "disk"}:
        raise _Bad(f"{what} is not {{sizes, records, crcs, disk}}")
    sizes = _ints(buckets["sizes"], f"{what}.sizes", k)
    records = _ints(buckets["records"], f"{what}.records", k)
    crcs = _ints(buckets["crcs"], f"{what}.crcs", k, 2**32 - 1)
    disk = _ints(buckets["disk"], f"{what}.disk", k)
    for j in range(k):
        empty = sizes[j] == 0
        if (
            (j >= keep and not empty) or (records[j] > sizes[j] if not width else sizes[j] != width * records[j])
            or (block and (sizes[j] % block or sizes[j] < block * records[j]))
            or (records[j] == 0) != empty or (empty and j < keep and crcs[j] != 0) or (disk[j] == 0) != empty
            or (not compress_temp and disk[j] != sizes[j])
        ):
            raise _Bad(f"{what}: bucket {j} has {sizes[j]} bytes, {records[j]} records, {disk[j]} on disk, crc {crcs[j]}")
    return sizes, records


def _validate_dedup(dedup: Any, job: Job) -> int:
    """``--unique``'s hash buckets: their count, each bucket's fields, the file of their hashes (if
    kept; 8 bytes a record) and with weighted sources each bucket's records per source (adding up
    to its records); return the bytes they hold."""
    fields = {"k", "buckets", "hashes", "per_source"}
    if not isinstance(dedup, dict) or set(dedup) != fields:
        raise _Bad(f"dedup is not {{{', '.join(sorted(fields))}}}")
    k = _int(dedup["k"], "dedup.k", 2, 1 << 20)
    sizes, records = _top_buckets(dedup["buckets"], "dedup.buckets", job, k, k)
    if dedup["hashes"] is not None:  # else the records are hashed again as they are read (the output is the same)
        _, hashed = _bucket_state(dedup["hashes"], "dedup.hashes", k, k, job.compress_temp, width=8)
        if hashed != records:
            raise _Bad("dedup.hashes do not count the buckets' records")
    per_source = dedup["per_source"]
    if (per_source is None) != (job.sources == 0):
        raise _Bad(f"dedup.per_source is {'there' if job.sources == 0 else 'missing'} with {job.sources} sources")
    if per_source is not None:
        if not isinstance(per_source, list) or len(per_source) != k:
            raise _Bad(f"dedup.per_source is not a list of {k} lists")
        for j, row in enumerate(per_source):
            if sum(_ints(row, f"dedup.per_source[{j}]", job.sources)) != records[j]:
                raise _Bad(f"dedup.per_source[{j}] adds up to {sum(row)}, not the bucket's {records[j]} records")
    return sum(sizes)


def _validate_pass2(state: dict[str, Any], job: Job, keep: int, records: list[int]) -> None:
    """The pass-2 fields: buckets done, records written and the output files they imply."""
    done = _int(state["buckets_done"], "buckets_done", 0, keep)
    out = _int(state["records_out"], "records_out")
    expected = sum(records[:done]) if job.head_count is None else min(job.head_count, sum(records[:done]))
    if out != expected:
        raise _Bad(f"records_out is {out}; the {done} buckets done hold {expected}")
    output = state["output"]
    if not isinstance(output, dict) or set(output) != {"files", "done", "fingerprint", "records"}:
        raise _Bad("output is not {files, done, fingerprint, records}")
    files = output["files"]
    if not isinstance(files, list) or (job.plain and len(files) != 1):
        raise _Bad(f"output.files is not a list of {'1 file' if job.plain else 'files'}")
    for i, entry in enumerate(files):
        _ints(entry, f"output.files[{i}]", 2)
        _int(entry[1], f"output.files[{i}] crc", 0, 2**32 - 1)
    emitted = 0 if job.plain else out
    _int(output["done"], "output.done", emitted, emitted)
    per_file = _ints(output["records"], "output.records", len(files))
    if sum(per_file) != emitted:
        raise _Bad(f"output.records add up to {sum(per_file)}, not output.done ({emitted})")
    written = _fingerprint(output["fingerprint"], "output.fingerprint")
    if written != ([out, written[1], written[2]] if job.hashed else [0, 0, 0]):
        raise _Bad(f"output.fingerprint {written} does not match records_out")
