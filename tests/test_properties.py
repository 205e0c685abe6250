"""Property-based tests: whatever the records, limit and options, the output is a permutation
(or, with -n, a sample without replacement) of the input."""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bigshuf
from bigshuf.core import plan
from bigshuf.storage.codecs import SNIFF_BYTES, detect

byte_records = st.lists(
    st.one_of(
        st.binary(max_size=8),
        st.binary(min_size=100, max_size=3000),
        st.sampled_from([b"", b"\r", b"\x00", b"a\x00b", b"\xff\xfe", b"\r\r"]),
    ),
    max_size=120,
)


def _split(data: bytes, sep: bytes) -> list[bytes]:
    assert data == b"" or data.endswith(sep)
    return data.split(sep)[:-1] if data else []


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=byte_records,
    final_sep=st.booleans(),
    zero=st.booleans(),
    memory=st.sampled_from(["1K", "2K", "8K", "64K", "64M"]),
    head=st.one_of(st.none(), st.integers(0, 150)),
    shards=st.one_of(st.none(), st.integers(1, 5)),
    seed=st.integers(0, 2**32),
)
def test_always_a_permutation(records, final_sep, zero, memory, head, shards, seed) -> None:
    sep = b"\0" if zero else b"\n"
    records = [r.replace(sep, b"") for r in records]
    while not final_sep and records and records[-1] == b"":
        records = records[:-1]  # a missing final separator cannot express trailing empty records
    data = sep.join(records) + (sep if final_sep and records else b"")
    if detect(data[:SNIFF_BYTES]):
        # A plain file that opens with a codec's magic bytes is read as compressed, by design
        # (as zcat -f would); such inputs are the codecs' tests' business, not this one's.
        data = b"plain:" + data
        records = [b"plain:" + records[0]] + records[1:] if records else [b"plain:"]
    if len(max(records, key=len, default=b"")) + 1 > plan.read_capacity(plan.parse_size(memory)):
        memory = "8K"  # the longest record must fit the read buffer (half the limit)
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "in"
        src.write_bytes(data)
        target = os.path.join(d, "out") + ("/" if shards else "")
        stats = bigshuf.shuffle(src, target, memory=memory, seed=seed, head_count=head, shards=shards,
                                zero_terminated=zero, tmp_dir=d)
        if shards:
            names = sorted(os.listdir(target))
            assert len(names) == shards
            got = [r for n in names for r in _split((Path(target) / n).read_bytes(), sep)]
        else:
            got = _split(Path(target).read_bytes(), sep)
        assert sorted(os.listdir(d)) == (["in", "out"])
    expected = Counter(records)
    if head is None or head >= len(records):
        assert Counter(got) == expected
    else:
        assert len(got) == head and not Counter(got) - expected
    assert stats.records == len(got)
