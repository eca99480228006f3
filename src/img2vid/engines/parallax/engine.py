"""ParallaxEngine: depth per photo, a cleaned two-layer scene, and a move rendered through it."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import cv2
import numpy as np

from img2vid.core.clip import Clip
from img2vid.core.config import Settings
from img2vid.core.progress import CancelToken, Progress, ProgressCallback
from img2vid.core.request import GenerationRequest, Motion
from img2vid.engines.focus import choose_focus
from img2vid.engines.geometry import Framing
from img2vid.engines.parallax.clean import background_layer, clean_depth
from img2vid.engines.parallax.depth import DepthSource
from img2vid.engines.parallax.paths import Move, View3D
from img2vid.engines.parallax.render import Layer, Scene, render
from img2vid.engines.slideshow import FramePlanner, PhotoEngine, Shot, Slideshow, Timeline
from img2vid.media.images import LoadedImage
from img2vid.media.models_cache import cache_dir

log = logging.getLogger(__name__)

SUBJECT_PERCENTILE = 85  # auto focus without a face: the centre of the nearest 15 %
DOF_MAX_SIGMA = 0.006  # of the output width, at depth_of_field 1 and a full depth away


@dataclass(frozen=True)
class Slide:
    """One photo prepared for a move: at render size, with its cleaned depth and focus."""

    photo: np.ndarray
    depth: np.ndarray
    move: Move
    info: dict[str, Any]


# what a pool thread draws for one photo: its scene, the view, the depth in focus
ParallaxShot = tuple[Scene, View3D, float]


class ParallaxEngine(PhotoEngine):
    """Renders 2.5D camera moves through photos split by depth; CPU only."""

    name = "parallax"

    def __init__(self, settings: Settings, device: str | None = None) -> None:
        super().__init__(settings, device)  # depth inference runs on the CPU too
        self.depth = DepthSource(settings, cache_dir(settings) / "depth")

    def generate(self, request: GenerationRequest, images: Sequence[LoadedImage],
                 progress: ProgressCallback, cancel: CancelToken) -> Clip:
        if not images:
            raise ValueError("the parallax engine needs at least one image")
        show = Slideshow.plan(request, images)
        slides = []
        for index, image in enumerate(images, start=1):
            cancel.raise_if_cancelled()
            slides.append(self.prepare(request, image, show.width, show.height))
            progress(Progress("depth", index, len(images)))
        info = self.describe(request, show, [s.info for s in slides],
                             depth_of_field=request.depth_of_field)
        planner = ParallaxPlanner(slides, show.timeline, request.motion is Motion.CIRCLE)
        draw = partial(draw_shot, out_w=show.width, out_h=show.height,
                       dof=request.depth_of_field)
        frames = self.stream(request, planner, draw, progress, cancel)
        return Clip(frames, show.fps, show.width, show.height, show.num_frames, info)

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


class ParallaxPlanner(FramePlanner[Scene, ParallaxShot]):
    """Frame index -> the views to render; a photo's two-layer scene is built when its segment
    starts (on the generator's thread) and held while the photo is on screen."""

    def __init__(self, slides: Sequence[Slide], timeline: Timeline, loop: bool) -> None:
        super().__init__(timeline)
        self.slides, self.loop = slides, loop

    def build(self, image: int) -> Scene:
        slide = self.slides[image]
        colour, depth = background_layer(slide.photo, slide.depth, slide.move.reach())
        return Scene(Layer.build(slide.photo, slide.depth), Layer.build(colour, depth))

    def part(self, shot: Shot, held: Scene) -> ParallaxShot:
        move, t = self.slides[shot.image].move, shot.t
        if self.loop:  # a loop's frames sit at i / n: the frame after the last is the first
            span = self.timeline.segment - 1
            t = t * span / (span + 1) if span > 0 else 0.0
        return held, move.at(t), move.focus_depth


def draw_shot(shot: ParallaxShot, out_w: int, out_h: int, dof: float) -> np.ndarray:
    """One photo's part of a frame, on a pool thread."""
    scene, view, focus = shot
    frame, disparity = render(scene, view, out_w, out_h)
    return depth_of_field(frame, disparity, focus, dof) if dof > 0 else frame


def depth_of_field(frame: np.ndarray, disparity: np.ndarray, focus: float,
                   amount: float) -> np.ndarray:
    """Blur growing with the distance from the focus depth (two blur levels, mixed per pixel)."""
    sigma = DOF_MAX_SIGMA * frame.shape[1] * amount
    if sigma < 0.3:
        return frame
    level = np.clip(np.abs(disparity - focus) * 4.0, 0.0, 2.0)  # 0 sharp, 1 half, 2 full blur
    low = np.minimum(level, 1.0)
    high = level - low
    mixed = cv2.blendLinear(frame, gaussian(frame, sigma / 2), 1.0 - low, low)
    return cv2.blendLinear(mixed, gaussian(frame, sigma), 1.0 - high, high)


def gaussian(frame: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur; a wide one on a copy shrunk by up to sigma / 2.5 (it keeps no detail
    the copy lacks), the box shrink and linear enlargement counted in its width."""
    factor = int(min(8, sigma // 2.5))  # the small copy keeps a blur of 2.5 px or more
    if factor <= 1:
        return cv2.GaussianBlur(frame, (0, 0), sigma)
    height, width = frame.shape[:2]
    # whole blocks of factor x factor pixels: the shrink then averages exactly those
    padded = cv2.copyMakeBorder(frame, 0, -height % factor, 0, -width % factor,
                                cv2.BORDER_REFLECT_101)
    small = cv2.resize(padded, (padded.shape[1] // factor, padded.shape[0] // factor),
                       interpolation=cv2.INTER_AREA)
    # the shrink's box (variance f^2 / 12) and the enlargement's tent (f^2 / 6) blur too
    small = cv2.GaussianBlur(small, (0, 0), math.sqrt(sigma**2 - factor**2 / 4) / factor)
    return cv2.resize(small, (small.shape[1] * factor, small.shape[0] * factor),
                      interpolation=cv2.INTER_LINEAR)[:height, :width]


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
