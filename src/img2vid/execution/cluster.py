"""Batch items on a Ray cluster through Ray Data: an actor pool per engine, engines loaded once."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from img2vid.core.config import Settings
from img2vid.core.errors import InputError
from img2vid.core.progress import CancelToken
from img2vid.core.request import GenerationRequest
from img2vid.engines.base import EngineFactory, create_engine
from img2vid.execution.items import FAILED, BatchItem, ItemResult
from img2vid.execution.lanes import Lane, lane_for
from img2vid.execution.local import run_item
from img2vid.execution.pool import EnginePool

log = logging.getLogger(__name__)

INSTALL_HINT = "--ray needs Ray: pip install 'img2vid[ray]'"
_RESULT_COLUMNS = ("index", "status", "output", "seconds", "error")
ITEM_RETRIES = 1  # an item whose worker process dies is tried once more on a new process


class ItemWorker:
    """A Ray Data actor: creates its engine once, then makes the video of each row it gets.

    Rows carry the request as JSON and the output path; the video and its sidecar are
    written by the actor straight into the (shared) output folder, only the report row
    travels back to the driver.
    """

    def __init__(self, settings: Settings, engine: str, factory: EngineFactory) -> None:
        self.settings = settings
        self.engines = EnginePool(settings, factory)
        try:
            # Created once per actor; the diffusion engine keeps the model its first row
            # loads, so the rows after it reuse it.
            self.engines.get(engine)
        except Exception:
            pass  # kept by the pool: every row then reports the same error

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {column: [] for column in _RESULT_COLUMNS}
        for index, name, request, output in zip(batch["index"], batch["name"],
                                                batch["request"], batch["output"]):
            req = GenerationRequest.model_validate_json(request)
            item = BatchItem(str(name), req.images, req, output=Path(output))
            result = run_item(item, self.settings, self.engines)
            for column, value in zip(_RESULT_COLUMNS, (int(index), result.status,
                                                       result.output, result.seconds,
                                                       result.error)):
                out[column].append(value)
        return out


def import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    return ray


def run_on_ray(items: Sequence[tuple[int, BatchItem]], settings: Settings, *,
               address: str = "", workers: int | None = None,
               cancel: CancelToken | None = None, factory: EngineFactory = create_engine,
               ) -> Iterator[tuple[int, ItemResult]]:
    """Yield (index, result) as the cluster finishes items; same results as run_local.

    `address` "" connects to $RAY_ADDRESS or the cluster started on this machine (or starts
    a local one); otherwise a `ray start` address or ray://host:port. If this process has
    already called ray.init, that connection is used. Camera items go to `workers` CPU
    actors (default: the cluster's CPUs); diffusion items to one actor per GPU, each
    loading the model once.
    """
    ray = import_ray()
    cancel = cancel or CancelToken()
    if not items:
        return
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address or None, log_to_driver=False,
                     logging_level=logging.WARNING)
        except ConnectionError as exc:
            raise InputError(f"cannot connect to the Ray cluster at {address or 'auto'}: "
                             f"{exc}") from None
    try:
        yield from _run(ray, items, settings, workers, cancel, factory)
    finally:
        if started_here:
            ray.shutdown()


def _run(ray: Any, items: Sequence[tuple[int, BatchItem]], settings: Settings,
         workers: int | None, cancel: CancelToken, factory: EngineFactory,
         ) -> Iterator[tuple[int, ItemResult]]:
    context = ray.data.DataContext.get_current()
    saved = context.enable_progress_bars, context.max_errored_blocks
    context.enable_progress_bars = False  # the CLI shows one bar for the whole batch
    # Items never raise (run_item catches everything), so a block fails only when its worker
    # process died for good (crash, OOM killer): that item is reported and the rest go on.
    context.max_errored_blocks = -1
    _quiet_ray_data_console()
    try:
        yield from _execute(ray, items, settings, workers, cancel, factory)
    finally:
        context.enable_progress_bars, context.max_errored_blocks = saved


def _execute(ray: Any, items: Sequence[tuple[int, BatchItem]], settings: Settings,
             workers: int | None, cancel: CancelToken, factory: EngineFactory,
             ) -> Iterator[tuple[int, ItemResult]]:
    resources = ray.cluster_resources()
    cpus = max(1, int(resources.get("CPU", 1)))
    gpus = int(resources.get("GPU", 0))
    groups: dict[str, list[tuple[int, BatchItem]]] = {"camera": [], "diffusion": []}
    for index, item in items:
        lane = lane_for(item.engine)
        groups["diffusion" if lane is Lane.GPU else "camera"].append((index, item))
    # Rows of one model together, so an actor's cached pipeline is reloaded as little as possible.
    groups["diffusion"].sort(key=lambda pair: pair[1].request.model or "")

    # Diffusion actors hold a CPU each too; camera actors get the rest.
    diffusion_actors = min(max(gpus, 1), len(groups["diffusion"]))
    datasets = []
    for engine, group in groups.items():
        if not group:
            continue
        rows = [{"index": index, "name": item.name, "output": str(item.output),
                 "request": item.request.model_dump_json()} for index, item in group]
        if engine == "diffusion":
            # One model per GPU; without GPUs a single CPU actor still gets the work done.
            size, gpu_each = diffusion_actors, (1 if gpus else 0)
            if not gpus:
                log.warning("the Ray cluster has no GPU; diffusion items run on one CPU actor")
        else:
            free = max(1, cpus - diffusion_actors)
            size, gpu_each = min(workers or free, free, len(rows)), 0
        log.info("ray: %d %s item(s) on %d actor(s)", len(rows), engine, size)
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
        with warnings.catch_warnings():
            # Ray Data restarts a dead actor and retries its task forever by default, so an
            # item that crashes its worker would never end. Each item gets ITEM_RETRIES; each
            # actor enough restarts for every item to crash it, so a bad item never takes the
            # pool down with it, while an engine that crashes on load still ends the job.
            # (No named parameter for these yet: Ray 2.60 deprecates passing them this way.)
            warnings.simplefilter("ignore", DeprecationWarning)
            datasets.append(dataset.map_batches(
                ItemWorker, fn_constructor_kwargs={"settings": settings, "engine": engine,
                                                   "factory": factory},
                batch_size=1, num_cpus=1,
                # One item at a time per actor: a video takes seconds to minutes, so nothing
                # is gained by queueing, and a worker that crashes takes only its own item.
                compute=ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=1),
                num_gpus=gpu_each, max_restarts=len(rows) * (ITEM_RETRIES + 1),
                max_task_retries=ITEM_RETRIES))
    dataset = datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]

    seen: set[int] = set()
    try:
        for row in dataset.iter_rows():
            index = int(row["index"])
            seen.add(index)
            seconds = row["seconds"]
            yield index, ItemResult(str(row["status"]), str(row["output"] or ""),
                                    None if seconds is None else float(seconds),
                                    str(row["error"] or ""))
            if cancel.cancelled:
                return
    except ray.exceptions.RayError as exc:
        # Ray gave up on the whole job (actors that cannot start, a node lost...): the items
        # it did not finish are reported, and a rerun resumes them.
        log.exception("the Ray job failed")
        message = f"the Ray job failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    else:
        message = (f"the Ray worker making this video died {ITEM_RETRIES + 1} times (a crash "
                   "or the out-of-memory killer); see the Ray logs of its node")
    for index, _ in items:
        if index not in seen:
            yield index, ItemResult(FAILED, error=message)


class _DropNotice(logging.Filter):
    """Hides Ray Data's notice that its bars are off (we turned them off on purpose)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Progress bars disabled")


def _quiet_ray_data_console() -> None:
    """Ray Data's per-dataset INFO lines stay in its session log file, off the terminal."""
    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, logging.FileHandler) and "File" not in type(handler).__name__:
            handler.setLevel(max(handler.level, logging.WARNING))
            if not any(isinstance(f, _DropNotice) for f in handler.filters):
                handler.addFilter(_DropNotice())
