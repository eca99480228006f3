"""Persistent job queue: a SQLite (WAL) store beside the outputs and worker threads per lane.

Jobs survive restarts: queued jobs run after a restart, and a job that was running when the
process died is re-queued once, then failed with the reason. Diffusion jobs wait in one "gpu"
lane served by one worker per GPU, so each GPU runs one job at a time (two generations on one
GPU run out of memory); camera jobs run on a "cpu" lane with N workers. Workers block on a
`queue.Queue`; nothing polls.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from img2vid import outputs
from img2vid.config import Settings
from img2vid.engines.base import Engine, EngineFactory, create_engine
from img2vid.engines.memory import worker_devices
from img2vid.errors import CancelledError, Img2VidError, InputError
from img2vid.progress import CancelToken, Progress
from img2vid.request import Engine as EngineName
from img2vid.request import GenerationRequest

log = logging.getLogger(__name__)

QUEUE_DIRNAME = ".img2vid-queue"  # inside the output folder; never served
MAX_ATTEMPTS = 2  # a job interrupted by a crash is re-queued once, then failed
RESTART_PAUSE_S = 1.0  # before a dead worker is started again; doubles while it keeps dying
MAX_RESTART_PAUSE_S = 30.0
RETRY_WRITE_S = 2.0  # between tries to record job ends the database refused
# Partial outputs older than the start by this much are left over from a killed run; newer
# ones may be another process's still being written (checked again once this has passed).
PARTIAL_GRACE_S = 60.0


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Lane(str, Enum):
    GPU = "gpu"  # diffusion: one job at a time per device
    CPU = "cpu"  # camera engine: `workers` jobs at a time


def lane_for(request: GenerationRequest) -> Lane:
    return Lane.GPU if request.engine is EngineName.DIFFUSION else Lane.CPU


class QueueFullError(Img2VidError):
    """The queue holds `queue_limit` waiting jobs; try again later (HTTP 429)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ShuttingDownError(Img2VidError):
    """The server is stopping and takes no new jobs (HTTP 503)."""


class DamagedJobError(Img2VidError):
    """A job's row cannot be read back (edited by hand, or a bug): that job fails."""


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
        """queued -> running (one more attempt); None if it is no longer queued, or if its
        row is damaged (that job is failed with the reason)."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET status = 'running', started = ?, attempts = attempts + 1, "
                "progress = NULL, error = NULL WHERE id = ? AND status = 'queued'",
                (time.time(), job_id))
            if cur.rowcount != 1:
                return None
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        try:
            _from_row(row)
        except DamagedJobError as exc:
            log.error("job %s: %s", job_id, exc)
            self.finish(job_id, JobStatus.FAILED, error=str(exc))
            return None
        return self.get(job_id)

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
            job = _from_row_or_damaged(row)
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
        return [replace(_from_row_or_damaged(r), position=positions.get(r["id"]))
                for r in rows], int(total)

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
    try:
        progress = json.loads(row["progress"]) if row["progress"] else None
        job = Job(id=row["id"], seq=row["seq"], status=JobStatus(row["status"]),
                  lane=Lane(row["lane"]), request=json.loads(row["request"]),
                  inputs=tuple(json.loads(row["inputs"])),
                  input_names=tuple(json.loads(row["input_names"])),
                  created=float(row["created"]), started=row["started"],
                  finished=row["finished"], attempts=int(row["attempts"]),
                  progress=JobProgress(**progress) if progress else None,
                  error=row["error"], output=row["output"],
                  sidecar=json.loads(row["sidecar"]) if row["sidecar"] else None)
        if not isinstance(job.request, dict) or not all(
                isinstance(n, str) for n in (*job.inputs, *job.input_names)):
            raise TypeError("request, inputs or input_names has the wrong type")
        return job
    except (ValueError, TypeError, KeyError) as exc:
        raise DamagedJobError(f"this job's record in the queue database is damaged "
                              f"({type(exc).__name__}: {str(exc)[:200]}); it cannot run: "
                              "submit it again") from None


def _from_row_or_damaged(row: sqlite3.Row) -> Job:
    """A row as a Job; a damaged one as a failed job saying why (lists stay readable)."""
    try:
        return _from_row(row)
    except DamagedJobError as exc:
        created = row["created"]
        return Job(id=str(row["id"]), seq=int(row["seq"]), status=JobStatus.FAILED,
                   lane=Lane.CPU, request={}, inputs=(), input_names=(),
                   created=float(created) if isinstance(created, (int, float)) else 0.0,
                   error=str(exc))


@dataclass
class _Running:
    """A job a worker is running: its cancel token and latest progress (kept in memory)."""

    token: CancelToken = field(default_factory=CancelToken)
    reason: str | None = None  # "user" or "shutdown" once cancelled
    progress: JobProgress | None = None
    # stage -> (time, done) when first seen: stages interleave (render and encode stream
    # frame by frame), so each keeps its own rate for the ETA.
    stages: dict[str, tuple[float, int]] = field(default_factory=dict)


class JobQueue:
    """Submit, run, cancel and look up jobs; owns the store, the uploads and the workers."""

    def __init__(self, settings: Settings, *, engine_factory: EngineFactory | None = None,
                 cpu_workers: int | None = None, directory: Path | None = None) -> None:
        self.settings = settings
        # Absolute, so stored upload and output paths still hold if the server is started
        # again from another working directory with the same config.
        self.directory = (directory or settings.output.directory / QUEUE_DIRNAME).resolve()
        self.uploads = self.directory / "uploads"
        self.cpu_workers = cpu_workers or settings.server.workers
        self._engine_factory = engine_factory or create_engine
        self._queues = {lane: queue.Queue[str | None]() for lane in Lane}
        self._threads: list[threading.Thread] = []
        self._workers: list[tuple[Lane, str | None]] = []  # (lane, device) per worker thread
        self._gpus_counted = False
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._version = 0
        self._closing = False
        self._stopped = False
        self._durations: list[float] = []
        self._started_at = time.time()
        self._down: dict[str, str] = {}  # worker thread name -> why it died (until restarted)
        # Ends of jobs the database would not take (full, read-only): retried until it does.
        self._unwritten: dict[str, dict[str, Any]] = {}
        self._retrier: threading.Thread | None = None
        self.uploads.mkdir(parents=True, exist_ok=True)
        self._lockfile = _lock_directory(self.directory)
        try:
            self.store = JobStore(self.directory / "jobs.sqlite3")
        except sqlite3.Error as exc:
            _unlock(self._lockfile)
            raise InputError(f"cannot open the job database in {self.directory}: {exc}") from None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Recover after a crash, hand waiting jobs to the workers, start the workers."""
        requeued, failed = self.store.recover()
        for job_id in requeued:
            log.warning("job %s was running when the server stopped; re-queued", job_id)
        for job_id in failed:
            log.error("job %s was interrupted again; marked failed", job_id)
            self._drop_uploads(job_id)
        self._sweep_uploads()
        self._sweep_partials()
        # A run killed moments before this start may have left one too recent to judge now.
        sweep = threading.Timer(PARTIAL_GRACE_S, self._sweep_partials, args=(self._started_at,))
        sweep.daemon = True
        sweep.start()
        for lane in Lane:
            for job_id in self.store.ids(JobStatus.QUEUED, lane):
                self._queues[lane].put(job_id)
        configured = self.settings.models.devices
        # Without a configured list the GPUs are counted at the first diffusion job, which
        # imports torch anyway: a server that only runs camera jobs never loads it.
        self._gpus_counted = bool(configured)
        for device in configured or [None]:
            self._spawn(Lane.GPU, device)
        for _ in range(self.cpu_workers):
            self._spawn(Lane.CPU, None)
        log.info("job queue started in %s: %d waiting, %d camera worker(s), diffusion on %s",
                 self.directory, sum(q.qsize() for q in self._queues.values()),
                 self.cpu_workers, ", ".join(configured) if configured else
                 "every CUDA GPU (counted at the first diffusion job)")

    def close(self, *, interrupt: bool = False) -> None:
        """Stop taking jobs (the first step of a shutdown; safe to call from a signal
        handler). With `interrupt`, running jobs also stop at their next step and go back
        to the queue."""
        with self._changed:
            self._closing = True
            if interrupt:
                for job_id, running in self._running.items():
                    if running.reason is None:
                        log.info("stopping job %s for shutdown; it runs again after a "
                                 "restart", job_id)
                        running.reason = "shutdown"
                        running.token.cancel()
            self._version += 1
            self._changed.notify_all()

    @property
    def closing(self) -> bool:
        return self._closing

    def stop(self, grace: float = 0.0, join_timeout: float = 60.0) -> None:
        """Shut down: running jobs get `grace` seconds to finish, then stop at their next
        step and go back to the queue. Queued jobs stay queued for the next start.
        Calling it again does nothing."""
        if self._stopped:
            return
        self._stopped = True
        self.close()
        deadline = time.monotonic() + grace
        with self._changed:
            while self._running and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
        self.close(interrupt=True)
        with self._lock:  # no worker is added once closing is set
            workers = list(self._workers)
        for lane, _ in workers:
            self._queues[lane].put(None)
        end = time.monotonic() + join_timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
            if thread.is_alive():
                log.error("worker %s did not stop in time", thread.name)
        self._threads.clear()
        self.store.close()
        _unlock(self._lockfile)
        log.info("job queue stopped")

    # --- submitting and looking up --------------------------------------------------------

    def new_job_id(self) -> str:
        return uuid.uuid4().hex

    def upload_dir(self, job_id: str) -> Path:
        """Where a job's uploaded images live until it ends."""
        path = self.uploads / job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def discard_uploads(self, job_id: str) -> None:
        self._drop_uploads(job_id)

    def submit(self, request: GenerationRequest, *, job_id: str | None = None,
               input_names: Sequence[str] | None = None) -> Job:
        """Queue `request`; its images should already be in `upload_dir(job_id)`."""
        if self._closing:
            raise ShuttingDownError("the server is shutting down; submit again after restart")
        job_id = job_id or self.new_job_id()
        summary = request.summary()
        job = Job(id=job_id, seq=0, status=JobStatus.QUEUED, lane=lane_for(request),
                  request=summary, inputs=tuple(summary["images"]),
                  input_names=tuple(input_names or (Path(p).name for p in request.images)),
                  created=time.time())
        try:
            job = self.store.add(job, self.settings.server.queue_limit)
        except QueueFullError as exc:
            raise QueueFullError(str(exc), retry_after=self.retry_after()) from None
        self._queues[job.lane].put(job.id)
        self._notify()
        log.info("queued job %s (%s lane): %s", job.id, job.lane.value, summary)
        return self.get(job.id) or job

    def check_room(self) -> None:
        """Raise what `submit` would for a full or closing queue, before any upload is read."""
        if self._closing:
            raise ShuttingDownError("the server is shutting down; submit again after restart")
        waiting = self.store.waiting()
        if waiting >= self.settings.server.queue_limit:
            raise QueueFullError(f"the queue is full ({waiting} jobs waiting); try again later",
                                 retry_after=self.retry_after())

    def get(self, job_id: str) -> Job | None:
        job = self.store.get(job_id)
        if job is None or job.status is not JobStatus.RUNNING:
            return job
        with self._lock:
            if job_id in self._unwritten:
                return self._as_ended(job)
            running = self._running.get(job_id)
            if running is None:
                return job
            return replace(job, progress=running.progress or job.progress,
                           cancel_requested=running.reason is not None)

    def list(self, *, limit: int = 20, offset: int = 0, status: JobStatus | None = None,
             ) -> tuple[list[Job], int]:
        jobs, total = self.store.list(limit=limit, offset=offset, status=status)
        with self._lock:
            live = {k: (v.progress, v.reason) for k, v in self._running.items()}
            jobs = [self._as_ended(j) if j.id in self._unwritten else j for j in jobs]
        out = []
        for job in jobs:
            if job.id in live and job.status is JobStatus.RUNNING:
                progress, reason = live[job.id]
                job = replace(job, progress=progress or job.progress,
                              cancel_requested=reason is not None)
            out.append(job)
        return out, total

    def cancel(self, job_id: str) -> Job | None:
        """A queued job never runs; a running one stops at its next step. None if unknown."""
        with self._changed:
            if self.store.cancel_queued(job_id):
                log.info("cancelled queued job %s", job_id)
                self._version += 1
                self._changed.notify_all()
                cancelled_queued = True
            else:
                cancelled_queued = False
                running = self._running.get(job_id)
                if running is not None and running.reason is None:
                    log.info("cancelling running job %s", job_id)
                    running.reason = "user"
                    running.token.cancel()
        if cancelled_queued:
            self._drop_uploads(job_id)
        return self.get(job_id)

    def wait(self, job_id: str, timeout: float) -> Job | None:
        """Block until the job ends (or `timeout` passes); returns its latest state."""
        deadline = time.monotonic() + timeout
        version = -1
        while True:
            job = self.get(job_id)
            remaining = deadline - time.monotonic()
            if job is None or job.status.terminal or remaining <= 0:
                return job
            version = self.wait_for_change(version, remaining)

    def wait_for_change(self, version: int, timeout: float) -> int:
        """Block until something changes after `version` (a job's status or progress) or
        `timeout` passes; returns the current version. Used by the UI to stream progress."""
        with self._changed:
            if self._version == version:
                self._changed.wait(timeout)
            return self._version

    def counts(self) -> dict[str, int]:
        return self.store.counts()

    def workers(self) -> dict[str, Any]:
        """How many camera jobs run at once, and the devices diffusion jobs run on ("auto":
        GPUs not counted yet, or one worker that lets the engine choose)."""
        with self._lock:
            workers = list(self._workers)
        return {"camera": sum(lane is Lane.CPU for lane, _ in workers),
                "diffusion": [device or "auto" for lane, device in workers if lane is Lane.GPU]}

    def problems(self) -> list[str]:
        """What keeps the queue from working as it should right now (for /healthz)."""
        with self._lock:
            down = dict(self._down)
            unwritten = len(self._unwritten)
        found = [f"worker {name} stopped ({why}); restarting it" for name, why in down.items()]
        if unwritten:
            found.append(f"{unwritten} finished job(s) not yet recorded: the job database "
                         "does not accept writes (disk full or read-only?)")
        return found

    def retry_after(self) -> int:
        """Seconds a client refused with 429 should wait: about one job's run time."""
        with self._lock:
            recent = self._durations[-20:]
        typical = sum(recent) / len(recent) if recent else 5.0
        return max(1, min(300, round(typical)))

    # --- workers --------------------------------------------------------------------------

    def _spawn(self, lane: Lane, device: str | None) -> None:
        with self._lock:
            if self._closing:
                return
            thread = threading.Thread(target=self._supervise, args=(lane, device), daemon=True,
                                      name=f"img2vid-{lane.value}-{device or len(self._threads)}")
            self._workers.append((lane, device))
            self._threads.append(thread)
        thread.start()

    def _count_gpus(self) -> str | None:
        """Run by the only GPU worker at its first job: one more worker for each further GPU;
        this worker takes the first."""
        self._gpus_counted = True
        devices = worker_devices([])
        with self._lock:  # this worker's entry, for workers(): it now runs on the first one
            self._workers[self._workers.index((Lane.GPU, None))] = (Lane.GPU, devices[0])
        for device in devices[1:]:
            self._spawn(Lane.GPU, device)
        if len(devices) > 1:
            log.info("diffusion jobs run on %s, one at a time each", ", ".join(map(str, devices)))
        return devices[0]

    def _supervise(self, lane: Lane, device: str | None) -> None:
        """Run a worker; if it dies (a bug, an unexpected error), say so in problems() and
        start it again after a pause that grows while it keeps dying."""
        name = threading.current_thread().name
        pause = RESTART_PAUSE_S
        while True:
            holding: list[str] = []
            try:
                self._work(lane, device, holding)
                return  # stopped
            except Exception as exc:
                log.exception("worker %s died; restarting it in %.1f s", name, pause)
                with self._changed:
                    self._down[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
                    self._version += 1
                    self._changed.notify_all()
            for job_id in holding:  # taken off the lane but never started: put it back
                job = self.store.get(job_id)
                if job is not None and job.status is JobStatus.QUEUED:
                    self._queues[lane].put(job_id)
            time.sleep(pause)
            pause = min(pause * 2, MAX_RESTART_PAUSE_S)
            with self._changed:
                self._down.pop(name, None)
                self._version += 1
                self._changed.notify_all()
                if self._closing:
                    return

    def _work(self, lane: Lane, device: str | None, holding: list[str]) -> None:
        engines: dict[str, Engine] = {}  # one per engine name, reused (model caches)
        while True:
            holding.clear()
            job_id = self._queues[lane].get()  # blocks until a job or the stop sentinel
            if job_id is None:
                return
            holding.append(job_id)
            if lane is Lane.GPU and not self._gpus_counted:
                device = self._count_gpus()
            with self._changed:  # close() sets _closing under this lock: no claim after it
                if self._closing:
                    return  # a queued job stays queued in the database for the next start
                try:
                    job = self.store.claim(job_id)
                except sqlite3.Error:
                    log.exception("job %s: the job database cannot be written; the job stays "
                                  "queued for the next start", job_id)
                    continue
                if job is None:
                    continue  # cancelled while it waited
                self._running[job_id] = _Running()
                self._version += 1
                self._changed.notify_all()
            try:
                self._run(job, engines, device)
            except Exception:  # a bug in the runner, or a database error: the worker goes on
                log.exception("job %s: unexpected failure in the worker", job_id)
                self._record_end(job_id, status=JobStatus.FAILED,
                                 error="internal error; see the log")
            finally:
                with self._changed:
                    self._running.pop(job_id, None)
                    self._version += 1
                    self._changed.notify_all()

    def _run(self, job: Job, engines: dict[str, Engine], device: str | None) -> None:
        from img2vid.pipeline import generate

        running = self._running[job.id]
        t0 = time.monotonic()
        log.info("job %s: started (attempt %d)", job.id, job.attempts)
        status, error, result = JobStatus.FAILED, None, None
        try:
            request = GenerationRequest.model_validate(job.request)
            name = request.engine.value if request.engine else EngineName.CAMERA.value
            if name not in engines:
                engines[name] = self._engine_factory(name, self.settings, device)
            result = generate(request, self.settings, engine=engines[name],
                              progress=lambda event: self._on_progress(running, event),
                              cancel=running.token, input_names=job.input_names)
            status = JobStatus.SUCCEEDED
        except CancelledError:
            if running.reason == "shutdown":
                self.store.requeue(job.id, count_attempt=False)
                log.info("job %s: stopped for shutdown and re-queued", job.id)
                return
            status, error = JobStatus.CANCELLED, "cancelled while running"
        except Img2VidError as exc:  # InputError, OutOfMemoryError, ModelNotAvailableError...
            error = str(exc)
        except MemoryError:
            error = "out of memory; try a smaller resolution or fewer frames"
        except ImportError as exc:
            error = (f"the {job.request.get('engine')} engine cannot be loaded ({exc}); "
                     "run `img2vid doctor` to see what is missing")
        except Exception as exc:
            log.exception("job %s failed", job.id)
            error = f"internal error: {type(exc).__name__}: {exc}"
        self._record_end(job.id, status=status, error=error,
                         output=str(result.output.resolve()) if result else None,
                         sidecar=result.metadata if result else None,
                         progress=running.progress)
        elapsed = time.monotonic() - t0
        with self._lock:
            self._durations.append(elapsed)
            del self._durations[:-100]
        log.info("job %s: %s in %.2f s%s", job.id, status.value, elapsed,
                 f" ({error})" if error else "")

    def _as_ended(self, job: Job) -> Job:
        """A job whose end is known but not yet in the database, as it will be (under the
        lock)."""
        end = self._unwritten[job.id]
        return replace(job, status=end["status"], error=end.get("error"),
                       output=end.get("output"), sidecar=end.get("sidecar"),
                       progress=end.get("progress") or job.progress, finished=time.time())

    def _record_end(self, job_id: str, **end: Any) -> None:
        """Write how a job ended; if the database will not take it, keep it and retry until
        it does, so the job does not stay "running" until a restart."""
        try:
            self.store.finish(job_id, **end)
        except sqlite3.Error as exc:
            log.error("job %s: its end cannot be written (%s); retrying every %.0f s",
                      job_id, exc, RETRY_WRITE_S)
            with self._changed:
                self._unwritten[job_id] = end
                self._version += 1
                self._changed.notify_all()
                if self._retrier is None or not self._retrier.is_alive():
                    self._retrier = threading.Thread(target=self._retry_unwritten,
                                                     name="img2vid-retry", daemon=True)
                    self._retrier.start()
            return
        self._drop_uploads(job_id)

    def _retry_unwritten(self) -> None:
        while not self._stopped:
            time.sleep(RETRY_WRITE_S)
            with self._lock:
                pending = dict(self._unwritten)
            if not pending:
                return
            for job_id, end in pending.items():
                try:
                    self.store.finish(job_id, **end)
                except sqlite3.Error:
                    break  # still refused; the next round tries again
                log.info("job %s: its end is recorded now", job_id)
                self._drop_uploads(job_id)
                with self._changed:
                    self._unwritten.pop(job_id, None)
                    self._version += 1
                    self._changed.notify_all()

    def _sweep_partials(self, older_than: float | None = None) -> None:
        cutoff = (self._started_at - PARTIAL_GRACE_S) if older_than is None else older_than
        for path in outputs.remove_stale_partials(self.settings.output.directory, cutoff):
            log.warning("removed %s, left by a run that stopped mid-encode", path.name)

    def _on_progress(self, running: _Running, event: Progress) -> None:
        now = time.monotonic()
        first_time, first_done = running.stages.setdefault(event.stage, (now, event.done))
        eta = None
        if event.total and event.done > first_done:
            rate = (now - first_time) / (event.done - first_done)
            eta = round(rate * max(0, event.total - event.done), 1)
        progress = JobProgress(event.stage, event.done, event.total, event.fraction, eta)
        # Live progress stays in memory (a restart starts the job over anyway); the database
        # gets the last one when the job ends, so each job costs three synced commits.
        with self._changed:
            running.progress = progress
            self._version += 1
            self._changed.notify_all()

    # --- housekeeping ---------------------------------------------------------------------

    def _notify(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def _drop_uploads(self, job_id: str) -> None:
        shutil.rmtree(self.uploads / job_id, ignore_errors=True)

    def _sweep_uploads(self) -> None:
        """Remove upload folders whose job has ended or never made it into the database."""
        keep = set(self.store.ids(JobStatus.QUEUED))
        for folder in self.uploads.iterdir():
            if folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)


def _lock_directory(directory: Path) -> Any:
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


def _unlock(handle: Any) -> None:
    if handle is not None:
        handle.close()
