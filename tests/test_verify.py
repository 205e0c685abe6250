"""Record fingerprints: --verify during a shuffle and --check-permutation after the fact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bigshuf
import bigshuf.core.gather
from bigshuf.core.fingerprint import Fingerprint, fingerprint
from bigshuf.core.records import RecordFormat, find_offsets

from helpers import make_records, temp_leftovers, write_records


@pytest.fixture(params=["compiled", "numpy"])
def hashing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with the compiled record hash, then with the NumPy one (the fallback where no
    compiler built it). The compiled module must be there: the test install builds it."""
    import bigshuf.core.fingerprint as fingerprint_module

    if request.param == "numpy":
        monkeypatch.setattr(fingerprint_module, "native", None)
    else:
        assert fingerprint_module.native is not None, "bigshuf._hashing was not built (pip install -e . builds it)"
    return str(request.param)


def fp_of(records: list[bytes]):
    data = np.frombuffer(b"".join(r + b"\n" for r in records), np.uint8)
    return fingerprint(data, find_offsets(data, RecordFormat()))


def test_fingerprint_ignores_order_and_sees_every_change() -> None:
    records = make_records(2000, seed=1, min_len=2) + [b"", b""]
    base = fp_of(records)
    assert fp_of(list(reversed(records))) == base
    assert base.records == 2002
    changed = {
        "dropped": records[1:],
        "doubled": records + records[:1],
        "byte altered": [records[0][:-1] + bytes([records[0][-1] ^ 1])] + records[1:],
        "bytes swapped in a record": [records[5][1:2] + records[5][:1] + records[5][2:]] + records[:5] + records[6:],
        "byte moved between records": [records[0] + records[1][:1], records[1][1:]] + records[2:],
    }
    for what, other in changed.items():
        assert fp_of(other) != base, what


def test_fingerprint_tells_reordered_bytes_apart() -> None:
    # Pairs the position-weighted byte sums of 1ac7d16 could not tell apart: palindromic swaps, and a
    # Thue-Morse pair, which defeats any polynomial hash modulo 2**64 whatever its base.
    thue_morse = np.bitwise_count(np.arange(2048)) % 2
    pairs = [(b"1221", b"2112"), (b"abba", b"baab"), (b"x" * 20 + b"1221", b"x" * 20 + b"2112"),
             (bytes(b"ab"[t] for t in thue_morse), bytes(b"ba"[t] for t in thue_morse))]
    rng = np.random.default_rng(11)
    for length in [2, 3, 7, 8, 9, 16, 17, 63, 64, 65, 1000]:
        for _ in range(40):  # a record and a random reordering of its bytes
            data = rng.integers(0, 4, length, dtype=np.uint8) + ord("a")
            moved = rng.permutation(data)
            if not np.array_equal(data, moved):
                pairs.append((data.tobytes(), moved.tobytes()))
    for a, b in pairs:
        assert fp_of([a]) != fp_of([b]), (a, b)
        assert fp_of([a, b, b"z"]) != fp_of([b, b, b"z"]), (a, b)


def test_record_hash_is_the_same_wherever_the_record_lies(monkeypatch: pytest.MonkeyPatch, hashing: str) -> None:
    import bigshuf.core.fingerprint as fingerprint_module

    records = make_records(300, seed=12, max_len=3000) + [b"", b"y" * 20000]
    alone = [fp_of([r]) for r in records]  # each record at the end of its own block
    together = fp_of(records)
    assert together.digest == sum(f.digest for f in alone) % 2**64
    # Slices smaller than most records: they are hashed a slice at a time, with the same result.
    monkeypatch.setattr(fingerprint_module, "SLICE", 64)
    assert fp_of(records) == together


def test_row_fingerprint_tells_reordered_bytes_apart() -> None:
    import pyarrow as pa

    from bigshuf.formats.rowhash import row_fingerprint

    for a, b in [("1221", "2112"), ("abba", "baab")]:
        for kind in (pa.string(), pa.large_binary()):
            rows = pa.table({"n": [1, 2], "s": pa.array([a, "z"], kind)})
            other = pa.table({"n": [1, 2], "s": pa.array([b, "z"], kind)})
            assert row_fingerprint(rows) != row_fingerprint(other), (a, b, kind)
    import decimal

    fixed = [  # values whose bytes are the same multiset, or that differ only past the first word
        (pa.array([258], pa.int16()), pa.array([513], pa.int16())),
        (pa.array([0.0]), pa.array([-0.0])),
        (pa.array([1 << 8]), pa.array([1 << 48])),
        (pa.array([decimal.Decimal("1")], pa.decimal128(38, 0)), pa.array([decimal.Decimal(2**64)], pa.decimal128(38, 0))),
        (pa.array([True]), pa.array([False])),
    ]
    for a, b in fixed:
        assert row_fingerprint(pa.table({"x": a})) != row_fingerprint(pa.table({"x": b})), (a, b)
    swapped = pa.table({"a": [1, 2], "b": [2, 1]}), pa.table({"a": [2, 1], "b": [1, 2]})
    assert row_fingerprint(swapped[0]) == row_fingerprint(swapped[0].take([1, 0]))
    assert row_fingerprint(pa.table({"a": [1], "b": [2]})) != row_fingerprint(pa.table({"a": [2], "b": [1]}))


def test_check_permutation_sees_bytes_swapped_in_a_record(tmp_path: Path) -> None:
    # The reviewer's case: seq 10000 against itself with 1221 replaced by 2112.
    numbers = b"".join(b"%d\n" % i for i in range(1, 10001))
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(numbers)
    b.write_bytes(numbers.replace(b"\n1221\n", b"\n2112\n"))
    cmd = [sys.executable, "-m", "bigshuf", "--check-permutation", str(a), "--against", str(b)]
    proc = subprocess.run(cmd, capture_output=True)
    assert proc.returncode == 1 and b"records differ" in proc.stderr, proc.stderr


@pytest.mark.parametrize("memory", ["64M", "16K", "2K"])
def test_verify_passes_on_every_path(tmp_path: Path, memory: str) -> None:
    src = write_records(tmp_path / "in", make_records(3000, seed=2))
    bigshuf.shuffle(src, tmp_path / "out", memory=memory, seed=1, verify=True, tmp_dir=tmp_path)
    bigshuf.shuffle(src, str(tmp_path / "s") + "/", memory=memory, seed=1, verify=True, shards=3,
                    compress="zstd", tmp_dir=tmp_path)
    assert len(os.listdir(tmp_path / "s")) == 3


def test_verify_catches_a_lost_record_and_keeps_the_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_records(tmp_path / "in", make_records(500, seed=3))
    target = tmp_path / "out"
    target.write_bytes(b"old\n")
    real = bigshuf.core.gather.emit_in_order

    def lossy(block, offsets, order, emit, per_chunk):  # a gather bug that drops the first record
        real(block, offsets, order[1:], emit, per_chunk)

    monkeypatch.setattr(bigshuf.core.gather, "emit_in_order", lossy)
    lines_shape = (
        r"^verification failed: read 500 records, \d+ bytes, digest [0-9a-f]{16}, "
        r"wrote 499 records, \d+ bytes, digest [0-9a-f]{16}; output not put in place$"
    )
    with pytest.raises(bigshuf.OutputError, match=lines_shape):
        bigshuf.shuffle(src, target, seed=1, verify=True)
    assert target.read_bytes() == b"old\n"
    assert sorted(os.listdir(tmp_path)) == ["in", "out"]


def test_verify_refuses_samples(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in", make_records(10, seed=4))
    with pytest.raises(bigshuf.UsageError, match="verify="):
        bigshuf.shuffle(src, tmp_path / "out", head_count=3, verify=True)


def test_check_permutation_across_shards_and_codecs(tmp_path: Path) -> None:
    records = make_records(4000, seed=5)
    a = write_records(tmp_path / "a", records[:1500])
    b = write_records(tmp_path / "b", records[1500:])
    outdir = tmp_path / "o"
    bigshuf.shuffle([a, b], str(outdir) + "/", memory="16K", seed=2, shards=4, compress="gzip", tmp_dir=tmp_path)
    shards = sorted(outdir.iterdir())
    fin, fout = bigshuf.check_permutation([a, b], shards)
    assert fin == fout and fin.records == 4000
    fin, fout = bigshuf.check_permutation([a], shards)
    assert fin != fout


def test_check_permutation_command(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in", make_records(1000, seed=6))
    out = tmp_path / "out"
    bigshuf.shuffle(src, out, seed=3)
    cmd = [sys.executable, "-m", "bigshuf", "--check-permutation", str(src), "--against", str(out)]
    ok = subprocess.run(cmd, capture_output=True)
    assert (ok.returncode, ok.stdout) == (0, b"") and b"same records: 1000 records" in ok.stderr
    out.write_bytes(out.read_bytes()[:-5] + b"XXXX\n")
    bad = subprocess.run(cmd, capture_output=True)
    assert bad.returncode == 1 and b"records differ" in bad.stderr


def test_check_permutation_compares_each_outputs_header_with_the_first_inputs(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """``--header=N`` dropped N lines off every output unread: a changed header, or an extra file of N
    lines, passed as "same records"; and when the first input had fewer than N lines (so the shuffle
    wrote a shorter header), a correct shuffle's first record was dropped: "records differ" (found by attack)."""
    (tmp_path / "h.csv").write_bytes(b"id,text\n1,a\n2,b\n3,c\n")
    (tmp_path / "e.csv").write_bytes(b"")
    (tmp_path / "f.csv").write_bytes(b"H\nr1\nr2\n")
    assert run_cli(["--header=1", "--seed", "1", "h.csv", "-o", "ho.csv"], cwd=tmp_path)[0] == 0
    shuffled = (tmp_path / "ho.csv").read_bytes()
    (tmp_path / "evil.csv").write_bytes(shuffled.replace(b"id,text\n", b"EVIL,HEADER\n"))
    (tmp_path / "extra.csv").write_bytes(b"junk\n")
    for against in (["evil.csv"], ["ho.csv", "extra.csv"]):
        code, out, err = run_cli(["--check-permutation", "--header=1", "h.csv", "--against", *against], cwd=tmp_path)
        assert (code, out) == (1, b"")
        assert err == f"bigshuf: {against[-1]}: does not start with the header of h.csv (its first 1 line(s), as --header keeps them), as a shuffle of it does\n".encode()
    # The library named its keyword with a second '=': (header==1) (found by a review of the library).
    with pytest.raises(bigshuf.InputError, match=r"h.csv \(its first 1 line\(s\), as header= keeps them\), as a shuffle"):
        bigshuf.check_permutation([tmp_path / "h.csv"], [tmp_path / "evil.csv"], header=1)
    assert run_cli(["--check-permutation", "--header=1", "h.csv", "--against", "ho.csv"], cwd=tmp_path)[0] == 0
    # A first input read from a pipe is read once: its header is the one its reader set aside.
    code, out, err = run_cli(["--check-permutation", "--header=1", "-", "--against", "ho.csv"], input=b"id,text\n1,a\n2,b\n3,c\n", cwd=tmp_path)
    assert (code, out) == (0, b"") and err.startswith(b"bigshuf: same records: 3 records"), err
    # The first input has no line: the shuffle writes no header, and no record is taken for one.
    assert run_cli(["--header=1", "--seed", "1", "e.csv", "f.csv", "-o", "o.csv"], cwd=tmp_path)[0] == 0
    assert sorted((tmp_path / "o.csv").read_bytes().splitlines()) == [b"r1", b"r2"]
    code, out, err = run_cli(["--check-permutation", "--header=1", "e.csv", "f.csv", "--against", "o.csv"], cwd=tmp_path)
    assert (code, out, err) == (0, b"", b"bigshuf: same records: 2 records, 6 bytes, digest 3e493e4304b0fe98\n")
    # Gzip shards, each with the header; and --header=2 over a first input of one line (a header of one).
    bigshuf.shuffle([tmp_path / "f.csv", tmp_path / "h.csv"], str(tmp_path / "p{}.csv.gz"), header=1, seed=1, shards=3)
    shards = sorted(tmp_path.glob("p*.csv.gz"))
    fin, fout = bigshuf.check_permutation([tmp_path / "f.csv", tmp_path / "h.csv"], shards, header=1)
    assert fin == fout and fin.records == 5
    (tmp_path / "one.csv").write_bytes(b"only")
    bigshuf.shuffle([tmp_path / "one.csv", tmp_path / "h.csv"], tmp_path / "two.csv", header=2, seed=1)
    first, *rest = (tmp_path / "two.csv").read_bytes().splitlines()
    assert (first, sorted(rest)) == (b"only", [b"2,b", b"3,c"])
    fin, fout = bigshuf.check_permutation([tmp_path / "one.csv", tmp_path / "h.csv"], tmp_path / "two.csv", header=2)
    assert fin == fout and fin.records == 2


def test_against_without_check_permutation_is_refused_not_ignored(tmp_path: Path) -> None:
    """``--against`` alone took every operand after it and shuffled standard input, exit 0: a script's
    ``bigshuf --against OUT IN && echo same`` passed whatever OUT held. It is now one line, exit 1."""
    (tmp_path / "out").write_bytes(b"a\n")
    (tmp_path / "in").write_bytes(b"b\n")
    run = subprocess.run([sys.executable, "-m", "bigshuf", "--against", "out", "in"], capture_output=True, cwd=tmp_path, input=b"stdin\n")
    assert run.returncode == 1 and run.stdout == b""
    assert run.stderr.count(b"\n") == 1 and b"--against" in run.stderr and b"--check-permutation" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


def test_check_permutation_refuses_options_it_would_ignore(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """``--check-permutation a --against b -n 3 -o a --shards 3 --dry-run`` checked and exited 0, every
    other option silently dropped, and ``-e 1 2`` read its words as files (found by attack). They are
    refused in one line, as ``--check-manifest`` refuses them; the options it takes still work."""
    (tmp_path / "a").write_bytes(b"".join(b"%d\n" % i for i in range(10)))
    (tmp_path / "b").write_bytes(b"".join(b"%d\n" % i for i in reversed(range(10))))
    for extra, named in ((["-n", "3", "-o", "a"], "--head-count"), (["--shards", "3"], "--shards"), (["--dry-run"], "--dry-run"),
                         (["--seed", "1"], "--seed"), (["--files-from", "a"], "--files-from")):
        code, out, err = run_cli(["--check-permutation", "a", "--against", "b", *extra], cwd=tmp_path)
        assert (code, out) == (1, b"") and err.startswith(f"bigshuf: --check-permutation cannot be combined with {named}: ".encode()), err
        assert err.count(b"\n") == 1
    code, _, err = run_cli(["--check-permutation", "-e", "1", "2", "--against", "b"], cwd=tmp_path)
    assert code == 1 and b"cannot be combined with --echo" in err
    code, _, err = run_cli(["--check-permutation", "a", "--against", "b", "-S", "1M", "-j", "1", "--header", "0", "-q"], cwd=tmp_path)
    assert (code, err) == (0, b"bigshuf: same records: 10 records, 20 bytes, digest " + err.split(b"digest ")[1])
    assert (tmp_path / "a").read_bytes().count(b"\n") == 10  # (-o a was refused, not written)


def test_check_permutation_reads_standard_input_on_one_side_only(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """``--check-permutation - --against -``: both sides read standard input at once, each taking a
    varying part of it (4194304 records on one side in one run, 5805696 in the next), records torn
    between them (found by attack). Refused; ``-`` on one side is read as before."""
    data = b"".join(b"%d\n" % i for i in range(1000))
    (tmp_path / "out").write_bytes(data[::-1][1:] + b"\n")  # (reversed digits: a different multiset)
    (tmp_path / "same").write_bytes(data)
    code, out, err = run_cli(["--check-permutation", "-", "--against", "-"], input=data, cwd=tmp_path)
    assert (code, out) == (1, b"") and err == b"bigshuf: standard input ('-') can be read only once: name it on one side of the comparison\n"
    with pytest.raises(bigshuf.UsageError, match="read only once"):
        bigshuf.check_permutation(["-", tmp_path / "same"], ["-"])
    assert run_cli(["--check-permutation", "-", "--against", "same"], input=data, cwd=tmp_path)[0] == 0


def test_check_permutation_takes_generators(tmp_path: Path) -> None:
    """A generator of paths, which ``shuffle`` takes, was used up by a first look for URLs, and the
    check said "inputs: no files given" (found by attack)."""
    (tmp_path / "a").write_bytes(b"1\n2\n3\n")
    (tmp_path / "b").write_bytes(b"3\n1\n2\n")
    fin, fout = bigshuf.check_permutation((p for p in [tmp_path / "a"]), (p for p in [tmp_path / "b"]))
    assert fin == fout and fin.records == 3


@pytest.mark.parametrize("zero", [False, True])
def test_check_permutation_refuses_an_output_whose_last_record_is_unterminated(tmp_path: Path, run_cli, zero: bool) -> None:  # type: ignore[no-untyped-def]
    """Shards ``b`` and ``a\\n`` passed as a shuffle of ``a\\nb\\n``, though joined end to end they hold
    one record, ``ba`` (found by attack): every record a shuffle writes ends with its separator, so an
    output whose last one does not is refused, naming it. An input may lack it (as shuf's may)."""
    sep = b"\0" if zero else b"\n"
    z = ["-z"] if zero else []
    (tmp_path / "in").write_bytes(b"a" + sep + b"b")
    (tmp_path / "s1").write_bytes(b"b")
    (tmp_path / "s2").write_bytes(b"a" + sep)
    code, out, err = run_cli(["--check-permutation", *z, "in", "--against", "s1", "s2"], cwd=tmp_path)
    said = "a NUL" if zero else "a newline"
    assert (code, out) == (1, b"")
    assert err == f"bigshuf: s1: its last record does not end with {said}, as every record a shuffle writes does (files of shards joined end to end would join it with the next one's first)\n".encode()
    (tmp_path / "s1").write_bytes(b"b" + sep)
    assert run_cli(["--check-permutation", *z, "in", "--against", "s1", "s2"], cwd=tmp_path)[0] == 0


def damage_bucket(path: Path, how: str, victim: Path) -> None:
    """Change a bucket file pass 1 wrote: a byte flipped, one cut off or two added at its end, a
    link in its place to ``victim`` (a copy of it: only following the link would read it right),
    or (compressed) its frames garbled in the middle."""
    data = path.read_bytes()
    if how == "flipped":
        path.write_bytes(bytes([data[0] ^ 0x20]) + data[1:])
    elif how == "shorter":
        path.write_bytes(data[:-1])
    elif how == "longer":
        path.write_bytes(data + b"x\n")
    elif how == "symlink":
        victim.write_bytes(data)
        path.unlink()
        path.symlink_to(victim)
    else:
        middle = len(data) // 2
        path.write_bytes(data[:middle] + b"\xff" * 16 + data[middle + 16 :])


@pytest.mark.parametrize(
    "compress_temp,how,j",
    [(False, "flipped", 1), (False, "flipped", 0), (False, "shorter", 1), (False, "longer", 0), (False, "symlink", 1), (True, "garbled", 1)],
)
def test_a_corrupt_bucket_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], compress_temp: bool, how: str, j: int
) -> None:
    """A bucket changed on disk between the passes is refused in one line naming it, exit 1, nothing
    left: mapped (uncompressed; bucket 1 is mapped ahead on a worker) or read through the decompressor."""
    import bigshuf.core.buckets
    from bigshuf import cli
    from bigshuf.core import parallel

    monkeypatch.setattr(parallel, "INLINE_BELOW", 0)  # the next bucket is loaded ahead even this small
    src = write_records(tmp_path / "in", make_records(3000, seed=7))
    real_close = bigshuf.core.buckets.BucketSet.close
    damaged: list[tuple[str, int]] = []  # the bucket's file, and the bytes pass 1 wrote to it

    def close_then_damage(self: bigshuf.core.buckets.BucketSet) -> None:  # once pass 1 has written bucket j
        real_close(self)
        if not damaged:
            damaged.append((self.path(j), int(self.sizes[j])))
            damage_bucket(Path(self.path(j)), how, tmp_path / "victim")

    monkeypatch.setattr(bigshuf.core.buckets.BucketSet, "close", close_then_damage)
    temp, target = tmp_path / "T", tmp_path / "out"
    temp.mkdir()
    args = ["--seed", "1", "-S", "16K", "-T", str(temp), "-o", str(target), str(src)]
    assert cli.main(args + ["--compress-temp"] * compress_temp) == 1
    err = capsys.readouterr().err
    path, size = damaged[0]
    expected = {
        "flipped": "temporary bucket is corrupt (checksum mismatch); its disk may be failing",
        "shorter": f"temporary bucket is corrupt ({size - 1} bytes where pass 1 wrote {size}); its disk may be failing",
        "longer": f"temporary bucket is corrupt ({size + 2} bytes where pass 1 wrote {size}); its disk may be failing",
        "symlink": "cannot open this temporary bucket: Too many levels of symbolic links",
    }.get(how, "")
    assert err.startswith(f"bigshuf: {path}: {expected}") and err.count("\n") == 1, err
    assert not target.exists() and temp_leftovers(temp) == []
    if how == "symlink":
        assert os.path.getsize(tmp_path / "victim") > 0  # left as it was


def _corpus(seed: int, lo: int, hi: int, n: int) -> bytes:
    """``n`` newline-ended records of ``lo`` to ``hi - 1`` random bytes (newlines replaced)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(lo, hi, n)
    return b"".join(rng.integers(0, 256, int(k), dtype=np.uint8).tobytes().replace(b"\n", b"x") + b"\n" for k in lengths)


def test_fingerprint_values_are_pinned(hashing: str) -> None:
    # Recorded with the hash of 7e97b09: a faster hash of the same records must give the same values
    # (fingerprints saved by --resume, and the two sides of a check made by different versions).
    from bigshuf.core.fingerprint import record_hashes

    rng = np.random.default_rng(13)
    lengths = rng.integers(0, 40, 3000) * rng.integers(0, 2, 3000)  # about half empty, as Arrow strings may be
    strings = rng.integers(0, 256, int(lengths.sum()), dtype=np.uint8), np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    blocks = {name: np.frombuffer(_corpus(*args), np.uint8) for name, args in
              [("short", (1, 0, 100, 5000)), ("long", (2, 500, 1500, 800)), ("huge", (3, 0, 3_000_000, 3))]}
    cases = {name: (block, find_offsets(block, RecordFormat())) for name, block in blocks.items()}
    cases["empty records"] = strings
    pinned = {  # records, bytes, digest, and the XOR of every record's hash
        "short": (5000, 252911, 0x82DFF0D87F9DDF05, 0x295B6031A447F423),
        "long": (800, 804328, 0x933D8341C3881D40, 0x1485569C245D2256),
        "huge": (3, 3229785, 0x550E7AE99B7707A6, 0x8EE28C96C448E670),
        "empty records": (3000, 28637, 0x7593460F51751442, 0xE908D1FC859A9E86),
    }
    for what, (block, offsets) in cases.items():
        records, size, digest, hashes = pinned[what]
        assert fingerprint(block, offsets) == Fingerprint(records, size, digest), what
        assert int(np.bitwise_xor.reduce(record_hashes(block, offsets))) == hashes, what


def test_compiled_hash_gives_the_numpy_values_on_every_shape(hashing: str) -> None:
    """Records of 0 bytes to past the compiled key table (32 KiB) and past a slice (1 MiB), any
    offset dtype, a block starting mid-array: the compiled hashes equal NumPy's, record by record."""
    import bigshuf.core.fingerprint as fm

    rng = np.random.default_rng(21)
    lengths = np.concatenate([np.arange(0, 70), rng.integers(0, 3000, 400), [32767, 32768, 32775, 40001, (1 << 20) + 13]])
    rng.shuffle(lengths)
    block = rng.integers(0, 256, int(lengths.sum()) + 5, dtype=np.uint8)
    offsets = np.concatenate([[3], 3 + np.cumsum(lengths)])
    expected = fm.numpy_record_hashes(block, offsets)
    for dtype in (np.int64, np.uint32, np.int32):
        assert np.array_equal(fm.record_hashes(block, offsets.astype(dtype)), expected)
        assert fm.fingerprint(block, offsets.astype(dtype)) == fm.numpy_fingerprint(block, offsets)
    assert fm.fingerprint(block, offsets).digest == int(expected.sum(dtype=np.uint64))


def test_compiled_hash_refuses_offsets_outside_the_block() -> None:
    """Offsets past the block's end, negative or decreasing are a ValueError, never a read out of bounds."""
    import bigshuf.core.fingerprint as fm

    assert fm.native is not None, "bigshuf._hashing was not built (pip install -e . builds it)"
    block = np.zeros(100, np.uint8)
    out = np.zeros(2, np.uint64)
    for bad in ([0, 50, 101], [-1, 50, 100], [0, 60, 50]):
        with pytest.raises(ValueError, match="within the block"):
            fm.native.hash_records(block, np.array(bad, np.int64), out)
        with pytest.raises(ValueError, match="within the block"):
            fm.native.hash_records(block, np.array(bad, np.int64), None)
    with pytest.raises(ValueError, match="one hash per record"):
        fm.native.hash_records(block, np.array([0, 10], np.int64), out)
    with pytest.raises(TypeError, match="64-bit integers"):
        fm.native.hash_records(block, np.array([0, 10], np.float64), None)


@pytest.mark.parametrize("group", [1, 3])
def test_fingerprint_records_finds_the_records_itself(monkeypatch: pytest.MonkeyPatch, group: int, hashing: str) -> None:
    import bigshuf.core.fingerprint as fingerprint_module
    from bigshuf.core.fingerprint import fingerprint_records

    fmt = RecordFormat(10, group)
    blocks = [
        _corpus(4, 0, 200, 3000) + b"partial",  # bytes after the last record belong to none
        b"\n" * 5000,  # more records than are hashed at once
        _corpus(5, 0, 40, 300) + b"y" * 5000 + b"\n" + _corpus(6, 0, 40, 300),  # one longer than a slice
    ]
    monkeypatch.setattr(fingerprint_module, "SLICE", 1024)
    monkeypatch.setattr(fingerprint_module, "MAX_RECORDS", 700)
    for data in blocks:
        block = np.frombuffer(data, np.uint8)
        expected = fingerprint(block, find_offsets(block, fmt))
        assert expected.records > 0
        assert fingerprint_records(block, fmt) == expected


@pytest.mark.parametrize("group", [1, 4])
def test_record_cuts_fall_on_record_ends(group: int) -> None:
    from bigshuf.core.records import record_cuts

    fmt = RecordFormat(10, group)
    block = np.frombuffer(_corpus(7, 0, 30, 400 * group) + _corpus(8, 2000, 2001, 4 * group), np.uint8)
    ends = set(find_offsets(block, fmt).tolist())
    for parts in (1, 2, 3, 8, 1000):
        cuts = record_cuts(block, fmt, parts)
        assert cuts[0] == 0 and cuts[-1] == len(block) and cuts == sorted(set(cuts))
        assert set(cuts) <= ends, parts
        assert len(cuts) - 1 == min(parts, len(cuts) - 1) and (parts == 1 or len(cuts) > 2)


def test_check_permutation_is_the_same_with_any_number_of_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bigshuf.api

    monkeypatch.setattr(bigshuf.api, "CHECK_BLOCK", 1 << 16)  # many blocks, each cut for the workers
    records = make_records(20000, seed=9, max_len=60)
    src = write_records(tmp_path / "in", records)
    out = tmp_path / "out"
    bigshuf.shuffle(src, out, seed=4)
    swapped = tmp_path / "swapped"  # two bytes swapped inside one record, deep in the file
    data = bytearray(out.read_bytes())
    at = data.index(b"\n", len(data) // 2) + 1
    while data[at] == data[at + 1] or b"\n" in data[at : at + 2]:
        at += 1
    data[at], data[at + 1] = data[at + 1], data[at]
    swapped.write_bytes(bytes(data))
    results = {}
    for threads in (1, 2, 3, 8):
        results[threads] = bigshuf.check_permutation(src, out, threads=threads)
        fin, fout = results[threads]
        assert fin == fout and fin.records == 20000, threads
        fin, fbad = bigshuf.check_permutation(src, swapped, threads=threads)
        assert fbad != fin and fbad.records == fin.records, threads
    assert len(set(results.values())) == 1
    # --lines-per-record: blocks are cut at whole groups of lines.
    grouped = {bigshuf.check_permutation(src, out, lines_per_record=2, threads=t)[0] for t in (1, 3)}
    assert len(grouped) == 1


def test_check_permutation_threads_argument(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in", make_records(10, seed=10))
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(bigshuf.UsageError, match="threads"):
            bigshuf.check_permutation(src, src, threads=bad)
    fin, fout = bigshuf.check_permutation(src, src, threads=None)
    assert fin == fout and fin.records == 10


def test_reader_blocks_of_a_set_size_grow_only_for_a_long_record(tmp_path: Path) -> None:
    from bigshuf.progress import Progress
    from bigshuf.storage.reader import RecordReader
    from bigshuf.storage.sources import FileSource

    data = b"a\n" * 3000 + b"b" * 9000 + b"\n" + b"c\n" * 3000
    src = tmp_path / "in"
    src.write_bytes(data)
    reader = RecordReader([FileSource(src)], RecordFormat(), Progress())
    sizes = [len(block) for block, _final in reader.blocks(1 << 20, "-S", block=4096)]
    # Blocks of 4096 until the long record, which the buffer grows (and stays grown) to hold.
    assert sum(sizes) == len(data) and sizes[:2] == [4096, 6000 - 4096] and max(sizes) >= 9001
    reader = RecordReader([FileSource(src)], RecordFormat(), Progress())
    with pytest.raises(bigshuf.InputError, match="longer than"):
        list(reader.blocks(8192, "-S", block=4096))


def test_check_permutation_memory_covers_its_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import concurrent.futures

    import bigshuf.api

    pools: list[int] = []

    class Recorded(concurrent.futures.ThreadPoolExecutor):
        def __init__(self, max_workers: int) -> None:
            pools.append(max_workers)
            super().__init__(max_workers)

    class RecordedWorkers(bigshuf.api.Workers):
        def __init__(self, n: int) -> None:
            pools.append(n)
            super().__init__(n)

    monkeypatch.setattr(bigshuf.api, "ThreadPoolExecutor", Recorded)
    monkeypatch.setattr(bigshuf.api, "Workers", RecordedWorkers)
    src = write_records(tmp_path / "in", make_records(100, seed=11))
    for memory, workers in [("40M", 1), ("160M", 2), ("1G", 8)]:
        pools.clear()
        fin, fout = bigshuf.check_permutation(src, src, memory=memory, threads=8)
        assert fin == fout and pools == [2, workers], memory  # the two sides' readers, then the hashers
