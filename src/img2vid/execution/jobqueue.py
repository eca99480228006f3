"""Persistent job queue: a SQLite store (jobstore.py) beside the outputs, worker threads per lane.

Diffusion jobs wait in one "gpu" lane served by one worker per GPU, so each GPU runs one job at
a time (two generations on one GPU run out of memory); camera jobs run on a "cpu" lane with N
workers. Queued jobs run again after a restart. Workers block on a `queue.Queue`; nothing polls.
"""

from __future__ import annotations

import logging
import queue
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from img2vid.core.config import Settings
from img2vid.core.errors import InputError
from img2vid.core.progress import Progress
from img2vid.core.request import GenerationRequest
from img2vid.engines.base import EngineFactory, create_engine
from img2vid.execution import upkeep
from img2vid.execution.failures import describe_failure
from img2vid.execution.jobstore import (
    Job,
    JobStatus,
    JobStore,
    QueueFullError,
    RunningJob,
    ShuttingDownError,
    lock_directory,
    unlock,
)
from img2vid.execution.lanes import GpuCounter, Lane, count_cuda_gpus, lane_for, worker_devices
from img2vid.execution.pool import QUEUE_LOAD_RETRY_S, EnginePool
from img2vid.execution.previews import PreviewStore
from img2vid.execution.run import Outcome, run_request

log = logging.getLogger(__name__)

QUEUE_DIRNAME = ".img2vid-queue"  # inside the output folder; never served


class JobQueue:
    """Submit, run, cancel and look up jobs; owns the store, the uploads and the workers."""

    def __init__(self, settings: Settings, *, engine_factory: EngineFactory | None = None,
                 cpu_workers: int | None = None, directory: Path | None = None,
                 count_gpus: GpuCounter = count_cuda_gpus) -> None:
        self.settings = settings
        # Absolute, so stored upload and output paths still hold if the server is started
        # again from another working directory with the same config.
        self.directory = (directory or settings.output.directory / QUEUE_DIRNAME).resolve()
        self.uploads = self.directory / "uploads"
        self.previews = PreviewStore(self.directory / "previews")
        self.cpu_workers = cpu_workers or settings.server.workers
        self._engine_factory = engine_factory or create_engine
        self._count_gpus_with = count_gpus
        self._queues = {lane: queue.Queue[str | None]() for lane in Lane}
        self._threads: list[threading.Thread] = []
        self._workers: list[tuple[Lane, str | None]] = []  # (lane, device) per worker thread
        self._gpus_counted = False
        self._running: dict[str, RunningJob] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._version = 0
        self._closing = self._stopped = False
        self._sweep = threading.Timer(0, lambda: None)  # start() sets the real one; stop() cancels
        self._durations: list[float] = []
        self.uploads.mkdir(parents=True, exist_ok=True)
        self._lockfile = lock_directory(self.directory)
        try:
            self.store = JobStore(self.directory / "jobs.sqlite3")
        except sqlite3.Error as exc:
            unlock(self._lockfile)
            raise InputError(f"cannot open the job database in {self.directory}: {exc}") from None
        self._health = upkeep.Workers(self.store, self._notify, closing=lambda: self._closing)
        self._ends = upkeep.PendingEnds(self.store, self.discard_uploads, self._notify)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Recover after a crash, hand waiting jobs to the workers, start the workers."""
        requeued, failed = self.store.recover()
        for job_id in requeued:
            log.warning("job %s was running when the server stopped; re-queued", job_id)
        for job_id in failed:
            log.error("job %s was interrupted again; marked failed", job_id)
            self.discard_uploads(job_id)
        upkeep.remove_orphan_uploads(self.uploads, keep=set(self.store.ids(JobStatus.QUEUED)))
        self._sweep = upkeep.remove_partials(self.settings.output.directory, time.time())
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
        self._sweep.cancel()
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
        self._ends.stop()
        self.store.close()
        unlock(self._lockfile)
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
        shutil.rmtree(self.uploads / job_id, ignore_errors=True)

    def submit(self, request: GenerationRequest, *, job_id: str | None = None,
               input_names: Sequence[str] | None = None) -> Job:
        """Queue `request`; its images should already be in `upload_dir(job_id)`."""
        if self._closing:
            raise ShuttingDownError("the server is shutting down; submit again after restart")
        job_id = job_id or self.new_job_id()
        summary = request.summary()
        job = Job(id=job_id, seq=0, status=JobStatus.QUEUED, lane=lane_for(request.engine.value),
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
        job = self._ends.overlay(self.store.get(job_id))  # an end not yet in the database
        if job is None or job.status is not JobStatus.RUNNING:
            return job
        with self._lock:
            running = self._running.get(job_id)
            if running is None:
                return job
            return replace(job, progress=running.progress or job.progress,
                           cancel_requested=running.reason is not None)

    def list(self, *, limit: int = 20, offset: int = 0, status: JobStatus | None = None,
             ) -> tuple[list[Job], int]:
        jobs, total = self.store.list(limit=limit, offset=offset, status=status)
        jobs = [self._ends.overlay(job) or job for job in jobs]
        with self._lock:
            live = {k: (v.progress, v.reason) for k, v in self._running.items()}
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
            self.discard_uploads(job_id)
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
        return self._health.problems() + self._ends.problems()

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
            thread = self._health.thread(  # restarted if it dies
                lambda holding: self._work(lane, device, holding), self._queues[lane],
                name=f"img2vid-{lane.value}-{device or len(self._threads)}")
            self._workers.append((lane, device))
            self._threads.append(thread)
        thread.start()

    def _count_gpus(self) -> str | None:
        """Run by the only GPU worker at its first job: one more worker for each further GPU;
        this worker takes the first."""
        self._gpus_counted = True
        devices = worker_devices([], self._count_gpus_with)
        with self._lock:  # this worker's entry, for workers(): it now runs on the first one
            self._workers[self._workers.index((Lane.GPU, None))] = (Lane.GPU, devices[0])
        for device in devices[1:]:
            self._spawn(Lane.GPU, device)
        if len(devices) > 1:
            log.info("diffusion jobs run on %s, one at a time each", ", ".join(map(str, devices)))
        return devices[0]

    def _work(self, lane: Lane, device: str | None, holding: list[str]) -> None:
        engines: EnginePool | None = None  # this worker's engines, on its device
        while True:
            holding.clear()
            job_id = self._queues[lane].get()  # blocks until a job or the stop sentinel
            if job_id is None:
                return
            holding.append(job_id)
            if lane is Lane.GPU and not self._gpus_counted:
                device = self._count_gpus()
            if engines is None or engines.device != device:
                engines = EnginePool(self.settings, self._engine_factory, device,
                                     retry_after_s=QUEUE_LOAD_RETRY_S)
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
                self._running[job_id] = RunningJob()
                self._version += 1
                self._changed.notify_all()
            try:
                self._run(job, engines)
            except Exception:  # a bug in the runner, or a database error: the worker goes on
                log.exception("job %s: unexpected failure in the worker", job_id)
                self._ends.record(job_id, status=JobStatus.FAILED,
                                  error="internal error; see the log")
            finally:
                with self._changed:
                    self._running.pop(job_id, None)
                    self._version += 1
                    self._changed.notify_all()

    def _run(self, job: Job, engines: EnginePool) -> None:
        running = self._running[job.id]
        log.info("job %s: started (attempt %d)", job.id, job.attempts)
        try:
            request = GenerationRequest.model_validate(job.request)
        except ValueError as exc:  # a row written by another version
            outcome = Outcome(None, describe_failure(exc), 0.0)
        else:
            outcome = run_request(request, self.settings, engines, label=f"job {job.id}",
                                  progress=self.previews.recording(job.id, self._on_progress,
                                                                   running),
                                  cancel=running.token, input_names=job.input_names)
        result, error = outcome.result, outcome.failure and outcome.failure.message
        status = JobStatus.SUCCEEDED if result else JobStatus.FAILED
        if outcome.cancelled:
            if running.reason == "shutdown":
                self.store.requeue(job.id, count_attempt=False)
                log.info("job %s: stopped for shutdown and re-queued", job.id)
                return
            status, error = JobStatus.CANCELLED, "cancelled while running"
        self._ends.record(job.id, status=status, error=error,
                          output=str(result.output.resolve()) if result else None,
                          sidecar=result.metadata if result else None,
                          progress=running.progress)
        with self._lock:
            self._durations.append(outcome.seconds)
            del self._durations[:-100]
        log.info("job %s: %s in %.2f s%s", job.id, status.value, outcome.seconds,
                 f" ({error})" if error else "")

    def _on_progress(self, running: RunningJob, event: Progress) -> None:
        progress = running.progress_at(event)
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
