"""The SQLite files under ``server.data_dir``, opened one way: short-lived connections,
WAL, a schema version that an older talkface refuses to write over."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def connect(path: Path, *, rows: bool = False) -> Iterator[sqlite3.Connection]:
    """One connection for one call: cheap for SQLite, and safe from any thread or process.

    Autocommit (explicit transactions where they matter); ``rows`` gives ``sqlite3.Row``s.
    """
    db = sqlite3.connect(path, timeout=15.0, isolation_level=None)
    if rows:
        db.row_factory = sqlite3.Row
    try:
        yield db
    finally:
        db.close()


def open_database(path: Path, schema: str, version: int) -> None:
    """Create or upgrade ``path`` to ``schema`` (``version``), in WAL mode.

    Raises:
        RuntimeError: the file was written by a newer talkface.
        OSError, sqlite3.Error: the file cannot be used.
    """
    with connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        found = db.execute("PRAGMA user_version").fetchone()[0]
        if found > version:
            raise RuntimeError(
                f"{path} was written by a newer talkface (schema {found}); "
                "upgrade talkface or point server.data_dir elsewhere"
            )
        db.executescript(schema)
        db.execute(f"PRAGMA user_version = {version}")
