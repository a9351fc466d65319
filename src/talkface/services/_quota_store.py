"""Quota usage on disk: ``usage.sqlite3`` next to the job store under ``server.data_dir``.

One row per UTC day, key id and quota kind. Writes add to the row (``used = used + ?``),
so several server processes sharing the data directory (``talkface serve --workers N``)
each write their own share and read back the total. A database of its own rather than a
table in ``jobs.sqlite3``: an older talkface keeps working on the same directory, and
usage writes never queue behind job claims.

Every method blocks (file IO): call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path

from talkface.services._sqlite import connect, open_database

KEEP_DAYS = 90
"""Usage rows older than this many days are deleted when a server starts."""
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS quota_usage (
    day TEXT NOT NULL,
    key_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    used REAL NOT NULL DEFAULT 0,
    updated_s REAL NOT NULL,
    PRIMARY KEY (day, key_id, kind)
);
"""

UsageKey = tuple[str, str, str]
"""(UTC day ``YYYY-MM-DD``, key id, quota kind)."""


class UsageStore:
    """Daily quota usage in one SQLite file under ``root``.

    Args:
        root: the data directory (created if missing).

    Raises:
        RuntimeError: the file was written by a newer talkface.
        OSError, sqlite3.Error: the directory or file cannot be used.
    """

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / "usage.sqlite3"
        open_database(self.path, _SCHEMA, _SCHEMA_VERSION)

    def _connect(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return connect(self.path)

    def add(self, deltas: Mapping[UsageKey, float]) -> None:
        """Add ``deltas`` to the stored usage, in one transaction."""
        if not deltas:
            return
        now = time.time()
        rows = [(day, key_id, kind, amount, now) for (day, key_id, kind), amount in deltas.items()]
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT INTO quota_usage (day, key_id, kind, used, updated_s) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (day, key_id, kind) "
                    "DO UPDATE SET used = used + excluded.used, updated_s = excluded.updated_s",
                    rows,
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def purge(self, before_day: str) -> None:
        """Delete the usage of days before ``before_day`` (``YYYY-MM-DD``)."""
        with self._connect() as db:
            db.execute("DELETE FROM quota_usage WHERE day < ?", (before_day,))

    def day_totals(self, day: str) -> dict[tuple[str, str], float]:
        """Every key's usage on ``day``, by (key id, kind)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT key_id, kind, used FROM quota_usage WHERE day = ?", (day,)
            ).fetchall()
        return {(key_id, kind): float(used) for key_id, kind, used in rows}
