#!/usr/bin/env python3
"""Benchmark bigshuf against `cp` (the one-pass floor), GNU `shuf` (the in-memory reference) and terashuf.

Generates deterministic corpora, runs every tool round-robin on the same files in one run,
checks that each output is a permutation of its input and prints a markdown table of medians.
Exits 1 if a tool fails or an output is not a permutation. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
GEN_CHUNK = 64 * MiB  # generation writes whole chunks of this size
HASH_CHUNK = 1 * MiB  # fingerprint reads (bigshuf's record hash works a 1 MiB slice at a time)
SEED = 20240601  # corpora depend only on this, the corpus and the size
BIG_LINE_EVERY = 256 * MiB  # the jsonl corpus has one ~1 MB line per this many bytes (at least one)
IN_MEMORY_RAM_FRACTION = 0.6  # shuf and in-memory bigshuf are skipped above this share of RAM
ALPHABET = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz .,;-'", np.uint8)  # 32 bytes, JSON-safe
MASK = (1 << 64) - 1
T = TypeVar("T")  # a tool row of bench.py or bench_parquet.py


@dataclass(frozen=True)
class Corpus:
    """A synthetic corpus: lognormal content lengths inside a fixed prefix and suffix."""

    name: str
    mean: float  # mean content bytes per line, before clipping
    sigma: float  # lognormal shape: larger is heavier-tailed
    max_len: int  # longest ordinary line content
    prefix: bytes = b""
    suffix: bytes = b""
    big_lines: bool = False  # add a few lines near 1 MB


CORPORA = {
    "jsonl": Corpus("jsonl", 1000 - 12, 1.2, 256 * KiB, b'{"text":"', b'"}', big_lines=True),
    "short": Corpus("short", 59, 0.5, 4 * KiB),
}


@dataclass(frozen=True)
class Fingerprint:
    """Line count, byte count and an order-independent 64-bit digest of the multiset of lines."""

    lines: int
    bytes: int
    digest: int


@dataclass(frozen=True)
class Sample:
    """One timed run of one tool."""

    wall: float
    cpu: float
    rss: int
    check: str


@dataclass(frozen=True)
class Tool:
    """A command line with ``{inp}`` and ``{out}`` placeholders, or, for a filter (``pipe``), reading the
    input on stdin and writing the output to stdout; ``env`` is added to its environment. A ``piped``
    tool gets its input through a pipe from ``cat`` (its size unknown), ``{inp}`` standing for ``-``."""

    name: str
    argv: tuple[str, ...]
    pipe: bool = False
    env: tuple[tuple[str, str], ...] = ()
    piped: bool = False


def parse_size(text: str) -> int:
    """Bytes in ``text`` such as ``4096``, ``512K``, ``64M`` or ``1.5G`` (binary units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid size: {text!r} (use e.g. 64M, 1G)")
    return int(float(m.group(1)) * {"": 1, "K": KiB, "M": MiB, "G": GiB}[m.group(2).upper()])


def fmt_size(n: int) -> str:
    """``n`` bytes as the shortest exact K/M/G string, in the syntax of ``bigshuf -S``."""
    for unit, scale in (("G", GiB), ("M", MiB), ("K", KiB)):
        if n % scale == 0:
            return f"{n // scale}{unit}"
    return f"{n}b"


def _line_lengths(rng: np.random.Generator, corpus: Corpus, target: int, nbig: int) -> np.ndarray:
    """Line lengths, newline included, summing exactly to ``target``; ``nbig`` of them near 1 MB."""
    fixed = len(corpus.prefix) + len(corpus.suffix) + 1
    big = np.minimum(rng.integers(900_000, 1_000_000, nbig), target // (2 * max(nbig, 1)))
    budget = target - int(big.sum())
    mu = np.log(corpus.mean) - corpus.sigma**2 / 2
    parts: list[np.ndarray] = []
    total = 0
    while total < budget:
        n = int((budget - total) / (corpus.mean + fixed) * 1.05) + 16
        part = np.clip(rng.lognormal(mu, corpus.sigma, n), 1, corpus.max_len).astype(np.int64) + fixed
        parts.append(part)
        total += int(part.sum())
    lens = np.concatenate(parts)
    lens = lens[: np.searchsorted(np.cumsum(lens), budget, side="right")]
    lens = np.insert(lens, rng.integers(0, len(lens) + 1, nbig), big)
    rest = target - int(lens.sum())
    if rest >= fixed or not len(lens):
        lens = np.append(lens, rest)
    else:
        lens[-1] += rest
    return lens


def generate(path: str, corpus: Corpus, size: int) -> None:
    """Write exactly ``size`` bytes of ``corpus`` lines to ``path``; same arguments, same bytes."""
    rng = np.random.default_rng([SEED, list(CORPORA).index(corpus.name), size])
    pool = ALPHABET[np.frombuffer(rng.bytes(min(size, GEN_CHUNK) + MiB), np.uint8) & 31]
    nchunks = -(-size // GEN_CHUNK)
    nbig = max(1, size // BIG_LINE_EVERY) if corpus.big_lines else 0
    bigs = np.bincount(np.arange(nbig) * nchunks // nbig, minlength=nchunks) if nbig else np.zeros(nchunks, int)
    out = np.empty(min(size, GEN_CHUNK), np.uint8)
    pre, suf = np.frombuffer(corpus.prefix, np.uint8), np.frombuffer(corpus.suffix, np.uint8)
    with open(path, "wb") as f:
        for c in range(nchunks):
            target = min(GEN_CHUNK, size - c * GEN_CHUNK)
            lens = _line_lengths(rng, corpus, target, int(bigs[c]))
            buf = out[:target]
            start = int(rng.integers(0, len(pool) - target + 1))
            np.copyto(buf, pool[start : start + target])  # random text: a random window of the pool
            ends = np.cumsum(lens) - 1
            buf[ends] = 10
            if len(pre):
                buf[(ends - lens + 1)[:, None] + np.arange(len(pre))] = pre
                buf[(ends - len(suf))[:, None] + np.arange(len(suf))] = suf
            f.write(buf.data)


def _digest_lines(block: np.ndarray, ends: np.ndarray) -> int:
    """Sum mod 2**64 of the hash of each line of ``block`` (``ends``: its newline offsets), by
    bigshuf's record hash: a keyed mix of each 8-byte word, so reordered bytes within a line count."""
    from bigshuf.core.fingerprint import record_hashes

    offsets = np.concatenate([[0], ends + 1])
    return int(record_hashes(block, offsets).sum(dtype=np.uint64))


def fingerprint(path: str) -> Fingerprint:
    """Fingerprint the lines of ``path``, vectorised; a missing final newline counts as present."""
    buf = np.empty(HASH_CHUNK, np.uint8)
    have = lines = nbytes = digest = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            if have == len(buf):  # a line longer than the buffer: grow it
                buf = np.concatenate([buf, np.empty_like(buf)])
            n = f.readinto(buf[have:].data)
            if not n:
                break
            have += n
            ends = np.flatnonzero(buf[:have] == 10)
            if len(ends):
                cut = int(ends[-1]) + 1
                digest += _digest_lines(buf[:cut], ends)
                lines, nbytes = lines + len(ends), nbytes + cut
                buf[: have - cut] = buf[cut:have]
                have -= cut
    if have:
        tail = np.append(buf[:have], np.uint8(10))
        digest += _digest_lines(tail, np.array([have]))
        lines, nbytes = lines + 1, nbytes + have + 1
    return Fingerprint(lines, nbytes, digest & MASK)


def joined_fingerprint(paths: list[str], scratch: str, decompress: list[str] | None = None) -> tuple[int, int, int]:
    """Line count, bytes and digest of ``paths`` concatenated in order (each decompressed by the
    ``decompress`` command, e.g. ``["zstd", "-dcq"]``, if given)."""
    joined = os.path.join(scratch, "joined.jsonl")
    with open(joined, "wb") as out:
        if decompress is not None:
            subprocess.run([*decompress, *paths], stdout=out, check=True)
        else:
            for path in paths:
                with open(path, "rb") as f:
                    shutil.copyfileobj(f, out, 16 * MiB)
    fp = fingerprint(joined)
    os.remove(joined)
    return fp.lines, fp.bytes, fp.digest


def warm(path: str) -> None:
    """Read ``path`` once so that the timed run finds it in the page cache."""
    buf = bytearray(16 * MiB)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


# A child inherits the peak RSS of the process that forks it (Linux carries it across exec),
# so each tool is forked by this lean helper, which reports the tool's os.wait4 figures.
# Peak RSS therefore has a floor of the helper's own size (~6 MiB; printed as "RSS floor").
TIMER = """\
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(sys.argv[1], "w") as f:
    f.write(f"{wall} {usage.ru_utime + usage.ru_stime} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def timed(
    argv: list[str], log: str, stdin: str | None = None, stdout: str | None = None, env: dict[str, str] | None = None
) -> tuple[float, float, int, int]:
    """Run ``argv`` (standard input from the file ``stdin``, standard output to a new file ``stdout``, ``env``
    added to the environment); return wall s, user+sys CPU s, peak RSS bytes (ru_maxrss) and exit status."""
    result = log + ".rusage"
    with (
        open(log, "wb") as err,
        open(stdin, "rb") if stdin else open(os.devnull, "rb") as src,
        open(stdout, "xb") if stdout else open(os.devnull, "wb") as dst,
    ):
        proc = subprocess.Popen(
            [sys.executable, "-S", "-I", "-c", TIMER, result, *argv],
            stdin=src, stdout=dst, stderr=err, env={**os.environ, **(env or {})},
        )
        _, status, _ = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        with open(log, errors="replace") as f:
            raise SystemExit(f"the timing helper failed on {argv}:\n{f.read()}")
    with open(result) as f:
        wall, cpu, rss, code = f.read().split()
    os.remove(result)
    return float(wall), float(cpu), int(rss) * KiB, int(code)


def bigshuf_argv(scratch: str) -> list[str]:
    """bigshuf through this interpreter (not PATH), seeded, temporary files under ``scratch``."""
    return [sys.executable, "-m", "bigshuf", "--seed", "1", "-T", scratch]


def parse_against(specs: list[str]) -> list[tuple[str, str]]:
    """``--against NAME=PYTHON`` values as (name, interpreter) pairs, each interpreter checked to run bigshuf."""
    pairs = []
    for spec in specs:
        name, sep, python = spec.partition("=")
        if not sep or not name or not python:
            raise argparse.ArgumentTypeError(f"--against takes NAME=PYTHON, not {spec!r}")
        if subprocess.run([python, "-c", "import bigshuf"], capture_output=True).returncode != 0:
            raise argparse.ArgumentTypeError(f"--against {spec}: that Python cannot import bigshuf")
        pairs.append((name, python))
    return pairs


def with_against(tools: list[T], against: list[tuple[str, str]]) -> list[T]:
    """``tools`` with each bigshuf row repeated under every other install (``NAME``), next to it, so that
    the round-robin alternates the installs on the same files in the same run."""
    out = []
    for tool in tools:
        out.append(tool)
        if tool.argv[:3] == (sys.executable, "-m", "bigshuf"):
            out += [replace(tool, name=f"{tool.name} [{name}]", argv=(python, *tool.argv[1:])) for name, python in against]
    return out


def parse_variants(specs: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """``--variant NAME=ARGS`` values as (name, extra bigshuf arguments) pairs, ARGS split as by a shell."""
    pairs = []
    for spec in specs:
        name, sep, args = spec.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"--variant takes NAME=ARGS, not {spec!r}")
        try:
            pairs.append((name.strip(), tuple(shlex.split(args))))
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"--variant {spec}: {e}") from None
    return pairs


def has_threads(pythons: list[str]) -> bool:
    """Whether the bigshuf of every interpreter in ``pythons`` lists ``--threads`` in its ``--help``."""
    helps = (subprocess.run([py, "-m", "bigshuf", "--help"], capture_output=True, text=True).stdout for py in pythons)
    return all("--threads" in text for text in helps)


def is_bigshuf(tool: Tool) -> bool:
    """Whether ``tool`` is a bigshuf row of this benchmark (run by ``bigshuf_argv``)."""
    return tool.argv[:3] == (sys.executable, "-m", "bigshuf")


def with_variants(tools: list[Tool], variants: list[tuple[str, tuple[str, ...]]]) -> list[Tool]:
    """``tools`` with each bigshuf row repeated, next to it, with every variant's extra arguments (before the
    input) and the variant's name after the row's, so that e.g. ``-j1`` and the default threads alternate."""
    out = []
    for tool in tools:
        out.append(tool)
        if is_bigshuf(tool):
            at = tool.argv.index("{inp}")
            out += [
                replace(tool, name=f"{tool.name} {name}", argv=tool.argv[:at] + extra + tool.argv[at:])
                for name, extra in variants
            ]
    return out


def terashuf_memory(text: str) -> str:
    """``--terashuf-memory``: a positive number of GiB, in the spelling terashuf's ``MEMORY`` gets."""
    try:
        gb = float(text)
    except ValueError:
        gb = 0.0
    if not 0 < gb < float("inf"):
        raise argparse.ArgumentTypeError(f"invalid --terashuf-memory: {text!r} (GiB, e.g. 0.25)")
    return repr(gb)


def tools_for(
    size: int, limit: int, ram: int, scratch: str, notes: list[str], label: str, terashuf: tuple[str, str] | None
) -> list[Tool]:
    """The tools run on a file of ``size`` bytes; skipped ones are explained in ``notes``. ``terashuf`` is
    the executable and its ``MEMORY`` (GiB), or None when it is not installed."""
    big = tuple(bigshuf_argv(scratch))
    tools = [Tool("cp", ("cp", "--reflink=never", "{inp}", "{out}"))]
    if size > IN_MEMORY_RAM_FRACTION * ram:
        notes.append(f"{label}: shuf and in-memory bigshuf skipped (input above {IN_MEMORY_RAM_FRACTION:.0%} of RAM).")
    else:
        if shutil.which("shuf"):
            tools.append(Tool("shuf", ("shuf", "{inp}", "-o", "{out}")))
        else:
            notes.append(f"{label}: GNU shuf not found on PATH, skipped.")
        mem = fmt_size(-(-3 * size // MiB) * MiB)
        tools.append(Tool(f"bigshuf -S {mem} (in memory)", big + ("-S", mem, "{inp}", "-o", "{out}")))
    for lim in [limit] + ([2 * limit] if size >= 4 * GiB else []):
        tools.append(Tool(f"bigshuf -S {fmt_size(lim)}", big + ("-S", fmt_size(lim), "{inp}", "-o", "{out}")))
        if size < lim:
            notes.append(f"{label}: the input fits in -S {fmt_size(lim)}, so that row may be the in-memory path.")
    tools.append(Tool(f"bigshuf -S {fmt_size(limit)} (pipe)", big + ("-S", fmt_size(limit), "{inp}", "-o", "{out}"), piped=True))
    if terashuf:
        exe, memory = terashuf
        env = (("MEMORY", memory), ("TMPDIR", scratch), ("SEED", "1"))
        tools.append(Tool(f"terashuf MEMORY={memory}", (exe,), pipe=True, env=env))
        if size < int(float(memory) * GiB):
            notes.append(f"{label}: the input fits in terashuf's MEMORY={memory} buffer, so it shuffles in memory.")
    return tools


def bench_file(
    path: str, tools: list[Tool], reps: int, ref: Fingerprint, scratch: str, label: str
) -> dict[str, list[Sample]]:
    """Time every tool ``reps`` times, round-robin, checking and deleting each output."""
    out, log = os.path.join(scratch, "out"), os.path.join(scratch, "stderr.log")
    samples: dict[str, list[Sample]] = {t.name: [] for t in tools}
    for rep in range(reps):
        order = tools[rep % len(tools) :] + tools[: rep % len(tools)]
        # Odd repetitions run backwards, so that no tool always follows the same one (an --against
        # pair would otherwise always run in the same order, the first paying for the other's reclaim).
        for tool in order[::-1] if rep % 2 else order:
            warm(path)
            if tool.pipe:
                wall, cpu, rss, status = timed(list(tool.argv), log, stdin=path, stdout=out, env=dict(tool.env))
            elif tool.piped:  # sh waits for cat and the tool: its figures count both
                argv = [a.format(inp="-", out=out) for a in tool.argv]
                wall, cpu, rss, status = timed(["sh", "-c", 'cat "$0" | exec "$@"', path, *argv], log)
            else:
                wall, cpu, rss, status = timed([a.format(inp=path, out=out) for a in tool.argv], log)
            if status != 0:
                with open(log, "rb") as f:
                    tail = f.read()[-2000:].decode(errors="replace")
                print(f"[{label}] {tool.name} failed:\n{tail}", file=sys.stderr)
                check = f"exit {status}"
            elif not os.path.exists(out):
                check = "no output"
            elif (got := fingerprint(out)) != ref:
                check = f"NOT A PERMUTATION ({got.lines:,} lines, {got.bytes:,} bytes)"
            else:
                check = "ok"
            samples[tool.name].append(Sample(wall, cpu, rss, check))
            print(f"[{label}] rep {rep + 1}/{reps} {tool.name}: {wall:.2f} s, {check}", file=sys.stderr)
            if os.path.exists(out):
                os.remove(out)
            os.sync()  # start the next run without this output's writeback pending
    return samples


def table_rows(corpus: str, size: int, lines: int, samples: dict[str, list[Sample]]) -> list[str]:
    """Markdown rows of medians for one file, with CPU/wall and ratios to cp, shuf and terashuf ("—" where
    that tool did not run or failed its check)."""
    med = {name: statistics.median(s.wall for s in runs) for name, runs in samples.items()}
    good = {name for name, runs in samples.items() if all(s.check == "ok" for s in runs)}
    terashuf = next((name for name in samples if name.startswith("terashuf")), "")

    def ratio(wall: float, ref: str) -> str:
        """``wall`` over the median wall time of the row ``ref``, or a dash."""
        return f"{wall / med[ref]:.2f}" if ref in good else "—"

    rows = []
    for name, runs in samples.items():
        wall, cpu = med[name], statistics.median(s.cpu for s in runs)
        fails = sorted({s.check for s in runs if s.check != "ok"})
        rows.append(
            f"| {corpus} | {fmt_size(size)} | {lines:,} | {name} | {wall:.2f} | {cpu:.2f} | {cpu / wall:.2f} | "
            f"{statistics.median(s.rss for s in runs) / MiB:.0f} | {size / MiB / wall:.0f} | {ratio(wall, 'cp')} | "
            f"{ratio(wall, 'shuf')} | {ratio(wall, terashuf)} | {'; '.join(fails) or 'ok'} |"
        )
    return rows


def startup(scratch: str, runs: int) -> str:
    """Median wall time and RSS of bigshuf, and wall time of shuf, on a 1-line file."""
    inp, out, log = (os.path.join(scratch, n) for n in ("one-line.txt", "one-out", "stderr.log"))
    with open(inp, "wb") as f:
        f.write(b"hello\n")
    big = [timed(bigshuf_argv(scratch) + [inp, "-o", out], log) for _ in range(runs)]
    shuf = [timed(["shuf", inp, "-o", out], log)[0] for _ in range(runs)] if shutil.which("shuf") else []
    os.remove(out)
    floor = statistics.median(timed(["true"], log)[2] for _ in range(3)) / MiB
    wall, cpu, rss = (statistics.median(r[i] for r in big) for i in range(3))
    text = (
        f"RSS floor (`true`): {floor:.0f} MiB. bigshuf start-up on a 1-line file (median of {runs}): "
        f"{wall:.3f} s wall, {cpu:.3f} s CPU, {rss / MiB:.0f} MiB peak RSS"
    )
    if any(r[3] for r in big):
        with open(log, errors="replace") as f:
            raise SystemExit(f"bigshuf failed on a 1-line file:\n{f.read()}")
    return text + (f"; GNU shuf: {statistics.median(shuf):.3f} s" if shuf else "")


def ram_bytes() -> int:
    """Total RAM: MemTotal in /proc/meminfo (this script needs Linux for ru_maxrss units anyway)."""
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * KiB for line in f if line.startswith("MemTotal:"))


def first_line(argv: list[str]) -> str:
    """The first line that ``argv`` prints on standard output."""
    return subprocess.run(argv, check=False, capture_output=True, text=True).stdout.split("\n")[0]


def machine(ram: int, scratch: str) -> list[str]:
    """Lines describing the CPU, memory, software and scratch filesystem."""
    with open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), platform.machine())
    fs = "unknown"
    try:
        with open("/proc/mounts") as f:
            mounts = [ln.split()[1:3] for ln in f]
        real = os.path.realpath(scratch)
        fs = max((m for m in mounts if os.path.commonpath([real, m[0]]) == m[0]), key=lambda m: len(m[0]))[1]
    except (OSError, ValueError):
        pass
    shuf = first_line(["shuf", "--version"]) if shutil.which("shuf") else "shuf not installed"
    bigshuf = first_line(bigshuf_argv(scratch) + ["--version"])
    kernel = f"{platform.system()} {platform.release()}"
    return [
        f"- Machine: {cpu}, {os.cpu_count()} cores (os.cpu_count), {ram / GiB:.1f} GiB RAM, {kernel}",
        f"- Software: Python {platform.python_version()}, NumPy {np.__version__}, {bigshuf}, {shuf}",
        (
            f"- Scratch: {scratch} ({fs}); inputs in warm page cache (each read once before every timed run); "
            "outputs deleted and `sync` run after each run"
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, generate corpora, run the benchmark, print the table; 1 if any check failed."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", help="comma-separated corpus sizes (default 1G,4G; --quick 3M,8M)")
    p.add_argument("--corpora", default="jsonl,short", help="comma-separated: " + ",".join(CORPORA))
    p.add_argument("--reps", type=int, help="repetitions per tool (default 3; --quick 1)")
    p.add_argument("--scratch", help="parent of the scratch directory (default $TMPDIR or /tmp)")
    p.add_argument("--limit", type=parse_size, help="bigshuf -S for the external path (default 256M; --quick 4M)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory and corpora")
    p.add_argument("--quick", action="store_true", help="tiny sizes and one repetition, for smoke tests")
    p.add_argument(
        "--against", action="append", default=[], metavar="NAME=PYTHON",
        help="also run every bigshuf row with another install's Python, alternating (before/after in one run)",
    )
    p.add_argument(
        "--variant", action="append", default=[], metavar="NAME=ARGS",
        help="also run every bigshuf row with these extra arguments, named NAME, e.g. j1=-j1 (default: -j1=-j1 "
        "if every bigshuf run lists --threads in its --help)",
    )
    p.add_argument("--terashuf", metavar="PATH", help="the terashuf executable (default: terashuf on PATH, if any)")
    p.add_argument(
        "--terashuf-memory", type=terashuf_memory, metavar="GB",
        help="terashuf's MEMORY in GiB (default: --limit in GiB, e.g. 0.25 for 256M)",
    )
    args = p.parse_args(argv)
    try:
        # 3M, not 4M: a 4M corpus exactly fills terashuf's 4M buffer, which it then writes twice (README).
        sizes = [parse_size(s) for s in (args.sizes or ("3M,8M" if args.quick else "1G,4G")).split(",")]
        against = parse_against(args.against)
        variants = parse_variants(args.variant)
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    if args.terashuf and not (os.path.isfile(args.terashuf) and os.access(args.terashuf, os.X_OK)):
        p.error(f"--terashuf {args.terashuf}: not an executable file")
    terashuf_exe = os.path.abspath(args.terashuf) if args.terashuf else shutil.which("terashuf")
    corpora = [c.strip() for c in args.corpora.split(",")]
    reps = args.reps or (1 if args.quick else 3)
    limit = args.limit or (4 * MiB if args.quick else 256 * MiB)
    if unknown := [c for c in corpora if c not in CORPORA]:
        p.error(f"unknown corpus {unknown[0]!r}; choose from {', '.join(CORPORA)}")
    if min(sizes) < 4 * KiB or reps < 1:
        p.error("sizes must be at least 4K and --reps at least 1")
    if args.scratch:
        os.makedirs(args.scratch, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="bigshuf-bench-", dir=args.scratch)
    ram, ok = ram_bytes(), True
    if not args.variant and has_threads([sys.executable] + [python for _, python in against]):
        variants = [("-j1", ("-j1",))]
    terashuf = (terashuf_exe, args.terashuf_memory or repr(limit / GiB)) if terashuf_exe else None
    try:
        header = machine(ram, scratch)
        header.append("- " + startup(scratch, 3 if args.quick else 10))
        if terashuf:
            header.append(
                f"- terashuf: {terashuf[0]}, run as "
                f"`MEMORY={terashuf[1]} TMPDIR=<scratch> SEED=1 terashuf <in >out`"
            )
        rows: list[str] = []
        notes: list[str] = []
        if not terashuf:
            notes.append("terashuf not found (give --terashuf PATH or put it on PATH): its rows are skipped.")
        for name in corpora:
            for size in sizes:
                label = f"{name} {fmt_size(size)}"
                path = os.path.join(scratch, f"{name}-{fmt_size(size)}.txt")
                if shutil.disk_usage(scratch).free < 3.5 * size:
                    raise SystemExit(f"{label}: needs {fmt_size(int(3.5 * size))} free in {scratch}; use --scratch")
                t0 = time.perf_counter()
                generate(path, CORPORA[name], size)
                ref = fingerprint(path)
                print(f"[{label}] generated and fingerprinted in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
                tools = tools_for(size, limit, ram, scratch, notes, label, terashuf)
                tools = with_against(with_variants(tools, variants), against)
                samples = bench_file(path, tools, reps, ref, scratch, label)
                ok &= all(s.check == "ok" for runs in samples.values() for s in runs)
                rows += table_rows(name, size, ref.lines, samples)
                if not args.keep:
                    os.remove(path)
        header.append(
            f"- {reps} repetition(s), tools alternating round-robin; medians of wall, CPU (user+sys of the tool) and "
            "peak RSS (ru_maxrss); CPU/wall = CPU s / wall s (1.00 is one busy core); MiB/s = input size / wall; "
            "× cp, × shuf and × terashuf are ratios of median wall times (— where that tool did not run or failed)"
        )
        print("\n".join(["## bigshuf benchmark", "", *header, ""]))
        print(
            "| corpus | size | lines | tool | wall s | CPU s | CPU/wall | peak RSS MiB | MiB/s | × cp | × shuf "
            "| × terashuf | check |"
        )
        print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        print("\n".join(rows))
        if notes:
            print("\n" + "\n".join(f"- {n}" for n in notes))
    finally:
        if args.keep:
            print(f"kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    if not ok:
        print("FAILED: a tool exited non-zero or an output was not a permutation of its input", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
