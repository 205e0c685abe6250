"""Watched mappings of inputs (``storage.guarded``, ``_mapguard.c``): a page the file lost while
mapped reads as zeros and is counted, where it would have killed the process with SIGBUS; a
mapping nobody watches still dies as before. Each case runs in a child process, so a failure is
the child's death, not the test run's."""

from __future__ import annotations

import mmap
import signal
from pathlib import Path

import numpy as np
import pytest

from bigshuf.storage import guarded

from helpers import run_child

PAGE_LINES = "".join(f"{i:07d}\n" for i in range(4096))  # 32 KiB: eight pages


def test_the_watch_is_built() -> None:
    assert guarded.available, "bigshuf._mapguard was not built (pip install -e . builds it)"


def test_a_watched_mapping_of_a_shortened_file_reads_zeros_and_counts_them(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.write_text(PAGE_LINES)
    done = run_child(f"""
import mmap, os
import numpy as np
from bigshuf.storage.guarded import Watch
with open({str(src)!r}, "rb") as f:
    mapped = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
watch = Watch(mapped)
data = np.frombuffer(mapped, np.uint8)
before = bytes(data[:4096])
os.truncate({str(src)!r}, 4096)
print(bytes(data[:4096]) == before, int(data[4096:].sum()), watch.faults())
del data
watch.close()
mapped.close()
""")
    assert done.returncode == 0, done.stderr[-800:]
    kept, rest, faults = done.stdout.split()
    assert kept == "True" and rest == "0" and int(faults) == 1  # one fault: zeros from there to the end


def test_a_mapping_not_watched_still_dies_of_sigbus(tmp_path: Path) -> None:
    """The handler takes only watched ranges: a fault on another mapping, once it is installed,
    ends the process as it would have without it."""
    src, other = tmp_path / "in", tmp_path / "other"
    src.write_text(PAGE_LINES)
    other.write_text(PAGE_LINES)
    done = run_child(f"""
import mmap, os
import numpy as np
from bigshuf.storage.guarded import Watch
with open({str(src)!r}, "rb") as f:
    watched = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
watch = Watch(watched)
with open({str(other)!r}, "rb") as f:
    mapped = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
os.truncate({str(other)!r}, 0)
print("read", int(np.frombuffer(mapped, np.uint8).sum()), flush=True)
""")
    assert done.returncode == -signal.SIGBUS, (done.returncode, done.stderr[-800:])
    assert "read" not in done.stdout


def test_read_mapped_of_a_file_shortened_while_mapped_is_false(tmp_path: Path) -> None:
    """The file loses its end between the mapping and the copy: the copy reads zeros there and
    ``read_mapped`` says the bytes were not all the file's; one shortened before the mapping is
    refused at the mapping."""
    src = tmp_path / "in"
    src.write_text(PAGE_LINES)
    done = run_child(f"""
import os
import numpy as np
from bigshuf.storage import guarded
real = guarded.Watch

class Cutting(real):
    def __init__(self, buffer):
        super().__init__(buffer)
        os.truncate({str(src)!r}, 8192)

with open({str(src)!r}, "rb") as f:
    dest = np.ones(20000, np.uint8)
    whole = guarded.read_mapped(f.fileno(), 100, dest)
    guarded.Watch = Cutting
    cut = guarded.read_mapped(f.fileno(), 100, dest)
    after = int(dest[8192 - 100 :].sum()), int(dest[: 8192 - 100].sum()) > 0
    guarded.Watch = real
    late = guarded.read_mapped(f.fileno(), 100, dest)
print(whole, cut, after, late)
""")
    assert done.returncode == 0, done.stderr[-800:]
    assert done.stdout.split(maxsplit=2)[:2] == ["True", "False"]
    assert done.stdout.strip().endswith("(0, True) False")


def test_with_every_watch_taken_a_part_is_read_instead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The module watches at most ``SLOTS`` ranges at once: past that, ``read_mapped`` maps nothing
    unwatched (OSError) and the reader reads the part at its offset, the same bytes."""
    from bigshuf.core.records import RecordFormat
    from bigshuf.progress import Progress
    from bigshuf.storage import reader as reader_module
    from bigshuf.storage.reader import RecordReader
    from bigshuf.storage.sources import FileSource

    src = tmp_path / "in"
    src.write_text(PAGE_LINES * 4)
    monkeypatch.setattr(reader_module, "MAP_READ", 1)
    held: list[tuple[mmap.mmap, guarded.Watch]] = []
    try:
        with open(src, "rb") as f:
            while True:
                mapped = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
                held.append((mapped, guarded.Watch(mapped)))
                if held[-1][1].slot < 0:
                    break
            with pytest.raises(OSError, match="no watch free"):
                guarded.read_mapped(f.fileno(), 0, np.empty(100, np.uint8))
        blocks = RecordReader([FileSource(src)], RecordFormat(), Progress()).blocks(1 << 20, "-S")
        assert [bytes(block) for block, _final in blocks] == [src.read_bytes()]
    finally:
        for mapped, watch in held:
            watch.close()
            mapped.close()
    assert len(held) == 257


def test_faults_all_over_a_large_mapping_do_not_split_it_page_by_page(tmp_path: Path) -> None:
    """Each fault mapped zeros over one page, so random reads of a large emptied file split its
    mapping into a piece per page until the kernel's limit of mappings (vm.max_map_count, 65530)
    refused the next and the process died of SIGBUS. Zeros now reach the watched range's end."""
    src = tmp_path / "sparse"
    with open(src, "wb") as f:
        f.truncate(200_000 * mmap.PAGESIZE)
    done = run_child(f"""
import mmap, os
import numpy as np
from bigshuf.storage.guarded import Watch
with open({str(src)!r}, "rb") as f:
    watch = Watch(mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ))
data = np.frombuffer(watch.mapped, np.uint8)
os.truncate({str(src)!r}, 0)
pages = np.random.default_rng(1).permutation(200_000) * mmap.PAGESIZE
print(int(data[pages].sum()), 0 < watch.faults() < 100)
""")
    assert done.returncode == 0, (done.returncode, done.stderr[-800:])
    assert done.stdout.split() == ["0", "True"]


def test_a_handler_put_in_its_place_is_not_taken_back(tmp_path: Path) -> None:
    """Once another SIGBUS handler has replaced the watch's (here faulthandler's, which hands
    faults back to the handler it replaced), no new mapping is watched, rather than one watched
    by a handler that no longer gets its faults; a part is then read, not mapped."""
    src = tmp_path / "in"
    src.write_text(PAGE_LINES)
    done = run_child(f"""
import faulthandler, mmap
import numpy as np
from bigshuf.storage import guarded
with open({str(src)!r}, "rb") as f:
    first = guarded.Watch(mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ))
    faulthandler.enable()
    second = guarded.Watch(mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ))
    try:
        guarded.read_mapped(f.fileno(), 0, np.empty(100, np.uint8))
    except OSError as e:
        print(first.slot >= 0, second.slot, e)
""")
    assert done.returncode == 0, (done.returncode, done.stderr[-800:])
    assert done.stdout.strip() == "True -1 no watch free for another mapping"


def test_an_ignored_sigbus_sent_by_kill_stays_ignored(tmp_path: Path) -> None:
    """``trap '' BUS`` (SIGBUS ignored) is inherited and honoured for a signal sent: the watch's
    handler, standing in front, ignores it too rather than ending the process."""
    src = tmp_path / "in"
    src.write_text(PAGE_LINES)
    done = run_child(f"""
import mmap, os, signal
from bigshuf.storage.guarded import Watch
signal.signal(signal.SIGBUS, signal.SIG_IGN)
with open({str(src)!r}, "rb") as f:
    watch = Watch(mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ))
os.kill(os.getpid(), signal.SIGBUS)
print("alive", watch.slot >= 0)
""")
    assert done.returncode == 0, (done.returncode, done.stderr[-800:])
    assert done.stdout.strip() == "alive True"


def test_a_watch_ends_before_its_mapping_is_unmapped(tmp_path: Path) -> None:
    """A watch left on a range after it was unmapped would take the faults of whatever is mapped
    there next: closing a watch, or dropping it, frees its slot (the next watch takes the same
    one), and the mapping goes with the watch, not before it."""
    src = tmp_path / "in"
    src.write_text(PAGE_LINES)
    with open(src, "rb") as f:
        watch = guarded.Watch(mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ))
        slot, mapped = watch.slot, watch.mapped
        watch.close()
        assert mapped.closed
        again = guarded.Watch(mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ))
        assert again.slot == slot >= 0
        del again
        assert guarded.Watch(mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)).slot == slot


def test_read_mapped_copies_a_window_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A part is mapped ``MAP_WINDOW`` bytes at a time (mapped pages count as resident until
    unmapped), windows starting anywhere in a page: the bytes are the file's, each window unmapped."""
    src = tmp_path / "in"
    src.write_bytes(np.random.default_rng(3).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    monkeypatch.setattr(guarded, "MAP_WINDOW", 3 * mmap.PAGESIZE + 5)
    windows: list[int] = []
    real = guarded._copy_window

    def noted(fd: int, offset: int, dest: np.ndarray) -> bool:
        windows.append(len(dest))
        return real(fd, offset, dest)

    monkeypatch.setattr(guarded, "_copy_window", noted)
    dest = np.zeros(70_000, np.uint8)
    with open(src, "rb") as f:
        assert guarded.read_mapped(f.fileno(), 1234, dest)
    assert bytes(dest) == src.read_bytes()[1234 : 1234 + 70_000]
    assert len(windows) == -(-70_000 // (3 * mmap.PAGESIZE + 5)) and max(windows) == 3 * mmap.PAGESIZE + 5
