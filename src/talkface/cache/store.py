"""A bounded on-disk cache that several processes may share.

One file per entry, named by the hash of its key, so there is no index to keep in step:
the folder *is* the index. Writers write a temporary file in the same folder and rename
it into place (atomic on POSIX), so a reader sees a whole entry or none, and two writers
of one key leave one valid entry (the last rename wins; both wrote the same content).
No lock is held at any time, least of all across a model call.

Each file is ``MAGIC | header length | body length | CRC-32 | header JSON | body``; an
entry whose lengths or checksum do not match (a torn copy, a full disk, bit rot) is
deleted and reported as a miss, so the caller renders it again and stores it anew.

Least recently used goes first: a hit sets the file's mtime to now, and after each
write the folder is trimmed, oldest mtime first, to ``max_bytes``.

Hits and misses are counted per process in ``.stats/<pid>-<token>.json`` (rewritten
atomically on every change); :meth:`DiskCache.stats` adds up every process's file.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_MAGIC = b"TFC1"
_PREFIX = struct.Struct("<4sIQI")  # magic, header length, body length, crc32
_SUFFIX = ".entry"
_STATS_DIR = ".stats"
_COUNTERS = ("hits", "misses", "corrupt", "writes", "evictions")


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored entry: a JSON-able header and one binary body."""

    header: dict[str, Any]
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheStats:
    """One cache's counters (all processes together) and what it holds now."""

    name: str
    hits: int
    misses: int
    corrupt: int
    writes: int
    evictions: int
    entries: int
    bytes: int


def encode_entry(entry: Entry) -> bytes:
    """``entry`` as the bytes of its file (prefix, header JSON, body)."""
    header = json.dumps(entry.header, sort_keys=True).encode()
    crc = zlib.crc32(entry.body, zlib.crc32(header))
    return _PREFIX.pack(_MAGIC, len(header), len(entry.body), crc) + header + entry.body


def decode_entry(data: bytes) -> Entry | None:
    """The entry in ``data``, or None when it is torn or corrupt."""
    if len(data) < _PREFIX.size:
        return None
    magic, header_len, body_len, crc = _PREFIX.unpack_from(data)
    if magic != _MAGIC or len(data) != _PREFIX.size + header_len + body_len:
        return None
    header = data[_PREFIX.size : _PREFIX.size + header_len]
    body = data[_PREFIX.size + header_len :]
    if zlib.crc32(body, zlib.crc32(header)) != crc:
        return None
    try:
        parsed = json.loads(header)
    except ValueError:
        return None
    return Entry(parsed, body) if isinstance(parsed, dict) else None


class DiskCache:
    """Entries by key hash in ``folder``, at most ``max_bytes`` in all.

    Blocking file I/O: call it from a worker thread on the event loop's behalf.

    Args:
        folder: the cache's own folder (created on first write).
        max_bytes: the size bound.
        name: what :meth:`stats` calls it ("tts", "clips").
    """

    def __init__(self, folder: Path, *, max_bytes: int, name: str) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.name = name
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._lock = threading.Lock()  # guards the counters only, never I/O on entries
        self._stats_file = folder / _STATS_DIR / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json"

    def path_for(self, key: str) -> Path:
        """The file that holds ``key``'s entry (whether or not it exists)."""
        return self.folder / f"{key}{_SUFFIX}"

    def get(self, key: str) -> Entry | None:
        """The entry stored under ``key``, or None (counted as a miss)."""
        path = self.path_for(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self._count("misses")
            return None
        entry = decode_entry(data)
        if entry is None or entry.header.get("key") != key:
            logger.warning("discarding a corrupt %s cache entry %s", self.name, path.name)
            self._unlink(path)
            self._count("misses", "corrupt")
            return None
        try:
            os.utime(path)  # most recently used
        except FileNotFoundError:
            pass  # evicted by another process meanwhile; we have its bytes already
        self._count("hits")
        return entry

    def discard(self, key: str) -> None:
        """Delete ``key``'s entry: it passed its checksum but its content is unusable."""
        self._unlink(self.path_for(key))
        self._count("corrupt")

    def put(self, key: str, entry: Entry) -> None:
        """Store ``entry`` under ``key`` (atomically), then trim the folder to size."""
        entry = Entry({**entry.header, "key": key}, entry.body)
        data = encode_entry(entry)
        if len(data) > self.max_bytes:
            return  # would evict everything else and itself
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".tmp-{os.getpid()}-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as file:
                file.write(data)
            os.replace(tmp, self.path_for(key))
        finally:
            self._unlink(tmp)
        self._count("writes")
        self.trim()

    def trim(self) -> None:
        """Delete least recently used entries until the folder holds ``max_bytes``."""
        entries = self._scan()
        total = sum(size for _, size, _ in entries)
        evicted = 0
        for path, size, _ in sorted(entries, key=lambda e: e[2]):
            if total <= self.max_bytes:
                break
            self._unlink(path)
            total -= size
            evicted += 1
        if evicted:
            self._count(*(["evictions"] * evicted))

    def stats(self) -> CacheStats:
        """Counters of every process that used this folder, and its size now."""
        totals = dict.fromkeys(_COUNTERS, 0)
        stats_dir = self.folder / _STATS_DIR
        for file in stats_dir.glob("*.json") if stats_dir.is_dir() else ():
            try:
                counts = json.loads(file.read_text())
            except (OSError, ValueError):
                continue  # being replaced right now, or damaged: skip it
            for name in _COUNTERS:
                value = counts.get(name, 0)
                totals[name] += value if isinstance(value, int) else 0
        entries = self._scan()
        return CacheStats(name=self.name, entries=len(entries),
                          bytes=sum(size for _, size, _ in entries), **totals)

    def _scan(self) -> list[tuple[Path, int, float]]:
        found = []
        try:
            scan = os.scandir(self.folder)
        except FileNotFoundError:
            return []
        with scan:
            for item in scan:
                if not item.name.endswith(_SUFFIX):
                    continue
                try:
                    info = item.stat()
                except FileNotFoundError:
                    continue
                found.append((Path(item.path), info.st_size, info.st_mtime))
        return found

    def _count(self, *names: str) -> None:
        with self._lock:
            for name in names:
                self._counts[name] += 1
            data = json.dumps(self._counts)
            try:
                self._stats_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = self._stats_file.with_suffix(f".tmp-{time.monotonic_ns()}")
                tmp.write_text(data)
                os.replace(tmp, self._stats_file)
            except OSError as exc:  # counters are advice; a read-only disk must not fail a turn
                logger.warning("could not write %s cache stats: %s", self.name, exc)

    @staticmethod
    def _unlink(path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
