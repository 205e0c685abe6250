"""``--resume`` for any format's run on the driver: the job's key and name, its lock beside the
output, its checkpoint read back and validated, and an output temp file opened to be read back.

A format's mixin (``line_resume.ResumableLines``, ``tar_resume.ResumableSamples``) adds what
depends on its records: the settings in the job's key, and an output file read back as records.
The checkpoint's format is ``core.checkpoint``'s; the lock and the output temp files ``core.resume``'s.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, BinaryIO

from ..core import plan
from ..core.checkpoint import Job, load_state, refuse_other_job, validate_state
from ..core.fingerprint import Fingerprint
from ..core.resume import JobLock, ResumePoint, holds, input_identity, refuse_foreign_temps
from ..quoting import quote_name
from ..request import Request
from ..storage.decoding import open_reader
from ..storage.output import Output
from ..storage.paths import followed_path
from ..storage.safefs import open_nofollow
from ..storage.shards import make_directories
from ..storage.sinks import CodecChoice
from ..storage.tempspace import TempSpace, default_tmp_dir


class WrittenFile:
    """An output temp file of this job, read back through the codec it was written with (never
    guessed from its first bytes), without following a link."""

    def __init__(self, path: str, codec: CodecChoice | None) -> None:
        self.name = path
        self.codec = codec

    def size(self) -> int | None:
        return None

    def open(self) -> BinaryIO:
        raw = os.fdopen(open_nofollow(self.name), "rb")
        return raw if self.codec is None else open_reader(raw, self.codec[0], self.name)


class ResumableRun:
    """What a run does for ``--resume`` whatever its records; the attributes below are the run's
    (and its driver's). A format sets ``record_block`` if its records are whole blocks with their
    lengths in a file beside each bucket (tar samples), ``encoded_buckets`` and ``token_fingerprints``
    as Megatron does, and supplies ``_resume_job`` and ``_read_output_back``."""

    #: Tar samples: each record is whole blocks of this many bytes, its length in a file beside its bucket.
    record_block = 0
    #: The buckets' bytes on disk are not the records' sizes (Arrow streams), as with ``--compress-temp``.
    encoded_buckets = False
    #: The fingerprints count bytes of their own (Megatron documents' tokens), not the buckets' bytes.
    token_fingerprints = False

    request: Request
    unit: str
    limit: int
    tmp_dir: str | None
    out: Output
    head_count: int | None
    resume_key: str | None
    resume_name: str | None
    resume_note: str
    resume_space: TempSpace | None
    job_lock: JobLock | None
    state_dir: str
    state: dict[str, Any]
    input_ids: list[list[Any]]
    input_records: list[int] | None
    read_fingerprint: Fingerprint

    def _resume_job(self) -> tuple[str, str]:
        """The job's key and name (see ``_job_names``), from the format's settings."""
        raise NotImplementedError

    def _read_output_back(self, path: str, codec: CodecChoice | None) -> Fingerprint:
        """The records of output temp file ``path`` as a fingerprint: a resumed run counts what its
        files hold rather than what its checkpoint says."""
        raise NotImplementedError

    def _start_job(self) -> None:
        """Name the ``--resume`` job, if the request asks for one: its key, its output temp files'
        tag, its checkpoint's directory, and how its output files are read back."""
        self.resume_space = None  # removed once the output is in place
        self.job_lock = None
        self.lock_directories: list[str] = []
        self.resume_key, self.resume_name = self._resume_job() if self.request.resume else (None, None)
        self.out.resume_tag = self.resume_name
        if self.resume_name is not None:
            self.out.resume_dir = os.path.abspath(os.path.join(self.tmp_dir or default_tmp_dir(), self.resume_name))
            self.out.rescan = self._read_output_back

    def _job_names(self, inputs: list[str], settings: list[Any]) -> tuple[str, str]:
        """A ``--resume`` job's key and name. The key, kept in its checkpoint, covers everything that
        shapes the output: inputs (by path), output, seed, the format's ``settings`` and the training
        mix's options. The name (of its lock, directory and temporary files) is the output's alone,
        so a rerun with other options finds the checkpoint and is refused by its key, naming the
        directory, rather than starting afresh beside it."""
        from .. import __version__

        request = self.request
        assert request.output is not None  # Request.build refuses --resume without -o
        output = os.path.abspath(request.output)
        job = {
            "version": __version__,
            "inputs": [os.path.abspath(path) for path in inputs],
            "output": output,
            "settings": settings,
            # The training mix's options: a checkpoint of another split, shard cut, manifest or mix is another job's.
            "mix": [
                request.shard_records, request.shard_size, request.split,
                None if request.manifest is None else os.path.abspath(request.manifest),
                [[name, [os.path.abspath(f) for f in files]] for name, files in request.sources], [[n, str(r)] for n, r in request.rates],
                [[n, str(r)] for n, r in request.mix], request.total, request.by, str(request.max_rate), request.stratify,
                request.unique,
            ],
        }
        key = hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()[:16]
        return key, "bigshuf-resume-" + hashlib.sha256(json.dumps({"output": output}).encode()).hexdigest()[:16]

    def _lock_job(self) -> None:
        """Take the ``--resume`` job's lock, beside its output, before touching any of its files: a
        second run for the output (whatever its ``-T``) fails here, naming the run holding it; then
        refuse a checkpoint another job left for the output, and a link or another user's file
        planted at a name the output's temporary files take.

        One file: the lock is beside it (its real path). Shards or splits: in the directory ``-o``
        fixes before its first placeholder (made if missing), or in ``-o``'s directory of shards,
        so that whatever the layout, runs writing the same ``-o`` take the same lock."""
        assert self.resume_name is not None and self.resume_key is not None and self.out.target is not None
        target = self.out.target
        if not self.out.sharding.on and self.out.split is None:
            first = followed_path(target)
            lock = os.path.join(os.path.dirname(first), f".{os.path.basename(first)}.{self.resume_name}.lock")
        else:
            if "{" not in target and (os.path.isdir(target) or target.endswith(os.sep)):
                directory = target  # shards into a directory
            else:
                directory = os.path.dirname(target.split("{", 1)[0]) or "."
            self.lock_directories = make_directories([os.path.join(directory, "lock")])  # as the run would for its first file
            lock = os.path.join(os.path.realpath(directory), f".{self.resume_name}.lock")
        self.job_lock = JobLock(lock)
        self.job_lock.acquire(f"pid {os.getpid()}, checkpoint in {self.out.resume_dir}")
        refuse_other_job(self.out.resume_dir, self.resume_key)
        refuse_foreign_temps(self.out.temp_directories(), self.resume_name)

    def _committed_inputs(self, state: dict[str, Any], paths: list[str]) -> frozenset[str]:
        """The inputs that are this job's single output, which the interrupted run had renamed into
        place (its checkpoint then counts every bucket written, and the file holds the bytes it
        counts) before it was killed: ``-o data.txt data.txt``. Such an input changed as the job
        meant to change it; the rerun takes its output back from it and commits it again."""
        output, files = state.get("output"), None
        if isinstance(output, dict):
            files = output.get("files")
        done = state.get("buckets_done")
        if not self.out.plain or self.out.target is None or done is None or done != state.get("keep"):
            return frozenset()
        if not (isinstance(files, list) and len(files) == 1 and isinstance(files[0], list) and len(files[0]) == 2
                and all(type(v) is int and v >= 0 for v in files[0])):
            return frozenset()  # (validated in full next; this only decides which inputs to hold it to)
        final = followed_path(self.out.target)
        try:
            fd = open_nofollow(final)
        except OSError:
            return frozenset()
        try:
            # Exactly the bytes it counts: a file grown since (appended to) is a changed input.
            held = os.fstat(fd).st_size == files[0][0] and holds(fd, ResumePoint(files[0][0], files[0][1], finished=True))
        finally:
            os.close(fd)
        return frozenset(p for p in paths if held and os.path.realpath(p) == os.path.realpath(final))

    def _load_checkpoint(self, temp: TempSpace, paths: list[str]) -> None:
        """Pick up an interrupted ``--resume`` run's checkpoint in ``temp`` (the job's directory; the
        inputs are the files ``paths``), every field validated (see ``core.checkpoint``); refuse
        it if an input changed or anything does not hold up."""
        directory = temp.path
        self.resume_space = temp
        self.state_dir = directory
        self.input_ids = input_identity(paths)
        state = load_state(directory)
        if state is None:
            return
        assert self.resume_key is not None
        request = self.request
        job = Job(
            self.resume_key, self.input_ids, request.verify, self.head_count, self.out.plain,
            request.compress_temp or self.encoded_buckets, request.verify or request.manifest is not None,
            weighted=bool(request.sources), unique=request.unique, sources=len(request.sources) if request.unique else 0,
            records=self.input_records, block=self.record_block, tokens=self.token_fingerprints,
        )
        validate_state(state, job, directory, self._committed_inputs(state, paths))
        self.state = state
        self.read_fingerprint = Fingerprint(*state["read_fingerprint"])
        if "buckets_done" in state:
            written = f"{state['records_out']} {self.unit} written"
            where = f"pass 2 after {state['buckets_done']} of {state['keep']} buckets ({written})"
        elif "pass1_done" in state:
            where = "the start of pass 2 (pass 1 complete)"
        elif "k" not in state:
            where = "the start of pass 1 (the dedup pass complete)"
        else:
            where = f"pass 1 after {state['blocks_done']} blocks ({plan.format_size(state['bytes_done'])} scattered)"
        self.resume_note = f"bigshuf: resuming from {quote_name(directory)}: {where}"

    def finished(self) -> None:
        """The output is in place: the checkpoint and its buckets go."""
        if self.resume_space is not None:
            self.resume_space.discard()

    def release(self) -> None:
        """The run ended either way: the job's lock goes, and a directory made for it that nothing
        else went into (a run that failed before writing: a rerun makes it again)."""
        if self.job_lock is not None:
            self.job_lock.release()
        for directory in reversed(self.lock_directories):
            try:
                os.rmdir(directory)
            except OSError:
                pass  # not empty: an output, or a temporary file to resume from, is in it
