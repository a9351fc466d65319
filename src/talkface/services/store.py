"""What the server keeps on disk: render jobs, their videos, and who uploaded which avatar.

Everything lives under ``server.data_dir`` (default ``$TALKFACE_CACHE_DIR/renders`` or
``~/.cache/talkface/renders``)::

    jobs.sqlite3        jobs and avatar owners (SQLite, WAL: several server processes share it)
    inputs/<job>.<ext>  uploaded audio of lip-sync jobs, until the job ends
    videos/<job>.mp4    finished videos
    videos/.<job>.mp4.<random>.mp4
                        a video being written; one whose process was killed is removed
                        when a server starts (:meth:`Store.remove_stale_partials`) and
                        before the job is tried again

A job's files go with it: its input, its video and any unfinished video.

A job is claimed by one worker at a time with a lease that the worker renews while it
renders. A server that stops cleanly hands its running jobs back (``queued``); one that
dies leaves a lease that runs out, or a process id that no longer exists on this host,
and the next worker to look claims the job again. So an accepted job is re-run after a
restart, never lost. A job that was cut short :data:`MAX_ATTEMPTS` times is failed with
a message that says so, rather than retried forever.

Every method blocks (file IO): call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talkface.errors import Overloaded
from talkface.output.mp4 import partial_files, partial_target
from talkface.services._sqlite import connect, open_database

MAX_ATTEMPTS = 3
"""A job whose render was cut short this many times by a dying server (clean restarts
do not count) is failed instead of being tried again."""
PENDING = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    error_code TEXT,
    error_message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    handed_back INTEGER NOT NULL DEFAULT 0,
    created_s REAL NOT NULL,
    started_s REAL,
    finished_s REAL,
    duration_s REAL,
    worker TEXT,
    lease_until_s REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, created_s);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, created_s);
CREATE TABLE IF NOT EXISTS avatars (
    avatar_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_s REAL NOT NULL,
    PRIMARY KEY (avatar_id, owner)
);
"""


def default_data_dir() -> Path:
    """``$TALKFACE_CACHE_DIR/renders``, or ``~/.cache/talkface/renders``."""
    cache = os.environ.get("TALKFACE_CACHE_DIR") or Path.home() / ".cache" / "talkface"
    return Path(cache) / "renders"


def worker_identity() -> str:
    """``host:pid:random``: unique per process, and tells whether its process is alive."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


@dataclass(slots=True, kw_only=True)
class JobRecord:
    """One render job as stored.

    Attributes:
        id: "r_..." id.
        owner: key id of the API key that created it.
        status: queued, running, done, failed or cancelled.
        kind: "text" or "audio".
        spec: what to render (:class:`~talkface.services.render.RenderSpec` as a dict).
        progress: 0..1.
        error_code, error_message: why it failed.
        attempts: times a worker started it.
        handed_back: of those, how many a cleanly stopping server handed back.
        created_s, started_s, finished_s: unix times.
        duration_s: length of the finished video.
        worker: the worker holding it while it runs.
        lease_until_s: when that worker's claim runs out unless renewed.
    """

    id: str
    owner: str
    status: str
    kind: str
    spec: dict[str, Any] = field(default_factory=dict)
    progress: float = 0.0
    error_code: str | None = None
    error_message: str | None = None
    attempts: int = 0
    handed_back: int = 0
    created_s: float = 0.0
    started_s: float | None = None
    finished_s: float | None = None
    duration_s: float | None = None
    worker: str | None = None
    lease_until_s: float | None = None

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> JobRecord:
        values = dict(row)
        values["spec"] = json.loads(values["spec"])
        return cls(**values)


class Store:
    """Render jobs and avatar owners in one SQLite file under ``root``.

    Args:
        root: the data directory (created if missing).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inputs_dir = root / "inputs"
        self.videos_dir = root / "videos"
        for folder in (root, self.inputs_dir, self.videos_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._path = root / "jobs.sqlite3"
        open_database(self._path, _SCHEMA, _SCHEMA_VERSION)

    def _connect(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return connect(self._path, rows=True)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def video_path(self, job_id: str) -> Path:
        """Where job ``job_id``'s video is (or will be) written."""
        return self.videos_dir / f"{job_id}.mp4"

    def input_path(self, job: JobRecord) -> Path | None:
        """Where the job's uploaded input is kept, or None when it has none."""
        suffix = job.spec.get("input_suffix")
        return self.inputs_dir / f"{job.id}{suffix}" if suffix else None

    # -- jobs -----------------------------------------------------------------------------

    def create(self, job: JobRecord, *, max_pending: int) -> None:
        """Add a queued job, unless ``max_pending`` jobs are already queued or running.

        Raises:
            Overloaded: too many pending jobs.
        """
        with self._transaction() as db:
            pending = db.execute(
                "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')"
            ).fetchone()[0]
            if pending >= max_pending:
                raise Overloaded(
                    f"{pending} render jobs are already waiting, the most this server takes "
                    "(limits.max_pending_renders); try again when some have finished",
                    retry_after_s=30.0,
                )
            db.execute(
                "INSERT INTO jobs (id, owner, status, kind, spec, created_s) "
                "VALUES (?, ?, 'queued', ?, ?, ?)",
                (job.id, job.owner, job.kind, json.dumps(job.spec), job.created_s),
            )

    def get(self, job_id: str) -> JobRecord | None:
        """The job ``job_id``, or None when there is none."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return JobRecord._from_row(row) if row else None

    def list_jobs(self, owner: str, *, limit: int) -> list[JobRecord]:
        """``owner``'s most recent jobs, newest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE owner = ? ORDER BY created_s DESC LIMIT ?",
                (owner, limit),
            ).fetchall()
        return [JobRecord._from_row(r) for r in rows]

    def pending_count(self) -> int:
        """Jobs queued or running, of every owner."""
        with self._connect() as db:
            return db.execute(
                "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')"
            ).fetchone()[0]

    def claim(self, worker: str, *, lease_s: float) -> tuple[JobRecord | None, list[JobRecord]]:
        """Take the oldest job that is queued or whose worker is gone.

        Returns:
            The claimed job (now ``running``, its attempts counted), or None; and the jobs
            failed on the way because they were cut short :data:`MAX_ATTEMPTS` times.
        """
        now = time.time()
        given_up: list[JobRecord] = []
        with self._transaction() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE status = 'queued' OR status = 'running' "
                "ORDER BY created_s LIMIT 64"
            ).fetchall()
            for row in rows:
                job = JobRecord._from_row(row)
                if job.status == "running" and not _abandoned(job, now):
                    continue
                if job.attempts - job.handed_back >= MAX_ATTEMPTS:
                    message = (
                        f"gave up after {job.attempts - job.handed_back} attempts: the server "
                        "died during each of them; check its logs (out of memory?) and "
                        "submit the job again"
                    )
                    db.execute(
                        "UPDATE jobs SET status = 'failed', error_code = 'render_abandoned', "
                        "error_message = ?, finished_s = ?, worker = NULL WHERE id = ?",
                        (message, now, job.id),
                    )
                    job.status, job.error_code = "failed", "render_abandoned"
                    job.error_message = message
                    given_up.append(job)
                    continue
                db.execute(
                    "UPDATE jobs SET status = 'running', attempts = attempts + 1, worker = ?, "
                    "lease_until_s = ?, started_s = ?, progress = 0 WHERE id = ?",
                    (worker, now + lease_s, now, job.id),
                )
                job.status, job.attempts, job.worker, job.started_s = (
                    "running", job.attempts + 1, worker, now)
                return job, given_up
        return None, given_up

    def heartbeat(self, job_id: str, worker: str, *, progress: float, lease_s: float) -> str | None:
        """Renew ``worker``'s lease and record progress.

        Returns:
            "running" while the job is still this worker's to render; otherwise its
            status now ("cancelled"...), or None when it was deleted.
        """
        with self._connect() as db:
            updated = db.execute(
                "UPDATE jobs SET progress = ?, lease_until_s = ? "
                "WHERE id = ? AND worker = ? AND status = 'running'",
                (progress, time.time() + lease_s, job_id, worker),
            ).rowcount
            if updated:
                return "running"
            row = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row[0] if row else None

    def finish(self, job_id: str, worker: str, *, status: str, duration_s: float | None = None,
               error_code: str | None = None, error_message: str | None = None) -> bool:
        """Record how ``worker``'s job ended; False if it was cancelled or deleted meanwhile."""
        with self._connect() as db:
            return bool(db.execute(
                "UPDATE jobs SET status = ?, "
                "progress = CASE WHEN ? = 'done' THEN 1 ELSE progress END, "
                "duration_s = ?, error_code = ?, error_message = ?, finished_s = ?, "
                "worker = NULL, lease_until_s = NULL "
                "WHERE id = ? AND worker = ? AND status = 'running'",
                (status, status, duration_s, error_code, error_message, time.time(), job_id,
                 worker),
            ).rowcount)

    def release(self, job_id: str, worker: str) -> None:
        """Hand a running job back to the queue (a clean shutdown: not the job's fault)."""
        with self._connect() as db:
            db.execute(
                "UPDATE jobs SET status = 'queued', handed_back = handed_back + 1, "
                "worker = NULL, lease_until_s = NULL, started_s = NULL, progress = 0 "
                "WHERE id = ? AND worker = ? AND status = 'running'",
                (job_id, worker),
            )

    def cancel(self, job_id: str, owner: str) -> JobRecord | None:
        """Cancel ``owner``'s job if it is pending; returns it as it is now."""
        with self._connect() as db:
            db.execute(
                "UPDATE jobs SET status = 'cancelled', finished_s = ?, worker = NULL, "
                "lease_until_s = NULL WHERE id = ? AND owner = ? "
                "AND status IN ('queued', 'running')",
                (time.time(), job_id, owner),
            )
        job = self.get(job_id)
        return job if job is not None and job.owner == owner else None

    def delete(self, job: JobRecord) -> None:
        """Forget a job and remove its files."""
        with self._connect() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job.id,))
        self.remove_files(job)

    def remove_files(self, job: JobRecord, *, keep_video: bool = False) -> None:
        """Remove the job's input and unfinished videos, and its video unless ``keep_video``."""
        paths = [self.input_path(job)] + ([] if keep_video else [self.video_path(job.id)])
        for path in paths:
            if path is not None:
                path.unlink(missing_ok=True)
        self.remove_partials(job.id)

    def remove_partials(self, job_id: str) -> int:
        """Remove the unfinished videos of ``job_id`` (its earlier attempts were cut short)."""
        removed = 0
        for partial in partial_files(self.video_path(job_id)):
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
                removed += 1
        return removed

    def remove_stale_partials(self) -> int:
        """Remove every unfinished video that no live worker is writing (at start-up).

        A render cut short by a killed process leaves one; a job running on a live worker
        of another process sharing this folder keeps its own.

        Returns:
            How many were removed.
        """
        found: dict[str, list[Path]] = {}
        for candidate in self.videos_dir.glob(".*.mp4"):
            target = partial_target(candidate)
            if target is not None and target.suffix == ".mp4":
                found.setdefault(target.stem, []).append(candidate)
        removed = 0
        now = time.time()
        for job_id, partials in found.items():
            job = self.get(job_id)
            if job is not None and job.status == "running" and not _abandoned(job, now):
                continue
            for partial in partials:
                with contextlib.suppress(FileNotFoundError):
                    partial.unlink()
                    removed += 1
        return removed

    def purge(self, finished_before_s: float) -> int:
        """Delete jobs that ended before ``finished_before_s`` (unix), and their files."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE status IN ('done', 'failed', 'cancelled') "
                "AND finished_s < ?", (finished_before_s,),
            ).fetchall()
        for row in rows:
            self.delete(JobRecord._from_row(row))
        return len(rows)

    # -- avatars --------------------------------------------------------------------------

    def add_avatar(self, avatar_id: str, owner: str) -> None:
        """Record that ``owner`` uploaded ``avatar_id`` (recording it again changes nothing)."""
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO avatars (avatar_id, owner, created_s) VALUES (?, ?, ?)",
                (avatar_id, owner, time.time()),
            )

    def owns_avatar(self, avatar_id: str, owner: str) -> bool:
        """Whether ``owner`` uploaded ``avatar_id``."""
        with self._connect() as db:
            return db.execute(
                "SELECT 1 FROM avatars WHERE avatar_id = ? AND owner = ?", (avatar_id, owner)
            ).fetchone() is not None


def _abandoned(job: JobRecord, now: float) -> bool:
    """A running job whose worker is gone: its lease ran out, or its process is dead."""
    if job.lease_until_s is None or job.lease_until_s < now:
        return True
    host, _, rest = (job.worker or "").partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
