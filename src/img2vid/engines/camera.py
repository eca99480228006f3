"""Camera engine: weightless sub-pixel camera moves (zoom, pan, Ken Burns, rotate) and slideshows."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

import numpy as np

from img2vid.core.clip import Clip
from img2vid.core.progress import CancelToken, Progress, ProgressCallback
from img2vid.core.request import GenerationRequest
from img2vid.engines.focus import choose_focus
from img2vid.engines.geometry import (
    Camera,
    Framing,
    Pyramid,
    View,
    camera_at,
    eased,
    plan_view,
    warp,
)
from img2vid.engines.slideshow import FramePlanner, PhotoEngine, Shot, Slideshow
from img2vid.media.images import LoadedImage

log = logging.getLogger(__name__)


class CameraEngine(PhotoEngine):
    """Renders camera moves over still photos; embedded, weightless, CPU only."""

    name = "camera"

    def generate(self, request: GenerationRequest, images: Sequence[LoadedImage],
                 progress: ProgressCallback, cancel: CancelToken) -> Clip:
        if not images:
            raise ValueError("the camera engine needs at least one image")
        show = Slideshow.plan(request, images)
        framings, slides = [], []
        for index, image in enumerate(images, start=1):
            cancel.raise_if_cancelled()
            focus, source, region = choose_focus(request, image.pixels, self._faces)
            framing = Framing.fit(image.width, image.height, show.width, show.height, focus,
                                  region)
            framings.append(framing)
            slides.append({"focus": _focus_fractions(framing), "focus_source": source})
            if request.focus == "auto":  # face detection takes a moment per photo
                progress(Progress("focus", index, len(images)))
        info = self.describe(request, show, slides)
        log.debug("camera: %s %dx%d, %d frames, %d photo(s), focus %s (%s), %d threads",
                  request.motion.value, show.width, show.height, show.num_frames, len(images),
                  info["focus"], info["focus_source"], self.threads)
        # Photos by index, each fetched when its segment starts: with the pipeline's
        # LazyImages only the photos on screen are decoded.
        planner = CameraPlanner(request, _Pixels(images), framings, show)
        frames = self.stream(request, planner, partial(draw, out_w=show.width, out_h=show.height),
                             progress, cancel)
        return Clip(frames, show.fps, show.width, show.height, show.num_frames, info)


class _Pixels(Sequence[np.ndarray]):
    """The pixels of a sequence of photos, looked up only when asked for."""

    def __init__(self, images: Sequence[LoadedImage]) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        return self.images[index].pixels


def _focus_fractions(framing: Framing) -> list[float]:
    return [round(float(framing.focus_x / framing.width), 4),
            round(float(framing.focus_y / framing.height), 4)]


class CameraPlanner(FramePlanner[Pyramid, View]):
    """Frame index -> the exact warps to do: the camera at that instant, the pyramid level to
    sample (a photo's pyramid is held while the photo is on screen)."""

    def __init__(self, request: GenerationRequest, photos: Sequence[np.ndarray],
                 framings: Sequence[Framing], show: Slideshow) -> None:
        super().__init__(show.timeline)
        self.motion, self.zoom, self.easing = request.motion, request.zoom, request.easing
        self.photos, self.framings = photos, framings
        self.out_w, self.out_h = show.width, show.height

    def camera(self, image: int, t: float) -> Camera:
        return camera_at(self.motion, self.framings[image], self.zoom, eased(self.easing, t))

    def build(self, image: int) -> Pyramid:
        return Pyramid(self.photos[image])

    def part(self, shot: Shot, held: Pyramid) -> View:
        return plan_view(self.framings[shot.image], held, self.camera(shot.image, shot.t),
                         self.out_w, self.out_h)


def draw(view: View, out_w: int, out_h: int) -> np.ndarray:
    """One photo's part of a frame, on a pool thread."""
    return warp(view, out_w, out_h)

