"""Camera geometry: where the virtual camera looks at each instant (zoom, pan, Ken Burns,
rotate) and the pyramid warp that renders that view of a photo without aliasing."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from img2vid.core.request import Easing, Motion

ROTATE_DEGREES = 3.0  # how far the rotate motion turns over the whole move
LEVELS_PER_OCTAVE = 4  # pyramid step 2^(-1/4): the warp's residual downscale stays below 1.19
MIN_LEVEL_SIDE = 16
OPENCV_SERIAL_PIXELS = 1 << 16  # smaller warps run on the calling thread (cv::warpAffine)

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
    focus_half_w: float = 0.0  # the focus region (a face) around the point: kept in view
    focus_half_h: float = 0.0

    @classmethod
    def fit(cls, width: int, height: int, out_w: int, out_h: int,
            focus: tuple[float, float], region: tuple[float, float] = (0.0, 0.0)) -> Framing:
        """Cover-fit: the base window fills the output with no bars, cropping the longer side.

        `region` is the focus region's width and height as fractions of the photo.
        """
        aspect = out_w / out_h
        if width / height > aspect:
            base_w, base_h = height * aspect, float(height)
        else:
            base_w, base_h = float(width), width / aspect
        return cls(width, height, base_w, base_h, focus[0] * width, focus[1] * height,
                   region[0] * width / 2, region[1] * height / 2)

    def keep_focus(self, cx: float, cy: float, half_w: float, half_h: float,
                   ) -> tuple[float, float]:
        """The nearest centre whose window holds the focus region (or, for a region larger
        than the window, is centred on it): a crop to another aspect never cuts the face."""
        def axis(c: float, f: float, region: float, half: float) -> float:
            if region >= half:
                return f
            return min(max(c, f + region - half), f - region + half)

        return (axis(cx, self.focus_x, self.focus_half_w, half_w),
                axis(cy, self.focus_y, self.focus_half_h, half_h))

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
        return _keep_inside(_pan(motion, framing, zoom, p), framing)  # sweeps past the focus
    half_w, half_h = window_extent(camera, framing)
    cx, cy = framing.keep_focus(camera.cx, camera.cy, half_w, half_h)
    return _keep_inside(Camera(cx, cy, camera.scale, camera.angle), framing)


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
class View:
    """One warp to do: the pyramid level to sample and the output-to-level affine map."""

    pixels: np.ndarray
    matrix: np.ndarray


def plan_view(framing: Framing, pyramid: Pyramid, camera: Camera, out_w: int,
              out_h: int) -> View:
    """Pick the level for this instant (building it if needed) and the exact warp into it."""
    level = level_for(framing.width, framing.height, source_step(camera, framing, out_w))
    pixels = pyramid.ensure(level)
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


def render_view(framing: Framing, pyramid: Pyramid, camera: Camera, out_w: int, out_h: int,
                border: int = cv2.BORDER_REFLECT) -> np.ndarray:
    """One output frame of one photo."""
    return warp(plan_view(framing, pyramid, camera, out_w, out_h), out_w, out_h, border)
