#!/usr/bin/env python3
"""Kernel time of the external path's I/O pattern, and what each buffer or file technique does to it.

Reproduces the pattern of bigshuf's two passes without bigshuf (issue 14): pass 1 reads the
input in 128 MiB blocks and appends 256 KiB-1 MiB pieces of each block to 64 bucket files;
pass 2 reads each bucket whole, copies it into an output buffer (standing in for the gather),
writes it to the output in 16 MiB chunks and deletes the bucket. Every variant changes one
thing against the baseline (one reused NumPy buffer per role, plain read/write) and runs in a
child process of its own, all variants round-robin in the same run. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
BLOCK = 128 * MiB  # pass-1 read size
BUCKETS = 64  # bucket files
PIECE_MIN, PIECE_MAX = 256 * KiB, 1 * MiB  # pass-1 append sizes
OUT_CHUNK = 16 * MiB  # pass-2 output write size
ALIGN = 4096  # every piece and bucket is a multiple of this, so O_DIRECT needs no staging copy
FALLOCATE_SLACK = 1.10  # bucket preallocation: the even share plus 10%, as a pass-1 estimate
SEED = 14

#: name -> (the baseline it is compared with, what the variant changes)
VARIANTS: dict[str, tuple[str, str]] = {
    "baseline": ("baseline", "one np.empty buffer per role, reused; read/readinto and write"),
    "fresh": ("baseline", "np.empty for every block, bucket and output buffer"),
    "fresh-4k": ("baseline", "a fresh anonymous mmap per use, MADV_NOHUGEPAGE (4 KiB pages)"),
    "fresh-huge": ("baseline", "a fresh anonymous mmap per use, MADV_HUGEPAGE"),
    "huge": ("baseline", "reused anonymous mmap buffers, MADV_HUGEPAGE"),
    "fadvise-input": ("baseline", "posix_fadvise(DONTNEED) on the input after pass 1"),
    "fadvise-input-late": ("baseline", "the same drop after pass 2 (control: the harness re-reads the input after both)"),
    "fadvise-buckets": ("baseline", "posix_fadvise(DONTNEED) on each bucket once read (before its unlink)"),
    "fallocate": ("baseline", "posix_fallocate buckets (estimate +10%, truncated after) and the output (exact)"),
    "odirect": ("baseline", "buckets written and read with O_DIRECT (aligned mmap buffers)"),
    "pwrite": ("baseline", "pread/pwrite, one call per piece and chunk as in the baseline (the control for pvec)"),
    "pvec": ("baseline", "preadv/pwritev: one pwritev per bucket per block, one pwritev per output bucket"),
    "write2": ("baseline", "bucket and output writes split over 2 threads (reads on 1)"),
    "read2": ("baseline", "input-block and bucket reads split over 2 threads (writes on 1)"),
    "copy-rw": ("copy-rw", "cp-like copy of the input: readinto a reused 16 MiB buffer, write"),
    "copy-cfr": ("copy-rw", "cp-like copy of the input: os.copy_file_range"),
}


def parse_size(text: str) -> int:
    """Bytes from ``1G``, ``256M``, ``64K`` or a plain number (binary suffixes)."""
    units = {"K": KiB, "M": MiB, "G": GiB}
    text = text.strip().upper()
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


# ---------------------------------------------------------------------------------------------
# Child: one variant, timed from inside (interpreter start-up and imports excluded).


class Buffers:
    """Hands out a buffer per role ("block", "bucket", "out"): reused or fresh, NumPy or mmap."""

    def __init__(self, fresh: bool, kind: str) -> None:
        self.fresh = fresh
        self.kind = kind  # "numpy", "huge" (mmap + MADV_HUGEPAGE) or "4k" (mmap + MADV_NOHUGEPAGE)
        self._kept: dict[str, np.ndarray] = {}

    def get(self, role: str, size: int, largest: int) -> np.ndarray:
        """A buffer of at least ``size`` bytes; a reused one is allocated once at ``largest``."""
        if self.fresh:
            self._kept.pop(role, None)  # the old buffer is unmapped before the new one is made
            return self._new(size)
        if role not in self._kept:
            self._kept[role] = self._new(largest)
        return self._kept[role]

    def _new(self, size: int) -> np.ndarray:
        """A new buffer of ``size`` bytes (rounded up to whole pages for mmap)."""
        if self.kind == "numpy":
            return np.empty(size, np.uint8)
        m = mmap.mmap(-1, max(1, -(-size // ALIGN)) * ALIGN, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        m.madvise(mmap.MADV_HUGEPAGE if self.kind == "huge" else mmap.MADV_NOHUGEPAGE)
        return np.frombuffer(m, np.uint8)  # keeps ``m`` alive; dropping the array unmaps it


def plan_pieces(size: int) -> list[list[tuple[int, int, int]]]:
    """Per block, its pieces as (offset in block, length, bucket): the same for every variant."""
    rng = np.random.default_rng(SEED)
    blocks = []
    for start in range(0, size, BLOCK):
        length, pieces, off = min(BLOCK, size - start), [], 0
        while off < length:
            n = min(int(rng.integers(PIECE_MIN // ALIGN, PIECE_MAX // ALIGN + 1)) * ALIGN, length - off)
            pieces.append((off, n, int(rng.integers(BUCKETS))))
            off += n
        blocks.append(pieces)
    return blocks


def read_full(fd: int, view: memoryview, offset: int | None = None) -> None:
    """Fill ``view`` from ``fd`` (at ``offset`` with preadv, else from the file position)."""
    got = 0
    while got < len(view):
        if offset is None:
            n = os.readv(fd, [view[got:]])
        else:
            n = os.preadv(fd, [view[got:]], offset + got)
        if n <= 0:
            raise OSError(f"short read on fd {fd}")
        got += n


def write_full(fd: int, view: memoryview, offset: int | None = None) -> None:
    """Write all of ``view`` to ``fd`` (at ``offset`` with pwrite, else at the file position)."""
    done = 0
    while done < len(view):
        if offset is None:
            done += os.write(fd, view[done:])
        else:
            done += os.pwrite(fd, view[done:], offset + done)


def pwritev_full(fd: int, views: list[memoryview], offset: int) -> None:
    """Write ``views`` back to back at ``offset`` with pwritev, resuming after a short write."""
    while views:
        n = os.pwritev(fd, views, offset)
        offset += n
        while views and n >= len(views[0]):
            n -= len(views[0])
            views = views[1:]
        if views and n:
            views = [views[0][n:], *views[1:]]


def halves(length: int) -> list[tuple[int, int]]:
    """(start, end) of the two halves of ``length`` bytes, split on an ALIGN boundary."""
    mid = length // 2 // ALIGN * ALIGN
    return [(0, mid), (mid, length)]


def thp_kib() -> int:
    """AnonHugePages of this process now (KiB), from /proc/self/smaps_rollup."""
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("AnonHugePages:"):
                return int(line.split()[1])
    return 0


def disk_io() -> tuple[int, int]:
    """Bytes this process read from storage, and bytes it dirtied or wrote less those dropped
    before writeback (``/proc/self/io``: read_bytes, write_bytes - cancelled_write_bytes)."""
    with open("/proc/self/io") as f:
        io = {k: int(v) for k, v in (line.split(": ") for line in f)}
    return io["read_bytes"], io["write_bytes"] - io["cancelled_write_bytes"]


@dataclass
class Meter:
    """Wall, user and system seconds and minor faults of this process since ``start``."""

    wall: float = 0.0
    user: float = 0.0
    sys: float = 0.0
    minflt: int = 0

    @staticmethod
    def start() -> tuple[float, resource.struct_rusage]:
        """A start mark: monotonic time and rusage of the whole process (every thread)."""
        return time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)

    def add(self, mark: tuple[float, resource.struct_rusage]) -> None:
        """Add the time since ``mark``."""
        t0, r0 = mark
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        self.wall += time.perf_counter() - t0
        self.user += r1.ru_utime - r0.ru_utime
        self.sys += r1.ru_stime - r0.ru_stime
        self.minflt += r1.ru_minflt - r0.ru_minflt


def run_copy(variant: str, src: str, work: str) -> dict[str, float]:
    """The cp-like pair: copy ``src`` to a new file with read/write or copy_file_range."""
    meter, mark, io0 = Meter(), Meter.start(), disk_io()
    fin = os.open(src, os.O_RDONLY)
    fout = os.open(os.path.join(work, "copy"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    size = os.fstat(fin).st_size
    if variant == "copy-cfr":
        done = 0
        while done < size:
            n = os.copy_file_range(fin, fout, size - done)
            if n <= 0:
                raise OSError("copy_file_range copied nothing")
            done += n
    else:
        buf = np.empty(OUT_CHUNK, np.uint8).data
        with open(fin, "rb", buffering=0, closefd=False) as f:
            while n := f.readinto(buf):
                write_full(fout, buf[:n])
    os.close(fin)
    os.close(fout)
    meter.add(mark)
    io1 = disk_io()
    return {"wall": meter.wall, "user": meter.user, "sys": meter.sys, "minflt": meter.minflt,
            "p1": meter.wall, "p2": 0.0, "thp_mib": 0.0, "disk_r": (io1[0] - io0[0]) / MiB, "disk_w": (io1[1] - io0[1]) / MiB}


def run_variant(variant: str, src: str, work: str) -> dict[str, float]:
    """Run both passes of ``variant`` over ``src`` with buckets and output in ``work``."""
    if variant.startswith("copy-"):
        return run_copy(variant, src, work)
    size = os.path.getsize(src)
    blocks = plan_pieces(size)
    fresh = variant.startswith("fresh")
    kind = {"fresh-4k": "4k", "fresh-huge": "huge", "huge": "huge", "odirect": "huge"}.get(variant, "numpy")
    bufs = Buffers(fresh, kind)
    pool = ThreadPoolExecutor(2) if variant in ("write2", "read2") else None
    direct = os.O_DIRECT if variant == "odirect" else 0
    paths = [os.path.join(work, f"bucket-{j:03d}") for j in range(BUCKETS)]
    estimate = -(-int(size / BUCKETS * FALLOCATE_SLACK) // ALIGN) * ALIGN
    thp = 0

    def both(jobs: list[Callable[[], object]]) -> None:
        """Run ``jobs`` on the 2-thread pool and wait for all (raising their errors)."""
        assert pool is not None
        for fut in [pool.submit(job) for job in jobs]:
            fut.result()

    # Pass 1: read blocks, append pieces to buckets.
    p1, mark, io0 = Meter(), Meter.start(), disk_io()
    fds = [os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | direct, 0o600) for p in paths]
    if variant == "fallocate":
        for fd in fds:
            os.posix_fallocate(fd, 0, estimate)
    pos = [0] * BUCKETS
    fin = os.open(src, os.O_RDONLY)
    reader = open(fin, "rb", buffering=0, closefd=False)
    for b, pieces in enumerate(blocks):
        length = min(BLOCK, size - b * BLOCK)
        view = bufs.get("block", length, BLOCK)[:length].data
        if variant in ("pvec", "pwrite"):
            read_full(fin, view, b * BLOCK)
        elif variant == "read2":
            both([partial(read_full, fin, view[s:e], b * BLOCK + s) for s, e in halves(length)])
        else:
            got = 0
            while got < length:
                got += reader.readinto(view[got:]) or 0
        if b < 2:
            thp = max(thp, thp_kib())
        if variant == "pvec":
            grouped: dict[int, list[memoryview]] = {}
            for off, n, j in pieces:
                grouped.setdefault(j, []).append(view[off : off + n])
            for j, views in grouped.items():
                pwritev_full(fds[j], views, pos[j])
                pos[j] += sum(len(v) for v in views)
        elif variant == "pwrite":
            for off, n, j in pieces:
                write_full(fds[j], view[off : off + n], pos[j])
                pos[j] += n
        elif variant == "write2":

            def append_half(parity: int, view: memoryview = view, pieces: list[tuple[int, int, int]] = pieces) -> None:
                """Append the pieces of the buckets of one parity (each thread owns its buckets)."""
                for off, n, j in pieces:
                    if j % 2 == parity:
                        write_full(fds[j], view[off : off + n])

            both([partial(append_half, 0), partial(append_half, 1)])
            for _off, n, j in pieces:
                pos[j] += n
        else:
            for off, n, j in pieces:
                write_full(fds[j], view[off : off + n])
                pos[j] += n
        del view
    reader.close()
    if variant == "fadvise-input":
        os.posix_fadvise(fin, 0, 0, os.POSIX_FADV_DONTNEED)
    for fd, n in zip(fds, pos):
        if variant == "fallocate":
            os.ftruncate(fd, n)
        os.close(fd)
    p1.add(mark)

    # Pass 2: read each bucket whole, copy it to the output buffer, write it in 16 MiB chunks.
    p2, mark = Meter(), Meter.start()
    largest = max(pos)
    fout = os.open(os.path.join(work, "out"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    if variant == "fallocate":
        os.posix_fallocate(fout, 0, size)
    out_pos = 0
    for j in range(BUCKETS):
        n = pos[j]
        fd = os.open(paths[j], os.O_RDONLY | direct)
        data = bufs.get("bucket", n, largest)[:n]
        view = data.data
        if variant == "read2":
            both([partial(read_full, fd, view[s:e], s) for s, e in halves(n)])
        elif variant in ("pvec", "pwrite"):
            read_full(fd, view, 0)
        else:
            with open(fd, "rb", buffering=0, closefd=False) as f:
                got = 0
                while got < n:
                    got += f.readinto(view[got:]) or 0
        if variant == "fadvise-buckets":
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
        out = bufs.get("out", n, largest)[:n]
        np.copyto(out, data)
        if j == 0:
            thp = max(thp, thp_kib())
        ov = out.data
        if variant == "pvec":
            pwritev_full(fout, [ov[s : s + OUT_CHUNK] for s in range(0, n, OUT_CHUNK)], out_pos)
        elif variant == "pwrite":
            for s in range(0, n, OUT_CHUNK):
                write_full(fout, ov[s : s + OUT_CHUNK], out_pos + s)
        elif variant == "write2":
            both([partial(write_full, fout, ov[s:e], out_pos + s) for s, e in halves(n)])
        else:
            for s in range(0, n, OUT_CHUNK):
                write_full(fout, ov[s : s + OUT_CHUNK])
        out_pos += n
        del view, ov, data, out
        os.unlink(paths[j])  # as bigshuf does once a bucket is shuffled
    os.close(fout)
    if variant == "fadvise-input-late":
        os.posix_fadvise(fin, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fin)
    p2.add(mark)
    io1 = disk_io()
    if out_pos != size or os.path.getsize(os.path.join(work, "out")) != size:
        raise SystemExit(f"kernel_time: {variant} wrote {out_pos} bytes of {size}")
    if pool is not None:
        pool.shutdown()
    return {"wall": p1.wall + p2.wall, "user": p1.user + p2.user, "sys": p1.sys + p2.sys,
            "minflt": p1.minflt + p2.minflt, "p1": p1.wall, "p2": p2.wall, "thp_mib": thp / 1024,
            "disk_r": (io1[0] - io0[0]) / MiB, "disk_w": (io1[1] - io0[1]) / MiB}


# ---------------------------------------------------------------------------------------------
# Parent: corpus, round-robin runs, table.


def make_input(path: str, size: int) -> None:
    """Write ``size`` random bytes to ``path`` (content does not matter to the kernel)."""
    rng = np.random.default_rng(SEED)
    with open(path, "xb") as f:
        for start in range(0, size, 64 * MiB):
            f.write(rng.bytes(min(64 * MiB, size - start)))


def warm(path: str) -> None:
    """Read ``path`` once so that every run starts from a warm page cache for the input."""
    buf = bytearray(OUT_CHUNK)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def supports_direct(directory: str) -> bool:
    """Whether files in ``directory`` can be opened with O_DIRECT (tmpfs, for one, refuses it)."""
    fd, path = tempfile.mkstemp(dir=directory)
    os.close(fd)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_DIRECT))
        return True
    except OSError:
        return False
    finally:
        os.unlink(path)


def run_child(variant: str, src: str, scratch: str) -> dict[str, float]:
    """Run ``variant`` in a fresh interpreter; clean up and sync afterwards (not timed)."""
    work = tempfile.mkdtemp(prefix=f"{variant}-", dir=scratch)
    try:
        proc = subprocess.run([sys.executable, __file__, "--child", variant, "--input", src, "--work", work],
                              capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"kernel_time: variant {variant} failed:\n{proc.stderr}")
        result: dict[str, float] = json.loads(proc.stdout)
        return result
    finally:
        shutil.rmtree(work)
        os.sync()


def rounds(names: list[str], reps: int) -> Iterator[tuple[int, list[tuple[str, str]]]]:
    """Per repetition, (variant, its baseline) pairs in a rotated order, backwards on odd
    repetitions; which of the two runs first alternates from pair to pair and repetition to repetition."""
    for rep in range(reps):
        k = rep % len(names)
        order = names[k:] + names[:k]
        order = order[::-1] if rep % 2 else order
        yield rep, [(v, VARIANTS[v][0]) if (rep + i) % 2 else (VARIANTS[v][0], v) for i, v in enumerate(order)]


def machine_notes(scratch: str) -> list[str]:
    """Facts that decide what the figures mean: kernel, THP mode, RAM, filesystem, commit."""
    def read(path: str) -> str:
        """A sysfs file's content, or '?'."""
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            return "?"

    fs = subprocess.run(["findmnt", "-no", "FSTYPE", "-T", scratch], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB
    return [
        f"commit {commit or '?'}; Linux {platform.release()}; {os.cpu_count()} CPUs; {ram:.1f} GiB RAM; "
        f"scratch on {fs or '?'}; numpy {np.__version__}; Python {platform.python_version()}",
        f"THP enabled: {read('/sys/kernel/mm/transparent_hugepage/enabled')}; "
        f"defrag: {read('/sys/kernel/mm/transparent_hugepage/defrag')}",
    ]


Run = dict[str, float]  # one child's figures: wall, user, sys, minflt, p1, p2, thp_mib, disk_r, disk_w


def report(pairs: dict[str, list[tuple[Run, Run]]], size: int, reps: int, scratch: str, loads: list[float]) -> str:
    """The markdown table: medians of each variant's runs, and medians of its ratios against the
    baseline run next to it (the pairs cancel the machine's drift, which is larger than most effects)."""
    runs: dict[str, list[Run]] = {}
    for v, ps in pairs.items():
        runs.setdefault(VARIANTS[v][0], []).extend(b for _, b in ps)
        runs.setdefault(v, []).extend(r for r, _ in ps)
    lines = [f"{size / MiB:.0f} MiB input, {BUCKETS} buckets, {reps} pairs per variant; input warm in the page cache", ""]
    lines += [f"- {note}" for note in machine_notes(scratch)]
    lines.append(f"- 1-minute load average before each repetition and at the end: {', '.join(f'{x:.1f}' for x in loads)} "
                 "(other work on the machine takes cores from the 2-thread rows)")
    lines += ["", "| variant | what changes | user s | sys s | wall s | pass 1 s | pass 2 s | minor faults | THP MiB "
              "| disk read / written MiB | sys × | wall × | wall × range |", "| --- | --- |" + " ---: |" * 11]
    for v in VARIANTS:
        if v not in runs:
            continue
        m = {k: statistics.median(r[k] for r in runs[v]) for k in runs[v][0]}
        sys_x = [r["sys"] / max(b["sys"], 1e-9) for r, b in pairs.get(v, [])]
        wall_x = [r["wall"] / b["wall"] for r, b in pairs.get(v, [])]
        ratios = (f"{statistics.median(sys_x):.2f} | {statistics.median(wall_x):.2f} | {min(wall_x):.2f}-{max(wall_x):.2f}"
                  if wall_x else "1 | 1 | (baseline)")
        lines.append(f"| {v} | {VARIANTS[v][1]} | {m['user']:.2f} | {m['sys']:.2f} | {m['wall']:.2f} | {m['p1']:.2f} "
                     f"| {m['p2']:.2f} | {m['minflt'] / 1000:.0f}k | {m['thp_mib']:.0f} "
                     f"| {m['disk_r']:.0f} / {m['disk_w']:.0f} | {ratios} |")
    return "\n".join(lines)


def main() -> None:
    """Parse options; run a child variant, or the whole benchmark."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1G", help="input size, binary suffixes K/M/G (default 1G; --quick: 32M)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of every variant (default 3; --quick: 1)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset (baselines are added)")
    ap.add_argument("--scratch", default=None, help="directory for the scratch directory (default $TMPDIR or /tmp)")
    ap.add_argument("--quick", action="store_true", help="a 32 MiB smoke run, one repetition")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_variant(args.child, args.input, args.work)))
        return
    size = parse_size("32M" if args.quick and args.size == "1G" else args.size)
    reps = 1 if args.quick else args.reps
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or size < ALIGN or size % ALIGN:
        raise SystemExit(f"kernel_time: unknown variants {unknown}" if unknown else "kernel_time: --size must be a multiple of 4 KiB")
    names = [v for v in VARIANTS if v in names and VARIANTS[v][0] != v]
    scratch = tempfile.mkdtemp(prefix="kernel-time-", dir=args.scratch)
    try:
        if "odirect" in names and not supports_direct(scratch):
            names.remove("odirect")
            print(f"O_DIRECT is not supported in {scratch}: the odirect variant is left out")
        src = os.path.join(scratch, "input")
        make_input(src, size)
        pairs: dict[str, list[tuple[Run, Run]]] = {v: [] for v in names}
        loads = []
        for rep, order in rounds(names, reps):
            loads.append(os.getloadavg()[0])
            for pair in order:
                got = {}
                for v in pair:
                    warm(src)
                    got[v] = r = run_child(v, src, scratch)
                    print(f"rep {rep + 1}/{reps} {v}: wall {r['wall']:.2f} s, user {r['user']:.2f}, sys {r['sys']:.2f}",
                          file=sys.stderr, flush=True)
                variant = pair[0] if pair[0] in pairs else pair[1]
                pairs[variant].append((got[variant], got[VARIANTS[variant][0]]))
        loads.append(os.getloadavg()[0])
        print(report(pairs, size, reps, scratch, loads))
    finally:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
