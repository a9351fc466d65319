"""The on-disk cache: size bound, corrupt entries, concurrent writers, shared stats."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from talkface.cache.store import DiskCache, Entry

pytestmark = pytest.mark.unit

KB = 1024


def entry(fill: bytes, size: int) -> Entry:
    return Entry({"what": "test"}, fill * size)


def age(cache: DiskCache, key: str, mtime_s: float) -> None:
    os.utime(cache.path_for(key), (mtime_s, mtime_s))


def test_an_entry_round_trips_and_counts_a_hit_and_a_miss(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, max_bytes=100 * KB, name="t")
    assert cache.get("a") is None
    cache.put("a", entry(b"x", 10))
    got = cache.get("a")
    assert got is not None and got.body == b"x" * 10 and got.header["what"] == "test"
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.writes, stats.entries) == (1, 1, 1, 1)


def test_the_least_recently_used_entries_go_when_the_folder_is_over_size(
    tmp_path: Path,
) -> None:
    cache = DiskCache(tmp_path, max_bytes=35 * KB, name="t")
    for n, key in enumerate("abc"):
        cache.put(key, entry(b"x", 10 * KB))
        age(cache, key, 1_000 + n)
    assert cache.get("a") is not None  # a is now the most recently used
    age(cache, "b", 1_001)
    cache.put("d", entry(b"y", 10 * KB))  # 4 x 10 KB > 35 KB: the oldest (b) goes
    assert cache.get("b") is None
    assert all(cache.get(key) is not None for key in "acd")
    stats = cache.stats()
    assert stats.bytes <= 35 * KB and stats.entries == 3 and stats.evictions == 1


def test_an_entry_larger_than_the_bound_is_not_kept(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, max_bytes=5 * KB, name="t")
    cache.put("a", entry(b"x", 1 * KB))
    cache.put("big", entry(b"x", 10 * KB))
    assert cache.get("big") is None and cache.get("a") is not None


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_corrupt_entry_is_discarded_and_rebuilt(tmp_path: Path, damage: str) -> None:
    cache = DiskCache(tmp_path, max_bytes=100 * KB, name="t")
    cache.put("a", entry(b"x", 1000))
    path = cache.path_for("a")
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:-10]
    elif damage == "flip":
        data[-1] ^= 0xFF
    else:
        data = bytearray(b"not a cache entry")
    path.write_bytes(bytes(data))
    assert cache.get("a") is None
    assert not path.exists()
    assert cache.stats().corrupt == 1
    cache.put("a", entry(b"x", 1000))  # what a caller does after a miss
    got = cache.get("a")
    assert got is not None and got.body == b"x" * 1000


def test_an_entry_renamed_to_another_key_is_not_served(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, max_bytes=100 * KB, name="t")
    cache.put("a", entry(b"x", 10))
    os.replace(cache.path_for("a"), cache.path_for("b"))
    assert cache.get("b") is None


def test_concurrent_writers_of_one_key_leave_one_valid_entry(tmp_path: Path) -> None:
    writers = [DiskCache(tmp_path, max_bytes=10_000 * KB, name="t") for _ in range(8)]
    start = threading.Barrier(len(writers))
    body = bytes(range(256)) * 2 * KB  # 512 KB: the writes overlap

    def write(cache: DiskCache) -> None:
        start.wait()
        for _ in range(5):
            cache.put("same", Entry({"what": "test"}, body))

    threads = [threading.Thread(target=write, args=(w,)) for w in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert entries == [writers[0].path_for("same").name]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    got = writers[0].get("same")
    assert got is not None and got.body == body


def test_stats_add_up_every_process_that_used_the_folder(tmp_path: Path) -> None:
    first = DiskCache(tmp_path, max_bytes=100 * KB, name="t")
    second = DiskCache(tmp_path, max_bytes=100 * KB, name="t")  # stands for another process
    first.put("a", entry(b"x", 10))
    assert first.get("a") is not None
    assert second.get("a") is not None
    assert second.get("nope") is None
    stats = DiskCache(tmp_path, max_bytes=100 * KB, name="t").stats()
    assert (stats.hits, stats.misses, stats.writes) == (2, 1, 1)


_WRITER = """
import sys
from pathlib import Path
from talkface.cache.store import DiskCache, Entry
cache = DiskCache(Path(sys.argv[1]), max_bytes=100 * 2**20, name="t")
body = bytes(range(256)) * 4096
for _ in range(20):
    cache.put("same", Entry({"what": "test"}, body))
    assert cache.get("same").body == body
"""


def test_two_processes_writing_one_key_leave_one_valid_entry(tmp_path: Path) -> None:
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)])
               for _ in range(2)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    cache = DiskCache(tmp_path, max_bytes=100 * 2**20, name="t")
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [
        cache.path_for("same").name]
    got = cache.get("same")
    assert got is not None and got.body == bytes(range(256)) * 4096
    assert cache.stats().writes == 40  # both processes' counters, added up
