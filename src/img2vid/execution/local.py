"""Batch items on this machine: one item through `run_request`, and the local thread pools
(camera items `workers` at a time, diffusion items one at a time per GPU)."""

from __future__ import annotations

import logging
import queue
import shutil
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path

from img2vid.core.config import Settings
from img2vid.core.progress import CancelToken
from img2vid.engines.base import EngineFactory, create_engine
from img2vid.execution.items import DONE, FAILED, PENDING, BatchItem, ItemResult
from img2vid.execution.lanes import GpuCounter, Lane, count_cuda_gpus, lane_for, worker_devices
from img2vid.execution.pool import EnginePool
from img2vid.execution.run import run_request
from img2vid.media import outputs

log = logging.getLogger(__name__)


def run_item(item: BatchItem, settings: Settings, engines: EnginePool,
             cancel: CancelToken | None = None) -> ItemResult:
    """Generate one item; any failure becomes a failed result (a cancelled one stays pending).

    Shared by the local runner and the Ray actors, so both write the same files.
    """
    if item.request is None or item.output is None:
        return ItemResult(FAILED, error=item.error or "no request")
    try:
        _clear_replaced_folder(item.output)
    except OSError as exc:
        return ItemResult(FAILED, error=f"cannot replace {item.output}: {exc}")
    outcome = run_request(item.request, settings, engines, output=item.output, cancel=cancel,
                          label=item.name)
    if outcome.result is not None:
        return ItemResult(DONE, output=str(outcome.result.output), seconds=outcome.seconds)
    assert outcome.failure is not None
    if outcome.cancelled:
        return ItemResult(PENDING, seconds=outcome.seconds, error="interrupted")
    return ItemResult(FAILED, seconds=outcome.seconds, error=outcome.failure.message)


def _clear_replaced_folder(output: Path) -> None:
    """A PNG-frames output is a folder, which a rename cannot replace: drop our old one."""
    if output.is_dir() and outputs.sidecar_path(output).is_file():
        log.info("replacing %s (made for a different request)", output)
        shutil.rmtree(output)


def run_local(items: Sequence[tuple[int, BatchItem]], settings: Settings, *, workers: int,
              cancel: CancelToken, factory: EngineFactory = create_engine,
              count_gpus: GpuCounter = count_cuda_gpus,
              ) -> Iterator[tuple[int, ItemResult]]:
    """Yield (index, result) as items finish.

    Camera items run `workers` at a time, each thread with its own engine. Diffusion items
    run one at a time per GPU (settings.models.devices, default every CUDA GPU), each GPU's
    thread with its own engine, so a model is loaded once per GPU for the whole batch.
    Leaving early (Ctrl-C, close()) cancels what is running and drops what has not started.
    """
    local = threading.local()  # one engine pool per thread: engines are not assumed thread-safe
    cpu = [(i, item) for i, item in items if lane_for(item.engine) is Lane.CPU]
    # Grouped by model so an engine that keeps one model loaded switches as little as possible.
    gpu = sorted(((i, item) for i, item in items if lane_for(item.engine) is Lane.GPU),
                 key=lambda pair: pair[1].request.model or "")
    # counting GPUs imports torch: only for a batch that has diffusion items
    devices = worker_devices(settings.models.devices, count_gpus) if gpu else [None]
    unclaimed: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    for device in devices:
        unclaimed.put(device)

    def claim_device() -> None:  # each GPU-lane thread takes one device for its lifetime
        local.device = unclaimed.get_nowait()

    def run(item: BatchItem) -> ItemResult:
        if cancel.cancelled:
            return ItemResult(PENDING)
        if not hasattr(local, "engines"):
            local.engines = EnginePool(settings, factory, getattr(local, "device", None))
        return run_item(item, settings, local.engines, cancel)

    futures: dict[Future[ItemResult], int] = {}
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="batch-camera") as cam, \
            ThreadPoolExecutor(len(devices), thread_name_prefix="batch-diffusion",
                               initializer=claim_device) as diff:
        try:
            for pool, group in ((cam, cpu), (diff, gpu)):
                for index, item in group:
                    futures[pool.submit(run, item)] = index
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            cancel.cancel()  # in-flight items stop at their next frame
            for future in futures:
                future.cancel()
