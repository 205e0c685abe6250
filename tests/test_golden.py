"""Golden table of seeded outputs, recorded at commit 4520240 before the core refactor of issue 13,
and once again for issue 14's worker threads (the 56 external line rows changed: pass 1 draws
each piece of a block from a stream of its own, and a bucket of many records is shuffled as
parts, so that workers can take pieces and parts in any order; in-memory and table rows held),
and once more for one row, gz-in (session 43): a compressed input's size was estimated from its
first block against the whole 256 KiB read it came from, which made a gzip input look several
times smaller than it was: too few buckets, a third pass, and a temporary-space check that passed
and then ran out. Estimated from what its decoder was fed, it takes the plain input's 32 buckets
and gives its bytes (the row was gz-in-rec, 3 passes, 37 buckets). And once more for multi-ext
(session 50): the gzip input's size came from the ratio of the first block, which two plain inputs
filled, so it was taken for plain (119 buckets); sampled on its own, it takes the 143 buckets of the
same three inputs all plain.

Refactors must keep every seeded output byte-identical (same inputs, seed and options, memory
included, give the same bytes), whatever the number of worker threads. Each row runs one fixed configuration over
inputs this file generates (arithmetic on SHA-256, no NumPy draws, no downloads) for two seeds,
and compares a hash of the output with the literal recorded in ``GOLDEN``, together with the
run's passes and temporary buckets, so that every row provably takes its path: in memory
(1 pass, no buckets), external (2 passes) or recursive (more than 2). Every full shuffle is also
checked to be a permutation of its input.

Line outputs are hashed as bytes (compressed ones as file bytes and as content, except gzip at
ISA-L's levels 2 and 3, by content only: ISA-L writes those streams differently on different
CPUs, and a machine without AVX-512 gave other bytes of the same content); Parquet and Arrow
outputs as their decoded content (schema, row-group sizes, rows), since their file bytes
carry the writer's version.

To regenerate the table (only for an intended, agreed change of outputs), run
``BIGSHUF_GOLDEN_PRINT=1 python -m pytest tests/test_golden.py -q -s``: the hashes are then
printed as a ``GOLDEN`` literal to paste here instead of being asserted.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import bigshuf
from bigshuf.core import plan

from helpers import decompress

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

PRINT = os.environ.get("BIGSHUF_GOLDEN_PRINT") == "1"
SEEDS = (1, 2)
MIN = plan.MIN_MEMORY

#: "row/seed" -> the first 16 hex digits of the SHA-256 of the output ("bytes"; "content" for
#: decompressed or decoded outputs; "shards" over every shard in order) and the run's passes
#: and buckets (not for the command line, which returns no statistics).
GOLDEN: dict[str, dict[str, Any]] = {
    "lines-mem/1": {"bytes": "18d7f91db440ec47", "passes": 1, "buckets": 0},
    "lines-mem/2": {"bytes": "27cd078a2253c766", "passes": 1, "buckets": 0},
    "lines-ext/1": {"bytes": "3ca2c02dc4a16b08", "passes": 2, "buckets": 32},
    "lines-ext/2": {"bytes": "bd71764e620186aa", "passes": 2, "buckets": 32},
    "lines-ext-min/1": {"bytes": "cf76aacf295eb8f7", "passes": 2, "buckets": 301},
    "lines-ext-min/2": {"bytes": "099b8e3ab1c025bc", "passes": 2, "buckets": 301},
    "jsonl-rec/1": {"bytes": "110e687cd05cd8a5", "passes": 3, "buckets": 191},
    "jsonl-rec/2": {"bytes": "dba144f2639622ab", "passes": 3, "buckets": 188},
    "jsonl-rec-deep/1": {"bytes": "9ff2298252e6b1d0", "passes": 5, "buckets": 444},
    "jsonl-rec-deep/2": {"bytes": "aa531d56882f3c6e", "passes": 5, "buckets": 474},
    "nofinal-mem/1": {"bytes": "3869b8b84ba8a757", "passes": 1, "buckets": 0},
    "nofinal-mem/2": {"bytes": "47d735d17f2aafd2", "passes": 1, "buckets": 0},
    "nofinal-ext/1": {"bytes": "8875d73ae28d41f3", "passes": 2, "buckets": 33},
    "nofinal-ext/2": {"bytes": "33e163bc85a4c97f", "passes": 2, "buckets": 33},
    "empty/1": {"bytes": "e3b0c44298fc1c14", "passes": 1, "buckets": 0},
    "empty/2": {"bytes": "e3b0c44298fc1c14", "passes": 1, "buckets": 0},
    "head-mem/1": {"bytes": "ed3e88c35400f23d", "passes": 1, "buckets": 0},
    "head-mem/2": {"bytes": "81509621bc365e63", "passes": 1, "buckets": 0},
    "head-ext/1": {"bytes": "5cf9cd0717c79642", "passes": 2, "buckets": 32},
    "head-ext/2": {"bytes": "941dc3d91dde88f0", "passes": 2, "buckets": 32},
    "head-ext-most/1": {"bytes": "1e6b08b427058b73", "passes": 2, "buckets": 32},
    "head-ext-most/2": {"bytes": "e136c217306f92ff", "passes": 2, "buckets": 32},
    "header-mem/1": {"bytes": "256eb2ee9cd6dcbb", "passes": 1, "buckets": 0},
    "header-mem/2": {"bytes": "933506342d9c9770", "passes": 1, "buckets": 0},
    "header-ext/1": {"bytes": "bcb7df592dd55e12", "passes": 2, "buckets": 28},
    "header-ext/2": {"bytes": "348bac6359fc52ed", "passes": 2, "buckets": 28},
    "fastq-mem/1": {"bytes": "4fd9766ff3ff368c", "passes": 1, "buckets": 0},
    "fastq-mem/2": {"bytes": "b6d1baf980d6f300", "passes": 1, "buckets": 0},
    "fastq-ext/1": {"bytes": "6b6311a9d3a00216", "passes": 2, "buckets": 30},
    "fastq-ext/2": {"bytes": "7de3e52dc75518e4", "passes": 2, "buckets": 30},
    "fastq-rec/1": {"bytes": "b75eeb379615ad15", "passes": 3, "buckets": 246},
    "fastq-rec/2": {"bytes": "30096cac4f9ca224", "passes": 3, "buckets": 243},
    "nul-mem/1": {"bytes": "bd4898634e538a20", "passes": 1, "buckets": 0},
    "nul-mem/2": {"bytes": "a141757f41f97007", "passes": 1, "buckets": 0},
    "nul-ext/1": {"bytes": "ec71682ba918f953", "passes": 2, "buckets": 27},
    "nul-ext/2": {"bytes": "40619c7da7357df2", "passes": 2, "buckets": 27},
    "jsonl-ext/1": {"bytes": "5f572c7fd9f8ae84", "passes": 2, "buckets": 43},
    "jsonl-ext/2": {"bytes": "fd343bca02ed2066", "passes": 2, "buckets": 43},
    "jsonl-ext-ctemp/1": {"bytes": "5f572c7fd9f8ae84", "passes": 2, "buckets": 43},
    "jsonl-ext-ctemp/2": {"bytes": "fd343bca02ed2066", "passes": 2, "buckets": 43},
    "jsonl-rec-ctemp/1": {"bytes": "110e687cd05cd8a5", "passes": 3, "buckets": 191},
    "jsonl-rec-ctemp/2": {"bytes": "dba144f2639622ab", "passes": 3, "buckets": 188},
    "zstd-out-mem/1": {"bytes": "a20c136066b81f55", "content": "18d7f91db440ec47", "passes": 1, "buckets": 0},
    "zstd-out-mem/2": {"bytes": "4fc883c6f8f6bfa8", "content": "27cd078a2253c766", "passes": 1, "buckets": 0},
    "zstd-out-ext/1": {"bytes": "6c7e85cd8801b5fc", "content": "3ca2c02dc4a16b08", "passes": 2, "buckets": 32},
    "zstd-out-ext/2": {"bytes": "de2f6c599c004544", "content": "bd71764e620186aa", "passes": 2, "buckets": 32},
    "gzip-out-ext/1": {"content": "3ca2c02dc4a16b08", "passes": 2, "buckets": 32},
    "gzip-out-ext/2": {"content": "bd71764e620186aa", "passes": 2, "buckets": 32},
    "gzip1-out-mem/1": {"bytes": "a18605f5a9b4be89", "content": "18d7f91db440ec47", "passes": 1, "buckets": 0},
    "gzip1-out-mem/2": {"bytes": "e9b84d8fa1f5972f", "content": "27cd078a2253c766", "passes": 1, "buckets": 0},
    "gz-in-mem/1": {"bytes": "18d7f91db440ec47", "passes": 1, "buckets": 0},
    "gz-in-mem/2": {"bytes": "27cd078a2253c766", "passes": 1, "buckets": 0},
    "gz-in-ext/1": {"bytes": "3ca2c02dc4a16b08", "passes": 2, "buckets": 32},
    "gz-in-ext/2": {"bytes": "bd71764e620186aa", "passes": 2, "buckets": 32},
    "resume-ext/1": {"bytes": "3ca2c02dc4a16b08", "passes": 2, "buckets": 32},
    "resume-ext/2": {"bytes": "bd71764e620186aa", "passes": 2, "buckets": 32},
    "resume-rec/1": {"bytes": "110e687cd05cd8a5", "passes": 3, "buckets": 191},
    "resume-rec/2": {"bytes": "dba144f2639622ab", "passes": 3, "buckets": 188},
    "verify-mem/1": {"bytes": "18d7f91db440ec47", "passes": 1, "buckets": 0},
    "verify-mem/2": {"bytes": "27cd078a2253c766", "passes": 1, "buckets": 0},
    "verify-ext/1": {"bytes": "3ca2c02dc4a16b08", "passes": 2, "buckets": 32},
    "verify-ext/2": {"bytes": "bd71764e620186aa", "passes": 2, "buckets": 32},
    "verify-rec/1": {"bytes": "110e687cd05cd8a5", "passes": 3, "buckets": 191},
    "verify-rec/2": {"bytes": "dba144f2639622ab", "passes": 3, "buckets": 188},
    "repeat-mem/1": {"bytes": "6bff2d0043ccd8a7", "passes": 1, "buckets": 0},
    "repeat-mem/2": {"bytes": "ce4e1f58369bf5a0", "passes": 1, "buckets": 0},
    "repeat-few/1": {"bytes": "d9931bae7b009581", "passes": 1, "buckets": 0},
    "repeat-few/2": {"bytes": "78f6be373468ceb7", "passes": 1, "buckets": 0},
    "multi-mem/1": {"bytes": "05d87e9b51546df4", "passes": 1, "buckets": 0},
    "multi-mem/2": {"bytes": "53744cf24d679762", "passes": 1, "buckets": 0},
    "multi-ext/1": {"bytes": "5b8e8d4f188c9c2f", "passes": 2, "buckets": 143},
    "multi-ext/2": {"bytes": "ab3cb1b90277b9a2", "passes": 2, "buckets": 143},
    "shards-mem/1": {"shards": "ef4d6c7ee1068c9d", "passes": 1, "buckets": 0},
    "shards-mem/2": {"shards": "04ec690edce14704", "passes": 1, "buckets": 0},
    "shards-ext/1": {"shards": "c67841f48d3c1dd6", "passes": 2, "buckets": 32},
    "shards-ext/2": {"shards": "5fd1ff5ac5f68d46", "passes": 2, "buckets": 32},
    "shards-ext-head/1": {"shards": "96d0f22f2f876160", "passes": 2, "buckets": 32},
    "shards-ext-head/2": {"shards": "cff37c523cb2a47f", "passes": 2, "buckets": 32},
    "shards-rec-zstd/1": {"shards": "5beec0c7920df12e", "passes": 3, "buckets": 191},
    "shards-rec-zstd/2": {"shards": "3adc8d93d51a9bcc", "passes": 3, "buckets": 188},
    "range-mem/1": {"bytes": "c6cfb279d5d51104", "passes": 1, "buckets": 0},
    "range-mem/2": {"bytes": "f98b9d4a4ae265da", "passes": 1, "buckets": 0},
    "range-ext/1": {"bytes": "b2c08dd7d55c02cc", "passes": 2, "buckets": 1024},
    "range-ext/2": {"bytes": "b47ee4ed3fdbf1af", "passes": 2, "buckets": 1024},
    "range-head-draw/1": {"bytes": "263f141cf0dd77e0", "passes": 1, "buckets": 0},
    "range-head-draw/2": {"bytes": "3497e8df8d0f9958", "passes": 1, "buckets": 0},
    "range-head-mem/1": {"bytes": "b15512230a5c9328", "passes": 1, "buckets": 0},
    "range-head-mem/2": {"bytes": "3674927612c5d1d4", "passes": 1, "buckets": 0},
    "range-head-ext/1": {"bytes": "74547c1eb7cbc366", "passes": 2, "buckets": 1024},
    "range-head-ext/2": {"bytes": "e99016a9a61f7356", "passes": 2, "buckets": 1024},
    "range-repeat/1": {"bytes": "2b52f2116eaef569", "passes": 1, "buckets": 0},
    "range-repeat/2": {"bytes": "de6f418f7763fb1e", "passes": 1, "buckets": 0},
    "range-wide/1": {"bytes": "a058b3b8ed812d8e", "passes": 1, "buckets": 0},
    "range-wide/2": {"bytes": "3150d71493563dd3", "passes": 1, "buckets": 0},
    "pq-pq-mem/1": {"content": "4a610e0824ba5e66", "passes": 1, "buckets": 0},
    "pq-pq-mem/2": {"content": "b1fd48f03aedcd07", "passes": 1, "buckets": 0},
    "pq-pq-ext/1": {"content": "433b485da56ae185", "passes": 2, "buckets": 14},
    "pq-pq-ext/2": {"content": "fd71a87ed6da8a59", "passes": 2, "buckets": 14},
    "pq-pq-ext-verify-ctemp/1": {"content": "433b485da56ae185", "passes": 2, "buckets": 14},
    "pq-pq-ext-verify-ctemp/2": {"content": "fd71a87ed6da8a59", "passes": 2, "buckets": 14},
    "pq-pq-head-mem/1": {"content": "c6e1371cd1da1f22", "passes": 1, "buckets": 0},
    "pq-pq-head-mem/2": {"content": "662e36208ad275c5", "passes": 1, "buckets": 0},
    "pq-pq-head-ext/1": {"content": "83e3d672386ecb5b", "passes": 2, "buckets": 14},
    "pq-pq-head-ext/2": {"content": "af084dd5f65134d3", "passes": 2, "buckets": 14},
    "pq-pq-rowgroup/1": {"content": "9f0b1eb53f6e7d0a", "passes": 1, "buckets": 0},
    "pq-pq-rowgroup/2": {"content": "67bd06166d969e9e", "passes": 1, "buckets": 0},
    "arrow-arrow-mem/1": {"content": "d493f968a68df75c", "passes": 1, "buckets": 0},
    "arrow-arrow-mem/2": {"content": "145f121cd436e1da", "passes": 1, "buckets": 0},
    "arrow-arrow-ext/1": {"content": "ca15ab3a524ea636", "passes": 2, "buckets": 14},
    "arrow-arrow-ext/2": {"content": "602fcd545d89f418", "passes": 2, "buckets": 14},
    "arrow-pq-mem/1": {"content": "4a610e0824ba5e66", "passes": 1, "buckets": 0},
    "arrow-pq-mem/2": {"content": "b1fd48f03aedcd07", "passes": 1, "buckets": 0},
    "pq-jsonl-mem/1": {"bytes": "4c04c81afdf6df09", "passes": 1, "buckets": 0},
    "pq-jsonl-mem/2": {"bytes": "9c24d6519a7b8cb6", "passes": 1, "buckets": 0},
    "pq-jsonl-ext/1": {"bytes": "42e85ca2ea41e9e9", "passes": 2, "buckets": 14},
    "pq-jsonl-ext/2": {"bytes": "de3708ba4e1fa16f", "passes": 2, "buckets": 14},
    "jsonl-pq-mem/1": {"content": "e6fd8a598afa50f8", "passes": 1, "buckets": 0},
    "jsonl-pq-mem/2": {"content": "ad578b16b466005a", "passes": 1, "buckets": 0},
    "jsonl-pq-ext/1": {"content": "2799dfe4156ca5c4", "passes": 2, "buckets": 21},
    "jsonl-pq-ext/2": {"content": "81fca2153f9c0d1d", "passes": 2, "buckets": 21},
    "jsonl-pq-rec/1": {"content": "4db04210d37d5a87", "passes": 3, "buckets": 172},
    "jsonl-pq-rec/2": {"content": "797a569ea7e9a106", "passes": 3, "buckets": 176},
    "jsonl-arrow-rec-head/1": {"content": "213ba176b5900a20", "passes": 5, "buckets": 430},
    "jsonl-arrow-rec-head/2": {"content": "523dbe9602036d25", "passes": 4, "buckets": 416},
    "pq-shards-mem/1": {"shards": "ac403daf6f28b65f", "passes": 1, "buckets": 0},
    "pq-shards-mem/2": {"shards": "ce1bec312fe3b589", "passes": 1, "buckets": 0},
    "pq-shards-ext-head/1": {"shards": "b7121c4032f861b5", "passes": 2, "buckets": 14},
    "pq-shards-ext-head/2": {"shards": "1afa7f84dad44b68", "passes": 2, "buckets": 14},
    "dask-ext/1": {"shards": "6c071db0807033d5", "passes": 2, "buckets": 38},
    "dask-ext/2": {"shards": "05c7730f732c99be", "passes": 2, "buckets": 38},
    # Re-recorded once: the Dask engine's shard files got the inputs' suffix (part-00000.txt, as the
    # local engine names them); their bytes are the ones recorded before (checked under the old names).
    "dask-rec-shards/1": {"shards": "4d628fb807c8766c", "passes": 3, "buckets": 602},
    "dask-rec-shards/2": {"shards": "eddaa51a6312e553", "passes": 3, "buckets": 602},
    "dask-head/1": {"shards": "2ad1c699a46abfbc", "passes": 2, "buckets": 38},
    "dask-head/2": {"shards": "0c0e27242fbb19b1", "passes": 2, "buckets": 38},
    "cli-ext/1": {"bytes": "3ca2c02dc4a16b08"},
    "cli-ext/2": {"bytes": "bd71764e620186aa"},
    "cli-n/1": {"bytes": "ed3e88c35400f23d"},
    "cli-n/2": {"bytes": "81509621bc365e63"},
    "cli-i/1": {"bytes": "c6cfb279d5d51104"},
    "cli-i/2": {"bytes": "f98b9d4a4ae265da"},
    "cli-i-n/1": {"bytes": "263f141cf0dd77e0"},
    "cli-i-n/2": {"bytes": "3497e8df8d0f9958"},
}


# ---------------------------------------------------------------- inputs


def _stream(tag: str, n: int) -> bytes:
    """``n`` pseudo-random bytes: SHA-256 in counter mode, the same on every platform and library version."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{tag}:{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


_LETTERS = bytes(97 + b % 26 for b in range(256))
_BASES = bytes(b"ACGT"[b % 4] for b in range(256))


def _letters(tag: str, n: int) -> bytes:
    """``n`` pseudo-random lowercase letters."""
    return _stream(tag, n).translate(_LETTERS)


def _lengths(tag: str, n: int, lo: int, hi: int) -> list[int]:
    """``n`` pseudo-random lengths in ``lo..hi``."""
    raw = _stream(tag, 2 * n)
    return [lo + int.from_bytes(raw[2 * i : 2 * i + 2], "little") % (hi - lo + 1) for i in range(n)]


def _text_records(tag: str, n: int, lo: int, hi: int) -> list[bytes]:
    """``n`` records ``NNNN word`` of ``lo..hi`` letters, numbered so that no two are equal."""
    lengths = _lengths(tag + "/len", n, lo, hi)
    letters = _letters(tag, sum(lengths))
    out, at = [], 0
    for i, length in enumerate(lengths):
        out.append(b"%05d %s" % (i, letters[at : at + length]))
        at += length
    return out


@dataclass(frozen=True)
class Data:
    """The generated inputs: their paths and, for line files, their records."""

    lines: Path  # 1500 text lines of ~60 bytes (~90 KB)
    jsonl: Path  # 300 JSON lines of 200 B..2 KB (~330 KB)
    nofinal: Path  # 400 lines, the last without its newline
    gz: Path  # lines.txt gzip-compressed
    fastq: Path  # 400 four-line FASTQ records
    csv: Path  # a header line and 1000 rows
    nul: Path  # 600 NUL-terminated records holding newlines
    empty: Path
    parquet: Path  # 4000 rows in 4 row groups: int64, string, int32 (with nulls), bool
    arrow: Path  # the same rows as an Arrow IPC file
    records: dict[str, list[bytes]]  # records of each line input by name
    rows: list[dict[str, Any]]  # rows of the table inputs


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    """Write every input once for the module."""
    d = tmp_path_factory.mktemp("golden-in")
    records: dict[str, list[bytes]] = {}
    records["lines"] = _text_records("lines", 1500, 5, 110)
    (d / "lines.txt").write_bytes(b"\n".join(records["lines"]) + b"\n")
    (d / "lines.txt.gz").write_bytes(gzip.compress((d / "lines.txt").read_bytes(), mtime=0))
    records["nofinal"] = _text_records("nofinal", 400, 0, 70)
    (d / "nofinal.txt").write_bytes(b"\n".join(records["nofinal"]))
    texts = _text_records("jsonl", 300, 150, 1900)
    records["jsonl"] = [
        json.dumps({"id": i, "name": t[6:14].decode(), "n": len(t) * 7 - 500, "text": t.decode()}).encode()
        for i, t in enumerate(texts)
    ]
    (d / "rows.jsonl").write_bytes(b"\n".join(records["jsonl"]) + b"\n")
    seqs = _text_records("fastq", 400, 30, 90)
    records["fastq"] = [
        b"@read%d\n%s\n+\n%s" % (i, s[6:].translate(_BASES), b"I" * (len(s) - 6)) for i, s in enumerate(seqs)
    ]
    (d / "reads.fastq").write_bytes(b"\n".join(records["fastq"]) + b"\n")
    records["csv"] = [b"%s,%d,%s" % (r[:5], len(r) * 13, r[6:]) for r in _text_records("csv", 1000, 3, 40)]
    (d / "table.csv").write_bytes(b"id,value,name\n" + b"\n".join(records["csv"]) + b"\n")
    records["nul"] = [r.replace(b"q", b"\n") for r in _text_records("nul", 600, 0, 120)]
    (d / "records.bin").write_bytes(b"\0".join(records["nul"]) + b"\0")
    (d / "empty.txt").write_bytes(b"")
    records["empty"] = []
    records["gz"] = records["lines"]
    names = _text_records("table", 4000, 0, 30)
    values = _lengths("table/values", 4000, 0, 99999)
    rows = [
        {"id": i, "name": name[6:].decode(), "value": None if v % 11 == 0 else v - 50000, "flag": v % 3 == 0}
        for i, (name, v) in enumerate(zip(names, values))
    ]
    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("value", pa.int32()), ("flag", pa.bool_())])
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, d / "table.parquet", row_group_size=1000)
    with pa.ipc.new_file(d / "table.arrow", schema) as writer:
        writer.write_table(table, max_chunksize=1000)
    return Data(
        lines=d / "lines.txt", jsonl=d / "rows.jsonl", nofinal=d / "nofinal.txt", gz=d / "lines.txt.gz",
        fastq=d / "reads.fastq", csv=d / "table.csv", nul=d / "records.bin", empty=d / "empty.txt",
        parquet=d / "table.parquet", arrow=d / "table.arrow", records=records, rows=rows,
    )


# ---------------------------------------------------------------- hashing and checks


def _digest(data: bytes) -> str:
    """First 16 hex digits of the SHA-256 of ``data`` (as ``sha256sum FILE | cut -c1-16`` prints)."""
    return hashlib.sha256(data).hexdigest()[:16]


def _read_table(path: Path) -> Any:
    """A Parquet or Arrow IPC output as (table, layout): rows per row group (with each column's
    codec) or per record batch."""
    if path.suffix == ".parquet":
        f = pq.ParquetFile(path)
        groups = [f.metadata.row_group(i) for i in range(f.metadata.num_row_groups)]
        layout = [(g.num_rows, [g.column(c).compression for c in range(g.num_columns)]) for g in groups]
        return f.read(), layout
    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_file(source)
        batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
        return pa.Table.from_batches(batches, schema=reader.schema), [b.num_rows for b in batches]


def _table_content(path: Path) -> bytes:
    """A table output's content, canonically: schema, row-group sizes and rows (not the file bytes,
    which name the writer's version)."""
    table, layout = _read_table(path)
    return repr((table.schema.to_string(show_schema_metadata=True), layout, table.to_pylist())).encode()


def _split(data: bytes, sep: bytes = b"\n", group: int = 1) -> list[bytes]:
    """Records of an output: ``group`` lines joined by ``sep``, each (the last too) ending with ``sep``."""
    assert data == b"" or data.endswith(sep), "an output ends with its separator"
    lines = data[:-1].split(sep) if data else []
    assert len(lines) % group == 0
    return [sep.join(lines[i : i + group]) for i in range(0, len(lines), group)]


def _assert_permutation(output: bytes, records: list[bytes], sep: bytes = b"\n", group: int = 1) -> None:
    """``output`` holds exactly ``records``, in any order, and not in the input's order."""
    got = _split(output, sep, group)
    assert sorted(got) == sorted(records)
    assert len(records) < 2 or got != records


# ---------------------------------------------------------------- rows


@dataclass
class Outcome:
    """What a row produced: named hashes of its output(s) and the run's statistics."""

    hashes: dict[str, str]
    passes: int | None = None
    buckets: int | None = None


RowFn = Callable[[Data, Path, int], Outcome]
ROWS: dict[str, RowFn] = {}


def row(name: str) -> Callable[[RowFn], RowFn]:
    """Register a row of the table under ``name``."""

    def register(fn: RowFn) -> RowFn:
        assert name not in ROWS
        ROWS[name] = fn
        return fn

    return register


def _run(inputs: Any, out: Path, seed: int, **options: Any) -> Any:
    """``bigshuf.shuffle`` with ``seed`` and temporary files under ``out``'s directory (checked left empty)."""
    temp = Path(out).parent / "temp"
    temp.mkdir(exist_ok=True)
    stats = bigshuf.shuffle(inputs, out, seed=seed, tmp_dir=temp, **options)
    assert os.listdir(temp) == []
    return stats


def _lines_row(
    name: str, source: str, *, expect: str, sep: bytes = b"\n", suffix: str = ".txt",
    sample: bool = False, **options: Any,
) -> None:
    """Register a row shuffling the line input ``source`` with ``options`` into one file.

    ``expect`` is the path it must take: "memory", "external" or "recursive".
    """

    def run(d: Data, tmp: Path, seed: int) -> Outcome:
        out = tmp / f"out{suffix}"
        stats = _run(getattr(d, source), out, seed, **options)
        blob = out.read_bytes()
        codec = {".zst": "zstd", ".gz": "gzip"}.get(out.suffix)
        by_cpu = codec == "gzip" and options.get("compress", "gzip:6") not in ("gzip:1", "gzip:2", "gzip:3")
        hashes = {} if by_cpu else {"bytes": _digest(blob)}
        if codec:
            blob = decompress(codec, blob)
            hashes["content"] = _digest(blob)
        records = d.records[source]
        group = options.get("lines_per_record", 1)
        if options.get("header"):
            header, _, blob = blob.partition(b"\n")
            assert header == b"id,value,name"
        if sample:
            got = _split(blob, sep, group)
            assert len(got) == options["head_count"] and set(got) <= set(records)
            if not options.get("repeat"):
                assert len(set(got)) == len(got)
        else:
            _assert_permutation(blob, records, sep, group)
        _assert_path(stats, expect)
        return Outcome(hashes, stats.passes, stats.buckets)

    row(name)(run)


def _assert_path(stats: Any, expect: str) -> None:
    """The run took the path its row is there to cover."""
    if expect == "memory":
        assert (stats.passes, stats.buckets) == (1, 0)
    elif expect == "external":
        assert stats.passes == 2 and stats.buckets > 1
    else:
        assert expect == "recursive"
        assert stats.passes > 2


# In memory (default limit), external (a few KiB) and recursive (JSON lines of up to 2 KB at
# 8K, or FASTQ records at the minimum limit: buckets overflow and are scattered again; at
# these sizes both seeds recurse).
_lines_row("lines-mem", "lines", expect="memory")
_lines_row("lines-ext", "lines", expect="external", memory="16K")
_lines_row("lines-ext-min", "lines", expect="external", memory="2K")
_lines_row("jsonl-rec", "jsonl", expect="recursive", memory="8K")
_lines_row("jsonl-rec-deep", "jsonl", expect="recursive", memory="4K")
_lines_row("nofinal-mem", "nofinal", expect="memory")
_lines_row("nofinal-ext", "nofinal", expect="external", memory="4K")
_lines_row("empty", "empty", expect="memory")
_lines_row("head-mem", "lines", expect="memory", sample=True, head_count=100)
_lines_row("head-ext", "lines", expect="external", sample=True, head_count=100, memory="16K")
_lines_row("head-ext-most", "lines", expect="external", sample=True, head_count=1400, memory="16K")
_lines_row("header-mem", "csv", expect="memory", header=1)
_lines_row("header-ext", "csv", expect="external", header=1, memory="8K")
_lines_row("fastq-mem", "fastq", expect="memory", lines_per_record=4)
_lines_row("fastq-ext", "fastq", expect="external", lines_per_record=4, memory="8K")
_lines_row("fastq-rec", "fastq", expect="recursive", lines_per_record=4, memory=MIN)
_lines_row("nul-mem", "nul", expect="memory", sep=b"\0", zero_terminated=True)
_lines_row("nul-ext", "nul", expect="external", sep=b"\0", zero_terminated=True, memory="8K")
_lines_row("jsonl-ext", "jsonl", expect="external", memory="32K")
_lines_row("jsonl-ext-ctemp", "jsonl", expect="external", memory="32K", compress_temp=True)
_lines_row("jsonl-rec-ctemp", "jsonl", expect="recursive", memory="8K", compress_temp=True)
_lines_row("zstd-out-mem", "lines", expect="memory", suffix=".txt.zst")
_lines_row("zstd-out-ext", "lines", expect="external", suffix=".txt.zst", memory="16K")
_lines_row("gzip-out-ext", "lines", expect="external", suffix=".txt.gz", memory="16K")
_lines_row("gzip1-out-mem", "lines", expect="memory", suffix=".txt.gz", compress="gzip:1")
_lines_row("gz-in-mem", "gz", expect="memory")
# A compressed input's size is estimated from its first block, as fed to the decoder: the plain
# input's buckets, and so its bytes.
_lines_row("gz-in-ext", "gz", expect="external", memory="16K")
_lines_row("resume-ext", "lines", expect="external", resume=True, memory="16K")
_lines_row("resume-rec", "jsonl", expect="recursive", resume=True, memory="8K")
_lines_row("verify-mem", "lines", expect="memory", verify=True)
_lines_row("verify-ext", "lines", expect="external", verify=True, memory="16K")
_lines_row("verify-rec", "jsonl", expect="recursive", verify=True, memory="8K")
_lines_row("repeat-mem", "lines", expect="memory", sample=True, head_count=3000, repeat=True)
_lines_row("repeat-few", "lines", expect="memory", sample=True, head_count=7, repeat=True)


@row("multi-mem")
def _multi_mem(d: Data, tmp: Path, seed: int) -> Outcome:
    return _multi(d, tmp, seed, "memory")


@row("multi-ext")
def _multi_ext(d: Data, tmp: Path, seed: int) -> Outcome:
    return _multi(d, tmp, seed, "external", memory="8K")


def _multi(d: Data, tmp: Path, seed: int, expect: str, **options: Any) -> Outcome:
    """Several inputs read as one: a plain file, one lacking its final newline, a compressed one."""
    out = tmp / "out.txt"
    stats = _run([d.lines, d.nofinal, d.gz], out, seed, **options)
    blob = out.read_bytes()
    _assert_permutation(blob, d.records["lines"] + d.records["nofinal"] + d.records["lines"])
    _assert_path(stats, expect)
    return Outcome({"bytes": _digest(blob)}, stats.passes, stats.buckets)


def _shard_hashes(paths: list[Path], content: Callable[[Path], bytes]) -> dict[str, str]:
    """One hash over every shard in order: of the lines ``SHA256  NAME`` that ``sha256sum`` would list."""
    assert paths
    listing = "".join(f"{hashlib.sha256(content(p)).hexdigest()}  {p.name}\n" for p in paths)
    return {"shards": _digest(listing.encode())}


def _line_shards(expect: str, count: int, source: str = "lines", **options: Any) -> RowFn:
    """A row writing the line input ``source`` as ``count`` shards into a directory."""

    def run(d: Data, tmp: Path, seed: int) -> Outcome:
        stats = _run(getattr(d, source), f"{tmp / 'shards'}/", seed, shards=count, **options)
        paths = sorted((tmp / "shards").iterdir())
        assert len(paths) == count
        codec = {"zstd": "zstd", "gzip": "gzip"}.get(options.get("compress", ""))
        joined = b"".join(decompress(codec, p.read_bytes()) if codec else p.read_bytes() for p in paths)
        if "head_count" in options:
            assert len(_split(joined)) == options["head_count"]
        else:
            _assert_permutation(joined, d.records[source])
        _assert_path(stats, expect)
        return Outcome(_shard_hashes(paths, Path.read_bytes), stats.passes, stats.buckets)

    return run


row("shards-mem")(_line_shards("memory", 3))
row("shards-ext")(_line_shards("external", 5, memory="16K"))
row("shards-ext-head")(_line_shards("external", 3, memory="16K", head_count=200))
row("shards-rec-zstd")(_line_shards("recursive", 2, "jsonl", memory="8K", compress="zstd"))


def _range_row(name: str, lo: int, hi: int, *, expect: str | None, sample: bool = False, **options: Any) -> None:
    """Register a row of ``shuffle_range(lo, hi)``; ``expect`` None where the range is drawn directly."""

    def run(d: Data, tmp: Path, seed: int) -> Outcome:
        out = tmp / "out.txt"
        temp = tmp / "temp"
        temp.mkdir()
        stats = bigshuf.shuffle_range(lo, hi, out, seed=seed, tmp_dir=temp, **options)
        assert os.listdir(temp) == []
        blob = out.read_bytes()
        numbers = [b"%d" % i for i in range(lo, hi + 1)] if hi - lo < 10**6 else None
        if sample:
            got = _split(blob)
            assert len(got) == options["head_count"]
            assert numbers is None or set(got) <= set(numbers)
        else:
            assert numbers is not None
            _assert_permutation(blob, numbers)
        if expect is not None:
            _assert_path(stats, expect)
        return Outcome({"bytes": _digest(blob)}, stats.passes, stats.buckets)

    row(name)(run)


_range_row("range-mem", 1, 3000, expect="memory")
_range_row("range-ext", 0, 9999, expect="external", memory="16K")
_range_row("range-head-draw", 1, 3000, expect=None, sample=True, head_count=50)
_range_row("range-head-mem", 1, 3000, expect="memory", sample=True, head_count=2000)
_range_row("range-head-ext", 0, 9999, expect="external", sample=True, head_count=7000, memory="16K")
_range_row("range-repeat", 5, 9, expect=None, sample=True, head_count=40, repeat=True)
_range_row("range-wide", 0, 2**64 - 1, expect=None, sample=True, head_count=5)


def _table_row(name: str, source: str, suffix: str, *, expect: str, **options: Any) -> None:
    """Register a row shuffling the table (or JSON Lines) input ``source`` into an ``out.SUFFIX``."""

    def run(d: Data, tmp: Path, seed: int) -> Outcome:
        out = tmp / f"out.{suffix}"
        stats = _run(getattr(d, source), out, seed, **options)
        if suffix == "jsonl":
            blob = out.read_bytes()
            rows = [json.loads(line) for line in _split(blob)]
        else:
            blob = _table_content(out)
            rows = _read_table(out)[0].to_pylist()
        expected = d.rows if source != "jsonl" else [json.loads(r) for r in d.records["jsonl"]]
        if "head_count" in options:
            assert len(rows) == options["head_count"]
            assert len({r["id"] for r in rows}) == len(rows)
            assert all(r == expected[r["id"]] for r in rows)
        else:
            assert sorted(rows, key=lambda r: r["id"]) == expected
            assert rows != expected
        _assert_path(stats, expect)
        return Outcome({"bytes" if suffix == "jsonl" else "content": _digest(blob)}, stats.passes, stats.buckets)

    row(name)(run)


_table_row("pq-pq-mem", "parquet", "parquet", expect="memory")
_table_row("pq-pq-ext", "parquet", "parquet", expect="external", memory="64K")
_table_row(
    "pq-pq-ext-verify-ctemp", "parquet", "parquet", expect="external", memory="64K", verify=True, compress_temp=True
)
_table_row("pq-pq-head-mem", "parquet", "parquet", expect="memory", head_count=100)
_table_row("pq-pq-head-ext", "parquet", "parquet", expect="external", head_count=100, memory="64K")
_table_row("pq-pq-rowgroup", "parquet", "parquet", expect="memory", row_group_size=700)
_table_row("arrow-arrow-mem", "arrow", "arrow", expect="memory")
_table_row("arrow-arrow-ext", "arrow", "arrow", expect="external", memory="64K")
_table_row("arrow-pq-mem", "arrow", "parquet", expect="memory")
_table_row("pq-jsonl-mem", "parquet", "jsonl", expect="memory")
_table_row("pq-jsonl-ext", "parquet", "jsonl", expect="external", memory="64K")
_table_row("jsonl-pq-mem", "jsonl", "parquet", expect="memory")
_table_row("jsonl-pq-ext", "jsonl", "parquet", expect="external", memory="64K")
_table_row("jsonl-pq-rec", "jsonl", "parquet", expect="recursive", memory="8K")
_table_row("jsonl-arrow-rec-head", "jsonl", "arrow", expect="recursive", memory="4K", head_count=250)


def _table_shards(expect: str, count: int, **options: Any) -> RowFn:
    """A row writing the Parquet input as ``count`` Parquet shards into a directory."""

    def run(d: Data, tmp: Path, seed: int) -> Outcome:
        stats = _run(d.parquet, f"{tmp / 'shards'}/", seed, shards=count, output_format="parquet", **options)
        paths = sorted((tmp / "shards").iterdir())
        assert len(paths) == count
        rows = [r for p in paths for r in _read_table(p)[0].to_pylist()]
        if "head_count" in options:
            assert len(rows) == options["head_count"]
        else:
            assert sorted(rows, key=lambda r: r["id"]) == d.rows
        _assert_path(stats, expect)
        return Outcome(_shard_hashes(paths, _table_content), stats.passes, stats.buckets)

    return run


row("pq-shards-mem")(_table_shards("memory", 3))
row("pq-shards-ext-head")(_table_shards("external", 3, memory="64K", head_count=500))


def _dask_row(expect: str, **options: Any) -> RowFn:
    """A row of the Dask engine on ``lines``, its tasks run in-process by a thread pool (as test_dask does)."""

    def run(d: Data, tmp: Path, seed: int) -> Outcome:
        from bigshuf.engines import dask as dask_engine

        out = tmp / "out"
        temp = tmp / "temp"
        temp.mkdir()
        shards = options.get("shards")
        target = f"{out}/" if shards else out
        with ThreadPoolExecutor(2) as runner:
            stats = dask_engine.shuffle([d.lines, d.nofinal], target, seed=seed, runner=runner, tmp_dir=temp, **options)
        assert os.listdir(temp) == []
        paths = sorted(out.iterdir()) if shards else [out]
        joined = b"".join(p.read_bytes() for p in paths)
        if "head_count" in options:
            assert len(_split(joined)) == options["head_count"]
        else:
            _assert_permutation(joined, d.records["lines"] + d.records["nofinal"])
        _assert_path(stats, expect)
        return Outcome(_shard_hashes(paths, Path.read_bytes), stats.passes, stats.buckets)

    return run


row("dask-ext")(_dask_row("external", memory="16K"))
row("dask-rec-shards")(_dask_row("recursive", memory="1K", shards=3))
row("dask-head")(_dask_row("external", memory="16K", head_count=300))


def _cli_row(name: str, make_args: Callable[[Data, Path, int], list[str]], records: str | None) -> None:
    """Register a row running ``python -m bigshuf`` (the command line must stay identical too)."""

    def run(d: Data, tmp: Path, seed: int) -> Outcome:
        out = tmp / "out.txt"
        proc = subprocess.run(
            [sys.executable, "-m", "bigshuf", *make_args(d, tmp, seed), "-o", str(out)],
            capture_output=True, timeout=60,
        )
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")
        blob = out.read_bytes()
        if records is not None:
            _assert_permutation(blob, d.records[records])
        return Outcome({"bytes": _digest(blob)})

    row(name)(run)


_cli_row("cli-ext", lambda d, tmp, seed: ["-S", "16K", f"--seed={seed}", "-T", str(tmp), str(d.lines)], "lines")
_cli_row("cli-n", lambda d, tmp, seed: ["-n", "100", f"--seed={seed}", str(d.lines)], None)
_cli_row("cli-i", lambda d, tmp, seed: ["-i", "1-3000", f"--seed={seed}"], None)
_cli_row("cli-i-n", lambda d, tmp, seed: ["-i", "1-3000", "-n", "50", f"--seed={seed}"], None)


# ---------------------------------------------------------------- the test


def _keys() -> list[str]:
    """Every key of the table, in the order of the rows."""
    return [f"{name}/{seed}" for name in ROWS for seed in SEEDS]


_printed: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module", autouse=True)
def _print_table() -> Iterator[None]:
    """With BIGSHUF_GOLDEN_PRINT=1, print every row's result as a ``GOLDEN`` literal at the end."""
    yield
    if PRINT:
        print("\nGOLDEN: dict[str, dict[str, Any]] = {")
        for key in _keys():
            if key in _printed:
                print(f"    {json.dumps(key)}: {json.dumps(_printed[key])},")
        print("}")


def test_table_has_exactly_the_rows() -> None:
    if PRINT:
        pytest.skip("printing the table, not checking it")
    assert sorted(GOLDEN) == sorted(_keys())


#: Rows whose output must equal another row's, as (row, its hash, other row, its hash): options
#: that only check, checkpoint or compress (and the command line) do not change the order.
SAME = [
    ("resume-ext", "bytes", "lines-ext", "bytes"),
    ("resume-rec", "bytes", "jsonl-rec", "bytes"),
    ("verify-mem", "bytes", "lines-mem", "bytes"),
    ("verify-ext", "bytes", "lines-ext", "bytes"),
    ("verify-rec", "bytes", "jsonl-rec", "bytes"),
    ("jsonl-ext-ctemp", "bytes", "jsonl-ext", "bytes"),
    ("jsonl-rec-ctemp", "bytes", "jsonl-rec", "bytes"),
    ("gz-in-mem", "bytes", "lines-mem", "bytes"),
    ("zstd-out-mem", "content", "lines-mem", "bytes"),
    ("zstd-out-ext", "content", "lines-ext", "bytes"),
    ("gzip-out-ext", "content", "lines-ext", "bytes"),
    ("gzip1-out-mem", "content", "lines-mem", "bytes"),
    ("cli-ext", "bytes", "lines-ext", "bytes"),
    ("cli-n", "bytes", "head-mem", "bytes"),
    ("cli-i", "bytes", "range-mem", "bytes"),
    ("cli-i-n", "bytes", "range-head-draw", "bytes"),
    ("pq-pq-ext-verify-ctemp", "content", "pq-pq-ext", "content"),
    ("arrow-pq-mem", "content", "pq-pq-mem", "content"),
]


@pytest.mark.parametrize(("name", "part", "like", "like_part"), SAME)
def test_rows_that_must_agree(name: str, part: str, like: str, like_part: str) -> None:
    # Checked on the recorded table, so that a regenerated one cannot lose these equalities.
    if PRINT:
        pytest.skip("printing the table, not checking it")
    for seed in SEEDS:
        assert GOLDEN[f"{name}/{seed}"][part] == GOLDEN[f"{like}/{seed}"][like_part]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(ROWS))
def test_golden(name: str, seed: int, data: Data, tmp_path: Path) -> None:
    outcome = ROWS[name](data, tmp_path, seed)
    got: dict[str, Any] = dict(outcome.hashes)
    if outcome.passes is not None:
        got.update(passes=outcome.passes, buckets=outcome.buckets)
    key = f"{name}/{seed}"
    if PRINT:
        _printed[key] = got
    else:
        assert got == GOLDEN[key]
