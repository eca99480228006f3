"""Where a request runs: the lane policy and the devices of the GPU lane.

One policy for the job queue, the local batch runner and Ray: camera requests run in the CPU
lane, several at a time; diffusion requests in the GPU lane, one at a time per device (two
generations on one GPU run out of memory). GPUs are counted by an injectable `GpuCounter`, so
tests pass a fake instead of patching torch.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from enum import Enum
from typing import Protocol

log = logging.getLogger(__name__)


class Lane(str, Enum):
    GPU = "gpu"  # diffusion: one job at a time per device
    CPU = "cpu"  # camera engine: `workers` jobs at a time


def lane_for(engine: str) -> Lane:
    """The lane of a request for the engine named `engine`."""
    return Lane.GPU if engine == "diffusion" else Lane.CPU


class GpuCounter(Protocol):
    """Counts the CUDA GPUs of this machine."""

    def __call__(self) -> int: ...


def count_cuda_gpus() -> int:
    """CUDA GPUs, through torch (imported only here, and only if installed); 0 without."""
    if importlib.util.find_spec("torch") is None:
        return 0
    import torch

    return int(torch.cuda.device_count())


def worker_devices(configured: Sequence[str],
                   count_gpus: GpuCounter = count_cuda_gpus) -> list[str | None]:
    """The devices diffusion requests run on, one at a time each: the configured list, else
    every CUDA GPU when there are several, else one worker that lets the engine choose
    (the GPU, Apple MPS or the CPU)."""
    if configured:
        return list(configured)
    try:
        count = count_gpus()
    except Exception:  # a broken torch or CUDA install: the job itself will say what is wrong
        log.exception("could not count the GPUs; diffusion jobs run one at a time")
        return [None]
    return [f"cuda:{i}" for i in range(count)] if count > 1 else [None]
