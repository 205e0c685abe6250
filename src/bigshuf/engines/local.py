"""The local engine: the shuffle in this process, with temporary buckets on this machine's disk."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import UsageError, option
from .base import Engine

if TYPE_CHECKING:
    from ..progress import Progress
    from ..request import Request, ShuffleStats
    from ..storage.sources import Source


class LocalEngine(Engine):
    """Runs everything a request can ask for, except writing to URLs and the cluster's settings."""

    name = "local"

    def supports(self, request: Request) -> str | None:
        """Refuse the Dask engine's settings and a URL output or manifest (this engine writes local
        files; a name with ``://`` is a local path only where its directory exists here)."""
        for setting in ("scheduler", "temp_url"):
            if getattr(request, setting) is not None:
                return f"{option(setting)} needs {option('dask')}"
        if _a_url(request.output):
            return f"{request.output}: this engine writes local files; write to URLs with {option('dask')}"
        if _a_url(request.manifest):
            return f"{request.manifest}: {option('manifest')} is written to a local file, on every engine"
        return None

    def run(self, request: Request, progress: Progress) -> ShuffleStats:
        """Shuffle in this process (see ``shuffle_local``)."""
        return shuffle_local(request, progress)


def shuffle_local(request: Request, progress: Progress) -> ShuffleStats:
    """The run of the request's record family (``formats.registry``) on the one driver, in this process."""
    from ..core.streams import seed_entropy
    from ..formats import registry
    from ..request import ShuffleStats

    # -n 0 reads no input, as in shuf: a URL is not even listed (nor its store asked for credentials);
    # but a table's empty output is written with its schema, read from its inputs.
    reads = request.head_count != 0 or request.family == registry.TABLE
    expanded = _open_urls(list(request.inputs), request.family) if reads else list(request.inputs)
    entropy = seed_entropy(request.seed, request.random_source, needed=request.head_count != 0, opened=request.repeat)
    run = registry.run_class(request.family).for_request(request, expanded, entropy, progress)
    records, nbytes, buckets, passes, seconds = run.run()
    return ShuffleStats(
        records, nbytes, buckets, passes, seconds, sources=run.source_stats(), duplicates=run.duplicates, unit=run.unit,
    )


def _open_urls(inputs: list[str | Source], family: str) -> list[str | Source]:
    """``inputs`` with every URL (``s3://...``, ``https://...``; globs expanded) that is not also a
    local path made a source read through fsspec; a tar a glob finds in a run of other records
    (``family``) is refused, as its bytes would be shuffled as lines. A family whose run opens its
    URLs itself (``opens_urls``: Megatron datasets, each ``.idx`` with its ``.bin``) has them left as named."""
    from ..formats import registry
    from ..formats.detect import data_kind, suffix_kind
    from ..storage.remote import is_remote, url_sources

    out: list[str | Source] = []
    for item in inputs:
        if isinstance(item, str) and is_remote(item) and not registry.FAMILIES[family].opens_urls:
            for source in url_sources([item]):
                if registry.is_table(suffix_kind(source.name)):
                    raise UsageError(f"{source.name}: Parquet and Arrow data are read from local files only; copy it here first")
                kind = data_kind(source.name.rsplit("/", 1)[-1])
                if kind == registry.WEBDATASET and family != kind:
                    raise UsageError(
                        f"{source.name}: a tar archive, found by {item} in a run of {family}; name tar URLs as tars "
                        "(a pattern like *.tar) and shuffle them in a run of their own"
                    )
                if kind == registry.MEGATRON:  # its .bin would otherwise be read as lines
                    raise UsageError(
                        f"{source.name}: a Megatron index, found by {item} in a run of {family}; name datasets on URLs "
                        "by their PREFIX.idx (a pattern like *.idx)"
                    )
                out.append(source)
        else:
            out.append(item)
    return out


def _a_url(target: str | None) -> bool:
    """Whether ``target`` names a URL (a name with ``://`` is a local path only where its directory exists here)."""
    return target is not None and "://" in target and not os.path.exists(os.path.dirname(target) or ".")
