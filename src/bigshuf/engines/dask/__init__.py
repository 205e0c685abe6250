"""The Dask engine: the local engine's exact two-pass scatter, run as Dask tasks over fsspec URLs.

Pass 1 is one task per part of an input (a byte range of a plain line file, a whole compressed
one, a run of Parquet row groups or Arrow record batches): it draws every record's bucket with
the stream ``streams.scatter(TOP, file, range, block)`` and writes one temporary object per
block holding its part of every bucket, bucket after bucket; it returns the objects' indexes
(byte bounds and record counts per bucket). Pass 2 is one task per output shard (or per bucket
for a single line file, or one for a single table file): it loads the buckets it overlaps from
every pass-1 object, permutes each with ``streams.bucket(TOP, bucket)`` and writes its slice of
the concatenated permutation; a bucket too big for -S is scattered again inside the task.
Streams are keyed by position, objects are written whole under fixed names, so any worker
count gives the same output and a retried task rewrites the same bytes.

``driver`` plans, submits and commits (one level's decisions from ``core.level``), ``runner`` runs
the tasks; ``tasks`` holds both passes, written once over a ``TaskFormat``; ``lines``, ``rows``,
``tars`` and ``megatron`` implement it, each with its family's ``TaskKind`` (``prepared``); ``inputs``
asks the kinds ``formats.registry`` names which takes the inputs.
``weights`` adds weighted sources (a counting pass, the client's draws, copies in pass 1),
``unique`` a dedup stage in front of pass 1, ``cuts`` a measuring pass for ``--shard-size``.
Dask and fsspec are imported only here and in ``storage.remote``: the local engine needs neither.
"""

from .driver import shuffle

__all__ = ["shuffle"]
