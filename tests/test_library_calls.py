"""The library in a long-lived process (a notebook, a service): its output after what the caller
printed, standard output without a descriptor refused in words, and nothing left behind (threads,
descriptors, half-loaded modules) by a refused call or a Ctrl-C. Found by a review of the library."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import make_records, write_records

import bigshuf
from bigshuf.core import buckets


def python(script: str, cwd: Path, **popen: object) -> subprocess.CompletedProcess[bytes]:
    """Run ``script`` in a fresh interpreter, its output buffered as a script's is by default."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=cwd, env=env, capture_output=True, timeout=120, **popen,  # type: ignore[call-overload]
    )


def test_records_written_to_standard_output_come_after_what_the_caller_printed(tmp_path: Path) -> None:
    # They came first: bigshuf wrote to descriptor 1 while the caller's print was still buffered.
    write_records(tmp_path / "a.txt", [b"x", b"y", b"z"])
    proc = python(
        """
        import bigshuf
        print("HEADER")
        bigshuf.shuffle("a.txt", None, seed=1)
        print("FOOTER")
        """, tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == b"HEADER" and sorted(lines[1:4]) == [b"x", b"y", b"z"] and lines[4:] == [b"FOOTER"]


def test_standard_output_without_a_descriptor_is_an_output_error(tmp_path: Path) -> None:
    # io.UnsupportedOperation and AttributeError escaped, not BigShufErrors.
    src = write_records(tmp_path / "a.txt", [b"x", b"y"])
    proc = python(
        f"""
        import io, sys, bigshuf
        saved, sys.stdout = sys.stdout, io.StringIO()
        try:
            bigshuf.shuffle({str(src)!r}, None, seed=1)
        except bigshuf.OutputError as e:
            print(e, file=sys.stderr)
        assert sys.stdout.getvalue() == ""
        sys.stdout = open("closed.txt", "w")
        sys.stdout.close()
        try:
            bigshuf.shuffle({str(src)!r}, None, seed=1)
        except bigshuf.OutputError as e:
            print(e, file=sys.stderr)
        sys.stdout = None
        try:
            bigshuf.shuffle({str(src)!r}, "-", seed=1)
        except bigshuf.OutputError as e:
            print(e, file=sys.stderr)
        """, tmp_path,
    )
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr
    assert proc.stderr == (
        b"standard output is not a file (sys.stdout was replaced or closed): name an output file\n" * 2
        + b"write error: Bad file descriptor\n"
    )


def test_a_refused_call_leaves_no_thread(tmp_path: Path) -> None:
    # Each call refused for its output (shards to standard output) left a bigshuf-writer thread running.
    src = write_records(tmp_path / "a.txt", make_records(50, seed=1))
    before = set(threading.enumerate())
    for output in (None, "-"):
        with pytest.raises(bigshuf.UsageError, match="shards"):
            bigshuf.shuffle(src, output, shards=2)
    with pytest.raises(bigshuf.UsageError, match="shards"):
        bigshuf.shuffle_range(1, 10, None, shards=2)
    assert set(threading.enumerate()) == before


def open_descriptors(under: Path) -> list[str]:
    """This process's descriptors open on a file under ``under`` (deleted or not)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(under)):
            found.append(target)
    return found


@pytest.fixture
def ctrl_c_interrupts() -> Iterator[None]:
    """SIGINT raising KeyboardInterrupt, as in an interactive process (pytest-xdist's workers ignore it)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.mark.usefixtures("ctrl_c_interrupts")
def test_ctrl_c_just_after_a_bucket_is_opened_leaves_it_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A SIGINT between a bucket's open and its keeping left the descriptor of a deleted bucket open
    # until the process ended (2-3 of them per interrupted call, found by signalling calls at random times).
    src = write_records(tmp_path / "in.txt", make_records(20_000, seed=2))
    real = buckets.append_bucket
    opened: list[int] = []

    def open_then_interrupt(path: str, existing: bool) -> int:
        fd = real(path, existing)
        opened.append(fd)
        if len(opened) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # as a Ctrl-C landing right then
        return fd

    monkeypatch.setattr(buckets, "append_bucket", open_then_interrupt)
    temp = tmp_path / "t"
    temp.mkdir()
    with pytest.raises(KeyboardInterrupt):
        bigshuf.shuffle(src, tmp_path / "out.txt", seed=1, memory="64K", tmp_dir=temp, sync=False)
    assert len(opened) == 3
    assert open_descriptors(temp) == [] and os.listdir(temp) == []
    assert not (tmp_path / "out.txt").exists()


def test_ctrl_c_while_the_first_call_loads_numpy_leaves_it_whole(tmp_path: Path) -> None:
    # A Ctrl-C in the first call, while NumPy was loading, left it half-imported: every later call
    # (and the caller's own NumPy) failed with "cannot load module more than once per process".
    write_records(tmp_path / "a.txt", [b"x", b"y", b"z"])
    proc = python(
        """
        import os, signal, sys
        signal.signal(signal.SIGINT, signal.default_int_handler)  # (a test worker ignores it, and so would this process)
        import bigshuf

        class Interrupt:
            def find_spec(self, name, path=None, target=None):
                if name in ("numpy.linalg", "pyarrow.lib"):
                    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C half-way through loading them
                return None

        sys.meta_path.insert(0, Interrupt())
        for _ in range(2):
            try:
                bigshuf.shuffle("a.txt", "out.txt", seed=1)
            except KeyboardInterrupt:
                print("interrupted")
        sys.meta_path.pop(0)
        import numpy, pyarrow
        bigshuf.shuffle("a.txt", "out.txt", seed=1)
        print(sorted(open("out.txt").read().split()), numpy.zeros(2).tolist(), pyarrow.array([1]).to_pylist())
        """, tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"interrupted\n['x', 'y', 'z'] [0.0, 0.0] [1]\n", proc.stdout


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="needs memfd_create")
def test_an_output_to_a_memfd_is_written_into_it(tmp_path: Path) -> None:
    """A caller capturing the output in a memfd (``/proc/self/fd/N``): bigshuf created a file named
    after the link's text, ``/memfd:out (deleted)`` at the root, and left the memfd empty."""
    src = write_records(tmp_path / "in.txt", make_records(500, seed=21))
    fd = os.memfd_create("out")
    try:
        bigshuf.shuffle(src, f"/proc/self/fd/{fd}", seed=1)
        assert sorted(os.pread(fd, 1 << 20, 0).splitlines()) == sorted(src.read_bytes().splitlines())
        plan = bigshuf.plan_shuffle(src, f"/proc/self/fd/{fd}")
        assert f"output: /proc/self/fd/{fd} (written in place: a deleted file)" in plan.render()
    finally:
        os.close(fd)
    assert not os.path.lexists("/memfd:out (deleted)")


@pytest.mark.usefixtures("ctrl_c_interrupts")
@pytest.mark.parametrize("step", ["probe link", "lock rename"])
def test_ctrl_c_while_the_output_is_checked_leaves_no_file_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """A Ctrl-C just after the probe's hard link of the old output left it under a hidden name
    (``.out.txt.ID.bigshuf-old``) that no run removes; one just after the output directory's lock
    was renamed into place left ``.bigshuf-ID.lock`` (found by injecting signals with strace)."""
    src = write_records(tmp_path / "in.txt", make_records(300, seed=3))
    out = tmp_path / "out.txt"
    out.write_bytes(b"old\n")
    real_link, real_rename = os.link, os.rename

    def link(*args: object, **kwargs: object) -> None:
        real_link(*args, **kwargs)  # type: ignore[arg-type]
        signal.raise_signal(signal.SIGINT)

    def rename(source: str, target: str) -> None:
        real_rename(source, target)
        if str(target).endswith(".lock"):
            signal.raise_signal(signal.SIGINT)

    if step == "probe link":
        monkeypatch.setattr(os, "link", link)
    else:
        monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        bigshuf.shuffle(src, out, seed=1)
    assert sorted(os.listdir(tmp_path)) == ["in.txt", "out.txt"]
    assert out.read_bytes() == b"old\n"


@pytest.mark.parametrize("call", [
    "bigshuf.shuffle('-', 'o.txt')", "bigshuf.check_permutation('-', 'in.txt')",
])
def test_a_closed_standard_input_is_an_input_error(tmp_path: Path, call: str) -> None:
    """Standard input closed (``<&-``): the library raised a bare ``OSError`` (EBADF, from ``fstat``),
    where one open for writing only gave ``InputError: read error`` (found by attack); no output made."""
    (tmp_path / "in.txt").write_bytes(b"a\n")
    done = python(f"""
        import bigshuf
        try:
            {call}
        except bigshuf.InputError as e:
            print(type(e).__name__, e)
    """, tmp_path, stdin=None, preexec_fn=lambda: os.close(0))
    assert (done.returncode, done.stdout, done.stderr) == (0, b"InputError read error: Bad file descriptor\n", b"")
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]


@pytest.mark.parametrize("output", ["None", "'/dev/stdout'"])
def test_a_closed_output_pipe_is_an_output_error_and_a_broken_pipe(tmp_path: Path, output: str) -> None:
    """Standard output a pipe its reader closed: the library raised a bare ``BrokenPipeError``, not a
    ``BigShufError`` (found by attack). It is an ``OutputError`` now, and still a ``BrokenPipeError``,
    of which the command dies by SIGPIPE as GNU shuf does (the CLI tests check that)."""
    write_records(tmp_path / "in.txt", make_records(200_000, seed=1))
    reader, writer = os.pipe()
    os.close(reader)
    script = f"""if 1:
        import sys, bigshuf
        try:
            bigshuf.shuffle('in.txt', {output}, seed=1)
        except bigshuf.OutputError as e:
            print(type(e).__name__, isinstance(e, BrokenPipeError), e, file=sys.stderr)
    """
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, stdout=writer, stderr=subprocess.PIPE, timeout=120, check=False)
    os.close(writer)
    named = b"/dev/stdout: " if output != "None" else b""  # (standard output is not named, as GNU shuf does not)
    assert (done.returncode, done.stderr) == (0, b"OutputPipeClosed True " + named + b"write error: Broken pipe\n"), done.stderr
