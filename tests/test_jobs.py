"""The job queue on its own: lanes, crash recovery (a real process dying mid-job), failures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from img2vid.core.config import ModelSettings, Settings
from img2vid.core.errors import InputError
from img2vid.core.request import build_request
from img2vid.execution.jobqueue import QUEUE_DIRNAME, JobQueue
from img2vid.execution.jobstore import JobStatus
from tests.fakes import FakeEngine, FakeGpus, Overlap
from tests.live_server import PHOTO, make_settings

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = Path(__file__).resolve().parents[1]


def queue_request(queue: JobQueue, **fields: object):  # type: ignore[no-untyped-def]
    """Submit like the server does: the photo copied into the job's upload folder."""
    job_id = queue.new_job_id()
    image = queue.upload_dir(job_id) / "000.png"
    shutil.copyfile(PHOTO, image)
    fields = {"resolution": 256, "num_frames": 4, "fps": 4, "encode_speed": "ultrafast",
              **fields}
    return queue.submit(build_request(images=(str(image),), **fields), job_id=job_id)


class CountingEngine(FakeEngine):
    """A slow FakeEngine whose generations are counted in `overlap` under `engine_name`."""

    def __init__(self, name: str, overlap: Overlap, device: str | None = None) -> None:
        super().__init__(device=device, delay=0.05)
        self.engine_name, self.overlap = name, overlap

    def generate(self, request, images, progress, cancel):  # type: ignore[no-untyped-def]
        return self.overlap.track(self.engine_name,
                                  super().generate(request, images, progress, cancel))


def test_diffusion_jobs_run_one_at_a_time_camera_jobs_in_parallel(tmp_path: Path) -> None:
    overlap = Overlap()
    engines = {name: CountingEngine(name, overlap) for name in ("camera", "diffusion")}
    queue = JobQueue(make_settings(tmp_path), engine_factory=lambda name, *_: engines[name],
                     cpu_workers=3)
    queue.start()
    try:
        jobs = [queue_request(queue, engine=engine, num_frames=12)
                for engine in ["diffusion", "camera"] * 3]
        done = [queue.wait(job.id, timeout=60) for job in jobs]
    finally:
        queue.stop()
    assert [j.status for j in done if j] == [JobStatus.SUCCEEDED] * 6
    assert {j.lane.value for j in done if j} == {"gpu", "cpu"}
    assert overlap.peak == {"diffusion": 1, "camera": 3}


def test_each_configured_gpu_runs_one_diffusion_job_at_a_time(tmp_path: Path) -> None:
    overlap = Overlap()
    made: list[tuple[str, str | None]] = []
    ran_on: dict[str, str | None] = {}  # prompt -> device

    class OnDevice(CountingEngine):
        def generate(self, request, images, progress, cancel):  # type: ignore[no-untyped-def]
            ran_on[request.prompt] = self.device
            return super().generate(request, images, progress, cancel)

    def factory(name: str, settings: Settings, device: str | None = None) -> FakeEngine:
        made.append((name, device))
        return OnDevice(name, overlap, device)

    settings = make_settings(tmp_path).model_copy(
        update={"models": ModelSettings(devices=["cuda:0", "cuda:1"])})
    queue = JobQueue(settings, engine_factory=factory, cpu_workers=1)
    queue.start()
    try:
        jobs = [queue_request(queue, engine="diffusion", num_frames=12, prompt=f"job {i}")
                for i in range(6)]
        jobs.append(queue_request(queue, prompt="camera"))
        done = [queue.wait(job.id, timeout=60) for job in jobs]
    finally:
        queue.stop()
    assert [j.status for j in done if j] == [JobStatus.SUCCEEDED] * 7
    # one engine per GPU worker (each keeps its model loaded), one per CPU worker
    assert sorted(made) == [("camera", None), ("diffusion", "cuda:0"), ("diffusion", "cuda:1")]
    assert overlap.peak["diffusion"] == 2  # both GPUs busy at once, never two jobs on one
    assert {ran_on[f"job {i}"] for i in range(6)} == {"cuda:0", "cuda:1"}
    assert ran_on["camera"] is None


def test_gpus_are_counted_at_the_first_diffusion_job(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = FakeGpus(2)
    overlap = Overlap()
    made: list[tuple[str, str | None]] = []

    def factory(name: str, settings: Settings, device: str | None = None) -> FakeEngine:
        made.append((name, device))
        return CountingEngine(name, overlap, device)

    queue = JobQueue(make_settings(tmp_path), engine_factory=factory, cpu_workers=1,
                     count_gpus=gpus)
    queue.start()
    try:
        camera = queue.wait(queue_request(queue).id, timeout=30)
        assert camera is not None and camera.status is JobStatus.SUCCEEDED
        assert gpus.calls == 0  # a camera job needs no torch, so nothing counted the GPUs yet
        diffusion = [queue_request(queue, engine="diffusion", num_frames=12) for _ in range(4)]
        done = [queue.wait(job.id, timeout=60) for job in diffusion]
    finally:
        queue.stop()
    assert [j.status for j in done if j] == [JobStatus.SUCCEEDED] * 4
    assert gpus.calls == 1  # once, by the first diffusion job
    assert queue.workers() == {"camera": 1, "diffusion": ["cuda:0", "cuda:1"]}
    assert sorted(made) == [("camera", None), ("diffusion", "cuda:0"), ("diffusion", "cuda:1")]
    assert overlap.peak["diffusion"] == 2


def test_a_broken_torch_while_counting_gpus_does_not_stop_the_gpu_lane(tmp_path: Path) -> None:
    # an installed torch whose CUDA setup fails when asked how many GPUs there are
    broken = FakeGpus(error=RuntimeError("CUDA driver initialization failed"))
    queue = JobQueue(make_settings(tmp_path), engine_factory=lambda name, *_: FakeEngine(),
                     count_gpus=broken)
    queue.start()
    try:
        first, second = (queue_request(queue, engine="diffusion") for _ in range(2))
        done = [queue.wait(first.id, timeout=30), queue.wait(second.id, timeout=30)]
    finally:
        queue.stop()
    assert [j.status for j in done if j] == [JobStatus.SUCCEEDED] * 2


def test_a_database_error_fails_one_job_not_the_worker(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    queue = JobQueue(make_settings(tmp_path), engine_factory=lambda name, *_: FakeEngine(),
                     cpu_workers=1)
    finish, failures = queue.store.finish, []

    def disk_full_for_the_first(job_id, status, **kwargs):  # type: ignore[no-untyped-def]
        if not failures or failures[0] == job_id:
            failures.append(job_id)
            raise sqlite3.OperationalError("database or disk is full")
        return finish(job_id, status, **kwargs)

    monkeypatch.setattr(queue.store, "finish", disk_full_for_the_first)
    queue.start()
    try:
        first, second = queue_request(queue), queue_request(queue)
        done = queue.wait(second.id, timeout=30)
        first_now = queue.get(first.id)
    finally:
        queue.stop()
    assert failures == [first.id, first.id]  # its result, then its failure: neither stored
    # still "running" on disk, so the next start re-queues it; the worker ran the next job
    assert first_now is not None and first_now.status is JobStatus.RUNNING
    assert done is not None and done.status is JobStatus.SUCCEEDED


def test_progress_has_step_fraction_and_eta(tmp_path: Path) -> None:
    engine = FakeEngine(delay=0.05)
    queue = JobQueue(make_settings(tmp_path), engine_factory=lambda name, *_: engine)
    queue.start()
    try:
        job = queue_request(queue, num_frames=30)
        assert engine.started.wait(10)
        seen = None
        version = -1
        deadline = time.monotonic() + 60
        while seen is None or seen.step < 10:
            assert time.monotonic() < deadline, f"progress stuck at {seen}"
            version = queue.wait_for_change(version, timeout=5)
            current = queue.get(job.id)
            assert current is not None
            seen = current.progress or seen
        assert seen.total == 30 and 0 < seen.fraction < 1
        assert seen.eta_s is not None and 0 < seen.eta_s < 10
        finished = queue.wait(job.id, timeout=30)
    finally:
        queue.stop()
    assert finished is not None and finished.progress is not None
    assert finished.progress.fraction == 1.0


def test_an_unexpected_engine_error_fails_the_job_not_the_worker(tmp_path: Path) -> None:
    class Broken(FakeEngine):
        def generate(self, request, images, progress, cancel):  # type: ignore[no-untyped-def]
            if request.prompt == "bug":
                raise RuntimeError("index out of range")
            return super().generate(request, images, progress, cancel)

    engine = Broken()
    queue = JobQueue(make_settings(tmp_path), engine_factory=lambda name, *_: engine, cpu_workers=1)
    queue.start()
    try:
        bad = queue_request(queue, prompt="bug")
        good = queue_request(queue)
        bad_done, good_done = queue.wait(bad.id, 30), queue.wait(good.id, 30)
    finally:
        queue.stop()
    assert bad_done is not None and bad_done.status is JobStatus.FAILED
    assert bad_done.error == "internal error: RuntimeError: index out of range"
    assert good_done is not None and good_done.status is JobStatus.SUCCEEDED


def test_a_late_bad_image_fails_with_the_loader_message(tmp_path: Path) -> None:
    queue = JobQueue(make_settings(tmp_path), engine_factory=lambda name, *_: FakeEngine())
    queue.start()
    try:
        job_id = queue.new_job_id()
        image = queue.upload_dir(job_id) / "000.png"
        image.write_bytes(PHOTO.read_bytes()[:2000])  # the header passes, the pixels do not
        job = queue.submit(build_request(images=(str(image),), num_frames=4), job_id=job_id)
        done = queue.wait(job.id, 30)
    finally:
        queue.stop()
    assert done is not None and done.status is JobStatus.FAILED
    assert "truncated or corrupt" in (done.error or "")


def test_one_queue_folder_serves_one_server(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    first = JobQueue(settings, engine_factory=lambda name, *_: FakeEngine())
    try:
        with pytest.raises(InputError, match="another img2vid server is using the job queue"):
            JobQueue(settings, engine_factory=lambda name, *_: FakeEngine())
    finally:
        first.stop()
    JobQueue(settings, engine_factory=lambda name, *_: FakeEngine()).stop()  # free again


CRASHING_SERVER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from img2vid.core.config import LogSettings, OutputSettings, Settings
    from img2vid.execution.jobqueue import JobQueue
    from tests.fakes import FakeEngine, Overlap

    class DieMidJob(FakeEngine):
        def generate(self, request, images, progress, cancel):
            os._exit(9)  # the process dies as a power cut or OOM-kill would

    root = Path(sys.argv[1])
    settings = Settings(output=OutputSettings(directory=root / "outputs"),
                        logs=LogSettings(directory=root / "logs"))
    queue = JobQueue(settings, engine_factory=lambda name, *_: DieMidJob())
    queue.start()
    queue.wait(sys.argv[2], timeout=60)
    sys.exit("the job did not crash the process")
""")


def crash_while_running(root: Path, job_id: str) -> None:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{ROOT}"}
    done = subprocess.run([sys.executable, "-c", CRASHING_SERVER, str(root), job_id], env=env,
                          check=False,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 9, done.stderr


def test_a_job_running_when_the_process_dies_is_requeued_once(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    queue = JobQueue(settings)
    job = queue_request(queue, prompt="survivor")
    queue.stop()

    crash_while_running(tmp_path, job.id)

    engine = FakeEngine()
    queue = JobQueue(settings, engine_factory=lambda name, *_: engine)
    queue.start()
    try:
        done = queue.wait(job.id, 30)
    finally:
        queue.stop()
    assert done is not None and done.status is JobStatus.SUCCEEDED
    assert done.attempts == 2
    assert [r.prompt for r in engine.calls] == ["survivor"]


def test_a_job_that_dies_twice_is_failed_with_the_reason(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    queue = JobQueue(settings)
    job = queue_request(queue)
    waiting = queue_request(queue, prompt="next in line")
    queue.stop()

    crash_while_running(tmp_path, job.id)
    crash_while_running(tmp_path, job.id)

    engine = FakeEngine()
    queue = JobQueue(settings, engine_factory=lambda name, *_: engine, cpu_workers=1)
    queue.start()
    try:
        failed = queue.get(job.id)
        after = queue.wait(waiting.id, 30)
    finally:
        queue.stop()
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error == ("the server stopped while this job was running (2 attempts); "
                            "it was not retried again")
    assert after is not None and after.status is JobStatus.SUCCEEDED
    assert [r.prompt for r in engine.calls] == ["next in line"]
    uploads = settings.output.directory / QUEUE_DIRNAME / "uploads"
    assert list(uploads.iterdir()) == []


def test_queued_jobs_wait_in_order_and_report_their_position(tmp_path: Path) -> None:
    queue = JobQueue(make_settings(tmp_path), engine_factory=lambda name, *_: FakeEngine())
    try:
        jobs = [queue_request(queue) for _ in range(3)]
        assert [queue.get(j.id).position for j in jobs] == [1, 2, 3]  # type: ignore[union-attr]
        queue.cancel(jobs[0].id)
        assert [queue.get(j.id).position for j in jobs[1:]] == [1, 2]  # type: ignore[union-attr]
        listed, total = queue.list(limit=10)
        assert total == 3 and [j.position for j in listed] == [2, 1, None]
        queue.start()
        started = time.monotonic()
        assert all(queue.wait(j.id, 30).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]
                   for j in jobs[1:])
        assert time.monotonic() - started < 30
    finally:
        queue.stop()
