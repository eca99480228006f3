"""Camera engine: weightless sub-pixel camera moves (zoom, pan, Ken Burns, rotate) and slideshows."""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from img2vid.config import Settings
from img2vid.engines.base import Clip
from img2vid.images import LoadedImage
from img2vid.postprocess.interpolate import morph
from img2vid.progress import CancelToken, Progress, ProgressCallback
from img2vid.request import Easing, GenerationRequest, Motion, TransitionStyle, output_size

log = logging.getLogger(__name__)

ROTATE_DEGREES = 3.0  # how far the rotate motion turns over the whole move
LEVELS_PER_OCTAVE = 4  # pyramid step 2^(-1/4): the warp's residual downscale stays below 1.19
MIN_LEVEL_SIDE = 16
FACE_DETECT_SIDE = 640  # long side of the grey copy the face detector sees
MAX_RENDER_THREADS = 4
# Render threads run below normal priority: when the encoder is the bottleneck (it is, for
# H.264 on a small machine) rendering only fills its idle time instead of slowing it down.
RENDER_NICE = 10
OPENCV_SERIAL_PIXELS = 1 << 16  # smaller warps run on the calling thread (cv::warpAffine)

# A transition mixes the outgoing and incoming frames; t runs from 0 (all a) to 1 (all b).
Transition = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


# --------------------------------------------------------------------------------------------
# Geometry: where the camera looks at each instant
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Camera:
    """The view at one instant, in photo pixels (continuous: pixel i covers [i, i + 1)).

    The window is the framing's base window divided by `scale`, centred on (cx, cy) and turned
    by `angle` degrees.
    """

    cx: float
    cy: float
    scale: float
    angle: float = 0.0


@dataclass(frozen=True)
class Framing:
    """One photo fitted to the output's aspect ratio: its base window and focus point."""

    width: int
    height: int
    base_w: float  # the largest window with the output's aspect ratio inside the photo
    base_h: float
    focus_x: float  # photo pixels
    focus_y: float

    @classmethod
    def fit(cls, width: int, height: int, out_w: int, out_h: int,
            focus: tuple[float, float]) -> Framing:
        """Cover-fit: the base window fills the output with no bars, cropping the longer side."""
        aspect = out_w / out_h
        if width / height > aspect:
            base_w, base_h = height * aspect, float(height)
        else:
            base_w, base_h = float(width), width / aspect
        return cls(width, height, base_w, base_h, focus[0] * width, focus[1] * height)

    def clamp_centre(self, cx: float, cy: float, half_w: float, half_h: float,
                     ) -> tuple[float, float]:
        """The nearest centre that keeps a window of these half extents inside the photo."""
        return (min(max(cx, half_w), self.width - half_w),
                min(max(cy, half_h), self.height - half_h))

    @property
    def base_centre(self) -> tuple[float, float]:
        """Where the unzoomed window sits: as close to the focus as the photo allows."""
        return self.clamp_centre(self.focus_x, self.focus_y, self.base_w / 2, self.base_h / 2)


def eased(easing: Easing, t: float) -> float:
    """The speed curve: progress of the move at time fraction t (both in [0, 1])."""
    t = min(max(t, 0.0), 1.0)
    if easing is Easing.EASE_IN_OUT:
        return (1.0 - math.cos(math.pi * t)) / 2.0
    if easing is Easing.EASE_IN:
        return 1.0 - math.cos(math.pi * t / 2.0)
    if easing is Easing.EASE_OUT:
        return math.sin(math.pi * t / 2.0)
    return t


def camera_at(motion: Motion, framing: Framing, zoom: float, p: float) -> Camera:
    """The camera for `motion` at eased progress p in [0, 1].

    Every path keeps the window inside the photo by construction; the final clamp only absorbs
    floating-point error.
    """
    fx, fy = framing.focus_x, framing.focus_y
    bx, by = framing.base_centre
    if motion is Motion.ZOOM_OUT:
        motion, p = Motion.ZOOM_IN, 1.0 - p
    if motion is Motion.STATIC:
        camera = Camera(bx, by, 1.0)
    elif motion in (Motion.ZOOM_IN, Motion.ROTATE):
        # Zoom about the focus: it keeps its place on screen while everything grows around it.
        # The window is a blend of the base window and the focus point, so it stays inside.
        scale = zoom ** p
        cx, cy = fx + (bx - fx) / scale, fy + (by - fy) / scale
        angle = 0.0
        if motion is Motion.ROTATE:
            angle = ROTATE_DEGREES * p
            scale *= _rotation_cover(angle, framing.base_w, framing.base_h)
        camera = Camera(cx, cy, scale, angle)
    elif motion is Motion.KEN_BURNS:
        # Centre drifts linearly from the photo's centre to the (reachable) focus while the
        # scale grows geometrically; the reachable band widens faster than the centre moves.
        scale = zoom ** p
        ex, ey = framing.clamp_centre(fx, fy, framing.base_w / (2 * zoom),
                                      framing.base_h / (2 * zoom))
        sx, sy = framing.width / 2, framing.height / 2
        camera = Camera(sx + p * (ex - sx), sy + p * (ey - sy), scale)
    else:
        camera = _pan(motion, framing, zoom, p)
    return _keep_inside(camera, framing)


def _pan(motion: Motion, framing: Framing, zoom: float, p: float) -> Camera:
    """A window 1/zoom of the base sweeping edge to edge along one axis, at the focus across it.

    Directions are the camera's: pan-left turns the view to the left (the window travels from
    the right edge to the left edge), pan-up from the bottom to the top.
    """
    half_w, half_h = framing.base_w / (2 * zoom), framing.base_h / (2 * zoom)
    cx, cy = framing.clamp_centre(framing.focus_x, framing.focus_y, half_w, half_h)
    left, right = half_w, framing.width - half_w
    top, bottom = half_h, framing.height - half_h
    if motion is Motion.PAN_LEFT:
        cx = right + p * (left - right)
    elif motion is Motion.PAN_RIGHT:
        cx = left + p * (right - left)
    elif motion is Motion.PAN_UP:
        cy = bottom + p * (top - bottom)
    elif motion is Motion.PAN_DOWN:
        cy = top + p * (bottom - top)
    else:
        raise ValueError(f"not a camera motion: {motion}")
    return Camera(cx, cy, zoom)


def _rotation_cover(angle: float, w: float, h: float) -> float:
    """Extra zoom so a w x h window turned by `angle` degrees fits inside the unturned one."""
    a = math.radians(abs(angle))
    return math.cos(a) + max(w / h, h / w) * math.sin(a)


def window_extent(camera: Camera, framing: Framing) -> tuple[float, float]:
    """Half width and half height of the (possibly turned) window's bounding box."""
    w, h = framing.base_w / camera.scale, framing.base_h / camera.scale
    a = math.radians(camera.angle)
    c, s = abs(math.cos(a)), abs(math.sin(a))
    return (w * c + h * s) / 2, (w * s + h * c) / 2


def window_corners(camera: Camera, framing: Framing) -> np.ndarray:
    """The window's four corners in photo pixels (4 x 2), turned as the camera is."""
    w, h = framing.base_w / camera.scale, framing.base_h / camera.scale
    a = math.radians(camera.angle)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    offsets = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
    return offsets @ rot.T + [camera.cx, camera.cy]


def _keep_inside(camera: Camera, framing: Framing) -> Camera:
    half_w, half_h = window_extent(camera, framing)
    cx, cy = framing.clamp_centre(camera.cx, camera.cy, half_w, half_h)
    return Camera(cx, cy, camera.scale, camera.angle)


def source_step(camera: Camera, framing: Framing, out_w: int) -> float:
    """Photo pixels per output pixel at this instant (> 1 means the photo is shrunk)."""
    return framing.base_w / camera.scale / out_w


def warp_matrix(camera: Camera, framing: Framing, out_w: int, out_h: int,
                level_w: int, level_h: int) -> np.ndarray:
    """2 x 3 affine map from output pixel indices to pixel indices of a pyramid level.

    Output pixel (u, v) has its centre at (u + 0.5, v + 0.5); it shows the photo point
    X = c + R(angle) (u + 0.5 - out_w / 2, v + 0.5 - out_h / 2) * step, which is index
    X * s - 0.5 in a level s times the photo's size. Using the level's actual size for s keeps
    every level aligned, so switching level never shifts the picture.
    """
    step = source_step(camera, framing, out_w)
    sx, sy = level_w / framing.width, level_h / framing.height
    a = math.radians(camera.angle)
    cos, sin = math.cos(a) * step, math.sin(a) * step
    u0, v0 = 0.5 - out_w / 2, 0.5 - out_h / 2
    return np.array([
        [sx * cos, -sx * sin, sx * (camera.cx + cos * u0 - sin * v0) - 0.5],
        [sy * sin, sy * cos, sy * (camera.cy + sin * u0 + cos * v0) - 0.5],
    ])


# --------------------------------------------------------------------------------------------
# Rendering: pre-filtered pyramid + one exact affine warp per frame
# --------------------------------------------------------------------------------------------

def level_size(width: int, height: int, level: int) -> tuple[int, int]:
    s = 2.0 ** (-level / LEVELS_PER_OCTAVE)
    return max(1, round(width * s)), max(1, round(height * s))


def level_for(width: int, height: int, step: float) -> int:
    """The coarsest level that is still at least as detailed as the output needs.

    The warp then shrinks that level by less than one pyramid step (or not at all), so
    bilinear sampling cannot alias, and it never enlarges a level while a finer one exists.
    """
    level = 0
    while True:
        w, h = level_size(width, height, level + 1)
        if min(w, h) < MIN_LEVEL_SIDE or step * min(w / width, h / height) < 1.0:
            return level
        level += 1


class Pyramid:
    """Area-filtered copies of one photo at quarter-octave steps, built on demand.

    Octave levels come from halving the previous octave, the levels in between from the octave
    just above them, so no level costs more than a resize of four times its own size. Only the
    thread that owns the pyramid calls `ensure`; workers only read levels already built.
    """

    def __init__(self, pixels: np.ndarray) -> None:
        self.height, self.width = pixels.shape[:2]
        self._levels: dict[int, np.ndarray] = {0: pixels}

    def ensure(self, level: int) -> np.ndarray:
        if level not in self._levels:
            octave = level - level % LEVELS_PER_OCTAVE
            if octave not in self._levels:
                self.ensure(octave - LEVELS_PER_OCTAVE)
                self._levels[octave] = self._shrink(octave - LEVELS_PER_OCTAVE, octave)
            if level != octave:
                self._levels[level] = self._shrink(octave, level)
        return self._levels[level]

    def _shrink(self, source: int, level: int) -> np.ndarray:
        return cv2.resize(self._levels[source], level_size(self.width, self.height, level),
                          interpolation=cv2.INTER_AREA)

    @property
    def levels(self) -> list[int]:
        return sorted(self._levels)


@dataclass(frozen=True)
class Slide:
    """One photo ready to render: its framing and its pyramid."""

    framing: Framing
    pyramid: Pyramid


@dataclass(frozen=True)
class View:
    """One warp to do: the pyramid level to sample and the output-to-level affine map."""

    pixels: np.ndarray
    matrix: np.ndarray


def plan_view(slide: Slide, camera: Camera, out_w: int, out_h: int) -> View:
    """Pick the level for this instant (building it if needed) and the exact warp into it."""
    framing = slide.framing
    level = level_for(framing.width, framing.height, source_step(camera, framing, out_w))
    pixels = slide.pyramid.ensure(level)
    return View(pixels, warp_matrix(camera, framing, out_w, out_h,
                                    pixels.shape[1], pixels.shape[0]))


def warp(view: View, out_w: int, out_h: int, border: int = cv2.BORDER_REFLECT) -> np.ndarray:
    """One bilinear affine warp, done in horizontal bands on the calling thread.

    Each band is small enough that OpenCV runs it right here instead of on its own thread
    pool, so the engine's pool is the only parallelism: the render threads' background
    priority then holds and no nested pool competes with the encoder. Shifting the matrix by
    the band's first row makes the result identical to a single whole-frame warp.

    The window never leaves the photo, so the border mode only matters for the half pixel at
    the edge when a small photo is enlarged; reflection makes it repeat the edge pixel.
    """
    out = np.empty((out_h, out_w, view.pixels.shape[2]), np.uint8)
    rows = max(1, (OPENCV_SERIAL_PIXELS - 1) // out_w)
    for top in range(0, out_h, rows):
        bottom = min(out_h, top + rows)
        band = view.matrix.copy()
        band[:, 2] += view.matrix[:, 1] * top
        cv2.warpAffine(view.pixels, band, (out_w, bottom - top), dst=out[top:bottom],
                       flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border)
    return out


def render_view(slide: Slide, camera: Camera, out_w: int, out_h: int,
                border: int = cv2.BORDER_REFLECT) -> np.ndarray:
    """One output frame of one photo."""
    return warp(plan_view(slide, camera, out_w, out_h), out_w, out_h, border)


# --------------------------------------------------------------------------------------------
# Slideshow timing and transitions
# --------------------------------------------------------------------------------------------

def crossfade(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    return cv2.addWeighted(a, 1.0 - t, b, t, 0.0)


# Morph: the flow interpolator carries one photo into the next (a crossfade where the two
# have nothing in common). Safe on the render pool's threads.
TRANSITIONS: dict[TransitionStyle, Transition] = {
    TransitionStyle.CROSSFADE: crossfade,
    TransitionStyle.MORPH: morph,
}


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
class FrameJob:
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
        # Photos by index, each fetched when its segment starts: with the pipeline's
        # LazyImages only the photos on screen are decoded.
        planner = FramePlanner(request, _Pixels(images), framings, timeline, out_w, out_h)
        frames = self._stream(planner, TRANSITIONS[request.transition_style], progress, cancel)
        return Clip(frames, fps, out_w, out_h, num_frames, info)

    def _stream(self, planner: FramePlanner, transition: Transition, progress: ProgressCallback,
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
                    pending.append(pool.submit(render_frame, planner.job(submitted),
                                               planner.out_w, planner.out_h, transition))
                    submitted += 1
                frame = pending.popleft().result()
                progress(Progress("render", index + 1, total))
                yield frame
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)


class _Pixels(Sequence[np.ndarray]):
    """The pixels of a sequence of photos, looked up only when asked for."""

    def __init__(self, images: Sequence[LoadedImage]) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        return self.images[index].pixels


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
    """Turns frame indices into FrameJobs: cameras, pyramid levels and exact warps.

    Runs on the generator's thread only. Each photo's pyramid is built when its segment
    starts and dropped when it is over (queued jobs keep what they need), so a long slideshow
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

    def job(self, frame: int) -> FrameJob:
        shots = self.timeline.shots(frame)
        for done in [i for i in self._slides if i < shots[0].image]:
            del self._slides[done]
        views = tuple(plan_view(self._slide(s.image), self.camera(s.image, s.t),
                                self.out_w, self.out_h) for s in shots)
        return FrameJob(views, shots[-1].weight)

    def _slide(self, image: int) -> Slide:
        if image not in self._slides:
            self._slides[image] = Slide(self.framings[image], Pyramid(self.photos[image]))
        return self._slides[image]


def render_frame(job: FrameJob, out_w: int, out_h: int, transition: Transition) -> np.ndarray:
    """Render one frame on a pool thread."""
    frames = [warp(view, out_w, out_h) for view in job.views]
    if len(frames) == 1:
        return frames[0]
    return transition(frames[0], frames[1], job.weight)
