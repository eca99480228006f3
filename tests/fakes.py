"""FakeEngine: a millisecond-fast engine for tests of the runner, queue, API and UI."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np

from img2vid.core.clip import Clip
from img2vid.core.config import Settings
from img2vid.core.errors import Img2VidError
from img2vid.core.progress import CancelToken, Progress, ProgressCallback
from img2vid.core.request import GenerationRequest, output_size
from img2vid.media.images import LoadedImage


class FakeEngine:
    """Frames are the first photo, resized, brightened with the frame index.

    `delay` seconds per frame makes jobs slow enough to cancel; `fail_with` raises on the
    first frame; `started` is set when a generation begins (to synchronise tests).
    """

    name = "fake"

    def __init__(self, settings: Settings | None = None, device: str | None = None, *,
                 delay: float = 0.0, fail_with: Exception | None = None) -> None:
        self.device = device
        self.delay = delay
        self.fail_with = fail_with
        self.started = threading.Event()
        self.calls: list[GenerationRequest] = []

    def generate(self, request: GenerationRequest, images: Sequence[LoadedImage],
                 progress: ProgressCallback, cancel: CancelToken) -> Clip:
        self.calls.append(request)
        src = images[0].pixels
        width, height = output_size(request, src.shape[1], src.shape[0])
        total = request.num_frames or 1

        def frames() -> Iterator[np.ndarray]:
            import cv2

            self.started.set()
            base = cv2.resize(src, (width, height), interpolation=cv2.INTER_AREA)
            for i in range(total):
                cancel.raise_if_cancelled()
                if self.fail_with is not None:
                    raise self.fail_with
                if self.delay:
                    time.sleep(self.delay)
                progress(Progress("render", i + 1, total))
                yield np.clip(base.astype(np.int16) + i, 0, 255).astype(np.uint8)

        return Clip(frames(), float(request.fps or 8), width, height, total,
                    {"engine": "fake"})


class Overlap:
    """Counts how many clips of each engine name are being made at once, across engines."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: dict[str, int] = {}
        self.peak: dict[str, int] = {}

    def track(self, name: str, clip: Clip) -> Clip:
        """`clip` with its frames counted as one running generation of `name` while consumed."""
        inner = clip.frames

        def frames() -> Iterator[np.ndarray]:
            with self.lock:
                self.active[name] = self.active.get(name, 0) + 1
                self.peak[name] = max(self.peak.get(name, 0), self.active[name])
            try:
                yield from inner
            finally:
                with self.lock:
                    self.active[name] -= 1

        clip.frames = frames()
        return clip


class FakeFailure(Img2VidError):
    """A failure a fake job raises (e.g. an OOM after fallback)."""


class FakeGpus:
    """A GpuCounter for tests: says there are `count` CUDA GPUs (or raises `error`) and
    records how often it was asked (counting real GPUs imports torch)."""

    def __init__(self, count: int = 0, error: Exception | None = None) -> None:
        self.count, self.error, self.calls = count, error, 0

    def __call__(self) -> int:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.count
