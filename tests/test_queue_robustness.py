"""The queue's last failure modes: a damaged row, a worker that dies, a database that will not
take a job's end, partial outputs left by a killed run. Each ends with /healthz telling the
truth and the next job running."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from img2vid.execution.jobqueue import JobQueue
from img2vid.execution.jobstore import JobStatus
from img2vid.interfaces.server.api import health
from tests.fakes import FakeEngine
from tests.live_server import live_server, make_settings
from tests.test_jobs import queue_request


def healthz(queue: JobQueue) -> tuple[int, dict]:  # type: ignore[type-arg]
    response = health(queue)
    return response.status_code, json.loads(bytes(response.body))


def wait_until(check, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_damaged_row_fails_that_job_and_the_next_one_runs(tmp_path: Path) -> None:
    queue = JobQueue(make_settings(tmp_path), engine_factory=lambda name, *_: FakeEngine(),
                     cpu_workers=1)
    bad, good = queue_request(queue), queue_request(queue)
    # edited by hand, or written by a bug: what once took the only worker down
    with sqlite3.connect(queue.store.path) as db:
        db.execute("UPDATE jobs SET request = '{not json' WHERE id = ?", (bad.id,))
    queue.start()
    try:
        done = queue.wait(good.id, timeout=30)
        failed = queue.get(bad.id)
        listed, total = queue.list(limit=10)
        status, body = healthz(queue)
        assert status == 200 and body["status"] == "ok" and body["problems"] == []
    finally:
        queue.stop()
    assert done is not None and done.status is JobStatus.SUCCEEDED
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error.startswith("this job's record in the queue database is damaged")
    assert total == 2 and {j.id for j in listed} == {bad.id, good.id}


def test_a_damaged_row_does_not_break_the_list_page(tmp_path: Path) -> None:
    engine = FakeEngine()
    with live_server(make_settings(tmp_path), lambda name, *_: engine) as live, \
            live.client() as client:
        job = queue_request(live.queue)
        live.queue.wait(job.id, timeout=30)
        with sqlite3.connect(live.queue.store.path) as db:
            db.execute("UPDATE jobs SET input_names = 'x', lane = 'nowhere' WHERE id = ?",
                       (job.id,))
        r = client.get("/api/v1/jobs")
        assert r.status_code == 200, r.text
        assert r.json()["jobs"][0]["status"] == "failed"
        assert "damaged" in r.json()["jobs"][0]["error"]
        assert client.get(f"/api/v1/jobs/{job.id}").json()["status"] == "failed"


def test_a_dead_worker_is_restarted_and_health_says_degraded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = JobQueue(make_settings(tmp_path), engine_factory=lambda name, *_: FakeEngine(),
                     cpu_workers=1)
    claim, broken = queue.store.claim, threading.Event()
    broken.set()

    def buggy_claim(job_id: str):  # type: ignore[no-untyped-def]
        if broken.is_set():  # a bug outside the job's own try: it ends the worker's loop
            raise RuntimeError("a bug in the worker")
        return claim(job_id)

    monkeypatch.setattr(queue.store, "claim", buggy_claim)
    queue.start()
    try:
        job = queue_request(queue)
        wait_until(lambda: queue.problems())
        status, body = healthz(queue)
        assert status == 503 and body["status"] == "degraded"
        assert "RuntimeError: a bug in the worker" in body["problems"][0]
        broken.clear()
        done = queue.wait(job.id, timeout=30)  # the restarted worker takes the job back up
        assert done is not None and done.status is JobStatus.SUCCEEDED
        assert healthz(queue)[0] == 200 and queue.problems() == []
    finally:
        queue.stop()


def test_a_job_end_the_database_refused_is_written_once_it_can_be(tmp_path: Path) -> None:
    engine = FakeEngine(delay=0.1)
    queue = JobQueue(make_settings(tmp_path), engine_factory=lambda name, *_: engine,
                     cpu_workers=1)
    queue.start()
    try:
        job = queue_request(queue, num_frames=8)
        assert engine.started.wait(10)
        with queue.store._lock:  # the database now refuses every write (as when read-only)
            queue.store._db.execute("PRAGMA query_only = ON")
        wait_until(lambda: queue.problems())
        status, body = healthz(queue)
        assert status == 503 and "not yet recorded" in body["problems"][0]
        shown = queue.get(job.id)  # clients already see how it ended
        assert shown is not None and shown.status is JobStatus.SUCCEEDED
        with queue.store._lock:
            queue.store._db.execute("PRAGMA query_only = OFF")
        wait_until(lambda: not queue.problems())
        with sqlite3.connect(queue.store.path) as db:
            (stored,) = db.execute("SELECT status FROM jobs WHERE id = ?",
                                   (job.id,)).fetchone()
        assert stored == "succeeded"
        assert healthz(queue)[0] == 200
    finally:
        queue.stop()


def test_start_removes_partial_outputs_of_a_killed_run(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    out = settings.output.directory
    out.mkdir(parents=True)
    stale, fresh = out / ".img2vid-partial-1.mp4", out / ".img2vid-partial-2.mp4"
    stale.write_bytes(b"half a video")
    fresh.write_bytes(b"another process is writing this")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    queue = JobQueue(settings, engine_factory=lambda name, *_: FakeEngine())
    queue.start()
    queue.stop()
    assert not stale.exists() and fresh.exists()
