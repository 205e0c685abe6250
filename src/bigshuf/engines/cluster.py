"""The Dask engine as a plug-in: what it supports, and the call into ``engines.dask``, imported only to run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import option
from ..formats import registry
from .base import Engine

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..core.mix import Mixer
    from ..progress import Progress
    from ..request import Request, ShuffleStats
    from .dask.weights import Weights

#: Table settings the Dask engine refuses: ``schema`` types JSON Lines read as rows, which its tasks do not do.
REFUSED_TABLE_SETTINGS = ("schema",)


class DaskEngine(Engine):
    """The two-pass scatter as Dask tasks over files and fsspec URLs (see ``engines.dask``)."""

    name = "dask"

    def supports(self, request: Request) -> str | None:
        """Refuse, naming the first, the settings the Dask engine has no tasks for, and inputs that are not files or URLs."""
        from ..storage.sources import BytesSource, GeneratedSource

        used = (
            ("echo", any(isinstance(s, BytesSource) for s in request.inputs)),
            ("input_range", any(isinstance(s, GeneratedSource) for s in request.inputs)),
            ("repeat", request.repeat),
            ("header", request.header != 0),
            ("lines_per_record", request.lines_per_record != 1),
            ("resume", request.resume),
            ("compress_temp", request.compress_temp),
            ("threads", request.threads is not None),  # its cluster sets the workers
            *((setting, getattr(request, setting) is not None) for setting in REFUSED_TABLE_SETTINGS),
        )
        if registry.FAMILIES[request.family].tasks is None:  # the family names no Dask tasks
            return (
                f"{option('dask')} shuffles lines, table rows, tar samples and Megatron documents, not {request.family} "
                "datasets; use the local engine"
            )
        for setting, on in used:
            if on:
                return f"{option('dask')} does not support {option(setting)}"
        if request.manifest is not None:
            why = url_manifest_refusal(request.output, request.manifest)
            if why is not None:
                return why
        other = next((s for s in request.inputs if not isinstance(s, str)), None)
        if other is not None:
            return f"{option('dask')} reads files and URLs, not {type(getattr(other, 'inner', other)).__name__} objects"
        return None

    def run(self, request: Request, progress: Progress) -> ShuffleStats:
        """Run ``engines.dask.shuffle`` with the request's settings, on its scheduler or runner."""
        from ..storage.manifest import run_entries
        from . import dask

        address, runner = _scheduler_of(request)
        if nothing_drawn(request):
            from .local import shuffle_local

            refuse_before_reading(request)
            return shuffle_local(request, progress)
        return dask.shuffle(
            [s for s in request.inputs if isinstance(s, str)], request.output, memory=request.memory,
            seed=request.seed, random_source=request.random_source, tmp_dir=request.tmp_dir,
            temp_url=request.temp_url, scheduler=address, runner=runner,
            head_count=request.head_count, head_share=request.head_share, zero_terminated=request.zero_terminated, shards=request.shards,
            compress=request.compress, verify=request.verify, row_group_size=request.row_group_size,
            output_format=request.output_format, progress=progress, sync=request.sync,
            split=request.split, shard_records=request.shard_records, shard_size=request.shard_size, manifest=request.manifest,
            run_info=lambda inputs, fmt, head_count, sources, duplicates: run_entries(
                request, inputs, fmt, head_count, sources, duplicates,
            ),
            weights=_weights(request), unique=request.unique, input_directories=request.input_directories,
        )


def _scheduler_of(request: Request) -> tuple[str | None, Any]:
    """The request's scheduler as the Dask engine takes it: an address (or None), or a runner object."""
    scheduler = request.scheduler
    return (scheduler, None) if scheduler is None or isinstance(scheduler, str) else (None, scheduler)


def refuse_before_reading(request: Request) -> None:
    """Refuse what the Dask run refuses before it reads any input (its options, its temporary places),
    for a request it hands to the local engine (``nothing_drawn``) as for its own."""
    from .dask.driver import check_places

    address, runner = _scheduler_of(request)
    check_places(request.head_count, request.shards, request.verify, address, runner is not None, request.temp_url, request.tmp_dir)


def nothing_drawn(request: Request) -> bool:
    """Whether the local engine runs ``request``: it draws nothing (``-n 0``) into local files only,
    so no task has work and, as in shuf, no input is opened; the local engine writes the empty outputs
    (each shard, the manifest) as it would. Not for table rows, whose empty output takes its schema
    from the inputs (which the Dask run reads, URLs too)."""
    from ..storage.remote import is_url

    if request.head_count != 0 or request.family == registry.TABLE:
        return False
    return not any(name is not None and is_url(name) for name in (request.output, request.manifest))


def _weights(request: Request) -> Weights | None:
    """The request's weighted sources as the Dask engine takes them (None without ``--source``)."""
    if not request.sources:
        return None
    from ..core import mix
    from ..storage.layout import parse_split
    from .dask.weights import Weights

    counted = mix.needs_counts(request.source_rates, bool(request.mix)) or request.stratify
    splits = parse_split(request.split) if request.stratify and request.split is not None else None

    def mixer(counts: Sequence[int] | None, nbytes: Sequence[int] | None) -> Mixer:
        """The local engine's mixer (refusing as it does a rate above 1 for records that may not be copied)."""
        return mix.mixer_for(request, counts, nbytes)

    return Weights(tuple(name for name, _files in request.sources), tuple(mix.source_files(request)), counted, splits, mixer)


def url_manifest_refusal(output: str | None, manifest: str) -> str | None:
    """Why ``--manifest`` cannot be a URL or go with URL outputs on the Dask engine (None if it can): its
    commit of URL files is a series of moves, not all or nothing, and ``--check-manifest`` reads local files."""
    if "://" in manifest:
        return (
            f"{manifest}: {option('dask')} writes {option('manifest')} to a local file, committed with the outputs "
            f"(and read back by {option('check_manifest')})"
        )
    if "://" in (output or ""):
        return (
            f"{option('dask')} writes {option('manifest')} only with local outputs: URL outputs are moved into place "
            "one by one, not committed with it"
        )
    return None

