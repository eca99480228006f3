"""What the photo engines (camera, parallax) share: how photos share a slideshow's frames,
per-photo state held only while its photo is on screen, and frames rendered ahead on a small
background pool, mixed across crossfades."""

from __future__ import annotations

import logging
import os
import sys
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

import numpy as np

from img2vid.core.config import Settings
from img2vid.core.progress import CancelToken, Progress, ProgressCallback
from img2vid.core.request import GenerationRequest
from img2vid.core.sizes import output_size
from img2vid.engines.focus import FaceFinder
from img2vid.media.images import LoadedImage
from img2vid.postprocess.blend import BLENDS

log = logging.getLogger(__name__)

MAX_RENDER_THREADS = 4
# Render threads run below normal priority: when the encoder is the bottleneck (it is, for
# H.264 on a small machine) rendering only fills its idle time instead of slowing it down.
RENDER_NICE = 10

Held = TypeVar("Held")  # a photo's state while it is on screen (a pyramid, a depth scene)
Part = TypeVar("Part")  # what a pool thread needs to draw one photo's part of a frame


@dataclass(frozen=True)
class Shot:
    """One photo's part in a frame: which photo, its move's time fraction, its mix weight."""

    image: int
    t: float
    weight: float = 1.0


@dataclass(frozen=True)
class Timeline:
    """How `count` photos share `num_frames` frames, consecutive ones overlapping by `overlap`.

    Each photo gets a segment of (N + (n - 1) T) / n frames (fractional; frame i samples the
    segment at its own index), so the clip's total length is exactly what was asked for.
    """

    num_frames: int
    count: int
    overlap: float

    @classmethod
    def plan(cls, num_frames: int, count: int, overlap: float) -> Timeline:
        # A crossfade may take at most a third of a segment: every photo is seen alone too.
        limit = num_frames / (2 * count + 1) if count > 1 else 0.0
        return cls(num_frames, count, max(0.0, min(overlap, limit)))

    @property
    def segment(self) -> float:
        return (self.num_frames + (self.count - 1) * self.overlap) / self.count

    def start(self, image: int) -> float:
        return image * (self.segment - self.overlap)

    def local_t(self, image: int, frame: int) -> float:
        span = self.segment - 1
        return 0.0 if span <= 0 else min(max((frame - self.start(image)) / span, 0.0), 1.0)

    def shots(self, frame: int) -> tuple[Shot, ...]:
        """The photos frame `frame` shows: one, or the outgoing and incoming during a crossfade."""
        stride = self.segment - self.overlap
        centre = frame + 0.5
        image = min(self.count - 1, int(centre // stride)) if self.count > 1 else 0
        incoming = Shot(image, self.local_t(image, frame))
        if image == 0 or self.overlap <= 0:
            return (incoming,)
        weight = (centre - self.start(image)) / self.overlap
        if weight >= 1.0:
            return (incoming,)
        outgoing = Shot(image - 1, self.local_t(image - 1, frame))
        return (outgoing, Shot(image, incoming.t, weight))


@dataclass(frozen=True)
class FrameTask(Generic[Part]):
    """One frame to render: one photo's part, or the outgoing and incoming ones and their mix
    weight."""

    parts: tuple[Part, ...]
    weight: float = 1.0


class FramePlanner(ABC, Generic[Held, Part]):
    """Turns frame indices into FrameTasks, on the generator's thread only.

    Each photo's state is built when its segment starts and dropped when it is over (queued
    tasks keep what they need), so a long slideshow holds at most two.
    """

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self._held: dict[int, Held] = {}

    @abstractmethod
    def build(self, image: int) -> Held:
        """The state photo `image` needs while it is on screen."""

    @abstractmethod
    def part(self, shot: Shot, held: Held) -> Part:
        """What drawing this photo's part of the frame needs."""

    def task(self, frame: int) -> FrameTask[Part]:
        shots = self.timeline.shots(frame)
        for done in [i for i in self._held if i < shots[0].image]:
            del self._held[done]
        return FrameTask(tuple(self.part(shot, self.held(shot.image)) for shot in shots),
                         shots[-1].weight)

    def held(self, image: int) -> Held:
        if image not in self._held:
            self._held[image] = self.build(image)
        return self._held[image]


@dataclass(frozen=True)
class Slideshow:
    """A photo engine's output: size, length and how the photos share it."""

    width: int
    height: int
    num_frames: int
    fps: float
    timeline: Timeline

    @classmethod
    def plan(cls, request: GenerationRequest, images: Sequence[LoadedImage]) -> Slideshow:
        width, height = output_size(request, images[0].width, images[0].height)
        num_frames = int(request.num_frames or 1)
        fps = float(request.fps or 30)
        return cls(width, height, num_frames, fps,
                   Timeline.plan(num_frames, len(images), request.transition * fps))


class PhotoEngine:
    """The part of the camera and parallax engines that is the same: CPU rendering on a small
    pool, focus from faces, and the sidecar's slideshow fields."""

    name: str

    def __init__(self, settings: Settings, device: str | None = None) -> None:
        # `device` is part of the Engine protocol; these engines always render on the CPU
        self.settings = settings
        self.threads = min(MAX_RENDER_THREADS, usable_cores())
        self._faces = FaceFinder()

    def describe(self, request: GenerationRequest, show: Slideshow,
                 slides: Sequence[dict[str, Any]], **fields: Any) -> dict[str, Any]:
        """The sidecar's engine fields: the move, the first photo's (and, in a slideshow,
        every photo's) own fields."""
        info = {"motion": request.motion.value, "zoom": request.zoom,
                "easing": request.easing.value, **fields, **slides[0],
                "render_threads": self.threads}
        if len(slides) > 1:
            info["transition_frames"] = round(show.timeline.overlap, 3)
            info["slides"] = list(slides)
        return info

    def stream(self, request: GenerationRequest, planner: FramePlanner[Any, Part],
               draw: Callable[[Part], np.ndarray], progress: ProgressCallback,
               cancel: CancelToken) -> Iterator[np.ndarray]:
        """The frames in order: each task drawn on the pool, two parts mixed by the request's
        transition."""
        transition = BLENDS[request.transition_style]

        def render(task: FrameTask[Part]) -> np.ndarray:
            frames = [draw(part) for part in task.parts]
            return frames[0] if len(frames) == 1 else transition(frames[0], frames[1],
                                                                 task.weight)

        return stream_frames(lambda index: partial(render, planner.task(index)),
                             planner.timeline.num_frames, self.threads, f"img2vid-{self.name}",
                             progress, cancel)


def stream_frames(plan: Callable[[int], Callable[[], np.ndarray]], total: int, threads: int,
                  name: str, progress: ProgressCallback, cancel: CancelToken,
                  ) -> Iterator[np.ndarray]:
    """Frames in order from a small pool, at most `2 x threads` rendered ahead.

    `plan(i)` runs on the caller's thread (it may build per-photo state) and returns the
    work for frame i, which a pool thread runs. The pool lives inside the generator: it
    starts with the first frame asked for and is shut down when the generator finishes, fails
    or is closed early, so an abandoned clip leaves no thread behind and memory stays flat
    however long the clip.
    """
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name,
                              initializer=_lower_thread_priority)
    pending: deque[Future[np.ndarray]] = deque()
    submitted = 0
    try:
        for index in range(total):
            cancel.raise_if_cancelled()
            while submitted < total and len(pending) < 2 * threads:
                pending.append(pool.submit(plan(submitted)))
                submitted += 1
            frame = pending.popleft().result()
            progress(Progress("render", index + 1, total))
            yield frame
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _lower_thread_priority() -> None:
    """Lower the calling pool thread's priority by RENDER_NICE (on Linux nice is per thread)."""
    if sys.platform != "linux":
        return  # elsewhere setpriority would lower the whole process
    thread = threading.get_native_id()
    try:
        nice = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, nice + RENDER_NICE))
    except OSError:
        log.debug("could not lower the render threads' priority", exc_info=True)


def usable_cores() -> int:
    """Cores this process may run on (a container's or taskset's limit, not the host's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
