"""How the Dask engine's client runs tasks: on a ``distributed`` cluster (one it reaches, or a local
one made for the run) or any executor a caller gives, results collected in task order and a
cluster's failures turned into one message. The driver's steps see only ``RunTasks``."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from ...errors import BigShufError, TempSpaceError, UsageError, option
from ...progress import Progress
from ...quoting import quote_arg, quote_name
from ...request import Runner
from ...storage import remote
from ...storage.tempspace import RUN_DIRECTORY
from .tasks import Config, RunTasks

T = TypeVar("T")


def on(runner: Runner, progress: Progress) -> RunTasks:
    """How tasks run: each of them submitted to ``runner``, progress counted by their bytes."""

    def run_tasks(fn: Callable[[Config, Any], Any], cfg: Config, tasks: Sequence[Any], sizes: Sequence[int]) -> list[Any]:
        """Run ``fn(cfg, task)`` for each of ``tasks`` (``sizes`` bytes each, for progress)."""
        return _run(runner, fn, cfg, tasks, progress, sizes)

    return run_tasks


def _run(
    runner: Runner, fn: Callable[[Config, T], Any], cfg: Config, tasks: Sequence[T], progress: Progress, sizes: Sequence[int],
) -> list[Any]:
    """Submit every task, then collect the results in task order (progress by bytes)."""
    futures = [runner.submit(fn, cfg, t) for t in tasks]
    try:
        results = []
        for fut, size in zip(futures, sizes):
            results.append(_result(fut))
            progress.update(size)
        return results
    except BaseException:
        for fut in futures:
            fut.cancel()
        for fut in futures:  # one already running still writes to the run's temporary space: let it end first
            try:
                fut.exception()
            except BaseException:  # noqa: BLE001 - cancelled, or failed as well: the first error is on its way
                pass
        raise


def _temporary_place(e: OSError) -> str | None:
    """Where a task's write that found no room was (a full disk, a quota): the directory (or URL
    prefix) holding the run's ``bigshuf-dask-*`` objects, as a local run names its full ``-T``; None for
    any other error. Writes to outputs are named by the tasks themselves."""
    if e.errno not in remote.WRITE_ERRORS or not isinstance(e.filename, str):
        return None
    parts = e.filename.split("/")
    found = next((i for i, part in enumerate(parts) if RUN_DIRECTORY.fullmatch(part)), None)
    return None if found is None else "/".join(parts[:found]) or "/"


def _result(fut: Any) -> Any:
    """A task's value; a cluster failure (a worker that kept dying, a lost scheduler) becomes one message."""
    try:
        return fut.result()
    except BigShufError:
        raise
    except OSError as e:
        place = _temporary_place(e)
        if place is not None:
            raise TempSpaceError(
                f"{quote_name(place)}: not enough temporary space ({e.strerror}); choose another directory with "
                f"{option('tmp_dir')} or {option('temp_url')}"
            ) from None
        where = f"{quote_name(os.fsdecode(e.filename))}: " if isinstance(e.filename, (str, bytes)) and e.filename else ""
        raise BigShufError(f"task failed: {where}{e.strerror or e}") from None
    except Exception as e:
        name = type(e).__name__
        if name in ("KilledWorker", "CommClosedError", "FutureCancelledError", "CancelledError"):
            raise BigShufError(f"cluster failure: {name}: {e}") from None
        if type(e).__module__.split(".")[0] in ("botocore", "aiohttp", "google", "azure", "requests", "fsspec", "s3fs", "gcsfs", "adlfs"):
            raise BigShufError(f"task failed: {name}: {e}") from None  # a store's own error (credentials, a refused connection)
        raise


@contextmanager
def connect(scheduler: str | None, scratch: str) -> Iterator[Runner]:
    """A Dask client of the scheduler at ``scheduler``, or of a LocalCluster of processes (one
    single-threaded worker per core) made for this run with its scratch space in ``scratch``."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as e:
            raise UsageError(f"{option('scheduler')}: cannot reach {quote_arg(scheduler)}: {e}") from None
        except (ValueError, TypeError) as e:  # no port, a port that is no number, an unknown protocol
            raise UsageError(f"{option('scheduler')}: {quote_arg(scheduler)} is not a scheduler address "
                             f"(like tcp://host:8786): {e}") from None
        try:
            yield client
        finally:
            client.close()
        return
    import dask

    # SIGINT held while the cluster starts: a Ctrl-C then cut LocalCluster half-way, and the
    # cluster, never closed, failed again in Dask's own exit handler (a page of tracebacks).
    # Held, it arrives once the cluster is there to be closed.
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    cluster = None
    try:
        # Workers' scratch space (and Dask's lock files) inside this run's directory, removed with
        # it; the scheduler's HTTP server on a free port, so that runs side by side do not collide.
        with dask.config.set({"temporary-directory": scratch}):
            cluster = LocalCluster(
                n_workers=os.cpu_count() or 1, threads_per_worker=1, processes=True, dashboard_address=":0",
                silence_logs=logging.CRITICAL, local_directory=scratch,
            )
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
        with Client(cluster) as client:
            yield client
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
        if cluster is not None:
            cluster.close()


@contextmanager
def given(runner: Runner) -> Iterator[Runner]:
    """A runner the caller made, used as ``connect``'s client is (and left running)."""
    yield runner
