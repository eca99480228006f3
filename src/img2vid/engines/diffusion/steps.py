"""Denoising-step progress and cancellation, hooked into pipelines without forking them."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from img2vid.core.progress import CancelToken, Progress, ProgressCallback


class StepReporter:
    """Reports each finished denoising step and raises CancelledError between steps."""

    def __init__(self, total: int, progress: ProgressCallback, cancel: CancelToken,
                 preview: Callable[[Any], Any] | None = None, every: int = 0) -> None:
        self.total = total
        self.done = 0
        self._progress = progress
        self._cancel = cancel
        self._preview = preview  # latents -> a small RGB image, or None
        self._every = every
        self.preview_s = 0.0  # time spent making previews (the sidecar's timings)

    def step_done(self, latents: Any = None) -> None:
        self.done += 1
        image = None
        if (self._preview is not None and latents is not None and self._every > 0
                and (self.done % self._every == 0 or self.done == self.total)):
            started = time.perf_counter()
            image = self._preview(latents)
            # on a GPU this includes waiting for the step's queued work (the preview copies
            # 3 x h x w back): an upper bound of what previews cost
            self.preview_s += time.perf_counter() - started
        self._progress(Progress("denoise", min(self.done, self.total), self.total,
                                preview=image))
        if self.done == self.total:
            # the pipeline decodes the latents next, which can take a while on big videos
            self._progress(Progress("decode", 0, 1, "decoding frames"))
        # Raising here unwinds the pipeline call before its next step; the engine then frees
        # what the step held and stays usable for the next job.
        self._cancel.raise_if_cancelled()

    def on_step_end(self, pipe: Any, step: int, timestep: Any,
                    callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        """diffusers' `callback_on_step_end` signature."""
        self.step_done(callback_kwargs.get("latents"))
        return callback_kwargs

    @contextmanager
    def scheduler_hook(self, scheduler: Any) -> Iterator[None]:
        """For pipelines without a step callback (I2VGen-XL): report after each scheduler step,
        with the step's new latents (`prev_sample`, the first item of a tuple output) for
        previews.

        The wrapper shadows the bound method on this scheduler instance only and is removed on
        exit. functools.wraps keeps the signature that pipelines inspect for `eta`/`generator`.
        """
        original = scheduler.step

        @functools.wraps(original)
        def step(*args: Any, **kwargs: Any) -> Any:
            output = original(*args, **kwargs)
            self.step_done(output[0] if isinstance(output, tuple)
                           else getattr(output, "prev_sample", None))
            return output

        scheduler.step = step
        try:
            yield
        finally:
            del scheduler.step
