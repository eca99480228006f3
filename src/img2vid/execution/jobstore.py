"""The job queue's persistent side: job records, the SQLite store, and the folder lock.

Job rows survive restarts; `recover` re-queues a job that was running when the process died
once, then fails it with the reason.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from img2vid.core.errors import Img2VidError, InputError
from img2vid.core.progress import CancelToken, Progress
from img2vid.execution.lanes import Lane

MAX_ATTEMPTS = 2  # a job interrupted by a crash is re-queued once, then failed


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class QueueFullError(Img2VidError):
    """The queue holds `queue_limit` waiting jobs; try again later (HTTP 429)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ShuttingDownError(Img2VidError):
    """The server is stopping and takes no new jobs (HTTP 503)."""


@dataclass(frozen=True)
class JobProgress:
    stage: str
    step: int
    total: int | None
    fraction: float | None
    eta_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "step": self.step, "total": self.total,
                "fraction": self.fraction, "eta_s": self.eta_s}


@dataclass(frozen=True)
class Job:
    """A snapshot of one job as stored, with live progress and queue position filled in."""

    id: str
    seq: int
    status: JobStatus
    lane: Lane
    request: dict[str, Any]
    inputs: tuple[str, ...]
    input_names: tuple[str, ...]
    created: float
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    progress: JobProgress | None = None
    error: str | None = None
    output: str | None = None
    sidecar: dict[str, Any] | None = None
    position: int | None = None
    cancel_requested: bool = False


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    lane TEXT NOT NULL,
    request TEXT NOT NULL,
    inputs TEXT NOT NULL,
    input_names TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    progress TEXT,
    error TEXT,
    output TEXT,
    sidecar TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, lane, seq);
"""


class JobStore:
    """The jobs table. One connection, serialised by a lock: statements take microseconds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        # Autocommit; multi-statement changes use explicit BEGIN IMMEDIATE transactions.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: every commit is on disk before a 202 goes out ("loses nothing").
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, job: Job, limit: int) -> Job:
        """Insert a queued job, unless `limit` jobs are already waiting in any lane."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (waiting,) = self._db.execute(
                    "SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()
                if waiting >= limit:
                    raise QueueFullError(f"the queue is full ({waiting} jobs waiting); "
                                         "try again later", retry_after=0)
                cur = self._db.execute(
                    "INSERT INTO jobs (id, status, lane, request, inputs, input_names, created) "
                    "VALUES (?, 'queued', ?, ?, ?, ?, ?)",
                    (job.id, job.lane.value, json.dumps(job.request), json.dumps(job.inputs),
                     json.dumps(job.input_names), job.created))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return replace(job, seq=int(cur.lastrowid or 0))

    def claim(self, job_id: str) -> Job | None:
        """queued -> running (one more attempt); None if it is no longer queued."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET status = 'running', started = ?, attempts = attempts + 1, "
                "progress = NULL, error = NULL WHERE id = ? AND status = 'queued'",
                (time.time(), job_id))
        return self.get(job_id) if cur.rowcount == 1 else None

    def finish(self, job_id: str, status: JobStatus, *, error: str | None = None,
               output: str | None = None, sidecar: dict[str, Any] | None = None,
               progress: JobProgress | None = None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status = ?, finished = ?, error = ?, output = ?, sidecar = ?, "
                "progress = ? WHERE id = ?",
                (status.value, time.time(), error, output,
                 json.dumps(sidecar) if sidecar is not None else None,
                 json.dumps(progress.as_dict()) if progress else None, job_id))

    def requeue(self, job_id: str, *, count_attempt: bool) -> None:
        """running -> queued; a clean shutdown does not count as an attempt."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status = 'queued', started = NULL, progress = NULL, "
                "attempts = attempts - ? WHERE id = ? AND status = 'running'",
                (0 if count_attempt else 1, job_id))

    def cancel_queued(self, job_id: str) -> bool:
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET status = 'cancelled', finished = ?, error = ? "
                "WHERE id = ? AND status = 'queued'",
                (time.time(), "cancelled before it started", job_id))
        return cur.rowcount == 1

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            job = _from_row(row)
            if job.status is JobStatus.QUEUED:
                (ahead,) = self._db.execute(
                    "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND lane = ? AND seq < ?",
                    (job.lane.value, job.seq)).fetchone()
                job = replace(job, position=ahead + 1)
        return job

    def list(self, *, limit: int, offset: int, status: JobStatus | None = None,
             ) -> tuple[list[Job], int]:
        """Jobs newest first, and how many there are in all."""
        where, args = ("WHERE status = ?", (status.value,)) if status else ("", ())
        with self._lock:
            (total,) = self._db.execute(f"SELECT COUNT(*) FROM jobs {where}", args).fetchone()
            rows = self._db.execute(f"SELECT * FROM jobs {where} ORDER BY seq DESC "
                                    "LIMIT ? OFFSET ?", (*args, limit, offset)).fetchall()
            queued = self._db.execute(
                "SELECT id, lane FROM jobs WHERE status = 'queued' ORDER BY seq").fetchall()
        positions: dict[str, int] = {}
        per_lane: dict[str, int] = {}
        for job_id, lane in queued:
            per_lane[lane] = per_lane.get(lane, 0) + 1
            positions[job_id] = per_lane[lane]
        return [replace(_from_row(r), position=positions.get(r["id"])) for r in rows], int(total)

    def waiting(self) -> int:
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()
        return int(count)

    def ids(self, status: JobStatus, lane: Lane | None = None) -> list[str]:
        """Ids with `status` (in one lane if given), oldest first."""
        sql = "SELECT id FROM jobs WHERE status = ?"
        args: tuple[Any, ...] = (status.value,)
        if lane is not None:
            sql, args = sql + " AND lane = ?", (*args, lane.value)
        with self._lock:
            return [r[0] for r in self._db.execute(sql + " ORDER BY seq", args)]

    def counts(self) -> dict[str, int]:
        with self._lock:
            found = dict(self._db.execute(
                "SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
        return {s.value: int(found.get(s.value, 0)) for s in JobStatus}

    def recover(self, max_attempts: int = MAX_ATTEMPTS) -> tuple[list[str], list[str]]:
        """Jobs left 'running' by a process that died: re-queue or fail them.

        Returns (re-queued ids, failed ids).
        """
        requeued, failed = [], []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    "SELECT id, attempts FROM jobs WHERE status = 'running'").fetchall()
                for job_id, attempts in rows:
                    if attempts < max_attempts:
                        self._db.execute(
                            "UPDATE jobs SET status = 'queued', started = NULL, progress = NULL "
                            "WHERE id = ?", (job_id,))
                        requeued.append(job_id)
                    else:
                        reason = (f"the server stopped while this job was running "
                                  f"({attempts} attempts); it was not retried again")
                        self._db.execute(
                            "UPDATE jobs SET status = 'failed', finished = ?, error = ? "
                            "WHERE id = ?", (time.time(), reason, job_id))
                        failed.append(job_id)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return requeued, failed


def _from_row(row: sqlite3.Row) -> Job:
    progress = json.loads(row["progress"]) if row["progress"] else None
    return Job(id=row["id"], seq=row["seq"], status=JobStatus(row["status"]),
               lane=Lane(row["lane"]), request=json.loads(row["request"]),
               inputs=tuple(json.loads(row["inputs"])),
               input_names=tuple(json.loads(row["input_names"])),
               created=row["created"], started=row["started"], finished=row["finished"],
               attempts=row["attempts"],
               progress=JobProgress(**progress) if progress else None,
               error=row["error"], output=row["output"],
               sidecar=json.loads(row["sidecar"]) if row["sidecar"] else None)


@dataclass
class RunningJob:
    """A job a worker is running: its cancel token and latest progress (kept in memory)."""

    token: CancelToken = field(default_factory=CancelToken)
    reason: str | None = None  # "user" or "shutdown" once cancelled
    progress: JobProgress | None = None
    # stage -> (time, done) when first seen: stages interleave (render and encode stream
    # frame by frame), so each keeps its own rate for the ETA.
    stages: dict[str, tuple[float, int]] = field(default_factory=dict)

    def progress_at(self, event: Progress) -> JobProgress:
        """The job's progress for `event`, with an ETA from its stage's rate so far."""
        now = time.monotonic()
        first_time, first_done = self.stages.setdefault(event.stage, (now, event.done))
        eta = None
        if event.total and event.done > first_done:
            rate = (now - first_time) / (event.done - first_done)
            eta = round(rate * max(0, event.total - event.done), 1)
        return JobProgress(event.stage, event.done, event.total, event.fraction, eta)


def lock_directory(directory: Path) -> Any:
    """Hold an exclusive lock on the queue folder so two servers never run the same jobs."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one server per folder is on the user
        return None
    handle = open(directory / "lock", "a+")  # noqa: SIM115 - held for the queue's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise InputError(f"another img2vid server is using the job queue in {directory}; "
                         "stop it first, or set output.directory to another folder") from None
    return handle


def unlock(handle: Any) -> None:
    if handle is not None:
        handle.close()
