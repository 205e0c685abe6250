"""``--dry-run`` and ``plan_shuffle``: the plan's figures against what the run then does, its checks
failing as the run would fail (a too-small -T, an output that cannot be written, too few file
descriptors), and nothing created, written, locked or removed anywhere."""

from __future__ import annotations

import hashlib
import io
import os
import resource
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bigshuf import UsageError, plan_shuffle, shuffle
from bigshuf.core.plan import format_size
from helpers import compress, kill_at_checkpoint, make_records, run_child, split_records, write_records

from conftest import Runner


def _tree(path: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``path`` (itself included): type, mode, size, modification time and, for
    files, a digest of the bytes. A file made and removed again still changes its directory's mtime."""
    found: dict[str, tuple[Any, ...]] = {}
    for root, dirs, files in os.walk(path):
        for name in [".", *dirs, *files]:
            full = os.path.join(root, name)
            st = os.lstat(full)
            digest = hashlib.sha256(Path(full).read_bytes()).hexdigest() if name in files else ""
            found[os.path.relpath(full, path)] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return found


def _leftovers(temp: Path, out: Path) -> None:
    """Plant what killed runs leave (a dead run's temporary directory, an output lock): a dry run must
    not tidy them, as a real run would."""
    dead = temp / "bigshuf-0123456789ab"
    dead.mkdir()
    (dead / "lock").write_bytes(b"")
    (dead / "bucket-00000").write_bytes(b"left\n")
    (out / ".bigshuf-0123456789ab.lock").write_bytes(b"")
    (out / ".out.txt.0123456789ab.bigshuf-tmp").write_bytes(b"partial\n")


def _mount_tmpfs(path: Path, options: str) -> None:
    """Mount a tmpfs with ``options`` at ``path``, or skip the test (it needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot mount a tmpfs here: {e}")


def _mounted(tmp_path: Path, name: str, options: str) -> Iterator[Path]:
    """A tmpfs mounted with ``options`` at ``tmp_path/name`` for a test, unmounted afterwards."""
    mnt = tmp_path / name
    _mount_tmpfs(mnt, options)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs."""
    yield from _mounted(tmp_path, "small", "size=1m")


@pytest.fixture
def read_only_fs(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs."""
    yield from _mounted(tmp_path, "ro", "size=1m,ro")


def _lines(stdout: bytes) -> dict[str, str]:
    """The plan's ``name: value`` lines by name."""
    return dict(line.split(": ", 1) for line in stdout.decode().splitlines() if ": " in line)


def plan_lines_of(found: Any) -> dict[str, str]:
    """A plan's ``name: value`` lines by name."""
    return _lines(found.render().encode())


def test_in_memory_plan_counts_a_small_input_and_the_run_agrees(tmp_path: Path) -> None:
    records = make_records(3000, seed=3)
    src = write_records(tmp_path / "in.txt", records)
    temp, out = tmp_path / "T", tmp_path / "out"
    temp.mkdir(), out.mkdir()
    before = _tree(tmp_path)
    found = plan_shuffle(src, out / "o.txt", tmp_dir=temp, memory="64M")
    assert _tree(tmp_path) == before
    assert found.ok and found.exact and found.in_memory
    assert (found.records, found.nbytes, found.passes, found.buckets, found.temp_needed) == (3000, src.stat().st_size, 1, 0, 0)
    assert found.outputs == (str(out / "o.txt"),)
    text = found.render()
    assert "records: 3,000, " in text and "path: in memory, 1 pass" in text and "memory: 64.0 MiB (memory=)" in text
    assert text.endswith("\nok\n")
    stats = shuffle(src, out / "o.txt", tmp_dir=temp, memory="64M")
    assert (stats.records, stats.passes, stats.buckets) == (found.records, found.passes, found.buckets)


def test_a_plan_takes_sources_as_shuffle_does_without_inputs(tmp_path: Path) -> None:
    """``plan_shuffle(sources=..., rates=...)``, as README calls ``shuffle``, was a TypeError: its
    ``inputs`` had no default (found by review)."""
    a = write_records(tmp_path / "a.txt", [b"a%d" % i for i in range(100)])
    b = write_records(tmp_path / "b.txt", [b"b%d" % i for i in range(50)])
    found = plan_shuffle(sources={"a": str(a), "b": str(b)}, rates={"a": 0.5, "b": 2}, seed=1)
    stats = shuffle(sources={"a": str(a), "b": str(b)}, rates={"a": 0.5, "b": 2}, output=tmp_path / "o.txt", seed=1)
    assert found.ok and stats.records == 150 and len((tmp_path / "o.txt").read_bytes().splitlines()) == 150


@pytest.mark.parametrize("rates", [{"big": 1, "small": 9}, {"big": 9, "small": 1}])
def test_compressed_sources_are_weighed_by_their_bytes(tmp_path: Path, rates: dict[str, int]) -> None:
    """Sources of unknown size (compressed) weigh the multiset by their bytes on disk: the plan's
    buckets and space are about the plain files'. Each source had counted alike (the mean rate, 5):
    rates 1 and 9 on 100 times and once the bytes planned 96 buckets and 84 MiB, not 22 and 19 (new-user trial)."""
    sizes = {"big": 100_000, "small": 1_000}
    for name, lines in sizes.items():
        write_records(tmp_path / f"{name}.txt", [b"%s %06d " % (name.encode(), i) + b"x" * (i % 200) for i in range(lines)])
        (tmp_path / f"{name}.txt.gz").write_bytes(compress("gzip", (tmp_path / f"{name}.txt").read_bytes()))
    plans = {}
    for suffix in (".txt", ".txt.gz"):
        sources = {name: str(tmp_path / f"{name}{suffix}") for name in sizes}
        found = plan_shuffle(sources=sources, rates=rates, memory="4M", seed=1, output=tmp_path / "o.txt", tmp_dir=tmp_path)
        plans[suffix] = (found.buckets, found.temp_needed)
    (plain_k, plain_temp), (gz_k, gz_temp) = plans[".txt"], plans[".txt.gz"]
    assert 0.8 < gz_k / plain_k < 1.25 and 0.8 < gz_temp / plain_temp < 1.25, plans


def test_an_external_unique_plan_counts_the_dedup_pass_and_its_space(tmp_path: Path) -> None:
    """--unique through hash buckets was planned as "external, 2 passes" needing the input's size
    once; the run takes a third pass (the dedup's) and may need twice that (found by attack)."""
    src = write_records(tmp_path / "dup.txt", [b"%d" % (i % 100) for i in range(5000)])
    found = plan_shuffle(src, tmp_path / "u.txt", memory="64K", unique=True, seed=1)
    lines = dict(found.lines)
    stats = shuffle(src, tmp_path / "u.txt", memory="64K", unique=True, seed=1, tmp_dir=tmp_path)
    assert found.ok and found.in_memory is False and stats.records == 100
    assert found.passes == stats.passes == 3 and lines["path"].startswith("external, 3 passes, ")
    assert lines["temporary space"].endswith(" free (the dedup's hash buckets; the unique records' buckets take up to as much again)")


@pytest.mark.parametrize("memory", ["1M", "256K"])
def test_external_plan_has_the_runs_buckets_and_passes(tmp_path: Path, memory: str) -> None:
    src = write_records(tmp_path / "in.jsonl", make_records(40000, seed=4, min_len=40, max_len=120))  # ~3.3 MB
    temp, out = tmp_path / "T", tmp_path / "out"
    temp.mkdir(), out.mkdir()
    _leftovers(temp, out)
    before = _tree(tmp_path)
    found = plan_shuffle(src, out / "o.jsonl", tmp_dir=temp, memory=memory, seed=1)
    assert _tree(tmp_path) == before
    assert found.ok and not found.exact and found.in_memory is False
    assert found.temp_needed == found.nbytes == src.stat().st_size + 1  # the run's figure: the size, one separator per input
    assert found.records is not None and abs(found.records - 40000) < 40000 * 0.1
    assert found.descriptors == 6 + found.buckets + 1
    stats = shuffle(src, out / "o.jsonl", tmp_dir=temp, memory=memory, seed=1)
    assert (found.buckets, found.passes) == (stats.buckets, stats.passes) and stats.passes == 2


@pytest.mark.parametrize("memory", ["1M", "4M", "64M"])
@pytest.mark.parametrize("kind", ["parquet", "jsonl"])
def test_table_plan_has_the_runs_path_buckets_and_passes(tmp_path: Path, kind: str, memory: str) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = 60000
    if kind == "parquet":
        src = tmp_path / "t.parquet"
        pq.write_table(pa.table({"id": list(range(rows)), "s": ["v" * (i % 90) for i in range(rows)]}), src, row_group_size=20000)
    else:
        src = tmp_path / "t.jsonl"
        src.write_text("".join(f'{{"id": {i}, "s": "{"v" * (i % 90)}"}}\n' for i in range(rows)))
    temp = tmp_path / "T"
    temp.mkdir()
    before = _tree(tmp_path)
    found = plan_shuffle(src, tmp_path / "o.parquet", tmp_dir=temp, memory=memory, seed=1)
    assert _tree(tmp_path) == before
    assert found.ok
    if kind == "parquet" or found.exact:
        assert found.records == rows  # the files' row count, or every row read
    stats = shuffle(src, tmp_path / "o.parquet", tmp_dir=temp, memory=memory, seed=1)
    assert (found.in_memory, found.buckets, found.passes) == (stats.buckets == 0, stats.buckets, stats.passes)


def test_cli_plan_of_shards_exits_0_and_makes_no_directory(tmp_path: Path, run_cli: Runner) -> None:
    src = write_records(tmp_path / "in.jsonl", make_records(20000, seed=5))
    temp = tmp_path / "T"
    temp.mkdir()
    before = _tree(tmp_path)
    code, out, err = run_cli(
        ["--dry-run", src, "-S", "1M", "-T", temp, "--shards", "4", "-o", tmp_path / "shards" / "part-{:02d}.jsonl.zst"]
    )
    assert (code, err) == (0, b"")
    assert _tree(tmp_path) == before and not (tmp_path / "shards").exists()
    lines = _lines(out)
    assert lines["inputs"] == f"1 file, {format_size(src.stat().st_size)}"
    assert lines["memory"] == "1.0 MiB (-S)"
    assert lines["path"].startswith("external, 2 passes, ") and " buckets, " in lines["path"]
    assert lines["temporary space"].startswith("needs ") and f" in {temp}, " in lines["temporary space"]
    assert lines["output"] == f"{tmp_path}/shards/part-00.jsonl.zst ... {tmp_path}/shards/part-03.jsonl.zst (4 shards)"
    assert out.decode().splitlines()[-1] == "ok"


@pytest.mark.parametrize("memory", ["256K", "64K"])
def test_a_head_count_needs_only_the_temporary_space_it_writes(
    tmp_path: Path, small_fs: Path, run_cli: Runner, memory: str
) -> None:
    """``-n 100`` of a 2 MB input was refused on a 1 MiB -T ("need 1.9 MiB"), though pass 1 drops
    the buckets past the count as it goes and holds a few of them at most; the plan said so too."""
    records = make_records(40000, seed=1)
    src = write_records(tmp_path / "in.txt", records)  # ~2 MB, twice the tmpfs
    args = [src, "-S", memory, "-T", small_fs, "-n", "100", "--seed", "3", "-o", tmp_path / "out.txt"]
    code, stdout, err = run_cli(["--dry-run", *args])
    assert (code, err) == (0, b"")
    need = _lines(stdout)["temporary space"]
    assert need.startswith("needs ~") and need.endswith(f"in {small_fs}, {format_size(shutil.disk_usage(small_fs).free)} free")
    code, _, err = run_cli(args)
    assert (code, err) == (0, b"")
    written = split_records((tmp_path / "out.txt").read_bytes())
    assert len(written) == 100 and not Counter(written) - Counter(records)
    assert os.listdir(small_fs) == []


def test_too_small_temporary_directory_fails_naming_it_and_writes_nothing(
    tmp_path: Path, small_fs: Path, run_cli: Runner
) -> None:
    src = write_records(tmp_path / "in.txt", make_records(40000, seed=1))  # ~2 MB, twice the tmpfs
    out = tmp_path / "out"
    out.mkdir()
    _leftovers(small_fs, out)
    before_temp, before_out = _tree(small_fs), _tree(out)
    args = [src, "-S", "256K", "-T", small_fs, "-o", out / "out.txt"]
    code, stdout, err = run_cli(["--dry-run", *args])
    assert code == 1
    assert _tree(small_fs) == before_temp and _tree(out) == before_out
    message = err.decode().splitlines()
    need, free = format_size(src.stat().st_size + 1), format_size(shutil.disk_usage(small_fs).free)
    assert message == [f"bigshuf: {small_fs}: not enough temporary space: need {need}, {free} free; choose another directory with -T"]
    assert f"failed: temporary space: {message[0].removeprefix('bigshuf: ')}" in stdout.decode().splitlines()
    # The run fails with the same words (with the dead run the dry run left alone gone, as the run tidies it).
    shutil.rmtree(small_fs / "bigshuf-0123456789ab")
    _, _, planned = run_cli(["--dry-run", *args])
    code, _, err = run_cli(args)
    assert code == 1 and err.splitlines()[-1:] == planned.splitlines() and b"not enough temporary space" in err


def test_output_directory_missing_fails_as_the_run_does(tmp_path: Path, run_cli: Runner) -> None:
    src = write_records(tmp_path / "in.txt", make_records(100, seed=2))
    args = [src, "-o", tmp_path / "nowhere" / "out.txt"]
    code, stdout, err = run_cli(["--dry-run", *args])
    assert code == 1 and err == f"bigshuf: {tmp_path}/nowhere/out.txt: No such file or directory\n".encode()
    assert b"\nfailed: output: " in stdout
    assert run_cli(args)[::2] == (1, err)


def test_read_only_output_directory_fails_as_the_run_does(tmp_path: Path, read_only_fs: Path, run_cli: Runner) -> None:
    src = write_records(tmp_path / "in.txt", make_records(100, seed=2))
    args = [src, "-o", read_only_fs / "out.txt"]
    code, _, err = run_cli(["--dry-run", *args])
    assert code == 1 and err == f"bigshuf: {read_only_fs}/out.txt: cannot create a file in {read_only_fs}: Read-only file system\n".encode()
    assert run_cli(args)[::2] == (1, err)


@pytest.mark.skipif(not os.path.isfile("/proc/version") or not os.path.isdir("/sys/kernel"), reason="Linux /proc and /sys")
@pytest.mark.parametrize("target", ["/proc/version", "/sys/kernel/bigshuf-test-out"])
def test_an_output_on_proc_or_sys_fails_the_plan_as_the_run_does(tmp_path: Path, run_cli: Runner, target: str) -> None:
    """``--dry-run -o /proc/version`` said ok (procfs is writable by its permissions and not read-only),
    and so did ``/sys/kernel/X`` as root, where the run refuses both: procfs creates no file (ENOENT)
    and sysfs none either (EACCES). The plan knows them by their file system, and fails as the run does."""
    src = write_records(tmp_path / "in.txt", make_records(100, seed=2))
    code, stdout, err = run_cli(["--dry-run", src, "-o", target])
    why = "its file system does not allow new files" if target.startswith("/proc") else "Permission denied"
    assert code == 1 and err == f"bigshuf: {target}: cannot create a file in {os.path.dirname(target)}: {why}\n".encode(), err
    assert b"\nfailed: output: " in stdout
    assert run_cli([src, "-o", target])[::2] == (1, err)
    assert not os.path.lexists("/sys/kernel/bigshuf-test-out") and sorted(os.listdir(tmp_path)) == ["in.txt"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="Linux /proc")
def test_a_temporary_directory_on_proc_fails_the_run_as_the_plan_does(tmp_path: Path, run_cli: Runner) -> None:
    """``-T /proc`` was refused by the run as "No such file or directory" (procfs's ENOENT from a
    directory that is there), where the plan gives the reason."""
    src = write_records(tmp_path / "in.txt", make_records(3000, seed=2))
    args = ["-S", "16K", "-T", "/proc", src, "-o", tmp_path / "out.txt"]
    err = b"bigshuf: /proc: cannot create a temporary directory: its file system does not allow new files; choose another with -T\n"
    assert run_cli(["--dry-run", *args])[::2] == (1, err)
    assert run_cli(args)[::2] == (1, err)
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any directory")
def test_unwritable_output_directory_fails(tmp_path: Path, run_cli: Runner) -> None:
    src = write_records(tmp_path / "in.txt", make_records(100, seed=2))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    code, _, err = run_cli(["--dry-run", src, "-o", locked / "out.txt"])
    assert code == 1 and err == f"bigshuf: {locked}/out.txt: cannot create a file in {locked}: Permission denied\n".encode()


_AS_NOBODY = """
import os, sys
import bigshuf
src, target = sys.argv[1:]
bigshuf.plan_shuffle(src, target)  # every module loaded while still root
os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
found = bigshuf.plan_shuffle(src, target)
print(found.failures[0].reason if found.failures else "ok")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="changing user needs root")
def test_output_directory_another_user_cannot_write(tmp_path: Path) -> None:
    import tempfile

    # Under /tmp, not pytest's private directory, so that the other user can reach it.
    shared = Path(tempfile.mkdtemp(prefix="bigshuf-dry-run-test-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        src = write_records(shared / "in.txt", make_records(100, seed=2))
        locked = shared / "locked"
        locked.mkdir(mode=0o755)
        proc = subprocess.run(
            [sys.executable, "-c", _AS_NOBODY, str(src), str(locked / "out.txt")], capture_output=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.decode() == f"{locked}/out.txt: cannot create a file in {locked}: Permission denied\n"
    finally:
        shutil.rmtree(shared)


def _with_open_files(limit: int, args: list[str]) -> subprocess.CompletedProcess[bytes]:
    """``bigshuf args`` under ``ulimit -n limit`` (soft and hard: bigshuf raises a soft limit alone)."""
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "bigshuf", *args], capture_output=True, timeout=60, preexec_fn=lower)


def test_file_descriptors_needed_are_what_the_run_needs(tmp_path: Path) -> None:
    # Below 66 open files the run is down to its fewest buckets (2), and needs all it plans for.
    src = write_records(tmp_path / "in.txt", make_records(20000, seed=6))
    temp = tmp_path / "T"
    temp.mkdir()
    args = [str(src), "-S", "256K", "-T", str(temp), "-o", str(tmp_path / "o.txt")]
    plan = _with_open_files(32, ["--dry-run", *args])
    need = int(_lines(plan.stdout)["file descriptors"].split()[1].rstrip(","))
    assert need == 6 + 2 + 1  # the standard streams, input, locks; two buckets; the output
    short = _with_open_files(need - 1, ["--dry-run", *args])
    assert short.returncode == 1
    assert short.stderr.decode() == (
        f"bigshuf: {need} files open at once, more than the limit of {need - 1} (Too many open files); raise it with ulimit -n\n"
    )
    run = _with_open_files(need - 1, args)
    assert run.returncode == 1 and b"Too many open files" in run.stderr
    assert _with_open_files(need, ["--dry-run", *args]).returncode == 0
    assert _with_open_files(need, args).returncode == 0


def test_unique_hash_buckets_are_shown_as_the_open_file_limit_caps_them(tmp_path: Path) -> None:
    """``--unique``'s hash level wants 671 buckets here: under ``ulimit -n 300`` it gets 236, and the
    output for the seed differs, where the plan showed only pass 1's 195 buckets and 201 descriptors
    at every limit (attack); it now shows the hash buckets first, and their descriptors."""
    src = tmp_path / "in.txt"
    src.write_bytes(b"".join(b"record-%08d-xxxxxxxxxxxx\n" % (i * 7919 % 50_000) for i in range(60_000)))
    shown, outputs = [], []
    for limit in (300, 800, 1200):
        out = tmp_path / f"out{limit}.txt"
        args = ["--unique", "-S", "64K", "--seed", "1", "-T", str(tmp_path), str(src), "-o", str(out)]
        lines = _lines(_with_open_files(limit, ["--dry-run", *args]).stdout)
        k = int(lines["path"].split(", ")[2].split()[0])
        assert f", {k} hash buckets then 195 buckets, " in lines["path"]
        assert lines["file descriptors"] == f"needs {6 + k * (2 if 2 * k <= limit - 64 else 1)}, limit {limit}"
        done = _with_open_files(limit, args)
        assert (done.returncode, done.stderr) == (0, b"")
        shown.append(k)
        outputs.append(out.read_bytes())
    assert shown[0] == 236 and shown[1] == shown[2] == 671
    assert outputs[0] != outputs[1] == outputs[2]


def _tars(directory: Path, tars: int, samples: int) -> list[tuple[str, bytes]]:
    """``tars`` tar files of ``samples`` two-member samples (1.5 KB and 1 byte) in ``directory``; their members."""
    directory.mkdir()
    members = []
    for t in range(tars):
        with tarfile.open(directory / f"{t}.tar", "w") as tf:
            for i in range(samples):
                for suffix, data in (("jpg", hashlib.sha256(b"%d %d" % (t, i)).digest() * 47), ("cls", b"%d" % (i % 10))):
                    info = tarfile.TarInfo(f"{t}_{i:05d}.{suffix}")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
                    members.append((info.name, data))
    return members


@pytest.mark.parametrize("unique", [False, True])
def test_tar_buckets_count_both_their_files_against_the_open_file_limit(tmp_path: Path, unique: bool) -> None:
    """A tar bucket holds two files open (samples, lengths): under ``ulimit -n 300`` 236 buckets
    were planned, ``--dry-run`` said 243 descriptors were enough, and the run (and ``--unique``'s)
    failed with "Too many open files" (found by a new user)."""
    members = _tars(tmp_path / "sp", 4, 300)
    args = [str(tmp_path / "sp"), "-S", "64K" if unique else "16K", "--seed", "1", "-o", str(tmp_path / "o.tar")] + (["--unique"] if unique else [])
    plan = _lines(_with_open_files(300, ["--dry-run", *args]).stdout)
    buckets = int(plan["path"].split(", ")[2].split()[0])
    assert plan["file descriptors"] == f"needs {6 + 2 * buckets + 1}, limit 300" and 6 + 2 * buckets + 1 <= 300
    run = _with_open_files(300, args)
    assert (run.returncode, run.stderr) == (0, b"")
    with tarfile.open(tmp_path / "o.tar") as tf:
        written = [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()]  # type: ignore[union-attr]
    assert Counter(written) == Counter(members)


def test_a_job_resumed_under_a_lower_open_file_limit_says_so(tmp_path: Path) -> None:
    """A ``--resume`` job interrupted with 171 buckets and rerun under ``ulimit -n 100`` is refused,
    as its buckets cannot all be opened; the refusal said only "made with 171 buckets, not 36",
    and told the user to throw the checkpoint away (review). It names the limit; raised, the job resumes."""
    src = write_records(tmp_path / "in.txt", make_records(3000, seed=6, min_len=100, max_len=300))
    temp = tmp_path / "T"
    temp.mkdir()
    args = [str(src), "--resume", "--seed", "1", "-S", "16K", "-T", str(temp), "-o", str(tmp_path / "o.txt")]
    state = kill_at_checkpoint([sys.executable, "-m", "bigshuf", *args], temp, lambda s: s.get("blocks_done", 0) >= 2)
    assert state["k"] > 100
    low = _with_open_files(100, args)
    err = low.stderr.decode()
    assert low.returncode == 1 and err.count("\n") == 1, err
    assert f"made with {state['k']} buckets, not " in err and "the open-file limit allows" in err and "ulimit -n" in err, err
    again = subprocess.run([sys.executable, "-m", "bigshuf", *args], capture_output=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert sorted(split_records((tmp_path / "o.txt").read_bytes())) == sorted(split_records(src.read_bytes()))


def test_a_job_begun_under_a_lower_open_file_limit_says_so(tmp_path: Path) -> None:
    """A ``--resume`` job interrupted under ``ulimit -n 100`` (its buckets capped) and rerun at the
    usual limit was refused as "made with 36 buckets, not 171" with no word of why, and told to throw
    the checkpoint away; the limit is named, and under it the job resumes."""
    src = write_records(tmp_path / "in.txt", make_records(3000, seed=6, min_len=100, max_len=300))
    temp = tmp_path / "T"
    temp.mkdir()
    args = [str(src), "--resume", "--seed", "1", "-S", "16K", "-T", str(temp), "-o", str(tmp_path / "o.txt")]
    low = ["bash", "-c", 'ulimit -n 100 && exec "$@"', "bash", sys.executable, "-m", "bigshuf", *args]
    state = kill_at_checkpoint(low, temp, lambda s: s.get("blocks_done", 0) >= 2)
    assert state["k"] < 100
    usual = subprocess.run([sys.executable, "-m", "bigshuf", *args], capture_output=True, timeout=120, check=False)
    err = usual.stderr.decode()
    assert usual.returncode == 1 and err.count("\n") == 1, err
    assert f"made with {state['k']} buckets, not " in err and "a lower open-file limit when the job began, ulimit -n" in err, err
    again = _with_open_files(100, args)
    assert again.returncode == 0, again.stderr
    assert sorted(split_records((tmp_path / "o.txt").read_bytes())) == sorted(split_records(src.read_bytes()))


def test_a_job_planned_by_another_version_says_so(tmp_path: Path) -> None:
    """A ``--resume`` job interrupted and rerun by a version that plans fewer buckets for the same
    inputs and options (found by review: a Megatron job begun before the plan came from the indexes)
    was refused "made with 8 buckets, not 6" with no word of why; it names the version now."""
    src = write_records(tmp_path / "in.txt", make_records(3000, seed=6, min_len=100, max_len=300))
    temp = tmp_path / "T"
    temp.mkdir()
    args = [str(src), "--resume", "--seed", "1", "-S", "16K", "-T", str(temp), "-o", str(tmp_path / "o.txt")]
    state = kill_at_checkpoint([sys.executable, "-m", "bigshuf", *args], temp, lambda s: s.get("blocks_done", 0) >= 2)
    other = run_child(f"""
import sys
from bigshuf.cli import main
from bigshuf.core import driver
planned = driver.TwoPass._bucket_count
driver.TwoPass._bucket_count = lambda self, est: planned(self, est) - 2  # another version's plan
sys.exit(main({args!r}))
""")
    assert other.returncode == 1 and other.stderr.count("\n") == 1, other.stderr
    assert f"made with {state['k']} buckets, not {state['k'] - 2} (another version of bigshuf planned it" in other.stderr, other.stderr


@pytest.mark.parametrize("limit", [5, 6, 7, 8])
def test_a_run_out_of_file_descriptors_leaves_no_temporary_directory(tmp_path: Path, limit: int) -> None:
    """Under ``ulimit -n`` 5 or 6 the failed run's ``bigshuf-*`` directory stayed: removing it took
    a descriptor per level, and none were left (the lock's is given up for it now)."""
    src = write_records(tmp_path / "in.txt", make_records(20000, seed=6))
    temp = tmp_path / "T"
    temp.mkdir()
    run = _with_open_files(limit, [str(src), "-S", "256K", "-T", str(temp), "-o", str(tmp_path / "o.txt")])
    assert run.returncode == 1 and b"Too many open files" in run.stderr and run.stderr.count(b"\n") == 1, run.stderr
    assert os.listdir(temp) == [] and not (tmp_path / "o.txt").exists()


def test_standard_input_from_a_pipe_is_not_read(tmp_path: Path) -> None:
    data = b"".join(r + b"\n" for r in make_records(1000, seed=7))
    proc = subprocess.run([sys.executable, "-m", "bigshuf", "--dry-run", "-T", str(tmp_path)], input=data, capture_output=True, timeout=60)
    assert proc.returncode == 0
    lines = _lines(proc.stdout)
    assert lines["inputs"] == "standard input, size unknown"
    assert lines["records"] == "unknown (standard input is not read by a plan: it could not be read again)"
    # The buckets a pipe gets if it does not fit in memory are a fixed count, so the plan names them.
    assert lines["file descriptors"].startswith("needs 1030 if external (1024 buckets), limit "), lines


@pytest.mark.parametrize("problem", ["missing", "unreadable"])
def test_an_input_past_the_sample_that_cannot_be_opened_fails_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, problem: str,
) -> None:
    """Found by a new user: past a compressed first input larger than the sample, a missing or
    unreadable input was never opened, and the plan said ok (planning a run of unknown size) where
    the run fails naming it."""
    from bigshuf.core import plan

    monkeypatch.setattr(plan, "DRY_RUN_SAMPLE", 1 << 16)
    first = tmp_path / "a.txt.gz"
    first.write_bytes(compress("gzip", b"".join(r + b"\n" for r in make_records(40000, seed=2))))
    second = tmp_path / "b.txt"
    if problem == "unreadable":
        write_records(second, [b"x"])
        monkeypatch.setattr("builtins.open", _refusing(second))
    result = plan_shuffle([first, second], tmp_path / "out", memory="1M")
    assert not result.ok
    reason = "No such file or directory" if problem == "missing" else "Permission denied"
    assert [c.reason for c in result.checks if not c.passed] == [f"{second}: {reason}"], result.render()


def _refusing(path: Path) -> Any:
    """``open``, refusing ``path`` as a file without read permission is refused (root reads any)."""
    import builtins

    real = builtins.open

    def opening(file: Any, *args: Any, **kwargs: Any) -> Any:
        if os.fspath(file) == os.fspath(path):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(file, *args, **kwargs)

    return opening


@pytest.mark.parametrize("start", [0, 5000])
def test_a_file_on_standard_input_is_planned_as_the_file_and_left_where_it_was(tmp_path: Path, start: int) -> None:
    """The run plans ``bigshuf < file`` as ``bigshuf file``, so the plan does too (it said "size
    unknown" where the run then refused for want of temporary space); the plan reads the file
    from stdin's offset and puts the offset back, so the run that follows reads what it would have."""
    src = write_records(tmp_path / "in.txt", make_records(20000, seed=7))
    rest = tmp_path / "rest.txt"
    rest.write_bytes(src.read_bytes()[start:])
    args = ["--dry-run", "-S", "64K", "-T", str(tmp_path)]
    named = subprocess.run([sys.executable, "-m", "bigshuf", *args, str(rest)], capture_output=True, timeout=60)
    with open(src, "rb") as stdin:
        os.lseek(stdin.fileno(), start, os.SEEK_SET)
        proc = subprocess.run([sys.executable, "-m", "bigshuf", *args], stdin=stdin, capture_output=True, timeout=60)
        assert os.lseek(stdin.fileno(), 0, os.SEEK_CUR) == start  # the shared offset, put back
    assert (proc.returncode, named.returncode) == (0, 0)
    lines, file_lines = _lines(proc.stdout), _lines(named.stdout)
    assert lines["inputs"] == f"standard input, {format_size(len(rest.read_bytes()))}"
    for key in ("records", "path", "file descriptors"):
        assert lines[key] == file_lines[key]
    # What the plan needs, not the free space (other tests write to the same disk between the two plans).
    assert lines["temporary space"].rsplit(", ", 1)[0] == file_lines["temporary space"].rsplit(", ", 1)[0]
    assert lines["temporary space"].endswith(" free")
    assert "external, 2 passes" in lines["path"]


def test_repeat_that_cannot_fit_fails_as_the_run_does(tmp_path: Path, run_cli: Runner) -> None:
    src = write_records(tmp_path / "in.txt", make_records(40000, seed=1))
    args = [src, "-r", "-n", "5", "-S", "256K", "-T", tmp_path]
    code, _, err = run_cli(["--dry-run", *args])
    # It named -S (256.0 KiB) as the room, where the records have what -S leaves beside the output's buffers.
    assert code == 1 and err == (
        b"bigshuf: --repeat needs the input in memory, and it does not fit in the 192.0 KiB -S leaves for records "
        b"beside the output's buffers; raise -S\n"
    )
    assert run_cli(args)[::2] == (1, err)


def test_a_dry_run_request_is_never_run(tmp_path: Path) -> None:
    from bigshuf.engines.base import run_request
    from bigshuf.progress import Progress
    from bigshuf.request import Request

    src = write_records(tmp_path / "in.txt", make_records(10, seed=1))
    with pytest.raises(UsageError, match=r"planned, not run"):
        run_request(Request.build(src, tmp_path / "out.txt", dry_run=True), Progress())
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]


# ---------------------------------------------------------------- what the run refuses once it has counted


def test_split_the_records_cannot_fill_fails_as_the_run_does(tmp_path: Path, run_cli: Runner) -> None:
    src = write_records(tmp_path / "a.txt", [b"%d" % i for i in range(10)])
    # The 10 records; half of them; a source at rate 0.5 (5 records in the multiset, counted by the plan).
    for extra in ([src], [src, "-n", "50%"], ["--source", f"a={src}", "--rate", "a=0.5"]):
        args = [*extra, "--split", "v=8,t=rest", "-o", tmp_path / "o" / "{split}.txt"]
        (tmp_path / "o").mkdir(exist_ok=True)
        code, stdout, err = run_cli(["--dry-run", *args])
        run = run_cli(args)
        if len(extra) == 1:  # 8 of 10 fit
            assert (code, run[0]) == (0, 0) and _lines(stdout)["output"].endswith("(splits v=8,t=rest: v 8, t 2 records)")
            continue
        want = b"bigshuf: --split: split 'v' needs 8 records, but only 5 of the 5 written are left for it\n"
        assert (code, err) == (1, want) and run[::2] == (1, want)
        assert stdout.decode().endswith("failed: splits: " + want.decode().removeprefix("bigshuf: "))


def test_split_against_an_estimate_is_said_not_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bigshuf.core import plan

    src = write_records(tmp_path / "a.txt", make_records(3000, seed=8))
    monkeypatch.setattr(plan, "DRY_RUN_SAMPLE", 4096)  # the plan reads the input's start only: records estimated
    found = plan_shuffle(src, str(tmp_path / "{split}.txt"), split="v=5000,t=rest", memory="1M")
    assert found.ok and not found.exact
    assert plan_lines_of(found)["output"].endswith("(splits v=5000,t=rest: the ~%s records estimated are too few for them "
                                                   "(the run checks once they are counted))" % f"{found.records:,}")
    found = plan_shuffle(src, str(tmp_path / "{split}.txt"), split="v=0.5,t=rest", memory="1M")
    assert found.ok and "estimated; the run checks once they are counted" in plan_lines_of(found)["output"]



@pytest.mark.parametrize("case", ["above the maximum rate", "an empty source"])
def test_mix_the_run_refuses_fails_as_the_run_does(tmp_path: Path, run_cli: Runner, case: str) -> None:
    write_records(tmp_path / "a.txt", [b"a%d" % i for i in range(10)])
    write_records(tmp_path / "b.txt", [b"b%d" % i for i in range(100)])
    (tmp_path / "e.txt").write_bytes(b"")
    if case == "an empty source":
        args = ["--source", "a=a.txt", "--source", "e=e.txt", "--mix", "a=0.5,e=0.5"]
        want = b"bigshuf: source 'e' has no records: it cannot make up a share of --mix\n"
    else:
        args = ["--source", "a=a.txt", "--source", "b=b.txt", "--mix", "a=0.5,b=0.5", "--total", "400"]
        want = b"bigshuf: --mix needs rate 20 for source 'a', above the maximum of 10; raise --max-rate to allow it\n"
    code, stdout, err = run_cli(["--dry-run", *args], cwd=tmp_path)
    assert (code, err) == (1, want)
    assert stdout.decode().endswith("failed: sources: " + want.decode().removeprefix("bigshuf: "))
    assert _lines(stdout)["path"] == "unknown (the --mix is refused)"
    assert run_cli(args, cwd=tmp_path)[::2] == (1, want)
    assert run_cli(["--dry-run", *args, "--max-rate", "20"], cwd=tmp_path)[0] == (1 if case == "an empty source" else 0)


def test_mix_of_inputs_too_big_to_count_says_its_rates_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bigshuf.core import plan

    a = write_records(tmp_path / "a.txt", make_records(2000, seed=9))
    b = write_records(tmp_path / "b.txt", make_records(10, seed=10))
    monkeypatch.setattr(plan, "DRY_RUN_SAMPLE", 4096)
    found = plan_shuffle((), sources={"a": str(a), "b": str(b)}, mix={"a": 0.5, "b": 0.5}, total=1000, memory="256K")
    lines = plan_lines_of(found)
    assert found.ok and lines["sources"].endswith("; the rates are known only after a counting pass reads every input first")
    assert lines["temporary space"].startswith("needs an unknown amount (so is the multiset's size)")
    with pytest.raises(UsageError, match=r"needs rate 50 for source 'b'"):
        shuffle((), sources={"a": str(a), "b": str(b)}, mix={"a": 0.5, "b": 0.5}, total=1000, memory="256K")


def test_parquet_mix_is_solved_from_the_files_row_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from bigshuf.core import plan

    rows = 30000
    pq.write_table(pa.table({"id": list(range(rows)), "s": ["x" * (i % 50) for i in range(rows)]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": list(range(10)), "s": ["y"] * 10}), tmp_path / "b.parquet")
    monkeypatch.setattr(plan, "DRY_RUN_SAMPLE", 4096)  # not read whole: the counts come from the metadata
    sources = {"a": str(tmp_path / "a.parquet"), "b": str(tmp_path / "b.parquet")}
    found = plan_shuffle((), tmp_path / "o.parquet", sources=sources, mix={"a": 0.5, "b": 0.5}, total=400, memory="1M")
    assert not found.exact
    assert found.render().endswith(
        "\nfailed: sources: mix= needs rate 20 for source 'b', above the maximum of 10; raise max_rate= to allow it\n"
    )
    with pytest.raises(UsageError, match=r"needs rate 20 for source 'b'"):
        shuffle((), tmp_path / "o.parquet", sources=sources, mix={"a": 0.5, "b": 0.5}, total=400)
    found = plan_shuffle((), tmp_path / "o.parquet", sources=sources, mix={"a": 0.5, "b": 0.5}, total=40, memory="1M")
    assert found.ok and "share 0.5 (rate 2)" in plan_lines_of(found)["sources"]
    assert "; 40 records to shuffle" in plan_lines_of(found)["sources"]


def test_temporary_space_is_the_weighted_multisets(tmp_path: Path, small_fs: Path, run_cli: Runner) -> None:
    # ~400 KB of input fits the 1 MiB tmpfs; three copies of it do not.
    a = write_records(tmp_path / "a.txt", make_records(8000, seed=11, min_len=40, max_len=60))
    args = ["--source", f"a={a}", "--rate", "a=3", "-S", "256K", "-T", small_fs]
    found = plan_shuffle((), sources={"a": str(a)}, rates={"a": 3}, memory="256K", tmp_dir=small_fs)
    # The run's figure: the input's size and a separator, three times.
    assert found.in_memory is False and found.temp_needed == 3 * (a.stat().st_size + 1)
    code, stdout, err = run_cli(["--dry-run", *args])
    need, free = format_size(3 * (a.stat().st_size + 1)), format_size(shutil.disk_usage(small_fs).free)
    assert (code, err) == (1, f"bigshuf: {small_fs}: not enough temporary space: need {need}, {free} free; choose another directory with -T\n".encode())
    code, _, run_err = run_cli(args)
    assert code == 1 and b"not enough temporary space" in run_err
    # A fractional rate, counted by the plan of an input this small: the multiset it will shuffle.
    found = plan_shuffle((), sources={"a": str(a)}, rates={"a": 0.25}, memory="256K", tmp_dir=small_fs)
    assert found.ok and plan_lines_of(found)["sources"] == "a 1 file rate 0.25; 2,000 records to shuffle; a counting pass reads every input first"
    assert found.temp_needed == (a.stat().st_size + 1) // 4


@pytest.mark.parametrize("memory", ["256K", "3M"])
@pytest.mark.parametrize("rates", [{"c": 3, "d": 1}, {"c": 0.5, "d": 2.5}])
def test_weighted_plan_has_the_runs_path_and_buckets(tmp_path: Path, memory: str, rates: dict[str, float]) -> None:
    """The multiset, not the input, decides the path and the buckets (at 3M three copies of ~500 KB do
    not fit beside their index, though the input alone would)."""
    (tmp_path / "c.txt").write_text("".join(f"line {i} {'x' * (i % 40)}\n" for i in range(20000)))
    (tmp_path / "d.txt").write_text("".join(f"d{i}\n" for i in range(3000)))
    sources = {"c": str(tmp_path / "c.txt"), "d": str(tmp_path / "d.txt")}
    found = plan_shuffle((), tmp_path / "o.txt", sources=sources, rates=rates, memory=memory, seed=1, tmp_dir=tmp_path)
    stats = shuffle((), tmp_path / "o.txt", sources=sources, rates=rates, memory=memory, seed=1, tmp_dir=tmp_path)
    assert found.ok and (found.in_memory, found.buckets, found.passes) == (stats.buckets == 0, stats.buckets, stats.passes)
    assert f"; {stats.records:,} records to shuffle" in plan_lines_of(found)["sources"]


def test_a_compressed_file_on_standard_input_is_planned_as_the_file(tmp_path: Path) -> None:
    """The run estimates a compressed stdin as the named file; the plan put stdin's offset back
    before it asked for the estimate, and said "unknown" and 1024 buckets (found by review)."""
    raw = b"".join(r + b"\n" for r in make_records(40000, seed=8))
    src = tmp_path / "in.txt.gz"
    src.write_bytes(compress("gzip", raw))
    args = ["--dry-run", "-S", "256K", "-T", str(tmp_path)]
    named = subprocess.run([sys.executable, "-m", "bigshuf", *args, str(src)], capture_output=True, timeout=60)
    with open(src, "rb") as stdin:
        proc = subprocess.run([sys.executable, "-m", "bigshuf", *args], stdin=stdin, capture_output=True, timeout=60)
        assert os.lseek(stdin.fileno(), 0, os.SEEK_CUR) == 0
    assert (proc.returncode, named.returncode) == (0, 0)
    lines, file_lines = _lines(proc.stdout), _lines(named.stdout)
    for key in ("records", "path", "file descriptors"):
        assert lines[key] == file_lines[key]
    # What the plan needs, not the free space (other tests write to the same disk between the two plans).
    assert lines["temporary space"].rsplit(", ", 1)[0] == file_lines["temporary space"].rsplit(", ", 1)[0]
    assert lines["temporary space"].endswith(" free")
    assert "external, 2 passes" in lines["path"] and "1024" not in lines["path"]


def test_a_weighted_source_on_standard_input_is_counted_from_where_it_stood(tmp_path: Path) -> None:
    """The plan's sample read standard input to its end and the weighted sources' count then read
    it again from there: 120 records where the file named gives 60,120 (found by review)."""
    big = write_records(tmp_path / "big.txt", make_records(20000, seed=3))
    small = write_records(tmp_path / "small.txt", make_records(120, seed=4))
    args = ["--dry-run", "-S", "2M", "-T", str(tmp_path), "--source", "b=" + str(small), "--rate", "a=3"]
    named = subprocess.run([sys.executable, "-m", "bigshuf", *args, "--source", "a=" + str(big)], capture_output=True, timeout=60)
    with open(big, "rb") as stdin:
        proc = subprocess.run([sys.executable, "-m", "bigshuf", *args, "--source", "a=-"], stdin=stdin, capture_output=True, timeout=60)
        assert os.lseek(stdin.fileno(), 0, os.SEEK_CUR) == 0
    assert (proc.returncode, proc.stderr) == (named.returncode, named.stderr)
    lines, file_lines = _lines(proc.stdout), _lines(named.stdout)
    del lines["inputs"], file_lines["inputs"]
    # What the plan needs, not the free space (other tests write to the same disk between the two plans).
    for each in (lines, file_lines):
        need, free = each["temporary space"].rsplit(", ", 1)
        assert free.endswith(" free")
        each["temporary space"] = need
    assert lines == file_lines
    assert lines["records"].startswith("20,120,")


def test_a_tar_on_standard_input_fails_the_plan_as_it_fails_the_run(tmp_path: Path) -> None:
    import tarfile

    member = write_records(tmp_path / "a.txt", make_records(50, seed=5))
    archive = tmp_path / "in.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(member, arcname="sample.txt")
    runs = []
    for flags in (["--dry-run"], []):
        with open(archive, "rb") as stdin:
            runs.append(subprocess.run([sys.executable, "-m", "bigshuf", *flags], stdin=stdin, capture_output=True, timeout=60, cwd=tmp_path))
    plan, run = runs
    message = "bigshuf: standard input holds a tar archive: name the file(s) (tars are read from files)"
    assert (run.returncode, run.stderr.decode().strip()) == (1, message)
    assert plan.returncode == 1 and message.removeprefix("bigshuf: ") in plan.stdout.decode()


@pytest.mark.parametrize("redirect", ["<&-", "0>>in.txt"], ids=["closed", "write-only"])
def test_an_unreadable_standard_input_fails_the_plan_as_it_fails_the_run(tmp_path: Path, redirect: str) -> None:
    """A closed stdin passed the plan ("ok") and failed the run with ``read error: Bad file descriptor``."""
    (tmp_path / "in.txt").write_bytes(b"a\n")
    runs = []
    for flags in (["--dry-run"], []):
        script = f'exec "$@" {redirect}'
        runs.append(subprocess.run(["bash", "-c", script, "bash", sys.executable, "-m", "bigshuf", *flags],
                                   capture_output=True, timeout=60, cwd=tmp_path))
    plan, run = runs
    assert (run.returncode, run.stderr) == (1, b"bigshuf: read error: Bad file descriptor\n")
    assert plan.returncode == 1 and _lines(plan.stdout)["failed"] == "inputs: read error: Bad file descriptor"


@pytest.mark.parametrize("shape,message", [
    (["-i", "1-5", "--lines-per-record=2"], "1-5: ends with 1 line left over after the last whole record of 2 lines"),
    (["-i", "1-9", "--header=2", "--lines-per-record=3"], "1-9: ends with 1 line left over after the last whole record of 3 lines"),
])
def test_a_range_with_a_line_left_over_fails_its_plan_as_its_run(run_cli: Runner, shape: list[str], message: str) -> None:
    """The run refuses the leftover number before it draws; the plan said "ok"."""
    code, out, err = run_cli(["--dry-run", *shape])
    assert (code, err) == (1, f"bigshuf: {message} (--lines-per-record)\n".encode())
    assert f"failed: inputs: {message}".encode() in out and not out.endswith(b"ok\n")
    assert run_cli(shape) == (1, b"", err)


def test_a_plans_reasons_are_spelt_for_the_library_and_said_once(tmp_path: Path, run_cli) -> None:
    """``plan_shuffle(...).failures[i].reason`` carried the raw placeholders of option names
    ("raise \\x00memory\\x00"), and a failure the inputs gave was given again by the output's check,
    two identical lines on stderr (found by review)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "long.jsonl").write_bytes(json.dumps({"t": "x" * 600_000}).encode() + b"\n")
    found = plan_shuffle(tmp_path / "long.jsonl", tmp_path / "o.parquet", memory="1M")
    assert [c.reason for c in found.failures] == [
        f"{tmp_path / 'long.jsonl'}: a JSON line is longer than 524288 bytes, the most this memory limit allows; raise memory="
    ]
    pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "t.parquet")
    code, out, err = run_cli(["t.parquet", "--schema", "id:int64", "-o", "x.parquet", "--dry-run"], cwd=tmp_path)
    assert (code, err) == (1, b"bigshuf: --schema types JSON Lines read as rows; t.parquet is a table whose columns have their types already\n")
    assert out.count(b"failed: ") == 1


@pytest.mark.parametrize("codec,low", [("gzip", 0.8), ("zstd", 0.5)])
def test_a_compressed_inputs_size_is_estimated_from_what_its_decoder_was_fed(tmp_path: Path, codec: str, low: float) -> None:
    """The first block's bytes were set against the whole 256 KiB read they came from: 8.5 MiB of
    gzip'd lines were planned as 1.5 MiB at -S 1M, the temporary-space check passed on a disk they
    did not fit, and the run took a third pass (found by a dry-run differential attack)."""
    data = b"".join(b"%d some text for the line\n" % i for i in range(300_000))
    path = tmp_path / "c.txt.x"
    path.write_bytes(compress(codec, data))
    found = plan_shuffle(path, tmp_path / "out.txt", memory="1M")
    assert found.nbytes is not None and low * len(data) <= found.nbytes <= 1.25 * len(data), (found.nbytes, len(data))
    stats = shuffle(path, tmp_path / "out.txt", memory="1M", seed=1, sync=False)
    assert stats.passes == 2 and stats.records == 300_000



def test_a_fifo_operand_is_of_unknown_size(tmp_path: Path, run_cli) -> None:
    """A FIFO named as an operand was "inputs: 1 file, 0 B" (its stat size), where standard input's
    pipe is "size unknown" (found by a dry-run differential attack)."""
    os.mkfifo(tmp_path / "ff")
    code, out, err = run_cli(["--dry-run", "ff", "-o", "o.txt"], cwd=tmp_path)
    assert out.splitlines()[0] == b"inputs: 1 file, size unknown", out
    assert sorted(os.listdir(tmp_path)) == ["ff"]


def test_a_table_row_too_large_to_place_fails_the_plan_as_it_fails_the_run(tmp_path: Path, run_cli: Runner) -> None:
    """A sampled Parquet row larger than -S lets a row take: the plan said ``ok`` (and ``~3`` rows,
    though the footer counts them) for a run refused at once (found by a README walk-through)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"s": ["a", "b", "x" * 49124]}), tmp_path / "b.parquet")
    message = (
        b"bigshuf: b.parquet: row 2 takes 49129 bytes, more than the 49128 bytes a row may take at this memory limit; raise -S\n"
    )
    assert run_cli(["-S", "64K", "b.parquet", "-o", "o.parquet"], cwd=tmp_path) == (1, b"", message)
    code, out, err = run_cli(["-S", "64K", "b.parquet", "-o", "o.parquet", "--dry-run"], cwd=tmp_path)
    assert (code, err) == (1, message) and b"failed: inputs: b.parquet: row 2 takes 49129 bytes" in out
    pq.write_table(pa.table({"id": list(range(9000))}), tmp_path / "n.parquet")
    code, out, err = run_cli(["-S", "256K", "n.parquet", "-o", "o.parquet", "--dry-run"], cwd=tmp_path)
    assert code == 0 and b"records: 9,000 (counted: from the files' metadata), ~" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.parquet", "n.parquet"]


def test_a_shard_count_past_the_file_systems_room_fails_the_plan_before_naming_them(tmp_path: Path) -> None:
    """``plan_shuffle(shards=2**40)`` named every shard before its check, growing without limit
    (1.7 GB and a bare MemoryError in 8 s under ``ulimit -v 2000000``; found by attack); the run refused it at once."""
    write_records(tmp_path / "in.txt", [b"a", b"b"])
    script = (
        "import resource, bigshuf\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, resource.RLIM_INFINITY))\n"
        f"found = bigshuf.plan_shuffle({str(tmp_path / 'in.txt')!r}, {str(tmp_path / 'out-{}.txt')!r}, shards=2**40)\n"
        "print(found.ok, [c.reason for c in found.failures])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == 0 and done.stderr == b"", done.stderr[-500:]
    assert done.stdout.startswith(b"False ['1099511627776 shards: the file system of ") and b"has room for only" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]
