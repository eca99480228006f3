"""Engines kept per worker (thread or Ray actor), running one batch item on one of them, and
the local runner's thread pools (camera items N at a time, diffusion one per GPU)."""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path

from img2vid.core.config import Settings
from img2vid.core.errors import CancelledError, Img2VidError
from img2vid.core.progress import CancelToken
from img2vid.engines.base import Engine, EngineFactory, create_engine
from img2vid.engines.memory import worker_devices
from img2vid.execution.items import DONE, FAILED, PENDING, BatchItem, ItemResult
from img2vid.media import outputs

log = logging.getLogger(__name__)


def run_item(item: BatchItem, settings: Settings, engine: Engine,
             cancel: CancelToken | None = None) -> ItemResult:
    """Generate one item through the normal pipeline; any failure becomes a failed result.

    Shared by the local runner and the Ray actors, so both write the same files.
    """
    from img2vid.execution.pipeline import generate

    if item.request is None or item.output is None:
        return ItemResult(FAILED, error=item.error or "no request")
    t0 = time.perf_counter()
    try:
        _clear_replaced_folder(item.output)
        result = generate(item.request, settings, output=item.output, cancel=cancel,
                          engine=engine)
    except CancelledError:
        return ItemResult(PENDING, seconds=_since(t0), error="interrupted")
    except Img2VidError as exc:
        log.info("%s failed: %s", item.name, exc)
        return ItemResult(FAILED, seconds=_since(t0), error=str(exc))
    except MemoryError:
        return ItemResult(FAILED, seconds=_since(t0), error="out of memory (RAM); use fewer "
                          "--workers or a smaller resolution")
    except Exception as exc:  # one item's bug must not stop the batch; the log has details
        log.exception("%s failed", item.name)
        return ItemResult(FAILED, seconds=_since(t0),
                          error=f"internal error: {type(exc).__name__}: {exc}")
    return ItemResult(DONE, output=str(result.output), seconds=_since(t0))


def _clear_replaced_folder(output: Path) -> None:
    """A PNG-frames output is a folder, which a rename cannot replace: drop our old one."""
    if output.is_dir() and outputs.sidecar_path(output).is_file():
        log.info("replacing %s (made for a different request)", output)
        shutil.rmtree(output)


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)


class EngineCache:
    """Engines created on first use and kept: one cache per worker thread or Ray actor.

    A creation failure (model missing, no GPU...) is kept too, so every item that needs
    that engine fails with the same message instead of retrying the load.
    """

    def __init__(self, settings: Settings, factory: EngineFactory = create_engine,
                 device: str | None = None) -> None:
        self.settings = settings
        self.factory = factory
        self.device = device
        self._engines: dict[str, Engine | Img2VidError] = {}

    def get(self, name: str) -> Engine:
        """The engine `name`, or the Img2VidError saying why it cannot be created."""
        if name not in self._engines:
            try:
                self._engines[name] = self.factory(name, self.settings, self.device)
            except Img2VidError as exc:
                self._engines[name] = exc
            except Exception as exc:  # e.g. an ImportError for a missing extra
                log.exception("could not create the %s engine", name)
                self._engines[name] = Img2VidError(
                    f"could not create the {name} engine: {type(exc).__name__}: {exc}")
        engine = self._engines[name]
        if isinstance(engine, Img2VidError):
            raise engine
        return engine

    def run(self, item: BatchItem, cancel: CancelToken | None = None) -> ItemResult:
        try:
            engine = self.get(item.engine)
        except Img2VidError as exc:
            return ItemResult(FAILED, error=str(exc))
        return run_item(item, self.settings, engine, cancel)


# --- local runner -----------------------------------------------------------------------------

def run_local(items: Sequence[tuple[int, BatchItem]], settings: Settings, *, workers: int,
              cancel: CancelToken, factory: EngineFactory = create_engine,
              ) -> Iterator[tuple[int, ItemResult]]:
    """Yield (index, result) as items finish.

    Camera items run `workers` at a time, each thread with its own engine. Diffusion items
    run one at a time per GPU (settings.models.devices, default every CUDA GPU), each GPU's
    thread with its own engine, so a model is loaded once per GPU for the whole batch.
    Leaving early (Ctrl-C, close()) cancels what is running and drops what has not started.
    """
    local = threading.local()  # one engine per thread: engines are not assumed thread-safe
    camera = [(i, item) for i, item in items if item.engine != "diffusion"]
    # Grouped by model so an engine that keeps one model loaded switches as little as possible.
    diffusion = sorted(((i, item) for i, item in items if item.engine == "diffusion"),
                       key=lambda pair: pair[1].request.model or "")
    # counting GPUs imports torch: only for a batch that has diffusion items
    devices = worker_devices(settings.models.devices) if diffusion else [None]
    unclaimed: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    for device in devices:
        unclaimed.put(device)

    def claim_device() -> None:  # each diffusion thread takes one device for its lifetime
        local.device = unclaimed.get_nowait()

    def run(item: BatchItem) -> ItemResult:
        if cancel.cancelled:
            return ItemResult(PENDING)
        if not hasattr(local, "engines"):
            local.engines = EngineCache(settings, factory, getattr(local, "device", None))
        return local.engines.run(item, cancel)

    futures: dict[Future[ItemResult], int] = {}
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="batch-camera") as cam, \
            ThreadPoolExecutor(len(devices), thread_name_prefix="batch-diffusion",
                               initializer=claim_device) as diff:
        try:
            for pool, group in ((cam, camera), (diff, diffusion)):
                for index, item in group:
                    futures[pool.submit(run, item)] = index
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            cancel.cancel()  # in-flight items stop at their next frame
            for future in futures:
                future.cancel()
