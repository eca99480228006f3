"""ParallaxEngine: depth per photo, a cleaned two-layer scene, and a move rendered through it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import cv2
import numpy as np

from img2vid.core.clip import Clip
from img2vid.core.config import Settings
from img2vid.core.progress import CancelToken, Progress, ProgressCallback
from img2vid.core.request import GenerationRequest, Motion, output_size
from img2vid.engines.camera import FaceFinder, Timeline, choose_focus, stream_frames, usable_cores
from img2vid.engines.geometry import Framing
from img2vid.engines.parallax.clean import background_layer, clean_depth
from img2vid.engines.parallax.depth import DepthSource
from img2vid.engines.parallax.paths import Move, View3D
from img2vid.engines.parallax.render import Layer, Scene, render
from img2vid.media.images import LoadedImage
from img2vid.media.models_cache import cache_dir
from img2vid.postprocess.blend import BLENDS, Blend

log = logging.getLogger(__name__)

MAX_RENDER_THREADS = 4
SUBJECT_PERCENTILE = 85  # auto focus without a face: the centre of the nearest 15 %
DOF_MAX_SIGMA = 0.006  # of the output width, at depth_of_field 1 and a full depth away


@dataclass(frozen=True)
class Slide:
    """One photo prepared for a move: at render size, with its cleaned depth and focus."""

    photo: np.ndarray
    depth: np.ndarray
    move: Move
    info: dict[str, Any]


@dataclass(frozen=True)
class FrameJob:
    """One frame to render: one view of one scene, or two being mixed."""

    shots: tuple[tuple[Scene, View3D, float], ...]  # scene, view, focus depth
    weight: float = 1.0


class ParallaxEngine:
    """Renders 2.5D camera moves through photos split by depth; CPU only."""

    name = "parallax"

    def __init__(self, settings: Settings, device: str | None = None) -> None:
        # `device` is part of the Engine protocol; depth inference and rendering run on the CPU
        self.settings = settings
        self.threads = min(MAX_RENDER_THREADS, usable_cores())
        self.depth = DepthSource(settings, cache_dir(settings) / "depth")
        self._faces = FaceFinder()

    def generate(self, request: GenerationRequest, images: Sequence[LoadedImage],
                 progress: ProgressCallback, cancel: CancelToken) -> Clip:
        if not images:
            raise ValueError("the parallax engine needs at least one image")
        out_w, out_h = output_size(request, images[0].width, images[0].height)
        num_frames = int(request.num_frames or 1)
        fps = float(request.fps or 30)
        slides = []
        for index, image in enumerate(images, start=1):
            cancel.raise_if_cancelled()
            slides.append(self.prepare(request, image, out_w, out_h))
            progress(Progress("depth", index, len(images)))
        timeline = Timeline.plan(num_frames, len(images), request.transition * fps)
        info: dict[str, Any] = {"motion": request.motion.value, "zoom": request.zoom,
                                "easing": request.easing.value,
                                "depth_of_field": request.depth_of_field,
                                **slides[0].info, "render_threads": self.threads}
        if len(images) > 1:
            info["transition_frames"] = round(timeline.overlap, 3)
            info["slides"] = [s.info for s in slides]
        planner = FramePlanner(slides, timeline, request.motion is Motion.CIRCLE)
        frames = self._stream(planner, out_w, out_h, request.depth_of_field,
                              BLENDS[request.transition_style], progress, cancel)
        return Clip(frames, fps, out_w, out_h, num_frames, info)

    def prepare(self, request: GenerationRequest, image: LoadedImage, out_w: int,
                out_h: int) -> Slide:
        """Depth, focus and the move for one photo, at the size the output needs."""
        if request.depth:
            depth, depth_info = self.depth.from_map(request.depth, request.depth_invert)
        else:
            depth, depth_info = self.depth.from_model(request.depth_model, image)
        framing = Framing.fit(image.width, image.height, out_w, out_h, (0.5, 0.5))
        # the photo at the size the output samples it (more while a dolly magnifies)
        shrink = min(1.0, out_w * max(request.zoom, 1.0) / framing.base_w)
        size = (max(1, round(image.width * shrink)), max(1, round(image.height * shrink)))
        photo = image.pixels if shrink == 1.0 else cv2.resize(image.pixels, size,
                                                              interpolation=cv2.INTER_AREA)
        depth = clean_depth(depth, photo, stretch=not request.depth)
        focus, focus_source, _region = choose_focus(request, photo, self._faces)
        if focus_source == "centre":  # no face: the nearest large region is the subject
            focus, focus_source = subject_focus(depth), "depth"
        framing = Framing.fit(size[0], size[1], out_w, out_h, focus)
        move = Move(request.motion, framing, focus_depth(depth, framing), request.zoom,
                    request.easing)
        info = {"focus": [round(focus[0], 4), round(focus[1], 4)], "focus_source": focus_source,
                "focus_depth": round(move.focus_depth, 4), "depth": depth_info,
                "render_size": list(size)}
        log.debug("parallax: %s, focus %s (%s) at depth %.3f, render size %s",
                  request.motion.value, info["focus"], focus_source, move.focus_depth, size)
        return Slide(photo, depth, move, info)

    def _stream(self, planner: FramePlanner, out_w: int, out_h: int, dof: float,
                transition: Blend, progress: ProgressCallback,
                cancel: CancelToken) -> Iterator[np.ndarray]:
        def plan(index: int) -> Callable[[], np.ndarray]:
            return partial(render_frame, planner.job(index), out_w, out_h, dof, transition)

        return stream_frames(plan, planner.timeline.num_frames, self.threads,
                             "img2vid-parallax", progress, cancel)


class FramePlanner:
    """Frame index -> FrameJob; builds each photo's scene when its segment starts (on the
    generator's thread) and drops it when the segment is over: at most two are held."""

    def __init__(self, slides: Sequence[Slide], timeline: Timeline, loop: bool) -> None:
        self.slides, self.timeline, self.loop = slides, timeline, loop
        self._scenes: dict[int, Scene] = {}

    def job(self, frame: int) -> FrameJob:
        shots = self.timeline.shots(frame)
        for done in [i for i in self._scenes if i < shots[0].image]:
            del self._scenes[done]
        parts = []
        for shot in shots:
            slide = self.slides[shot.image]
            t = shot.t
            if self.loop:  # a loop's frames sit at i / n: the frame after the last is the first
                span = self.timeline.segment - 1
                t = t * span / (span + 1) if span > 0 else 0.0
            parts.append((self._scene(shot.image), slide.move.at(t), slide.move.focus_depth))
        return FrameJob(tuple(parts), shots[-1].weight)

    def _scene(self, image: int) -> Scene:
        if image not in self._scenes:
            slide = self.slides[image]
            colour, depth = background_layer(slide.photo, slide.depth, slide.move.reach())
            self._scenes[image] = Scene(Layer.build(slide.photo, slide.depth),
                                        Layer.build(colour, depth))
        return self._scenes[image]


def render_frame(job: FrameJob, out_w: int, out_h: int, dof: float,
                 transition: Blend) -> np.ndarray:
    """One frame, on a pool thread."""
    frames = []
    for scene, view, focus in job.shots:
        frame, disparity = render(scene, view, out_w, out_h)
        frames.append(depth_of_field(frame, disparity, focus, dof) if dof > 0 else frame)
    return frames[0] if len(frames) == 1 else transition(frames[0], frames[1], job.weight)


def depth_of_field(frame: np.ndarray, disparity: np.ndarray, focus: float,
                   amount: float) -> np.ndarray:
    """Blur growing with the distance from the focus depth (two blur levels, mixed per pixel)."""
    sigma = DOF_MAX_SIGMA * frame.shape[1] * amount
    if sigma < 0.3:
        return frame
    blur = np.clip(np.abs(disparity - focus) * 2.0, 0.0, 1.0)[..., None] * 2.0
    half = cv2.GaussianBlur(frame, (0, 0), sigma / 2).astype(np.float32)
    full = cv2.GaussianBlur(frame, (0, 0), sigma).astype(np.float32)
    sharp = frame.astype(np.float32)
    low = np.clip(blur, 0.0, 1.0)
    high = np.clip(blur - 1.0, 0.0, 1.0)
    out = sharp + (half - sharp) * low + (full - half) * high
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def subject_focus(depth: np.ndarray) -> tuple[float, float]:
    """(x, y) fractions: the centroid of the nearest part of the photo."""
    near = depth >= np.percentile(depth, SUBJECT_PERCENTILE)
    ys, xs = np.nonzero(near)
    if xs.size == 0:
        return 0.5, 0.5
    height, width = depth.shape
    return float((xs.mean() + 0.5) / width), float((ys.mean() + 0.5) / height)


def focus_depth(depth: np.ndarray, framing: Framing) -> float:
    """The depth at the focus point: the median of a small patch around it."""
    height, width = depth.shape
    r = max(2, round(min(width, height) * 0.02))
    x, y = int(framing.focus_x), int(framing.focus_y)
    patch = depth[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1]
    return float(np.median(patch)) if patch.size else 0.5
