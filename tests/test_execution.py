"""The execution layer: one error map, the engine pool's memory of failed loads, run_request."""

from __future__ import annotations

from pathlib import Path

import pytest

from img2vid.core.config import Settings
from img2vid.core.errors import (
    CancelledError,
    InputError,
    ModelNotAvailableError,
    OutOfMemoryError,
)
from img2vid.core.request import build_request
from img2vid.execution.failures import describe_failure
from img2vid.execution.jobqueue import JobQueue
from img2vid.execution.jobstore import JobStatus
from img2vid.execution.pool import EnginePool
from img2vid.execution.run import run_request
from tests.fakes import FakeEngine
from tests.live_server import PHOTO, make_settings

FAST = {"resolution": 256, "num_frames": 3, "fps": 4, "encode_speed": "ultrafast"}


@pytest.mark.parametrize(("exc", "message", "user_fault", "code", "expected"), [
    (InputError("duration=0: must be more than 0"), "duration=0: must be more than 0",
     True, 2, True),
    (ModelNotAvailableError("svd-xt is not downloaded"), "svd-xt is not downloaded", True, 2,
     True),
    (OutOfMemoryError("ran out of memory at level minimum"), "ran out of memory at level minimum",
     False, 1, True),
    (CancelledError("cancelled"), "cancelled", False, 130, True),
    (MemoryError(), "out of memory (RAM); try a smaller resolution, fewer frames or fewer "
     "workers", False, 1, True),
    (ImportError("No module named 'torch'"), "the diffusion engine cannot be loaded (No module "
     "named 'torch'); run `img2vid doctor` to see what is missing", False, 1, True),
    (RuntimeError("index out of range"), "internal error: RuntimeError: index out of range",
     False, 1, False),
])
def test_every_exception_has_one_line(exc, message, user_fault, code, expected) -> None:
    failure = describe_failure(exc, "diffusion")
    assert (failure.message, failure.user_fault, failure.exit_code, failure.expected) == (
        message, user_fault, code, expected)
    assert "\n" not in failure.message


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_failed_engine_creation_is_remembered_until_its_retry_time() -> None:
    made: list[str] = []

    def factory(name: str, settings: Settings, device: str | None = None) -> FakeEngine:
        made.append(name)
        if len(made) == 1:
            raise ImportError("No module named 'diffusers'")
        return FakeEngine()

    clock = Clock()
    pool = EnginePool(Settings(), factory, retry_after_s=60, clock=clock)
    for _ in range(3):
        with pytest.raises(ImportError):
            pool.get("diffusion")
        clock.now += 10
    assert made == ["diffusion"]  # tried once, then answered from memory
    clock.now = 60
    assert isinstance(pool.get("diffusion"), FakeEngine)  # retried after 60 s
    assert pool.get("diffusion") is pool.get("diffusion")  # and kept
    assert made == ["diffusion", "diffusion"]


def test_a_batch_pool_never_retries_within_the_run() -> None:
    clock = Clock()

    def factory(name: str, settings: Settings, device: str | None = None) -> FakeEngine:
        raise ImportError("No module named 'torch'")

    pool = EnginePool(Settings(), factory, clock=clock)
    with pytest.raises(ImportError):
        pool.get("diffusion")
    clock.now = 1e9
    with pytest.raises(ImportError):
        pool.get("diffusion")


def test_run_request_remembers_a_model_that_cannot_be_loaded(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    engine = FakeEngine(fail_with=ModelNotAvailableError("model broken-model is not downloaded"))
    pool = EnginePool(settings, lambda *_: engine, retry_after_s=60)
    request = build_request(images=(str(PHOTO),), model="broken-model", **FAST)
    first = run_request(request, settings, pool)
    second = run_request(request, settings, pool)
    assert not first.ok and not second.ok
    assert first.failure == second.failure
    assert first.failure.message == "model broken-model is not downloaded"
    assert first.failure.user_fault
    assert len(engine.calls) == 1  # the second request failed at once, without a load
    other = build_request(images=(str(PHOTO),), model="other-model", **FAST)
    run_request(other, settings, pool)
    assert len(engine.calls) == 2  # only that model is remembered
    assert not list((tmp_path / "outputs").glob("*.mp4"))


def test_a_remembered_model_failure_is_retried_on_time_however_busy(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    engine = FakeEngine(fail_with=ModelNotAvailableError("model late-model is not downloaded"))
    clock = Clock()
    pool = EnginePool(settings, lambda *_: engine, retry_after_s=60, clock=clock)
    request = build_request(images=(str(PHOTO),), model="late-model", **FAST)
    for now in (0, 20, 40, 59):  # requests while it is remembered do not push the retry back
        clock.now = now
        assert not run_request(request, settings, pool).ok
    assert len(engine.calls) == 1
    clock.now = 60
    engine.fail_with = None  # downloaded meanwhile
    assert run_request(request, settings, pool).ok
    assert len(engine.calls) == 2


def test_run_request_returns_the_video_and_its_sidecar(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    request = build_request(images=(str(PHOTO),), **FAST)
    outcome = run_request(request, settings, EnginePool(settings, lambda *_: FakeEngine()))
    assert outcome.ok and outcome.failure is None and outcome.seconds > 0
    assert outcome.result.output.is_file() and outcome.result.sidecar.is_file()


def test_the_queue_remembers_a_failed_model_load_across_jobs(tmp_path: Path) -> None:
    engines: list[FakeEngine] = []

    def factory(name: str, settings: Settings, device: str | None = None) -> FakeEngine:
        engines.append(FakeEngine(fail_with=ModelNotAvailableError("model gone-model is not "
                                                                   "downloaded")))
        return engines[-1]

    queue = JobQueue(make_settings(tmp_path), engine_factory=factory, cpu_workers=1)
    queue.start()
    try:
        done = []
        for _ in range(2):
            job_id = queue.new_job_id()
            image = queue.upload_dir(job_id) / "000.png"
            image.write_bytes(PHOTO.read_bytes())
            job = queue.submit(build_request(images=(str(image),), model="gone-model",
                                             engine="camera", **FAST), job_id=job_id)
            done.append(queue.wait(job.id, timeout=30))
    finally:
        queue.stop()
    assert [j.status for j in done] == [JobStatus.FAILED] * 2
    assert {j.error for j in done} == {"model gone-model is not downloaded"}
    assert sum(len(e.calls) for e in engines) == 1  # the second job did not load again
