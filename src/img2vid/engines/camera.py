"""Camera engine: weightless sub-pixel camera moves (zoom, pan, Ken Burns, rotate) and slideshows."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from img2vid.core.clip import Clip
from img2vid.core.config import Settings
from img2vid.core.progress import CancelToken, Progress, ProgressCallback
from img2vid.core.request import GenerationRequest, output_size
from img2vid.engines.geometry import (
    Camera,
    Framing,
    Pyramid,
    Slide,
    View,
    camera_at,
    eased,
    plan_view,
    warp,
)
from img2vid.media.images import LoadedImage
from img2vid.postprocess.blend import BLENDS, Blend

log = logging.getLogger(__name__)

FACE_DETECT_SIDE = 640  # long side of the grey copy the face detector sees
MAX_RENDER_THREADS = 4
# Render threads run below normal priority: when the encoder is the bottleneck (it is, for
# H.264 on a small machine) rendering only fills its idle time instead of slowing it down.
RENDER_NICE = 10

# --------------------------------------------------------------------------------------------
# Slideshow timing and transitions
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Focus
# --------------------------------------------------------------------------------------------

class FaceFinder:
    """Largest frontal face with OpenCV's bundled Haar cascade (loaded once, on first use)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cascade: cv2.CascadeClassifier | None = None

    def find(self, pixels: np.ndarray) -> tuple[float, float, float, float] | None:
        """(x, y, w, h) of the largest face in photo pixels, or None."""
        height, width = pixels.shape[:2]
        shrink = min(1.0, FACE_DETECT_SIDE / max(width, height))
        small = pixels if shrink == 1.0 else cv2.resize(
            pixels, (max(1, round(width * shrink)), max(1, round(height * shrink))),
            interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        min_side = max(24, min(grey.shape) // 12)
        with self._lock:  # one classifier shared by concurrent jobs
            if self._cascade is None:
                path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
                self._cascade = cv2.CascadeClassifier(path)
                if self._cascade.empty():
                    raise RuntimeError(f"OpenCV's face cascade is missing: {path}")
            faces = self._cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                                   minSize=(min_side, min_side))
        if len(faces) == 0:
            return None
        x, y, w, h = max(faces, key=lambda f: int(f[2]) * int(f[3]))
        return x / shrink, y / shrink, w / shrink, h / shrink


def choose_focus(request: GenerationRequest, pixels: np.ndarray,
                 faces: FaceFinder) -> tuple[tuple[float, float], str]:
    """Focus as (x, y) fractions of the photo, and where it came from."""
    if request.focus != "auto":
        return (float(request.focus[0]), float(request.focus[1])), "request"
    face = faces.find(pixels)
    if face is None:
        return (0.5, 0.5), "centre"
    height, width = pixels.shape[:2]
    x, y, w, h = face
    return (float((x + w / 2) / width), float((y + h / 2) / height)), "face"


# --------------------------------------------------------------------------------------------
# Engine
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FrameTask:
    """Everything a worker needs for one frame: one view, or two and their mix weight."""

    views: tuple[View, ...]
    weight: float = 1.0


class CameraEngine:
    """Renders camera moves over still photos; embedded, weightless, CPU only."""

    name = "camera"

    def __init__(self, settings: Settings, device: str | None = None) -> None:
        # `device` is part of the Engine protocol; camera moves always render on the CPU.
        self.settings = settings
        self.threads = min(MAX_RENDER_THREADS, _usable_cores())
        self._faces = FaceFinder()

    def generate(self, request: GenerationRequest, images: Sequence[LoadedImage],
                 progress: ProgressCallback, cancel: CancelToken) -> Clip:
        if not images:
            raise ValueError("the camera engine needs at least one image")
        first = images[0]
        out_w, out_h = output_size(request, first.width, first.height)
        num_frames = int(request.num_frames or 1)
        fps = float(request.fps or 30)
        timeline = Timeline.plan(num_frames, len(images), request.transition * fps)
        framings, sources = [], []
        for index, image in enumerate(images, start=1):
            cancel.raise_if_cancelled()
            focus, source = choose_focus(request, image.pixels, self._faces)
            framings.append(Framing.fit(image.width, image.height, out_w, out_h, focus))
            sources.append(source)
            if request.focus == "auto":  # face detection takes a moment per photo
                progress(Progress("focus", index, len(images)))
        info: dict[str, Any] = {
            "motion": request.motion.value, "zoom": request.zoom, "easing": request.easing.value,
            "focus": _focus_fractions(framings[0]), "focus_source": sources[0],
            "render_threads": self.threads,
        }
        if len(images) > 1:
            info["transition_frames"] = round(timeline.overlap, 3)
            info["slides"] = [{"focus": _focus_fractions(f), "focus_source": s}
                              for f, s in zip(framings, sources)]
        log.debug("camera: %s %dx%d, %d frames, %d photo(s), focus %s (%s), %d threads",
                  request.motion.value, out_w, out_h, num_frames, len(images), info["focus"],
                  sources[0], self.threads)
        planner = FramePlanner(request, [i.pixels for i in images], framings, timeline,
                               out_w, out_h)
        frames = self._stream(planner, BLENDS[request.transition_style], progress, cancel)
        return Clip(frames, fps, out_w, out_h, num_frames, info)

    def _stream(self, planner: FramePlanner, transition: Blend, progress: ProgressCallback,
                cancel: CancelToken) -> Iterator[np.ndarray]:
        """Frames in order from a small pool, at most `2 x threads` rendered ahead.

        The pool lives inside the generator: it starts with the first frame asked for and is
        shut down when the generator finishes, fails or is closed early, so an abandoned clip
        leaves no thread behind and memory stays flat however long the clip.
        """
        total = planner.timeline.num_frames
        ahead = 2 * self.threads
        pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="img2vid-camera",
                                  initializer=_lower_thread_priority)
        pending: deque[Future[np.ndarray]] = deque()
        submitted = 0
        try:
            for index in range(total):
                cancel.raise_if_cancelled()
                while submitted < total and len(pending) < ahead:
                    pending.append(pool.submit(render_frame, planner.task(submitted),
                                               planner.out_w, planner.out_h, transition))
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


def _usable_cores() -> int:
    """Cores this process may run on (a container's or taskset's limit, not the host's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _focus_fractions(framing: Framing) -> list[float]:
    return [round(float(framing.focus_x / framing.width), 4),
            round(float(framing.focus_y / framing.height), 4)]


class FramePlanner:
    """Turns frame indices into FrameTasks: cameras, pyramid levels and exact warps.

    Runs on the generator's thread only. Each photo's pyramid is built when its segment
    starts and dropped when it is over (queued tasks keep what they need), so a long slideshow
    holds at most two.
    """

    def __init__(self, request: GenerationRequest, photos: Sequence[np.ndarray],
                 framings: Sequence[Framing], timeline: Timeline, out_w: int, out_h: int) -> None:
        self.motion, self.zoom, self.easing = request.motion, request.zoom, request.easing
        self.photos, self.framings, self.timeline = photos, framings, timeline
        self.out_w, self.out_h = out_w, out_h
        self._slides: dict[int, Slide] = {}

    def camera(self, image: int, t: float) -> Camera:
        return camera_at(self.motion, self.framings[image], self.zoom, eased(self.easing, t))

    def task(self, frame: int) -> FrameTask:
        shots = self.timeline.shots(frame)
        for done in [i for i in self._slides if i < shots[0].image]:
            del self._slides[done]
        views = tuple(plan_view(self._slide(s.image), self.camera(s.image, s.t),
                                self.out_w, self.out_h) for s in shots)
        return FrameTask(views, shots[-1].weight)

    def _slide(self, image: int) -> Slide:
        if image not in self._slides:
            self._slides[image] = Slide(self.framings[image], Pyramid(self.photos[image]))
        return self._slides[image]


def render_frame(task: FrameTask, out_w: int, out_h: int, transition: Blend) -> np.ndarray:
    """Render one frame on a pool thread."""
    frames = [warp(view, out_w, out_h) for view in task.views]
    if len(frames) == 1:
        return frames[0]
    return transition(frames[0], frames[1], task.weight)
