"""GNU coreutils' own checks of shuf, re-expressed as tests of bigshuf.

Each test names the file and lines of the coreutils test suite (commit aa0c0de of
github.com/coreutils/coreutils) whose check it re-expresses: tests/shuf/shuf.sh,
tests/shuf/shuf-reservoir.sh, and the shuf entries of tests/misc/close-stdin.sh,
write-errors.sh, read-errors.sh and tty-eof.pl. Those scripts are GPL test code: nothing of
them is copied here, only the behaviour they check. Where GNU shuf is installed, its own
answer to the same command is the expected one (conftest.run_gnu).
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import struct
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from conftest import GNU_SHUF, gnu_to_bigshuf

#: GNU's SIZE_MAX, UINTMAX_MAX and ULONG_MAX on this (64-bit) machine.
SIZE_MAX = 2**64 - 1

BIGSHUF = [sys.executable, "-m", "bigshuf"]


def lines(data: bytes, sep: bytes = b"\n") -> list[bytes]:
    """The records of ``data`` without terminators; ``data`` must end with ``sep`` (or be empty)."""
    assert data == b"" or data.endswith(sep), data[-40:]
    return data.split(sep)[:-1] if data else []


def seq(n: int) -> bytes:
    """The output of ``seq n``."""
    return b"".join(b"%d\n" % i for i in range(1, n + 1))


def shell(script: str, *args: str, timeout: float = 60) -> tuple[int, bytes, bytes]:
    """Run a bash ``script`` with ``$1``... set to ``args``; return status, stdout and stderr."""
    proc = subprocess.run(
        ["bash", "-c", script, "bash", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout
    )
    return proc.returncode, proc.stdout, proc.stderr


def both(command: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``command`` as bigshuf and, where it is installed, as GNU shuf: (who, argv) pairs."""
    runs = [("bigshuf", [*BIGSHUF, *command])]
    # Found on PATH as "shuf", so that its messages begin "shuf:" as in the GNU tests.
    if os.access(GNU_SHUF, os.X_OK) and shutil.which("shuf") == GNU_SHUF:
        runs.append(("shuf", ["shuf", *command]))
    return runs


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]  # a second user, for root's tests


def without_gnu_quotes(err: bytes, who: str) -> bytes:
    """stderr of ``who`` as bigshuf would word it (GNU's program name and quotes replaced)."""
    return gnu_to_bigshuf(err) if who == "shuf" else err


# ---------------------------------------------------------------- tests/shuf/shuf.sh


def test_random_source_failure_of_getrandom_is_handled(tmp_path):
    """shuf.sh:24-27: with getrandom failing (ENOSYS), -i 1-9 still succeeds or fails cleanly."""
    probe = subprocess.run(["strace", "-o", "/dev/null", "-e", "inject=getrandom:error=ENOSYS", "true"],
                           capture_output=True) if shutil.which("strace") else None
    if probe is None or probe.returncode != 0:
        pytest.skip("strace cannot inject faults here")
    proc = subprocess.run(
        ["strace", "-f", "-o", "/dev/null", "-e", "inject=getrandom:error=ENOSYS", *BIGSHUF, "-i", "1-9"],
        capture_output=True, timeout=120,
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert b"Traceback" not in proc.stderr
    if proc.returncode == 0:
        assert sorted(int(v) for v in lines(proc.stdout)) == list(range(1, 10))


def test_randomness_does_not_come_from_address_layout():
    """shuf.sh:29-33: two runs of -i 1-UINTMAX_MAX -n 1 with address randomisation off differ."""
    if subprocess.run(["setarch", "-R", "true"], capture_output=True).returncode != 0:
        pytest.skip("setarch -R does not work here")
    outs = []
    for _ in range(2):
        proc = subprocess.run(["setarch", "-R", *BIGSHUF, "-i", f"1-{SIZE_MAX}", "-n", "1"], capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert 1 <= int(proc.stdout) <= SIZE_MAX
        outs.append(proc.stdout)
    assert outs[0] != outs[1]


def test_file_is_shuffled_into_a_permutation(run_cli, tmp_path):
    """shuf.sh:35-46: seq 100 shuffled differs from the input and sorts back to it."""
    (tmp_path / "in").write_bytes(seq(100))
    code, out, err = run_cli(["in"], cwd=tmp_path)
    assert code == 0 and err == b""
    assert out != seq(100)
    assert sorted(lines(out), key=int) == lines(seq(100))


def test_input_range_is_shuffled_into_a_permutation(run_cli):
    """shuf.sh:48-52: -i 1-100 differs from seq 100 and sorts back to it."""
    code, out, err = run_cli(["-i", "1-100"])
    assert code == 0 and err == b""
    assert out != seq(100)
    assert sorted(lines(out), key=int) == lines(seq(100))


def test_repeat_of_zero_lines_needs_no_standard_input(tmp_path):
    """shuf.sh:54-56: -r -n 0 FILE with standard input closed succeeds and writes nothing."""
    (tmp_path / "in").write_bytes(seq(100))
    for who, argv in both(["-r", "-n", "0", str(tmp_path / "in")]):
        code, out, err = shell('exec "$@" <&-', *argv)
        assert (who, code, out, err) == (who, 0, b"", b"")


def test_echo_operands_are_permuted(run_cli):
    """shuf.sh:58-60: -e a b c d e outputs a permutation of its operands."""
    code, out, err = run_cli(["-e", "a", "b", "c", "d", "e"])
    assert code == 0 and err == b""
    assert sorted(lines(out)) == [b"a", b"b", b"c", b"d", b"e"]


def test_echo_repeat_without_operands_fails(run_cli, run_gnu):
    """shuf.sh:62-64: -er (nothing to repeat) exits 1, here with GNU's message."""
    gnu = run_gnu(["-er"])
    assert gnu[0] == 1
    assert run_cli(["-er"]) == (1, b"", gnu[2])


def test_input_range_with_an_operand_fails(run_cli, run_gnu):
    """shuf.sh:66-69: -i0-0 with an operand exits 1, here with GNU's message."""
    gnu = run_gnu(["-i0-0", "1"])
    assert gnu[0] == 1
    assert run_cli(["-i0-0", "1"]) == (1, b"", gnu[2])


def test_input_just_over_8_kib_from_a_pipe(run_cli):
    """shuf.sh:71-73: seq 1860 (8193 bytes) through a pipe is shuffled (shuf once looped for ever)."""
    code, out, err = run_cli([], input=seq(1860))
    assert code == 0 and err == b""
    assert sorted(lines(out)) == sorted(lines(seq(1860)))


def test_zero_terminated_range_ends_with_nul(run_cli):
    """shuf.sh:75-78: --zero-terminated -i 1-1 writes "1" and a NUL."""
    assert run_cli(["--zero-terminated", "-i", "1-1"]) == (0, b"1\0", b"")


def test_whole_huge_range_fails_at_once(run_cli):
    """shuf.sh:80-83: -i1-SIZE_MAX (no -n) exits 1 (GNU: memory exhausted), here at once and in one line."""
    start = time.monotonic()
    code, out, err = run_cli([f"-i1-{SIZE_MAX}"])
    assert time.monotonic() - start < 30
    assert code == 1 and out == b""
    assert err.startswith(b"bigshuf: ") and err.count(b"\n") == 1, err
    assert b"Traceback" not in err and b"internal error" not in err


def test_whole_huge_range_fails_under_a_memory_limit():
    """shuf.sh:80-83: under a ulimit -v that lets -i1-1 run, -i1-SIZE_MAX exits 1."""
    limit = 1_000_000  # KiB: GNU finds the least that runs -i1-1; Python needs more than shuf
    quoted = " ".join(f"'{a}'" for a in BIGSHUF)
    small = shell(f"ulimit -v {limit} && exec {quoted} -i1-1")
    if small[0] != 0:
        pytest.skip(f"-i1-1 does not run under ulimit -v {limit}: {small[2]!r}")
    assert small[1] == b"1\n"
    code, out, err = shell(f"ulimit -v {limit} && exec {quoted} -i1-{SIZE_MAX}")
    assert code == 1 and out == b"", err
    assert err.count(b"\n") == 1 and b"Traceback" not in err


@pytest.mark.parametrize("extra", [[], ["-r"]], ids=["sample", "repeat"])
def test_small_sample_of_a_huge_range_is_instant(run_cli, extra):
    """shuf.sh:85-88: -i1-SIZE_MAX -n2 prints two numbers at once (and, issue 12, with -r -n3 three)."""
    count = 3 if extra else 2
    start = time.monotonic()
    code, out, err = run_cli([*extra, f"-i1-{SIZE_MAX}", "-n", str(count)])
    assert time.monotonic() - start < 10
    assert code == 0 and err == b""
    values = [int(v) for v in lines(out)]
    assert len(values) == count
    assert all(1 <= v <= SIZE_MAX for v in values)
    if not extra:
        assert len(set(values)) == count


def test_head_count_zero_opens_no_file_and_one_does(tmp_path):
    """shuf.sh:90-96: -n0 on an unreadable file succeeds; -n1 on it exits 1 (run as another user)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as a user who cannot read the file")
    shared = Path(tempfile.mkdtemp(prefix="bigshuf-gnu-"))
    try:
        shared.chmod(0o755)
        unreadable = shared / "unreadable"
        unreadable.write_bytes(b"secret\n")
        unreadable.chmod(0)
        for who, argv in both(["-n0", str(unreadable)]):
            proc = subprocess.run([*NOBODY, *argv], capture_output=True, timeout=60, cwd=shared)
            assert (who, proc.returncode, proc.stdout, proc.stderr) == (who, 0, b"", b"")
        for who, argv in both(["-n1", str(unreadable)]):
            proc = subprocess.run([*NOBODY, *argv], capture_output=True, timeout=60, cwd=shared)
            assert (who, proc.returncode, proc.stdout) == (who, 1, b"")
            assert without_gnu_quotes(proc.stderr, who) == f"bigshuf: {unreadable}: Permission denied\n".encode()
    finally:
        shutil.rmtree(shared)


def test_repeated_head_count_uses_the_smallest(run_cli):
    """shuf.sh:98-101: -n10 -i0-9 -n3 -n20 outputs 3 lines."""
    code, out, err = run_cli(["-n10", "-i0-9", "-n3", "-n20"])
    assert code == 0 and err == b""
    assert len(lines(out)) == 3


def ulong_max_suffixes() -> list[str]:
    """The values shuf.sh:103-113 tries: ULONG_MAX and each of its tails, a leading 0 made 1."""
    values, v = [], str(SIZE_MAX)
    while v:
        v = "1" + v[1:] if v.startswith("0") else v
        values.append(v)
        v = v[1:]
    return values


@pytest.mark.parametrize("value", ulong_max_suffixes())
def test_one_number_range_prints_it_whole(run_cli, value):
    """shuf.sh:103-113: -i V-V prints V, for every tail of ULONG_MAX (no overrun converting it)."""
    assert run_cli(["-i", f"{value}-{value}"]) == (0, f"{value}\n".encode(), b"")


@pytest.mark.parametrize(
    "args,lines_ref",
    [
        (["-i0-9", "-e", "A", "B"], "shuf.sh:117-119"),
        (["-nA"], "shuf.sh:120-122"),
        (["-i0-9", "-n10", "-i8-90"], "shuf.sh:123-125"),
        (["-i1"], "shuf.sh:126-130"),
        (["-iA"], "shuf.sh:126-130"),
        (["-i1-"], "shuf.sh:126-130"),
        (["-i1-A"], "shuf.sh:126-130"),
        (["-i0-9", "-o", "A", "-o", "B"], "shuf.sh:132-134"),
        (["-i0-9", "--random-source", "A", "--random-source", "B"], "shuf.sh:135-137"),
    ],
)
def test_usage_errors_exit_1_as_gnu(run_cli, run_gnu, tmp_path, args, lines_ref):
    """shuf.sh:115-137: -i with -e, a bad -n, two -i, bad ranges, two -o, two --random-source:
    exit 1, with GNU's message (stdin is empty, as ``: |`` gives it)."""
    gnu = run_gnu(args, cwd=tmp_path)
    assert gnu[0] == 1, lines_ref
    assert run_cli(args, cwd=tmp_path) == (1, b"", gnu[2]), lines_ref
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize("args", [["--echo=", "a"], ["--repeat=1", "-e", "a"], ["--rep=1", "-e", "a"], ["-e", "--zero-terminated=x", "a"], ["--help=1"]])
def test_an_argument_to_a_flag_is_refused_in_gnu_words(run_cli, run_gnu, args):
    """argparse's "argument -e/--echo: ignored explicit argument ''" is getopt's wording, as in GNU shuf."""
    gnu = run_gnu(args)
    assert gnu[0] == 1 and b"doesn't allow an argument" in gnu[2]
    assert run_cli(args) == gnu


@pytest.mark.parametrize(
    "args",
    [["--re", "-n", "3", "-e", "a", "b"], ["--ra=src", "-n", "2", "-e", "a", "b"], ["--e", "a", "b"], ["--o=out", "-e", "a"],
     ["--out", "out", "-e", "a"], ["--hea", "1", "-e", "a", "b"], ["-e", "-o", "--hea", "a"]],
)
def test_abbreviations_of_gnu_options_mean_them(tmp_path, run_cli, run_gnu, args):
    """An abbreviation GNU shuf reads as one of its options is read so, though it also abbreviates one
    of bigshuf's (--re: --repeat or --resume; --ra: --random-source or --rate; --e: --echo or
    --engine; --o: --output or --output-format): these were refused as ambiguous. An option's
    argument is never spelt out (-o --hea wrote a file named --head-count)."""
    (tmp_path / "src").write_bytes(b"x" * 4096)
    gnu = run_gnu(args, cwd=tmp_path)
    made = sorted(p.name for p in tmp_path.iterdir())
    for p in tmp_path.iterdir():
        if p.name != "src":
            p.unlink()
    ours = run_cli(args, cwd=tmp_path)
    assert (ours[0], len(ours[1].splitlines()), ours[2]) == (gnu[0], len(gnu[1].splitlines()), b"") and gnu[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == made


@pytest.mark.parametrize("args", [["--version", "--help"], ["--help", "--version"], ["--vers", "--help"], ["-e", "a", "--help", "--version"], ["--ver"]])
def test_the_first_of_help_and_version_is_the_one_answered(run_cli, run_gnu, args):
    """GNU shuf answers whichever of --help and --version comes first (bigshuf always gave the help)."""
    gnu, ours = run_gnu(args), run_cli(args)
    assert gnu[0] == ours[0] == 0 and gnu[2] == ours[2] == b""
    assert gnu[1].startswith(b"Usage:") == ours[1].startswith(b"Usage:")


@pytest.mark.parametrize(
    "args",
    [["--help", "-x"], ["--version", "-x"], ["--vers", "--foo"], ["--help", "-n", "x"], ["-e", "a", "--help", "b"],
     ["--help", "--bogus=1", "-i", "9-1"]],
)
def test_help_and_version_end_the_options_read(run_cli, run_gnu, args):
    """getopt stops at --help or --version, so GNU shuf answers it whatever follows (bigshuf
    refused the invalid option after it)."""
    gnu, ours = run_gnu(args), run_cli(args)
    assert gnu[0] == ours[0] == 0 and gnu[2] == ours[2] == b""
    assert gnu[1].startswith(b"Usage:") == ours[1].startswith(b"Usage:")


@pytest.mark.parametrize(
    "args",
    [["--he", "-x"], ["--he=3", "-e", "a"], ["--r", "--bogus"], ["--=x"], ["---x", "-y"], ["--help=1", "-x"], ["--rep=1", "--foo"]],
)
def test_a_long_option_is_refused_where_getopt_meets_it(run_cli, run_gnu, args):
    """An unknown, ambiguous or argument-taking long option is refused before the words after it
    (bigshuf said "invalid option -- 'x'" for --he -x), in GNU shuf's words: its possibilities
    only, as its options win an abbreviation (bigshuf listed --header too), and the word whole."""
    gnu, ours = run_gnu(args), run_cli(args)
    assert ours == gnu and gnu[0] == 1


@pytest.mark.parametrize(
    "name",
    [b"a b", b"bad\nname", b"bad\x1b[31mred", b"a'b", b"a'b$c", b"a\xffb", b"~a", b"a~", b"a:b", b"\x7f", b"\na\n", b"plain-name.txt"],
)
def test_a_file_name_in_a_message_is_quoted_as_gnu_quotes_it(tmp_path, run_cli, run_gnu, name):
    """A name a shell would need quoted is quoted, its control bytes escaped: one line, and no
    terminal escape sent (bigshuf printed 'bad', a new line, then 'name: No such file...')."""
    gnu = run_gnu([name], cwd=tmp_path)
    assert gnu[0] == 1 and gnu[2].count(b"\n") == 1
    assert run_cli([name], cwd=tmp_path) == gnu


@pytest.mark.parametrize("redirect", [">>", "1<>"])
def test_a_file_shuffled_onto_itself(tmp_path, redirect):
    """``bigshuf f >> f`` and ``bigshuf f 1<>f``, as GNU shuf allows: the input is standard output
    too. Appended, it grew as the output was written and the check that a mapped input did not
    change refused it (exit 1, after writing); written over in place, the output overwrote the
    mapped records while they were gathered (exit 0, 122,720 lines doubled of 400,000). Such an
    input is read whole before any output is written, as GNU shuf does."""
    lines = b"".join(b"%d\n" % i for i in range(2_000_000))
    (tmp_path / "f").write_bytes(lines)
    run = subprocess.run(["bash", "-c", f'exec "$@" f {redirect}f', "bash", *BIGSHUF], cwd=tmp_path, capture_output=True, timeout=120)
    assert (run.returncode, run.stderr) == (0, b"")
    data = (tmp_path / "f").read_bytes()
    if redirect == ">>":
        assert data[: len(lines)] == lines and sorted(data[len(lines) :].splitlines()) == sorted(lines.splitlines())
    else:
        assert len(data) == len(lines) and data != lines and sorted(data.splitlines()) == sorted(lines.splitlines())


@pytest.mark.parametrize(
    "args", [["-o", "out", "missing-input"], ["-o", "out", "--random-source=missing-input", "in"]],
    ids=["input", "random-source"],
)
def test_failed_run_leaves_the_output_untouched(tmp_path, args):
    """shuf.sh:139-148: a missing input or random source exits 1 and leaves an existing -o file as it was."""
    (tmp_path / "in").write_bytes(seq(100))
    for who, argv in both(args):
        (tmp_path / "out").write_bytes(b"precious\n")
        proc = subprocess.run(argv, capture_output=True, cwd=tmp_path, timeout=60)
        assert (who, proc.returncode) == (who, 1), proc.stderr
        assert (tmp_path / "out").read_bytes() == b"precious\n"
    assert sorted(os.listdir(tmp_path)) == ["in", "out"]


@pytest.mark.parametrize("target", [
    "file/", "new/", "file/x", "missing/x", "dir/", "link/", "dangling/",
    "file/x/", "missing/x/", "", "to_new_dir", "to_file_as_dir", "to_missing_parent", "to_dir", "chain1",
    "dir/x/../../file", "new/.", "file/.", "dir/.", "dir/x/..",
    "via_missing", "via_missing_chain", "via_missing_new", "via_file",
])
def test_an_output_name_for_a_directory_is_refused_as_gnu_refuses_it(tmp_path, run_cli, run_gnu, target):
    """``-o NAME/`` names a directory: GNU says "Is a directory" whatever NAME is, unless NAME's
    parent is missing or not a directory ("No such file or directory", "Not a directory"), and the
    same for a link whose text ends in ``/``. bigshuf dropped the slash and wrote (replaced) the
    file NAME, or made the file a dangling link ``to_new_dir -> newf/`` names; it said "Is a
    directory" for ``file/x/`` and ``missing/x/``, "Not a directory" for a link to ``file/``, and
    named the working directory for ``-o ''``. ``dir/x/../../file`` replaced ``file`` (realpath
    dropped the missing ``x``, which the kernel needs) and ``new/.`` made a file ``new``; so did a
    link whose text goes through a missing directory (``via_missing -> dir/missing/../../file``)."""
    (tmp_path / "in").write_bytes(b"a\nb\n")
    (tmp_path / "file").write_bytes(b"precious\n")
    (tmp_path / "dir").mkdir()
    links = {"link": "file", "dangling": "nothing", "to_new_dir": "newf/", "to_file_as_dir": "file/",
             "to_missing_parent": "missing/x/", "to_dir": "dir/", "via_missing": "dir/missing/../../file",
             "via_missing_chain": "via_missing", "via_missing_new": "dir/missing/../newg", "via_file": "file/../file"}
    # 40 links, the most Linux follows, the last naming a directory: the 40th's text went unchecked.
    links.update({f"chain{i}": f"chain{i + 1}" for i in range(1, 40)} | {"chain40": "newc/"})
    for name, text in links.items():
        (tmp_path / name).symlink_to(text)
    gnu = run_gnu(["-o", target, "in"], cwd=tmp_path)
    assert gnu[0] == 1 and gnu[2].count(b"\n") == 1
    assert run_cli(["-o", target, "in"], cwd=tmp_path) == gnu
    assert (tmp_path / "file").read_bytes() == b"precious\n"
    assert sorted(os.listdir(tmp_path)) == sorted(["dir", "file", "in", *links])


@pytest.mark.parametrize("target", [
    "shut/x/", "shut/new/", "shut/x/.", "shut/..", "w/to_shut_file", "w/to_shut_new",
    "locked/x/", "locked/new/", "locked/.", "locked/x/..", "blind/new/", "blind/new/.", "blind/new/..",
])
def test_a_directory_name_under_a_parent_nobody_may_search_is_refused_as_gnu_refuses_it(target):
    """Run as ``nobody``: ``-o shut/x/`` where ``shut`` may not be searched is "Permission denied" in
    GNU shuf (the kernel looks ``x`` up before it sees the slash), also through a link whose text
    ends in ``/``; bigshuf said "Is a directory" for these. Read-only (``locked``) and
    search-only (``blind``) parents keep GNU's "Is a directory" or "No such file or directory"."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None or shutil.which("shuf") != GNU_SHUF:
        pytest.skip("needs root, setpriv and GNU shuf to compare the two as another user")
    shared = Path(tempfile.mkdtemp(prefix="bigshuf-gnu-"))
    try:
        (shared / "in").write_bytes(b"a\nb\n")
        for name, mode in [("shut", 0o700), ("locked", 0o555), ("blind", 0o311), ("w", 0o777)]:
            (shared / name).mkdir()
            if name != "blind":
                (shared / name / "x").write_bytes(b"precious\n")
            (shared / name).chmod(mode)
        (shared / "w" / "to_shut_file").symlink_to("../shut/x/")
        (shared / "w" / "to_shut_new").symlink_to("../shut/new/")
        shared.chmod(0o755)
        (shared / "in").chmod(0o644)
        results = {}
        for who, argv in both(["-o", target, "in"]):
            proc = subprocess.run([*NOBODY, *argv], capture_output=True, timeout=60, cwd=shared)
            results[who] = (proc.returncode, proc.stdout, without_gnu_quotes(proc.stderr, who))
        assert results["bigshuf"] == results["shuf"]
        assert results["bigshuf"][0] == 1 and results["bigshuf"][2].count(b"\n") == 1
        assert sorted(os.listdir(shared)) == ["blind", "in", "locked", "shut", "w"]
        assert all((shared / d / "x").read_bytes() == b"precious\n" for d in ("shut", "locked"))
    finally:
        for name in ("shut", "locked", "blind"):
            (shared / name).chmod(0o700)
        shutil.rmtree(shared)


def test_another_users_file_this_user_may_not_write_is_permission_denied_named_as_given():
    """Run as ``nobody``: ``-o`` naming root's 0644 file in a world-writable directory that is not
    sticky. bigshuf said "/abs/path/f: cannot be replaced: Operation not permitted" (its backup
    probe, refused by the kernel's protected_hardlinks); shuf says "f: Permission denied" (found
    by attack and by a differential run). A file of this user's that it may not write, too."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as another user")
    shared = Path(tempfile.mkdtemp(prefix="bigshuf-open-"))
    try:
        for name in ("in", "f", "mine"):
            (shared / name).write_bytes(b"1\n2\n3\n")
            (shared / name).chmod(0o644 if name != "mine" else 0o444)
        os.chown(shared / "mine", 65534, 65534)
        shared.chmod(0o777)
        for target in ("f", "./mine"):
            results = {}
            for who, argv in both(["-o", target, "in"]):
                proc = subprocess.run([*NOBODY, *argv], capture_output=True, timeout=60, cwd=shared)
                results[who] = (proc.returncode, proc.stdout, without_gnu_quotes(proc.stderr, who))
            assert results["bigshuf"] == results["shuf"] == (1, b"", f"bigshuf: {target}: Permission denied\n".encode())
        assert sorted(os.listdir(shared)) == ["f", "in", "mine"]
        assert all((shared / n).read_bytes() == b"1\n2\n3\n" for n in ("f", "mine"))
    finally:
        shutil.rmtree(shared)


def _acl(user: int, mask: int) -> bytes:
    """An access ACL (the kernel's xattr form): owner rw, ``user`` rw, group r, mask ``mask``, other r."""
    entries = [(0x01, 6, 0xFFFFFFFF), (0x02, 6, user), (0x04, 4, 0xFFFFFFFF), (0x10, mask, 0xFFFFFFFF), (0x20, 4, 0xFFFFFFFF)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def test_a_replaced_file_keeps_what_shufs_write_in_place_keeps():
    """Run as ``nobody``, ``-o`` naming its own files: the kernel clears set-user-ID (and, on a
    group-executable file, set-group-ID) when shuf writes one, and keeps its access ACL and user
    attributes. bigshuf, replacing the file, kept 6775 as it was and dropped the ACL and attributes
    (a group's widening: without its ACL the mode's group bits grant the mask) (found by attack)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as another user")
    shared = Path(tempfile.mkdtemp(prefix="bigshuf-attrs-"))
    try:
        probe = shared / "probe"
        probe.write_bytes(b"")
        try:
            os.setxattr(probe, "system.posix_acl_access", _acl(0, 6))
            os.setxattr(probe, "user.note", b"x")
        except OSError:
            pytest.skip("this file system keeps no ACLs or user attributes")
        probe.unlink()
        shared.chmod(0o777)
        modes = {"suid": 0o6775, "sgid": 0o2765, "acl": 0o664}
        results = {}
        for who, argv in both(["-e", "a", "b"]):
            for name, mode in modes.items():
                target = shared / f"{who}-{name}"
                target.write_bytes(b"old\n")
                os.chown(target, 65534, 65534)
                target.chmod(mode)
                if name == "acl":
                    os.setxattr(target, "system.posix_acl_access", _acl(0, 6))
                    os.setxattr(target, "user.note", b"kept")
                proc = subprocess.run([*NOBODY, *argv, "-o", str(target)], capture_output=True, timeout=60)
                assert (proc.returncode, proc.stderr) == (0, b""), who
                attrs = {n: os.getxattr(target, n) for n in sorted(os.listxattr(target)) if n.startswith(("user.", "system."))}
                results[who, name] = (oct(target.stat().st_mode & 0o7777), attrs)
        assert results["bigshuf", "suid"] == ("0o775", {})
        assert results["bigshuf", "sgid"] == ("0o2765", {})
        assert results["bigshuf", "acl"] == ("0o664", {"system.posix_acl_access": _acl(0, 6), "user.note": b"kept"})
        for name in modes:
            assert results.get(("shuf", name), results["bigshuf", name]) == results["bigshuf", name], name
    finally:
        shutil.rmtree(shared)


def _default_acl_directory(tmp_path: Path, acl: bytes) -> tuple[Path, Path]:
    """A directory ``dacl`` with the default ACL ``acl`` (the test skipped where the file system keeps
    none), and an input of three lines beside it."""
    directory = tmp_path / "dacl"
    directory.mkdir()
    try:
        os.setxattr(directory, "system.posix_acl_default", acl)
    except OSError:
        pytest.skip("this file system keeps no ACLs")
    src = tmp_path / "in"
    src.write_bytes(b"1\n2\n3\n")
    return directory, src


def test_a_replaced_file_without_an_acl_takes_none_from_its_directory(tmp_path):
    """A directory with a default ACL granting a user access, and FILE in it without an ACL (mode
    0660): bigshuf's new file took the directory's ACL, which its mode's mask then opened to that
    user, where shuf writing FILE in place leaves it as it was (review of the ACL fix)."""
    directory, src = _default_acl_directory(tmp_path, _acl(65534, 6))
    results = {}
    for who, argv in both(["-o", str(directory / "x"), str(src)]):
        target = directory / "x"
        target.unlink(missing_ok=True)
        fd = os.open(tmp_path / "x", os.O_CREAT | os.O_WRONLY, 0o660)  # made outside: no ACL
        os.close(fd)
        os.chmod(tmp_path / "x", 0o660)
        os.rename(tmp_path / "x", target)
        assert "system.posix_acl_access" not in os.listxattr(target)
        assert subprocess.run(argv, capture_output=True, timeout=60).returncode == 0, who
        results[who] = (oct(target.stat().st_mode & 0o7777), [n for n in os.listxattr(target) if n.startswith("system.")])
    assert results["bigshuf"] == ("0o660", [])
    assert results.get("shuf", results["bigshuf"]) == results["bigshuf"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_new_file_takes_its_directory_default_acl_as_shuf_creating_it_does(tmp_path, umask):
    """A new ``-o FILE`` in a directory with a default ACL: open(2) gives it that ACL limited to
    read and write, and no umask applies. bigshuf's file, created private and then given ``0666
    less the umask``, was world-readable where the ACL denied others (umask 022), and its named
    user lost access where the umask masked the group bits (077) (differential test)."""
    default = struct.pack("<I", 2) + b"".join(
        struct.pack("<HHI", *e) for e in [(0x01, 6, 0xFFFFFFFF), (0x02, 7, 65534), (0x04, 4, 0xFFFFFFFF), (0x10, 7, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)]
    )
    directory, src = _default_acl_directory(tmp_path, default)
    results = {}
    for who, argv in both(["-o", str(directory / "out"), str(src)]):
        target = directory / "out"
        target.unlink(missing_ok=True)
        done = subprocess.run(argv, capture_output=True, timeout=60, umask=umask, check=False)
        assert (done.returncode, done.stderr) == (0, b""), who
        results[who] = (oct(target.stat().st_mode & 0o7777), os.getxattr(target, "system.posix_acl_access"))
    # The ACL as the kernel masks it with 0666: the named user's rwx stays, the mask is rw, so is the mode's group.
    expected = struct.pack("<I", 2) + b"".join(
        struct.pack("<HHI", *e) for e in [(0x01, 6, 0xFFFFFFFF), (0x02, 7, 65534), (0x04, 4, 0xFFFFFFFF), (0x10, 6, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)]
    )
    assert results["bigshuf"] == ("0o660", expected)
    assert results.get("shuf", results["bigshuf"]) == results["bigshuf"]


def test_another_users_file_in_a_sticky_directory_is_refused_without_leftovers():
    """Run as ``nobody``: ``-o`` naming root's world-writable file in a sticky directory (as in /tmp).
    GNU shuf writes it in place; bigshuf replaces by rename, which the sticky bit forbids, so it
    refuses it in a line. It used to link a backup first, which it could not unlink again: a root-owned
    hidden link left on every try, and the message named the link (found by attack)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as another user")
    shared = Path(tempfile.mkdtemp(prefix="bigshuf-sticky-"))
    try:
        (shared / "in").write_bytes(b"a\nb\n")
        (shared / "shared.txt").write_bytes(b"1\n2\n3\n")
        (shared / "shared.txt").chmod(0o666)
        (shared / "in").chmod(0o644)
        shared.chmod(0o1777)
        for _ in range(2):
            proc = subprocess.run([*NOBODY, *BIGSHUF, "--seed", "1", "-o", "shared.txt", "in"], capture_output=True, timeout=60, cwd=shared)
            assert (proc.returncode, proc.stdout) == (1, b"")
            assert proc.stderr == (
                "bigshuf: shared.txt: cannot be replaced: Operation not permitted (another user's file in a sticky directory)\n"
            ).encode()
        assert sorted(os.listdir(shared)) == ["in", "shared.txt"]
        assert (shared / "shared.txt").read_bytes() == b"1\n2\n3\n" and os.stat(shared / "shared.txt").st_nlink == 1
        # One this user may not write is "Permission denied", as shuf says it (it was the sticky refusal).
        (shared / "shared.txt").chmod(0o644)
        proc = subprocess.run([*NOBODY, *BIGSHUF, "--seed", "1", "-o", "shared.txt", "in"], capture_output=True, timeout=60, cwd=shared)
        assert (proc.returncode, proc.stdout, proc.stderr) == (1, b"", b"bigshuf: shared.txt: Permission denied\n")
        assert sorted(os.listdir(shared)) == ["in", "shared.txt"]
    finally:
        shutil.rmtree(shared)


@pytest.mark.parametrize("args", [
    ["-o", "x y/z", "in"], ["-o", "no\ndir/x", "in"], ["-o", "a:b/c", "in"], ["-o", "d d", "in"], ["-o", "x y/", "in"],
    ["--random-source=no\nf", "in"], ["--random-source=a b", "in"], ["--random-source=.", "in"], ["--random-source=empty", "in"],
    ["--random-source=e\nx", "in"], ["--random-source=it's", "in"], ["--random-source=d\nd", "in"],
])
def test_names_in_output_and_random_source_errors_are_quoted_as_gnu_quotes_them(tmp_path, run_cli, run_gnu, args):
    """A newline in ``-o``'s or ``--random-source``'s name broke bigshuf's message in two lines;
    GNU quotes such names as a shell would read them (``'no'$'\\n''dir/x'``), but a random source it
    read nothing from with quote() (``'e\\nx': end of file``), where bigshuf quoted it as a shell would."""
    (tmp_path / "in").write_bytes(b"a\nb\n")
    (tmp_path / "d d").mkdir()
    (tmp_path / "d\nd").mkdir()
    for empty in ("empty", "e\nx", "it's"):
        (tmp_path / empty).write_bytes(b"")
    gnu = run_gnu(args, cwd=tmp_path)
    assert gnu[0] == 1 and gnu[2].count(b"\n") == 1
    assert run_cli(args, cwd=tmp_path) == gnu


@pytest.mark.parametrize("args", [
    ["-n", "x\ny"], ["-n", "x\\z"], ["-n", "a'b"], ["-n", "\x1b[31m"], [b"-n", b"\xff\xc3\xa9"], ["-n", "\u00e9"],
    ["-i", "1\n-2"], ["-i", "1-2\t"], ["-i", "1-2", "b\nc"], ["-i", "1-2", "\x1bx", "y"], ["-n", "\u00b2"], ["--foo=x"], ["-i", "1-2", "--zz=1=2"],
])
def test_arguments_in_messages_are_quoted_as_gnu_quotes_them(tmp_path, run_cli, run_gnu, args):
    """An option's argument or an extra operand is shown as GNU's quote() shows it, control bytes
    in C escapes: bigshuf printed ``invalid line count: 'x``, a new line, then ``y'``. An unknown
    long option is named whole, as getopt names it (bigshuf cut ``--foo=x`` at its '=')."""
    gnu = run_gnu(args, cwd=tmp_path)
    assert gnu[0] == 1 and gnu[2].split(b"\n")[0].count(b"'") >= 2
    assert run_cli(args, cwd=tmp_path) == gnu


@pytest.mark.parametrize("args", [[], ["-"], ["-n", "3"], ["-o", "ten"], ["-r", "-n", "30"]])
def test_a_file_named_dash_beside_does_not_take_standard_inputs_place(tmp_path, args):
    """With a regular file named ``-`` in the directory, standard input was taken for a possible
    tar and its first block read away to look: ``bigshuf < ten`` printed nothing (exit 0), and
    ``bigshuf -o ten < ten`` replaced ``ten`` with an empty file (found by differential testing)."""
    (tmp_path / "-").write_bytes(b"dashfile1\ndashfile2\n")
    lines = b"".join(b"%d\n" % i for i in range(1, 11))
    for who, argv in both(args):
        (tmp_path / "ten").write_bytes(lines)
        with open(tmp_path / "ten", "rb") as stdin:
            proc = subprocess.run(argv, stdin=stdin, capture_output=True, cwd=tmp_path, timeout=60)
        out = (tmp_path / "ten").read_bytes() if "-o" in args else proc.stdout
        assert (who, proc.returncode, proc.stderr) == (who, 0, b"")
        got = out.splitlines()
        if "-r" in args:
            assert len(got) == 30 and set(got) <= set(lines.splitlines())
        elif "-n" in args:
            assert len(got) == len(set(got)) == 3 and set(got) <= set(lines.splitlines())
        else:
            assert sorted(got) == sorted(lines.splitlines())
        assert (tmp_path / "-").read_bytes() == b"dashfile1\ndashfile2\n"


@pytest.mark.parametrize("args", [
    ["-o", "--", "in"], ["--output", "--", "in"], ["--output=--", "in"], ["-o--", "in"], ["-n--", "in"],
    ["--head-count=--", "in"], ["--input-range=--"], ["-n", "--", "in"], ["-i", "--"], ["--random-source", "--", "in"],
])
def test_dash_dash_after_an_option_is_its_argument_as_in_gnu_shuf(tmp_path, run_cli, run_gnu, args):
    """getopt takes ``--`` after an option that needs an argument as that argument: ``-o -- in``
    writes a file named ``--``. bigshuf said the option lacked one, and ``-n--``,
    ``--head-count=--`` and ``--input-range=--`` were internal errors (argparse hands such an
    option an empty list); found by differential testing."""
    (tmp_path / "in").write_bytes(b"a\nb\nc\n")
    results = []
    for run in (run_gnu, run_cli):
        (tmp_path / "--").unlink(missing_ok=True)
        code, out, err = run(args, cwd=tmp_path)
        written = sorted((tmp_path / "--").read_bytes().splitlines()) if (tmp_path / "--").exists() else None
        results.append((code, sorted(out.splitlines()), err, written))
    assert results[0] == results[1]
    assert results[1][0] == 0 or results[1][2].count(b"\n") == 1


@pytest.mark.parametrize("args", [["-o", "out", "in"], ["--shards", "1", "-o", "out", "in"]])
def test_a_file_the_user_may_not_write_is_not_replaced(args):
    """``-o out`` where ``out`` is the user's own file without write permission, in a directory
    they may write: GNU shuf's open(2) fails, "Permission denied"; bigshuf renamed its output over
    it, exit 0 (found by differential testing). Shards bigshuf names are held to the same rule."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as a user without root's write permission")
    shared = Path(tempfile.mkdtemp(prefix="bigshuf-gnu-"))
    try:
        shared.chmod(0o777)
        (shared / "in").write_bytes(b"a\nb\n")
        (shared / "in").chmod(0o644)
        for who, argv in both(args):
            if who == "shuf" and "--shards" in args:
                continue
            out = shared / "out"
            out.write_bytes(b"keep me\n")
            out.chmod(0o444)
            os.chown(out, 65534, 65534)
            proc = subprocess.run([*NOBODY, *argv], capture_output=True, timeout=60, cwd=shared)
            assert (who, proc.returncode, proc.stdout) == (who, 1, b"")
            assert proc.stderr.endswith(b"out: Permission denied\n") and proc.stderr.count(b"\n") == 1
            assert out.read_bytes() == b"keep me\n"
            assert sorted(os.listdir(shared)) == ["in", "out"]
            out.unlink()
    finally:
        shutil.rmtree(shared)


@pytest.mark.parametrize("args", [
    ["-e", "-1", "2"], ["-e", "a", "-5"], ["-e", "-a b"], ["-1"], ["in", "-z x"], ["-zx", "in"], ["-z-", "in"],
    ["--foo=a b"], ["--foo bar"], ["-n=2", "in"], ["-i=1-3"], ["-o=out", "in"], ["-rn=3", "in"],
])
def test_option_words_are_read_as_getopt_reads_them(tmp_path, run_cli, run_gnu, args):
    """Words argparse reads otherwise than getopt (found by differential testing): ``-1`` and
    ``-a b`` were operands (``-e -1 2`` printed them), ``-zx`` an argument to ``-z``, ``-n=2`` the
    count 2 (GNU: "invalid line count: '=2'"), ``-o=out`` the file ``out`` (GNU: ``=out``)."""
    (tmp_path / "in").write_bytes(b"a\nb\nc\n")
    results = []
    for run in (run_gnu, run_cli):
        for name in ("out", "=out"):
            (tmp_path / name).unlink(missing_ok=True)
        code, out, err = run(args, cwd=tmp_path)
        results.append((code, sorted(out.splitlines()), err, sorted(os.listdir(tmp_path))))
    assert results[0] == results[1]


def test_output_dash_is_a_file_named_dash_as_in_gnu_shuf(tmp_path):
    """``-o -`` writes the file ``-`` in GNU shuf; bigshuf wrote standard output."""
    (tmp_path / "in").write_bytes(b"a\nb\nc\n")
    for who, argv in both(["-o", "-", "in"]):
        (tmp_path / "-").unlink(missing_ok=True)
        proc = subprocess.run(argv, capture_output=True, cwd=tmp_path, timeout=60)
        assert (who, proc.returncode, proc.stdout, proc.stderr) == (who, 0, b"", b"")
        assert sorted((tmp_path / "-").read_bytes().splitlines()) == [b"a", b"b", b"c"]


def test_a_closed_pipe_with_sigpipe_blocked_is_a_write_error():
    """The caller blocked SIGPIPE: shuf's write to a closed pipe then fails, "write error: Broken
    pipe", exit 1; bigshuf raised the signal at itself, which stayed pending, and exited 141 with
    nothing said (differential test)."""
    for who, argv in both(["-r", "-e", "a"]):
        blocked = "import os, signal, sys; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE}); os.execvp(sys.argv[1], sys.argv[1:])"
        proc = subprocess.Popen([sys.executable, "-c", blocked, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.read(10) == b"a\n" * 5
        proc.stdout.close()
        err = proc.stderr.read()
        proc.stderr.close()
        assert proc.wait(timeout=60) == 1, who
        assert gnu_to_bigshuf(err).split(b"\n")[0] == b"bigshuf: write error: Broken pipe", who  # (shuf adds "write error")
        assert who == "shuf" or err == b"bigshuf: write error: Broken pipe\n"


def head_of_endless(args: list[str], input: bytes = b"", count: int = 1000) -> list[bytes]:
    """The first ``count`` lines of ``bigshuf ARGS | head -n COUNT`` (an endless --repeat)."""
    proc = subprocess.Popen([*BIGSHUF, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(input)
    proc.stdin.close()
    got = [proc.stdout.readline() for _ in range(count)]
    proc.stdout.close()
    proc.wait(timeout=60)
    assert proc.stderr is not None
    with proc.stderr:
        assert proc.stderr.read() == b""
    assert proc.returncode == -signal.SIGPIPE  # ended by the closed pipe, as shuf is
    return got


def test_repeat_range_without_count_is_endless():
    """shuf.sh:152-156: --rep -i 0-10 | head -n 1000 gets 1000 lines."""
    got = head_of_endless(["--rep", "-i", "0-10"])
    assert all(line.endswith(b"\n") and 0 <= int(line) <= 10 for line in got)


def test_repeat_range_outputs_more_than_the_range(run_cli):
    """shuf.sh:158-168: --rep -i0-9 -n1000 outputs 1000 lines holding every value 0-9."""
    code, out, err = run_cli(["--rep", "-i0-9", "-n1000"])
    assert code == 0 and err == b""
    values = [int(v) for v in lines(out)]
    assert len(values) == 1000
    assert sorted(set(values)) == list(range(10))


def test_repeat_range_with_a_non_zero_low_end(run_cli):
    """shuf.sh:170-174: --rep -i222-233 -n2000 draws every value 222-233 and no other."""
    code, out, err = run_cli(["--rep", "-i222-233", "-n2000"])
    assert code == 0 and err == b""
    assert sorted({int(v) for v in lines(out)}) == list(range(222, 234))


def test_repeat_range_count_zero_is_empty(run_cli):
    """shuf.sh:176-180: --rep -i0-9 -n0 succeeds with no output."""
    assert run_cli(["--rep", "-i0-9", "-n0"]) == (0, b"", b"")


def test_repeat_echo_without_count_is_endless():
    """shuf.sh:182-186: --rep -e A B C D | head -n 1000 gets 1000 lines."""
    got = head_of_endless(["--rep", "-e", "A", "B", "C", "D"])
    assert set(got) <= {b"A\n", b"B\n", b"C\n", b"D\n"}


def test_repeat_stdin_without_count_is_endless():
    """shuf.sh:188-192: printf 'A..E' | shuf --rep | head -n 1000 gets 1000 lines."""
    got = head_of_endless(["--rep"], input=b"A\nB\nC\nD\nE\n")
    assert set(got) <= {b"A\n", b"B\n", b"C\n", b"D\n", b"E\n"}


def test_repeat_stdin_outputs_more_than_the_input(run_cli):
    """shuf.sh:194-205: --rep -n2000 on five lines of stdin outputs 2000 lines holding all five."""
    code, out, err = run_cli(["--rep", "-n2000"], input=b"A\nB\nC\nD\nE\n")
    assert code == 0 and err == b""
    got = lines(out)
    assert len(got) == 2000
    assert sorted(set(got)) == [b"A", b"B", b"C", b"D", b"E"]


def test_repeat_stdin_count_zero_is_empty(run_cli):
    """shuf.sh:207-211: --rep -n0 on stdin succeeds with no output."""
    assert run_cli(["--rep", "-n0"], input=b"A\nB\nC\nD\nE\n") == (0, b"", b"")


def test_file_operand_with_stdin_closed():
    """shuf.sh:213-216: shuf /dev/null with standard input closed succeeds with no output."""
    for who, argv in both(["/dev/null"]):
        assert (who, *shell('exec "$@" <&-', *argv)) == (who, 0, b"", b"")


# ---------------------------------------------------------------- tests/shuf/shuf-reservoir.sh

RESERVOIR_SIZES = [0, 1, 5, 1023, 1024, 1025, 3071, 3072, 3073]


def sample_sizes(n_in: int) -> list[int]:
    """The OUTs tried for IN: GNU's grid at its edges and on either side of IN. bigshuf reads no
    1024-line batches, so what can differ is OUT below, at or above the count read."""
    return sorted({0, 1, max(0, n_in - 1), n_in, n_in + 1, RESERVOIR_SIZES[-1]})


@pytest.mark.parametrize("n_in", RESERVOIR_SIZES)
def test_sample_sizes_around_the_reservoir_batches(tmp_path, n_in):
    """shuf-reservoir.sh:31-71: seq IN | shuf -n OUT -o FILE, for IN around 1024-line batches and
    OUT around IN, writes min(IN, OUT) distinct numeric lines."""
    for n_out in sample_sizes(n_in):
        out = tmp_path / f"out_{n_in}_{n_out}"
        proc = subprocess.run([*BIGSHUF, "-n", str(n_out), "-o", str(out)], input=seq(n_in), capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        got = lines(out.read_bytes())
        assert len(got) == min(n_in, n_out)
        assert all(v.isdigit() for v in got)
        assert len(set(got)) == len(got)
        assert {int(v) for v in got} <= set(range(1, n_in + 1))


# ---------------------------------------------------------------- tests/misc/close-stdin.sh


def test_closed_stdin_is_a_read_error():
    """close-stdin.sh:61,80-84: shuf - with stdin closed fails with EBADF (here, GNU's exact message)."""
    for who, argv in both(["-"]):
        code, out, err = shell('exec "$@" <&-', *argv)
        assert (who, code, out) == (who, 1, b"")
        assert without_gnu_quotes(err, who) == b"bigshuf: read error: Bad file descriptor\n"


# ---------------------------------------------------------------- tests/misc/write-errors.sh

#: write-errors.sh:79-83 caps memory at what ``--version`` needs plus 12 MB; Python's floor is
#: far above shuf's, so the cap here is a fixed 1 GB: enough to start, too little for a run
#: that would buffer an endless output instead of writing it.
WRITER_ULIMIT = "ulimit -v 1000000"


def test_endless_writer_to_a_full_device():
    """write-errors.sh:62,85-90: shuf -i 0-1 -r >/dev/full stops within 10 s and reports ENOSPC."""
    if not os.path.exists("/dev/full") or not stat.S_ISCHR(os.stat("/dev/full").st_mode):
        pytest.skip("/dev/full is needed")
    for who, argv in both(["-i", "0-1", "-r"]):
        code, out, err = shell(f'{WRITER_ULIMIT} && exec "$@" >/dev/full', *argv, timeout=10)
        assert (who, code) == (who, 1)
        # The GNU test greps for the error; GNU shuf says it twice (once more at exit), bigshuf once.
        assert b"write error: No space left on device" in err
        if who == "bigshuf":
            assert err == b"bigshuf: write error: No space left on device\n"


def test_endless_writer_to_a_closed_stdout():
    """write-errors.sh:62,92-97: shuf -i 0-1 -r >&- stops within 10 s and reports EBADF."""
    for who, argv in both(["-i", "0-1", "-r"]):
        code, out, err = shell(f'{WRITER_ULIMIT} && exec "$@" >&-', *argv, timeout=10)
        assert (who, code) == (who, 1)
        # The GNU test greps for the error; GNU shuf says it twice (once more at exit), bigshuf once.
        assert b"write error: Bad file descriptor" in err
        if who == "bigshuf":
            assert err == b"bigshuf: write error: Bad file descriptor\n"


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help_to_a_closed_stdout(flag):
    """Found by the issue-12 verification, beside write-errors.sh: --version >&- exited 120 with
    Python's "Exception ignored" after the message; GNU exits 1 with one line."""
    for who, argv in both([flag]):
        code, _, err = shell('exec "$@" >&-', *argv, timeout=30)
        assert (who, code) == (who, 1)
        assert err.endswith(b"write error: Bad file descriptor\n") and err.count(b"\n") == 1, (who, err)


def test_endless_writer_to_a_closed_pipe(tmp_path):
    """write-errors.sh:62,102-107: shuf -i 0-1 -r | : ends within 10 s, silently."""
    for who, argv in both(["-i", "0-1", "-r"]):
        err = tmp_path / f"{who}.err"
        code, _, _ = shell(f'{WRITER_ULIMIT} && ("$@" 2>{err} | :)', *argv, timeout=10)
        assert (who, code, err.read_bytes()) == (who, 0, b"")


# ---------------------------------------------------------------- tests/misc/read-errors.sh


@pytest.fixture
def plain_directory(tmp_path: Path) -> Path:
    """A directory holding one file with no suffix, as the directory read-errors.sh runs in."""
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / "errs").write_bytes(b"")
    return directory


@pytest.mark.parametrize("args", [["-r", "."], ["-n1", "."]], ids=["repeat", "sample"])
def test_directory_operand_is_a_read_error(plain_directory, args):
    """read-errors.sh:70-71,103: shuf -r . and shuf -n1 . fail: exit 1, "read error: Is a directory"."""
    for who, argv in both(args):
        proc = subprocess.run(argv, capture_output=True, cwd=plain_directory, timeout=60)
        assert (who, proc.returncode, proc.stdout) == (who, 1, b"")
        assert b"read error: Is a directory" in proc.stderr
        assert proc.stderr.count(b"\n") == 1 and b"Traceback" not in proc.stderr


@pytest.mark.parametrize("args", [["-r", "."], ["-n1", "."]], ids=["repeat", "sample"])
def test_directory_read_failing_with_eio_is_reported(plain_directory, args):
    """read-errors.sh:118-130: with every read of the directory failing (EIO, by strace), the
    command exits 1 naming "Input/output error": the error comes from read itself."""
    probe = ["strace", "-o", "/dev/null", "-P", "_", "-e", "/read,splice", "-e", "fault=all:error=EIO", "true"]
    if shutil.which("strace") is None or subprocess.run(probe, capture_output=True).returncode != 0:
        pytest.skip("strace cannot inject read faults here")
    for who, argv in both(args):
        proc = subprocess.run(
            ["strace", "-f", "-o", "/dev/null", "-P", ".", "-e", "/read,splice", "-e", "fault=all:error=EIO", *argv],
            capture_output=True, cwd=plain_directory, timeout=120,
        )
        assert (who, proc.returncode) == (who, 1), proc.stderr
        assert b"Input/output error" in proc.stderr


# ---------------------------------------------------------------- tests/misc/tty-eof.pl


def _type_into(master: int, typed: bytes) -> None:
    """Write ``typed`` to the terminal ``master`` a line at a time, as someone typing would."""
    for line in typed.splitlines(keepends=True):
        try:
            os.write(master, line)
        except OSError:
            return


def run_on_terminal(argv: list[str], typed: bytes, timeout: float = 10) -> tuple[int | None, bytes, bytes]:
    """Run ``argv`` with stdin and stdout on a new pseudo-terminal, type ``typed`` into it, and
    collect what the terminal shows until the program exits (None: still running at ``timeout``)."""
    master, slave = pty.openpty()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=err, start_new_session=True)
        os.close(slave)
        # Typed from a thread: the terminal holds only a few KiB until the program reads them.
        typist = threading.Thread(target=_type_into, args=(master, typed), daemon=True)
        typist.start()
        shown = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every writer of the terminal is gone
                    chunk = b""
                shown += chunk
                if chunk:
                    continue
            if proc.poll() is not None:
                break
        status = proc.poll()
        if status is None:
            proc.kill()
            proc.wait()
        os.close(master)
        err.seek(0)
        return status, shown.replace(b"\r\n", b"\n").replace(b"\r", b"\n"), err.read()


@pytest.mark.parametrize("typed", [b"a b\n", b""], ids=["with-input", "without-input"])
def test_one_end_of_file_from_a_terminal_ends_the_input(typed):
    """tty-eof.pl:68-169 (shuf at line 93): on a terminal, a single Ctrl-D after the input (or
    none) ends it: the program exits 0 within 10 s, shuffles what was typed, stderr empty."""
    for who, argv in both([]):
        status, shown, err = run_on_terminal(argv, typed + b"\x04")
        assert (who, status, err) == (who, 0, b""), shown
        if typed:
            assert shown.startswith(typed), shown  # the terminal's echo of the input
            assert shown[len(typed):].strip() == b"a b"


# ---------------------------------------------------------------- issue 12: -i and -n as GNU parses them


@pytest.mark.parametrize(
    "spec",
    [" 1-3", "\t1-3", "1- 3", "+1-+3", "1-3 ", "-1-3", "1--3", "1-2-3", "", "-", "0x1-3", "3-1", "2-1",
     f"0-{SIZE_MAX}", f"{SIZE_MAX}-{SIZE_MAX + 1}", f"{SIZE_MAX + 1}-1", "99999999999999999999x-1",
     "1-99999999999999999999x", f"{SIZE_MAX - 1}-{SIZE_MAX}"],
)
def test_input_range_is_read_as_gnu_reads_it(run_cli, run_gnu, spec):
    """Issue 12: -i ' 1-3' is accepted (leading blanks, as strtoumax), -i SIZE_MAX-(SIZE_MAX+1) is
    refused with "Value too large"; every spelling gets GNU shuf 9.1's answer."""
    gnu_code, gnu_out, gnu_err = run_gnu(["-i", spec])
    code, out, err = run_cli(["-i", spec])
    assert (code, err) == (gnu_code, gnu_err)
    assert sorted(lines(out)) == sorted(lines(gnu_out))


@pytest.mark.parametrize("count", [" 2", "+2", "2 ", "1_0", "0x2", "2k", "-1", "", "99999999999999999999999"])
def test_head_count_is_read_as_gnu_reads_it(run_cli, run_gnu, count):
    """-n as GNU's xstrtoumax reads it: blanks and + before the digits, nothing after; a count too
    large to hold means no limit."""
    gnu_code, gnu_out, gnu_err = run_gnu(["-n", count, "-i", "1-5"])
    code, out, err = run_cli(["-n", count, "-i", "1-5"])
    assert (code, err) == (gnu_code, gnu_err)
    assert len(lines(out)) == len(lines(gnu_out))
    assert len(set(lines(out))) == len(lines(out)) and set(lines(out)) <= {b"1", b"2", b"3", b"4", b"5"}


def test_second_input_range_is_refused_before_it_is_read(run_cli, run_gnu):
    """Issue 12: GNU refuses a second -i whatever it says (even a bad range) as getopt meets it."""
    for args in (["-i0-9", "-i", "A"], ["-i0-9", "-i0-9"], ["-i", "A", "-i0-9"], ["-nA", "-i", "B"]):
        gnu = run_gnu(args)
        assert gnu[0] == 1
        assert run_cli(args) == (1, b"", gnu[2]), args


def test_sample_near_the_int64_limit_stays_in_the_range(run_cli):
    """A range crossing 2**63 gave negative numbers (int64 overflow adding LO to the draws)."""
    lo, hi = 2**63 - 8, 2**63 + 2
    for extra in ([], ["-r"]):
        code, out, err = run_cli([*extra, "-i", f"{lo}-{hi}", "-n", "5"])
        assert code == 0 and err == b""
        values = [int(v) for v in lines(out)]
        assert len(values) == 5 and all(lo <= v <= hi for v in values), values
        if not extra:
            assert len(set(values)) == 5


def test_seeded_samples_of_ranges_that_worked_before_are_unchanged(run_cli):
    """The draws for ranges below 2**63 are those of 1ac7d16, so seeded outputs stay the same."""
    assert run_cli(["-i", "1-100", "-n", "3", "--seed", "5"]) == (0, b"33\n44\n17\n", b"")
    assert run_cli(["-r", "-i", "1-100", "-n", "3", "--seed", "5"]) == (0, b"45\n33\n17\n", b"")


def test_repeat_over_a_range_too_big_to_list_streams_uniform_draws():
    """``-r -i LO-HI`` without ``-n`` never lists the range, as GNU shuf: it was refused for want of
    11.7 TiB of temporary space. The draws over 10 equal bins of a 10**12-wide range are uniform."""
    lo, width = 10**12, 10**12
    got = [int(v) for v in head_of_endless(["-r", "-i", f"{lo}-{lo + width - 1}", "--seed", "3"], count=20000)]
    assert all(lo <= v < lo + width for v in got)
    from test_uniformity import assert_uniform

    assert_uniform(Counter((v - lo) * 10 // width for v in got), list(range(10)), "-r -i, 10 bins")
    top = [int(v) for v in head_of_endless(["-r", "-i", f"{SIZE_MAX - 2}-{SIZE_MAX}", "--seed", "3"], count=3000)]
    assert set(top) == {SIZE_MAX - 2, SIZE_MAX - 1, SIZE_MAX}


def test_repeat_echo_without_count_streams_uniform_independent_draws():
    """``-r -e a b c d`` without ``-n`` (endless, cut by the pipe): each operand a quarter of the
    draws and each of the 16 pairs of consecutive draws equally often."""
    from test_uniformity import assert_uniform

    got = [line.rstrip(b"\n") for line in head_of_endless(["-r", "--seed", "3", "-e", "a", "b", "c", "d"], count=20000)]
    operands = [b"a", b"b", b"c", b"d"]
    assert_uniform(Counter(got), operands, "-r -e counts")
    assert_uniform(Counter(zip(got, got[1:])), [(a, b) for a in operands for b in operands], "-r -e pairs")


def test_repeat_over_a_range_draws_what_the_listed_range_gives(tmp_path):
    """Not listing the range changes no seeded output: the same lines as ``-r`` over a file of its numbers."""
    numbers = tmp_path / "numbers"
    numbers.write_bytes(b"".join(b"%d\n" % i for i in range(7, 3007)))
    assert head_of_endless(["-r", "-i", "7-3006", "--seed", "5"], count=5000) == head_of_endless(["-r", str(numbers), "--seed", "5"], count=5000)
    # --header (lines) and --lines-per-record shape the listed range's records: those are drawn, as from the file.
    # At -S 256K a chunk of draws is 3,276 numbers: 8,000 lines cross two chunk boundaries.
    for shape in (["--header=2"], ["--lines-per-record=2"], ["--header=3", "--lines-per-record=3", "-S", "64K"], ["-S", "256K"]):
        listed = head_of_endless(["-r", str(numbers), "--seed", "5", *shape], count=8000)
        assert head_of_endless(["-r", "-i", "7-3006", "--seed", "5", *shape], count=8000) == listed, shape


@pytest.mark.parametrize("draw", [["-n", "3"], ["-r", "-n", "3"]])
@pytest.mark.parametrize("lo,hi", [(1, 10**12), (SIZE_MAX - 999, SIZE_MAX)])
def test_a_sample_of_a_range_keeps_its_header_and_whole_records(run_cli, draw: list[str], lo: int, hi: int) -> None:
    """``-i LO-HI -n N --header=H --lines-per-record=G`` shapes the range as it shapes the file of
    its numbers: H numbers on top, then N records of G consecutive numbers. The draws ignored
    both (N lone numbers, no header); and sent to the listed range, 10^12 numbers ran for hours."""
    code, out, err = run_cli(["-i", f"{lo}-{hi}", *draw, "--header=1", "--lines-per-record=3", "--seed", "4"])
    assert (code, err) == (0, b"")
    got = [int(v) for v in out.split()]
    assert got[0] == lo and len(got) == 1 + 3 * 3
    records = [got[i : i + 3] for i in range(1, len(got), 3)]
    for r in records:
        assert r == [r[0], r[0] + 1, r[0] + 2] and (r[0] - lo - 1) % 3 == 0 and r[2] <= hi, records
    if "-r" not in draw:
        assert len({r[0] for r in records}) == 3


def test_a_range_with_lines_left_over_is_refused_at_once(run_cli) -> None:
    """A range whose numbers after the header are not whole records is refused as the file of
    them is, before any draw (listing 10^12 numbers first found it only at their end)."""
    code, out, err = run_cli(["-i", "1-1000000000001", "-n", "3", "--lines-per-record=2"])
    assert (code, out) == (1, b"")
    assert err == b"bigshuf: 1-1000000000001: ends with 1 line left over after the last whole record of 2 lines (--lines-per-record)\n"


def test_a_sample_of_a_range_of_two_to_the_63_records_is_drawn(run_cli) -> None:
    """2**63 records (one past what ``Generator.choice`` takes) were an internal OverflowError."""
    for args in (["-i", "10-9223372036854775818", "--header=1"], ["-i", "0-9223372036854775807"]):
        code, out, err = run_cli([*args, "-n", "3", "--seed", "2"])
        assert (code, err) == (0, b"") and len(set(out.split())) == 3 + ("--header=1" in args), out


@pytest.mark.parametrize("shape,share,want", [
    (["--lines-per-record=2"], "25%", 26), (["--header=10"], "10%", 19), (["--lines-per-record=2"], "60%", 60),
    (["--header=2", "--lines-per-record=3"], "0", 0), (["--header=2", "--lines-per-record=3", "-r"], "0", 0),
])
def test_a_range_counts_its_sample_as_the_file_of_its_numbers(tmp_path, run_cli, shape, share, want) -> None:
    """``-n P%`` is a share of the records after the header, and ``-n 0`` reads nothing (no header,
    no complaint of lines left over), for the range as for the file of its numbers."""
    (tmp_path / "f").write_bytes(b"".join(b"%d\n" % i for i in range(1, 101)))
    listed = run_cli(["f", *shape, "-n", share, "--seed", "1"], cwd=tmp_path)
    code, out, err = run_cli(["-i", "1-100", *shape, "-n", share, "--seed", "1"])
    assert (code, err) == (0, b"") and listed[0] == 0
    assert out.count(b"\n") == listed[1].count(b"\n") == want


@pytest.mark.parametrize("shape,share", [
    (["--header=1", "--lines-per-record=3"], "0%"), (["--header=1", "--lines-per-record=3", "-r"], "1%"),
    (["--lines-per-record=3"], "0%"), (["--header=2", "--lines-per-record=2"], "0%"), (["--header=3"], "0%"),
])
def test_a_share_that_keeps_no_record_reads_the_range_as_the_file(tmp_path, run_cli, shape, share) -> None:
    """``-n P%`` keeping no record still reads the input: the file of the numbers prints its
    header, or refuses its leftover line; the range printed nothing, as for ``-n 0``."""
    (tmp_path / "f").write_bytes(b"".join(b"%d\n" % i for i in range(1, 101)))
    listed = run_cli(["f", *shape, "-n", share, "--seed", "1"], cwd=tmp_path)
    code, out, err = run_cli(["-i", "1-100", *shape, "-n", share, "--seed", "1"])
    assert (code, out, err.replace(b"1-100", b"f")) == listed


def test_distinct_draws_of_a_wide_range_are_uniform():
    """The sampler for ranges past int64 gives distinct numbers, each number and each position
    equally likely (chi-square over 4000 samples of 5 of the top 10 numbers below 2**64)."""
    from bigshuf.core.draws import distinct_wide
    from bigshuf.core.streams import rng_for

    lo, hi, n = SIZE_MAX - 9, SIZE_MAX, 5
    counts = np.zeros((n, 10))
    for i in range(4000):
        got = distinct_wide(rng_for(i, (4,)), lo, hi, n)
        assert got.dtype == np.uint64 and len(set(got.tolist())) == n
        for position, value in enumerate(got.tolist()):
            counts[position, value - lo] += 1
    expected = 4000 / 10
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    # 45 degrees of freedom; the 99.9th percentile is about 80.
    assert chi2 < 80, counts


@pytest.mark.parametrize(
    "args",
    [["-n", "0", "-e", "a", "b"], ["-n", "0", "-i", "1-5"], ["-n", "0", "in"], ["-e", "a"], ["-n", "1", "-i", "1-5"]],
)
def test_a_random_source_is_opened_only_by_a_run_that_draws(tmp_path, run_cli, run_gnu, args):
    """GNU shuf opens --random-source only to draw: -n 0 succeeds with a missing one (bigshuf
    read it at the start, always, and failed)."""
    (tmp_path / "in").write_bytes(b"x\ny\n")
    full = ["--random-source=missing", *args]
    assert run_cli(full, cwd=tmp_path) == run_gnu(full, cwd=tmp_path)


def test_posixly_correct_ends_the_options_at_the_first_operand(tmp_path):
    """getopt with POSIXLY_CORRECT set stops at the first operand: ``shuf -e a -n 1`` echoes the
    three words, ``shuf -- -e a -n 1`` too; without it -n is an option anywhere (bigshuf ignored the
    variable: found by differential testing against GNU shuf)."""
    posix = {**os.environ, "POSIXLY_CORRECT": "1"}
    for command, expected in (
        (["-e", "a", "-n", "1"], [b"-n", b"1", b"a"]),
        (["-z", "-e", "a", "-r", "-n", "2"], [b"-n", b"-r", b"2", b"a"]),
        (["-n", "2", "-e", "a", "b", "c", "-o", "x"], None),  # options before the first operand still count
    ):
        for who, argv in both(command):
            proc = subprocess.run(argv, env=posix, cwd=tmp_path, capture_output=True, timeout=60)
            assert (who, proc.returncode, proc.stderr) == (who, 0, b"")
            sep = b"\0" if "-z" in command else b"\n"
            if expected is not None:
                assert sorted(lines(proc.stdout, sep)) == expected, who
            else:
                assert len(lines(proc.stdout)) == 2 and set(lines(proc.stdout)) <= {b"a", b"b", b"c", b"-o", b"x"}, who
    proc = subprocess.run([*BIGSHUF, "-e", "a", "-n", "1"], cwd=tmp_path, capture_output=True, timeout=60)
    assert proc.stdout == b"a\n"


def _deleted_file(tmp_path: Path, data: bytes = b"") -> int:
    """A descriptor of a file, holding ``data``, whose name is gone (as ``exec 7>f; rm f`` leaves one)."""
    fd = os.open(tmp_path / "deleted", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.unlink(tmp_path / "deleted")
    os.write(fd, data)
    return fd


@pytest.mark.parametrize("memory", [[], ["-S", "64K"]], ids=["in memory", "external"])
def test_an_output_on_a_descriptor_of_a_deleted_file_is_written_into_it(tmp_path, memory):
    """``-o /dev/fd/N`` on a file deleted since it was opened: bigshuf made a new file named after the
    link's text (``deleted (deleted)``) beside where the old one was, and left the open one empty;
    for a memfd, ``/memfd:x (deleted)`` at the root. GNU shuf writes into the open file."""
    (tmp_path / "f").write_bytes(seq(20_000))
    for who in [who for who, _ in both([])]:
        fd = _deleted_file(tmp_path, b"old content, longer than nothing\n" * 10_000)
        try:
            [argv] = [argv for each, argv in both(["f", "-o", f"/dev/fd/{fd}"]) if each == who]
            command = argv if who == "shuf" else [*argv, *memory]
            proc = subprocess.run(command, cwd=tmp_path, capture_output=True, timeout=60, pass_fds=(fd,))
            assert (who, proc.returncode, proc.stdout, proc.stderr) == (who, 0, b"", b"")
            written = os.pread(fd, 1 << 20, 0)
        finally:
            os.close(fd)
        assert sorted(lines(written)) == sorted(lines(seq(20_000))), who
        assert sorted(os.listdir(tmp_path)) == ["f"], who


def test_a_deleted_file_that_is_input_and_output_is_refused(tmp_path):
    """Written in place (it has no name to rename a new file onto), the output would cut short the
    input it is read from: the run failed half-way with the file emptied. GNU shuf reads it all first;
    bigshuf refuses before reading."""
    fd = _deleted_file(tmp_path, seq(5000))
    name = f"/dev/fd/{fd}"
    try:
        proc = subprocess.run([*BIGSHUF, name, "-o", name], cwd=tmp_path, capture_output=True, timeout=60, pass_fds=(fd,))
        kept = os.pread(fd, 1 << 20, 0)
    finally:
        os.close(fd)
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert proc.stderr == (
        f"bigshuf: {name}: a deleted file, which can only be written in place, is also an input ({name}); "
        "write the output to another file\n"
    ).encode()
    assert kept == seq(5000)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("memory", [[], ["-S", "64K"]], ids=["in memory", "external"])
@pytest.mark.parametrize("name", ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1", "link-to-stdout"])
def test_an_output_on_standard_output_to_a_file_keeps_what_the_shell_writes_after_it(tmp_path, name, memory):
    """``{ echo start; bigshuf -o /dev/stdout f; echo done; } > log``: bigshuf renamed a new file over
    ``log``, so ``start`` was gone and the shell's ``done`` went into the deleted old file. The output
    is now written through descriptor 1 at its offset, as without ``-o`` (GNU shuf reopens and
    truncates the file: its output overwrites ``start`` and ``done`` overwrites its output)."""
    (tmp_path / "f").write_bytes(seq(20_000))
    os.symlink("/dev/stdout", tmp_path / "link-to-stdout")
    command = " ".join([*BIGSHUF, "--random-source=f", *memory])
    status, out, err = shell(f'cd "$1" && {{ echo start; {command} -o {name} f; echo done; }} > log', str(tmp_path))
    assert (status, out, err) == (0, b"", b"")
    plain = subprocess.run([*BIGSHUF, "--random-source=f", *memory, "f"], cwd=tmp_path, capture_output=True, timeout=60, check=False)
    assert (tmp_path / "log").read_bytes() == b"start\n" + plain.stdout + b"done\n"
    assert sorted(lines(plain.stdout)) == sorted(lines(seq(20_000)))
    assert sorted(os.listdir(tmp_path)) == ["f", "link-to-stdout", "log"]


def test_an_output_on_standard_output_appended_to_keeps_the_file(tmp_path):
    """``bigshuf -o /dev/stdout f >> log`` replaced ``log`` with the output alone (GNU shuf truncates
    it too); as ``bigshuf f >> log`` does, it now appends, and ``log``'s hard links see it."""
    (tmp_path / "f").write_bytes(seq(1000))
    (tmp_path / "log").write_bytes(b"kept\n")
    os.link(tmp_path / "log", tmp_path / "other-name")
    status, out, err = shell(f'cd "$1" && {" ".join(BIGSHUF)} -o /dev/stdout f >> log', str(tmp_path))
    assert (status, out, err) == (0, b"", b"")
    written = (tmp_path / "log").read_bytes()
    assert written.startswith(b"kept\n") and sorted(lines(written[5:])) == sorted(lines(seq(1000)))
    assert (tmp_path / "other-name").read_bytes() == written


def _shuffled_to_descriptor(tmp_path: Path, fd: int) -> None:
    """``bigshuf -o /dev/fd/N f`` in ``tmp_path``, N being ``fd`` (closed after), which must succeed silently."""
    try:
        proc = subprocess.run(
            [*BIGSHUF, "-o", f"/dev/fd/{fd}", "f"], cwd=tmp_path, capture_output=True, timeout=120, pass_fds=(fd,), check=False
        )
    finally:
        os.close(fd)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")


@pytest.mark.parametrize("flags", [os.O_RDWR, os.O_WRONLY | os.O_APPEND], ids=["3<>f", "3>>f"])
def test_an_output_through_a_descriptor_onto_its_own_input(tmp_path, flags):
    """``-o /dev/fd/3 f`` with ``3<>f`` or ``3>>f``: the output goes through descriptor 3, over the
    input it shuffles or after it (as ``bigshuf f 1<>f`` and ``>> f`` do). The input must be read
    whole first, not mapped: the output would overwrite records while they are gathered, or the
    file grow under the check that a mapped input did not change."""
    data = b"".join(b"%d\n" % i for i in range(2_000_000))
    (tmp_path / "f").write_bytes(data)
    _shuffled_to_descriptor(tmp_path, os.open(tmp_path / "f", flags))
    written = (tmp_path / "f").read_bytes()
    if flags & os.O_APPEND:
        assert written[: len(data)] == data and sorted(lines(written[len(data) :])) == sorted(lines(data))
    else:
        assert len(written) == len(data) and written != data and sorted(lines(written)) == sorted(lines(data))


def test_an_output_on_a_descriptor_opened_for_direct_writes_replaces_the_file(tmp_path):
    """``-o /dev/fd/N`` with N opened ``O_DIRECT``, which takes only aligned writes: written through N,
    it failed "write error: Invalid argument" (found by attack); it is replaced as before (GNU shuf
    opens the name again, without O_DIRECT)."""
    (tmp_path / "f").write_bytes(seq(100_000))
    try:
        fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    except OSError:
        pytest.skip("this file system takes no O_DIRECT")
    _shuffled_to_descriptor(tmp_path, fd)
    assert sorted(lines((tmp_path / "out").read_bytes())) == sorted(lines(seq(100_000)))


def test_an_output_on_standard_input_read_only_still_replaces_the_file(tmp_path):
    """``-o /dev/stdin < f`` names a descriptor open only for reading: not written through it (that
    would fail "Bad file descriptor") but, as before, the file is replaced with its shuffle (as GNU
    shuf, reopening it for writing, leaves it)."""
    (tmp_path / "f").write_bytes(seq(1000))
    status, out, err = shell(f'cd "$1" && {" ".join(BIGSHUF)} -o /dev/stdin < f', str(tmp_path))
    assert (status, out, err) == (0, b"", b"")
    written = (tmp_path / "f").read_bytes()
    assert written != seq(1000) and sorted(lines(written)) == sorted(lines(seq(1000)))


@pytest.mark.parametrize(
    "options,said",
    [
        (["--seed=1", "--resume"], "--resume needs -o naming a regular file, not /dev/stdout: a device, FIFO, deleted file or open descriptor is written as the run goes and cannot be taken up where it stopped"),
        (["--manifest=m.json"], "--manifest needs -o naming regular files, not /dev/stdout"),
    ],
    ids=["resume", "manifest"],
)
def test_an_output_through_a_descriptor_refuses_what_needs_a_file_of_its_own(tmp_path, options, said):
    """``--resume`` and ``--manifest`` need an output file bigshuf owns; standard output sent to a file
    and named by ``-o /dev/stdout`` is written as the run goes, so they are refused, the file untouched."""
    (tmp_path / "f").write_bytes(seq(100))
    (tmp_path / "log").write_bytes(b"kept\n")
    status, out, err = shell(f'cd "$1" && {" ".join(BIGSHUF)} {" ".join(options)} -o /dev/stdout f >> log', str(tmp_path))
    assert (status, out, err) == (1, b"", f"bigshuf: {said}\n".encode())
    assert (tmp_path / "log").read_bytes() == b"kept\n"
    assert sorted(os.listdir(tmp_path)) == ["f", "log"]


def test_the_dry_run_says_an_output_goes_through_a_descriptor(tmp_path):
    """``--dry-run`` said ``-o /dev/stdout > log`` "replaces an existing file"; it now says how it is written."""
    (tmp_path / "f").write_bytes(seq(100))
    status, _, err = shell(f'cd "$1" && {" ".join(BIGSHUF)} --dry-run -o /dev/stdout f > log', str(tmp_path))
    assert status == 0, err
    said = [line for line in (tmp_path / "log").read_bytes().splitlines() if line.startswith(b"output:")]
    assert said == [b"output: /dev/stdout (written through descriptor 1 at its offset, as standard output is)"]


@pytest.mark.parametrize("target", ["/dev/fd/9", "/proc/self/fd/9"])
def test_an_output_on_a_descriptor_not_open_is_named_as_given(tmp_path, target):
    """``-o /dev/fd/9`` with descriptor 9 not open: bigshuf named the directory it leads to,
    ``/proc/17555/fd: cannot create a file`` (found by differential testing against GNU shuf)."""
    (tmp_path / "f").write_bytes(b"x\ny\n")
    for who, argv in both(["f", "-o", target]):
        proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, timeout=60)
        assert (who, proc.returncode, proc.stdout) == (who, 1, b"")
        assert without_gnu_quotes(proc.stderr, who) == f"bigshuf: {target}: No such file or directory\n".encode()
    assert sorted(os.listdir(tmp_path)) == ["f"]


@pytest.mark.skipif(not os.path.isfile("/proc/version"), reason="a Linux /proc")
@pytest.mark.parametrize("target", ["/proc/version", "/proc/bigshuf-test-new"])
def test_an_output_where_no_file_can_be_created_is_named_with_the_reason(tmp_path, run_cli, target):
    """``-o /proc/version`` said ``/proc: cannot create a file: No such file or directory``: the
    directory named, for a file that is there, and /proc's ENOENT taken for a missing name (GNU shuf
    says ``write error: Input/output error`` once it has written). bigshuf writes a new file beside the
    output and renames it: it names the output as given, and that /proc creates no files."""
    (tmp_path / "f").write_bytes(b"x\ny\n")
    before = Path("/proc/version").read_bytes()
    code, out, err = run_cli(["f", "-o", target], cwd=tmp_path)
    assert (code, out, err) == (
        1, b"", f"bigshuf: {target}: cannot create a file in /proc: its file system does not allow new files\n".encode()
    )
    assert Path("/proc/version").read_bytes() == before and not os.path.lexists("/proc/bigshuf-test-new")
    assert [name for name in os.listdir("/proc") if "bigshuf" in name] == []
    assert sorted(os.listdir(tmp_path)) == ["f"]


@pytest.mark.parametrize("source,fails", [("missing", True), ("-", True), ("empty", False), ("directory", False)])
@pytest.mark.parametrize("operands", [["-e", "a", "b"], ["-i", "1-5"], ["missing-input"]])
def test_repeat_drawing_nothing_opens_the_random_source_without_reading_it(
    tmp_path: Path, source: str, fails: bool, operands: list[str]
) -> None:
    """``-r -n 0`` opens --random-source FILE, as GNU shuf does (a missing one fails, an empty one
    or a directory does not: nothing is read), where plain ``-n 0`` does not open it; bigshuf used
    to succeed and create -o's file (found by a differential fuzzer)."""
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "directory").mkdir()
    for who, argv in both(["-r", "-n", "0", f"--random-source={source}", "-o", "out", *operands]):
        proc = subprocess.run(argv, capture_output=True, cwd=tmp_path, timeout=60, stdin=subprocess.DEVNULL)
        err = without_gnu_quotes(proc.stderr, who)
        if fails:
            assert (proc.returncode, err) == (1, f"bigshuf: {source}: No such file or directory\n".encode()), who
            assert not (tmp_path / "out").exists(), who
        else:
            assert (proc.returncode, err) == (0, b""), who
            assert (tmp_path / "out").read_bytes() == b"", who
            (tmp_path / "out").unlink()
