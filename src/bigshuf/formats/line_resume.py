"""``--resume`` for lines: the job's key, its lock beside the output, and its checkpoint read back
and validated. ``LineRun`` takes these as a mixin; the checkpoint format is ``core.resume``'s."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from ..core import plan
from ..core.fingerprint import Fingerprint
from ..core.records import RecordFormat
from ..core.resume import Job, JobLock, input_identity, load_state, validate_state
from ..request import Request
from ..storage.output import Output
from ..storage.shards import shard_paths
from ..storage.sinks import CodecChoice
from ..storage.sources import FileSource, Source


class ResumableLines:
    """What a line run does for ``--resume``; the attributes below are the run's (and its driver's)."""

    request: Request
    sources: list[Source]
    fmt: RecordFormat
    limit: int
    entropy: int
    compress: CodecChoice | None
    out: Output
    head_count: int | None
    resume_key: str | None
    resume_name: str | None
    resume_note: str
    job_lock: JobLock | None
    state_dir: str
    state: dict[str, Any]
    input_ids: list[list[Any]]
    read_fingerprint: Fingerprint

    def _resume_key(self) -> str:
        """Names a ``--resume`` job: the same inputs (by path), output, seed and settings give the same key."""
        from .. import __version__

        request = self.request
        assert request.output is not None  # Request.build refuses --resume without -o
        job = {
            "version": __version__,
            "inputs": [os.path.abspath(s.path) for s in self.sources if isinstance(s, FileSource)],
            "output": os.path.abspath(request.output),
            "settings": [
                self.limit, self.entropy, self.fmt.sep, self.fmt.group, request.head_count, request.repeat,
                request.header, request.shards, self.compress, request.compress_temp, request.verify,
            ],
        }
        return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()[:16]

    def _lock_job(self) -> None:
        """Take the ``--resume`` job's lock, beside its output, before touching any of its files:
        a second run of the job (whatever its ``-T``) fails here, naming the run holding it."""
        assert self.resume_name is not None and self.out.target is not None
        first = self.out.target
        if self.request.shards is not None:
            first = shard_paths(self.out.target, self.request.shards, self.compress, self.out.shard_suffix)[0]
        first = os.path.realpath(first)
        lock = os.path.join(os.path.dirname(first), f".{os.path.basename(first)}.{self.resume_name}.lock")
        self.job_lock = JobLock(lock)
        self.job_lock.acquire(f"pid {os.getpid()}, checkpoint in {self.out.resume_dir}")

    def _load_checkpoint(self, directory: str, sources: list[Source]) -> None:
        """Pick up an interrupted ``--resume`` run's checkpoint, every field validated (see ``resume``);
        refuse it if an input changed or anything does not hold up."""
        self.state_dir = directory
        self.input_ids = input_identity([s.path for s in sources if isinstance(s, FileSource)])
        state = load_state(directory)
        if state is None:
            return
        assert self.resume_key is not None
        job = Job(
            self.resume_key, self.input_ids, self.request.verify, self.head_count, self.request.shards,
            self.request.compress_temp,
        )
        validate_state(state, job, directory)
        self.state = state
        self.read_fingerprint = Fingerprint(*state["read_fingerprint"])
        if "buckets_done" in state:
            where = f"pass 2 after {state['buckets_done']} of {state['keep']} buckets ({state['records_out']} records written)"
        elif "pass1_done" in state:
            where = "the start of pass 2 (pass 1 complete)"
        else:
            where = f"pass 1 after {state['blocks_done']} blocks ({plan.format_size(state['bytes_done'])} scattered)"
        self.resume_note = f"bigshuf: resuming from {directory}: {where}"

