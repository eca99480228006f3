"""Ground-truth frame triplets for interpolation tests: a camera moving over a real photo
by a known sub-pixel zoom, pan and rotation per frame, plus an independently moving object."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from skimage import data

# Public-domain photos shipped inside scikit-image (no download).
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle", "hubble_deep_field")


def photo(name: str) -> np.ndarray:
    """An RGB uint8 photo from skimage.data."""
    image = getattr(data, name)()
    if isinstance(image, tuple):  # stereo pairs come with their disparity
        image = image[0]
    if image.ndim == 2:
        image = np.dstack([image] * 3)
    return np.ascontiguousarray(image[..., :3])


@dataclass(frozen=True)
class Motion:
    """Per-frame camera move and object velocity, in output pixels / degrees / zoom ratio."""

    pan: tuple[float, float] = (2.3, -1.7)
    zoom: float = 1.012
    angle: float = 0.6
    object_velocity: tuple[float, float] = (4.3, 2.9)
    object_spin: float = 3.0

    def scaled(self, k: float) -> Motion:
        """The same move k times faster."""
        return Motion(pan=(self.pan[0] * k, self.pan[1] * k), zoom=self.zoom ** k,
                      angle=self.angle * k,
                      object_velocity=(self.object_velocity[0] * k, self.object_velocity[1] * k),
                      object_spin=self.object_spin * k)


def _camera_matrix(k: float, size: tuple[int, int], centre: tuple[float, float],
                   motion: Motion) -> np.ndarray:
    """Affine map from output pixel (x, y) of frame k to source photo coordinates."""
    w, h = size
    scale = motion.zoom ** -k  # zooming in shows a smaller part of the photo
    theta = math.radians(motion.angle * k)
    c, s = math.cos(theta) * scale, math.sin(theta) * scale
    cx, cy = (w - 1) / 2, (h - 1) / 2
    tx = centre[0] + motion.pan[0] * k - (c * cx - s * cy)
    ty = centre[1] + motion.pan[1] * k - (s * cx + c * cy)
    return np.array([[c, -s, tx], [s, c, ty]], dtype=np.float64)


def _object_matrix(k: float, size: tuple[int, int], radius: int, start: tuple[float, float],
                   motion: Motion) -> np.ndarray:
    """Affine map from output pixel to object-patch coordinates for frame k."""
    theta = math.radians(motion.object_spin * k)
    c, s = math.cos(theta), math.sin(theta)
    ox = start[0] + motion.object_velocity[0] * k
    oy = start[1] + motion.object_velocity[1] * k
    # patch = R^-1 (out - o) + radius
    return np.array([[c, s, radius - (c * ox + s * oy)],
                     [-s, c, radius - (-s * ox + c * oy)]], dtype=np.float64)


def render_frames(background: np.ndarray, sprite: np.ndarray | None, ks: list[float],
                  size: tuple[int, int] = (256, 256), motion: Motion = Motion(),
                  seed: int = 0) -> list[np.ndarray]:
    """Frames k in `ks` of the scene: camera over `background`, `sprite` disc moving on top."""
    rng = np.random.default_rng(seed)
    w, h = size
    bh, bw = background.shape[:2]
    centre = (bw / 2 + rng.uniform(-0.1, 0.1) * bw, bh / 2 + rng.uniform(-0.1, 0.1) * bh)
    radius = max(12, min(w, h) // 7)
    start = (w * rng.uniform(0.3, 0.45), h * rng.uniform(0.3, 0.45))
    if sprite is not None:
        py, px = sprite.shape[0] // 2, sprite.shape[1] // 2
        patch = sprite[py - radius:py + radius + 1, px - radius:px + radius + 1]
        yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
        alpha = np.clip(radius - np.hypot(xx, yy), 0.0, 1.0).astype(np.float32)
    frames = []
    for k in ks:
        m = _camera_matrix(k, size, centre, motion)
        frame = cv2.warpAffine(background, m, size, flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        if sprite is not None:
            om = _object_matrix(k, size, radius, start, motion)
            flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
            layer = cv2.warpAffine(patch, om, size, flags=flags).astype(np.float32)
            a = cv2.warpAffine(alpha, om, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
            frame = frame * (1 - a[..., None]) + layer * a[..., None]
        frames.append(np.clip(frame + 0.5, 0, 255).astype(np.uint8))
    return frames


# Slow, medium and fast: the object moves about 10, 16 and 21 px between the outer frames.
SPEEDS = (1.0, 1.5, 2.0)


def triplets(size: tuple[int, int] = (256, 256), speeds: tuple[float, ...] = SPEEDS,
             motion: Motion = Motion()) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(label, frame 0, true middle frame, frame 2) for each photo at each speed, with
    another photo's disc moving over it."""
    out = []
    for i, name in enumerate(PHOTOS):
        background = photo(name)
        sprite = photo(PHOTOS[(i + 1) % len(PHOTOS)])
        for k in speeds:
            f0, f1, f2 = render_frames(background, sprite, [0, 1, 2], size, motion.scaled(k),
                                       seed=i)
            out.append((f"{name} x{k:g}", f0, f1, f2))
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def blend(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 50/50 blend baseline."""
    return ((a.astype(np.uint16) + b + 1) // 2).astype(np.uint8)
