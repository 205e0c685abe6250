"""``--resume`` for every format: the job's key and name, its lock beside the output, and its
checkpoint read back and validated. A format's run takes ``ResumableRun`` as a mixin and gives
the settings that shape its output and the files it reads; the checkpoint format is ``core.resume``'s."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from ..core import plan
from ..core.fingerprint import Fingerprint
from ..core.resume import Job, JobLock, input_identity, load_state, refuse_foreign_temps, refuse_other_job, validate_state
from ..request import Request
from ..storage.output import Output
from ..storage.shards import make_directories


class ResumableRun:
    """What any run does for ``--resume``; the attributes below are the run's (and its driver's)."""

    request: Request
    out: Output
    head_count: int | None
    resume_key: str | None
    resume_name: str | None
    resume_note: str
    job_lock: JobLock | None
    state_dir: str
    state: dict[str, Any]
    input_ids: list[list[Any]]
    input_records: list[int] | None
    read_fingerprint: Fingerprint
    #: The buckets' bytes on disk are not the records' sizes (Arrow streams), as with ``--compress-temp``.
    encoded_buckets = False
    #: The fingerprints count bytes of their own (Megatron documents' tokens), not the buckets' bytes.
    token_fingerprints = False

    def _job_key(self, inputs: list[str], settings: list[Any]) -> tuple[str, str]:
        """A ``--resume`` job's key and name. The key, kept in its checkpoint, covers everything that
        shapes the output: ``inputs`` (by path), output, seed, the format's ``settings`` and the
        training mix's options. The name (of its lock, directory and temporary files) is the output's
        alone, so a rerun with other options finds the checkpoint and is refused by its key, naming
        the directory, rather than starting afresh beside it."""
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
            first = os.path.realpath(target)
            lock = os.path.join(os.path.dirname(first), f".{os.path.basename(first)}.{self.resume_name}.lock")
        else:
            if "{" not in target and (os.path.isdir(target) or target.endswith(os.sep)):
                directory = target  # shards into a directory
            else:
                directory = os.path.dirname(target.split("{", 1)[0]) or "."
            make_directories([os.path.join(directory, "lock")])  # as the run would for its first file
            lock = os.path.join(os.path.realpath(directory), f".{self.resume_name}.lock")
        self.job_lock = JobLock(lock)
        self.job_lock.acquire(f"pid {os.getpid()}, checkpoint in {self.out.resume_dir}")
        refuse_other_job(self.out.resume_dir, self.resume_key)
        refuse_foreign_temps(self.out.temp_directories(), self.resume_name)

    def _load_checkpoint(self, directory: str, paths: list[str]) -> None:
        """Pick up an interrupted ``--resume`` run's checkpoint, every field validated (see ``resume``),
        the job's input files as ``paths``; refuse it if an input changed or anything does not hold up."""
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
            records=self.input_records, tokens=self.token_fingerprints,
        )
        validate_state(state, job, directory)
        self.state = state
        self.read_fingerprint = Fingerprint(*state["read_fingerprint"])
        if "buckets_done" in state:
            where = f"pass 2 after {state['buckets_done']} of {state['keep']} buckets ({state['records_out']} records written)"
        elif "pass1_done" in state:
            where = "the start of pass 2 (pass 1 complete)"
        elif "k" not in state:
            where = "the start of pass 1 (the dedup pass complete)"
        else:
            where = f"pass 1 after {state['blocks_done']} blocks ({plan.format_size(state['bytes_done'])} scattered)"
        self.resume_note = f"bigshuf: resuming from {directory}: {where}"
