"""The lane policy and the GPU lane's devices, with a fake GPU counter (no torch needed)."""

from __future__ import annotations

import pytest

from img2vid.execution.lanes import Lane, lane_for, worker_devices
from tests.fakes import FakeGpus


@pytest.mark.parametrize(("configured", "gpus", "expected"), [
    (["cuda:1", "cuda:3"], 4, ["cuda:1", "cuda:3"]),  # the config wins
    ([], 3, ["cuda:0", "cuda:1", "cuda:2"]),  # every GPU gets a worker
    ([], 1, [None]),  # one GPU: the engine picks it (and its index) itself
    ([], 0, [None]),  # CPU or Apple MPS
])
def test_one_worker_per_gpu(configured: list[str], gpus: int,
                            expected: list[str | None]) -> None:
    counter = FakeGpus(gpus)
    assert worker_devices(configured, counter) == expected
    assert counter.calls == (0 if configured else 1)  # a configured list needs no torch


def test_a_broken_gpu_count_leaves_one_worker_that_lets_the_engine_choose() -> None:
    assert worker_devices([], FakeGpus(error=RuntimeError("no CUDA driver"))) == [None]


def test_diffusion_runs_in_the_gpu_lane_and_everything_else_on_cpus() -> None:
    assert lane_for("diffusion") is Lane.GPU
    assert lane_for("camera") is Lane.CPU
    assert lane_for("") is Lane.CPU  # an item without a request is reported, not run

