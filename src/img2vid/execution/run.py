"""Run one request on one engine pool: the one path the CLI, the job queue, batch and Ray share.

`run_request` never raises for a failed generation (only for KeyboardInterrupt): it returns an
Outcome with the video and its sidecar, or the Failure every interface reports the same way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from img2vid.core.config import Settings
from img2vid.core.progress import CancelToken, ProgressCallback
from img2vid.core.request import GenerationRequest
from img2vid.execution.failures import Failure, describe_failure
from img2vid.execution.pool import EnginePool

if TYPE_CHECKING:
    from img2vid.execution.pipeline import GenerationResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What became of one request: `result` on success, else `failure`."""

    result: GenerationResult | None
    failure: Failure | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.result is not None

    @property
    def cancelled(self) -> bool:
        return self.failure is not None and self.failure.cancelled


def run_request(request: GenerationRequest, settings: Settings, engines: EnginePool, *,
                output: Path | None = None, progress: ProgressCallback | None = None,
                cancel: CancelToken | None = None, label: str = "request") -> Outcome:
    """Generate `request` with an engine from `engines` and save it (to `output` if given).

    `label` names the request in the log ("job 1f2e...", "photo.jpg").
    """
    from img2vid.execution import pipeline  # lazy: numpy, PyAV and OpenCV load here

    t0 = time.perf_counter()
    try:
        engine = engines.engine_for(request)
        result = pipeline.generate(request, settings, output=output, progress=progress,
                                   cancel=cancel, engine=engine)
    except Exception as exc:
        engines.note_failure(request, exc)
        failure = describe_failure(exc, request.engine.value)
        if failure.user_fault or failure.cancelled:
            log.info("%s failed: %s", label, failure.message)
        else:  # the traceback goes to the log file; the user sees the one line
            log.exception("%s failed: %s", label, failure.message)
        return Outcome(None, failure, _since(t0))
    return Outcome(result, None, _since(t0))


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)
