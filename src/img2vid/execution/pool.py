"""One worker's engines on one device, created on first use and kept (models stay loaded).

Each queue worker, local batch thread, Ray actor and CLI run has its own pool: engines are
not assumed thread-safe. A failed load is remembered: creating an engine that raised, or
loading a model that raised ModelLoadError. Retry rule: requests for it fail at once with the
same error until `retry_after_s` seconds have passed (None: never, for a batch run); the next
request after that tries again (a model downloaded meanwhile then works).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from img2vid.core.config import Settings
from img2vid.core.errors import ModelLoadError
from img2vid.core.request import GenerationRequest
from img2vid.engines.base import Engine, EngineFactory, create_engine

log = logging.getLogger(__name__)

QUEUE_LOAD_RETRY_S = 60.0  # the server tries a failed load again after this long


class EnginePool:
    def __init__(self, settings: Settings, factory: EngineFactory = create_engine,
                 device: str | None = None, *, retry_after_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.factory = factory
        self.device = device
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._engines: dict[str, Engine] = {}
        # (engine name, model or "") -> (the exception, when it happened)
        self._failed: dict[tuple[str, str], tuple[BaseException, float]] = {}

    def engine_for(self, request: GenerationRequest) -> Engine:
        """The engine `request` runs on; raises a remembered load failure at once."""
        name = request.engine.value
        for key in ((name, ""), (name, request.model or "")):
            self._raise_if_failed(key)
        return self.get(name)

    def get(self, name: str) -> Engine:
        """The engine `name`, created on first use; raises why it cannot be created."""
        self._raise_if_failed((name, ""))
        if name not in self._engines:
            try:
                self._engines[name] = self.factory(name, self.settings, self.device)
            except Exception as exc:  # e.g. an ImportError for a missing extra
                # the log file gets the traceback; the user gets the failure's one line
                log.info("could not create the %s engine", name, exc_info=True)
                self._failed[(name, "")] = (exc, self._clock())
                raise
        return self._engines[name]

    def note_failure(self, request: GenerationRequest, exc: BaseException) -> None:
        """Remember `exc` if it says that the request's model cannot be loaded."""
        key = (request.engine.value, request.model or "")
        remembered = self._failed.get(key)
        if remembered is not None and remembered[0] is exc:
            return  # raised from memory: the retry time still counts from the first failure
        if isinstance(exc, ModelLoadError):
            self._failed[key] = (exc, self._clock())

    def _raise_if_failed(self, key: tuple[str, str]) -> None:
        failed = self._failed.get(key)
        if failed is None:
            return
        exc, when = failed
        if self.retry_after_s is not None and self._clock() - when >= self.retry_after_s:
            del self._failed[key]  # time to try again
            return
        raise exc.with_traceback(None)
