"""Keeping the job queue going through faults: workers that die are started again, job ends
the database refused (full, read-only) are kept and written as soon as it takes them, and
partial outputs of a killed run are removed at start-up."""

from __future__ import annotations

import logging
import queue
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from img2vid.execution.jobstore import Job, JobStatus, JobStore
from img2vid.media import outputs

log = logging.getLogger(__name__)

RESTART_PAUSE_S = 1.0  # before a dead worker is started again; doubles while it keeps dying
MAX_RESTART_PAUSE_S = 30.0
RETRY_WRITE_S = 2.0  # between tries to record job ends the database refused
# Partial outputs older than the start by this much are left over from a killed run; newer
# ones may be another process's still being written (checked again once this has passed).
PARTIAL_GRACE_S = 60.0


def remove_orphan_uploads(uploads: Path, keep: set[str]) -> None:
    """Remove upload folders whose job has ended or never made it into the database."""
    for folder in uploads.iterdir():
        if folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)


def remove_partials(directory: Path, started_at: float) -> threading.Timer:
    """At start-up: remove the partial outputs a run killed mid-encode left behind, now those
    clearly older than this start, and once the grace has passed, the rest of them (the
    returned timer; cancel it when the queue stops first)."""

    def sweep(older_than: float) -> None:
        for path in outputs.remove_stale_partials(directory, older_than):
            log.warning("removed %s, left by a run that stopped mid-encode", path.name)

    sweep(started_at - PARTIAL_GRACE_S)
    later = threading.Timer(PARTIAL_GRACE_S, sweep, (started_at,))
    later.daemon = True
    later.start()
    return later


class Workers:
    """Worker threads that are started again when they die; which are down, and why."""

    def __init__(self, store: JobStore, notify: Callable[[], None], *,
                 closing: Callable[[], bool]) -> None:
        self.store = store
        self.notify = notify
        self.closing = closing
        self.down: dict[str, str] = {}
        self._lock = threading.Lock()

    def thread(self, work: Callable[[list[str]], None], lane: queue.Queue[str | None], *,
               name: str) -> threading.Thread:
        """A daemon thread that runs `work` under supervise()."""
        return threading.Thread(target=self.supervise, args=(work, lane), name=name,
                                daemon=True)

    def supervise(self, work: Callable[[list[str]], None],
                  lane: queue.Queue[str | None]) -> None:
        """Run `work(holding)` in this thread; if it dies, report it, put the job it was
        holding (taken off its lane, never started) back on `lane`, pause, run it again."""
        name = threading.current_thread().name
        pause = RESTART_PAUSE_S
        while True:
            holding: list[str] = []
            try:
                work(holding)
                return  # stopped
            except Exception as exc:
                log.exception("worker %s died; restarting it in %.1f s", name, pause)
                with self._lock:
                    self.down[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
                self.notify()
            for job_id in holding:
                job = self.store.get(job_id)
                if job is not None and job.status is JobStatus.QUEUED:
                    lane.put(job_id)
            time.sleep(pause)
            pause = min(pause * 2, MAX_RESTART_PAUSE_S)
            with self._lock:
                self.down.pop(name, None)
            self.notify()
            if self.closing():
                return

    def problems(self) -> list[str]:
        with self._lock:
            return [f"worker {name} stopped ({why}); restarting it"
                    for name, why in self.down.items()]


class PendingEnds:
    """Job ends not yet in the database: kept in memory (clients see them) and retried."""

    def __init__(self, store: JobStore, written: Callable[[str], None],
                 notify: Callable[[], None]) -> None:
        self.store = store
        self.written = written  # called once a job's end is in the database
        self.notify = notify
        self._ends: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._retrier: threading.Thread | None = None
        self._stopped = threading.Event()

    def record(self, job_id: str, **end: Any) -> None:
        """Write how a job ended, or keep it for later if the database will not take it, so
        the job does not stay "running" until a restart."""
        try:
            self.store.finish(job_id, **end)
        except sqlite3.Error as exc:
            log.error("job %s: its end cannot be written (%s); retrying every %.0f s",
                      job_id, exc, RETRY_WRITE_S)
            with self._lock:
                self._ends[job_id] = end
                if self._retrier is None or not self._retrier.is_alive():
                    self._retrier = threading.Thread(target=self._retry, daemon=True,
                                                     name="img2vid-retry-writes")
                    self._retrier.start()
            self.notify()
            return
        self.written(job_id)

    def overlay(self, job: Job | None) -> Job | None:
        """`job` as it will be stored, if its end is still pending."""
        if job is None:
            return None
        with self._lock:
            end = self._ends.get(job.id)
        if end is None:
            return job
        return replace(job, status=end["status"], error=end.get("error"),
                       output=end.get("output"), sidecar=end.get("sidecar"),
                       progress=end.get("progress") or job.progress,
                       finished=job.finished or time.time())

    def problems(self) -> list[str]:
        with self._lock:
            count = len(self._ends)
        return [f"{count} finished job(s) not yet recorded: the job database does not accept "
                "writes (disk full or read-only?)"] if count else []

    def stop(self) -> None:
        self._stopped.set()

    def _retry(self) -> None:
        while not self._stopped.wait(RETRY_WRITE_S):
            with self._lock:
                pending = dict(self._ends)
            if not pending:
                return
            for job_id, end in pending.items():
                try:
                    self.store.finish(job_id, **end)
                except sqlite3.Error:
                    break  # still refused; the next round tries again
                log.info("job %s: its end is recorded now", job_id)
                with self._lock:
                    self._ends.pop(job_id, None)
                self.written(job_id)
                self.notify()
