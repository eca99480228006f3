"""The height-field renderer: each output pixel searches the depth along its ray (DepthFlow's
approach, vectorised with OpenCV remaps), then samples the photo exactly where the ray lands.

A view maps output pixel p and a disparity w (1 = nearest, 0 = infinitely far) to the photo
point u(w) = P(p) + Q(p) w it would show if the surface there had that disparity (see
`paths`). The surface a pixel sees is the first w, going from near to far, where the depth map
at u(w) rises to meet the ray. Rays that meet an outline's cliff instead of a surface (the area
a move uncovers behind a near object) continue into the background layer, which holds what
lies behind the near objects, so a reveal never stretches the object and is never black.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from img2vid.engines.parallax.paths import View3D

# Coarse-to-fine search: a ray advances at most `radius` px per step against the depth map
# dilated by that radius, so it cannot jump over a surface; then finer radii, then bisection.
SEARCH_RADII = (32, 8)
FINE_STEP_PX = 2.0  # depth maps are smooth: a 2 px step, then bisection to 1/64 px
BISECTIONS = 7
GRID = 8  # the whole-frame search runs at each 8 x 8 block centre; pixels start from its answer
SPREAD = 0.02  # neighbouring grid answers this far apart: an outline, searched at full size
CLIFF_PX = 3.0  # a hit is on an outline's side if the depth this far before and after it
CLIFF_JUMP = 0.06  # along the ray differs by this much (an outline: see clean.EDGE_STEP)
CLIFF_MARGIN = 0.002  # and the hit is not on the near or far surface itself
MAX_PASSES = 8  # searches on for rays whose coarse hit was a near miss, this many times
REMAP_WIDTH = 1024  # gathered points are remapped as rows of this width (remap's limits)


@dataclass(frozen=True)
class Layer:
    """One surface to search: depth (float32, [0, 1]) with its dilations, and its colours."""

    depth: np.ndarray
    dilated: tuple[np.ndarray, ...]  # depth max-filtered by each SEARCH_RADII radius
    colour: np.ndarray  # H x W x 3 uint8
    near: float  # the depth range present: the search spans only [far, near]
    far: float

    @classmethod
    def build(cls, colour: np.ndarray, depth: np.ndarray) -> Layer:
        dilated = tuple(
            cv2.dilate(depth, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 3, 2 * r + 3)))
            for r in SEARCH_RADII)
        return cls(depth, dilated, colour, float(depth.max()), float(depth.min()))


@dataclass(frozen=True)
class Scene:
    """A photo ready to render: the front layer (the photo) and the background layer."""

    front: Layer
    back: Layer


@dataclass(frozen=True)
class Hits:
    """Where rays met a surface: disparity, and whether it was an outline's side."""

    w: np.ndarray
    cliff: np.ndarray


def sample(image: np.ndarray, x: np.ndarray, y: np.ndarray,
           interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Bilinear samples of `image` at pixel-index coordinates (pixel i's centre is at i).

    Works for any shape of x and y; flat point lists are laid out in rows for remap.
    """
    shape = x.shape
    if x.ndim == 2 and x.shape[1] <= 32767 and x.shape[0] <= 32767:
        mx, my = x, y
    else:
        n = x.size
        rows = max(1, -(-n // REMAP_WIDTH))
        mx = np.zeros(rows * REMAP_WIDTH, np.float32)
        my = np.zeros(rows * REMAP_WIDTH, np.float32)
        mx[:n], my[:n] = x.ravel(), y.ravel()
        mx, my = mx.reshape(rows, REMAP_WIDTH), my.reshape(rows, REMAP_WIDTH)
    out = cv2.remap(image, mx.astype(np.float32, copy=False),
                    my.astype(np.float32, copy=False), interpolation,
                    borderMode=cv2.BORDER_REPLICATE)
    if out.shape[:2] == shape:
        return out
    channels = out.shape[2:] if out.ndim == 3 else ()
    return out.reshape(-1, *channels)[:x.size].reshape(*shape, *channels)


def search(layer: Layer, px: np.ndarray, py: np.ndarray, qx: np.ndarray, qy: np.ndarray,
           w_hi: np.ndarray | float, w_lo: np.ndarray | float, _passes: int = 0) -> Hits:
    """First surface along each ray u(w) = p + q w, for w from w_hi down to w_lo.

    Each coarse level advances every ray by equal steps in w, at most `radius` px in the
    photo, testing the depth dilated by that radius: a surface between two samples lifts the
    dilated depth at the second one, so the first such sample brackets the hit from above.
    Finer levels walk only the last coarse step; a ray whose coarse hit was a near miss is
    clear that far and searches on from there.
    """
    qn = np.maximum(np.hypot(qx, qy), 1e-6)
    hi = np.broadcast_to(np.asarray(w_hi, np.float32), qn.shape).astype(np.float32)
    lo = np.broadcast_to(np.asarray(w_lo, np.float32), qn.shape).astype(np.float32)
    lo = np.minimum(lo, hi)
    previous = None
    for radius, dilated in zip(SEARCH_RADII, layer.dilated):
        floor = lo if previous is None else np.maximum(lo, hi - _window(previous) / qn)
        hi, _ = _advance(dilated, px, py, qx, qy, qn, hi, floor, radius)
        previous = radius
    floor = np.maximum(lo, hi - _window(previous) / qn)
    clear = floor.copy()
    hi, found = _advance(layer.depth, px, py, qx, qy, qn, hi, floor, FINE_STEP_PX,
                         bracket=True)
    hits = _bisect(layer.depth, px, py, qx, qy, hi, floor)
    missed = ~found & (clear > lo)
    if missed.any() and _passes < MAX_PASSES:
        again = search(layer, px[missed], py[missed], qx[missed], qy[missed], clear[missed],
                       lo[missed], _passes + 1)
        hits.w[missed], hits.cliff[missed] = again.w, again.cliff
    return hits


def _window(radius: float) -> float:
    """How far (px) past the last clear step a dilated hit's surface can be: one step of
    `radius` plus the square kernel's half-diagonal."""
    return radius + (radius + 1) * 1.5 + 1


def _advance(depth: np.ndarray, px: np.ndarray, py: np.ndarray, qx: np.ndarray,
             qy: np.ndarray, qn: np.ndarray, hi: np.ndarray, lo: np.ndarray, step_px: float,
             bracket: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Move each ray's upper bound `hi` down to the last step before `depth` meets the ray;
    a ray that meets nothing down to `lo` is clear to there. Also which rays met it.

    With `bracket`, `lo` is also raised to the first step that meets it (in place).
    """
    span = np.maximum(hi - lo, 0.0)
    steps = int(np.ceil(float((span * qn).max(initial=0.0)) / step_px)) if span.size else 0
    steps = max(1, min(steps, 4096))
    dw = span / steps
    start = hi.copy()
    found = np.zeros(hi.shape, bool)
    for k in range(1, steps + 1):
        w = start - k * dw
        hit = (sample(depth, px + qx * w, py + qy * w) >= w) & ~found
        if hit.any():
            hi = np.where(hit, w + dw, hi)
            if bracket:
                lo[hit] = w[hit]
            found |= hit
            if found.all():
                break
    if bracket:  # rays that reach w_lo end there
        hi = np.where(found, hi, lo + dw)
    else:
        hi = np.where(found, hi, lo)
    return np.minimum(hi, start), found


def _bisect(depth: np.ndarray, px: np.ndarray, py: np.ndarray, qx: np.ndarray,
            qy: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> Hits:
    """Narrow [lo, hi] (ray in front at hi, behind at lo) to the crossing, sub-pixel exact."""
    for _ in range(BISECTIONS):
        mid = (hi + lo) * 0.5
        behind = sample(depth, px + qx * mid, py + qy * mid) >= mid
        lo = np.where(behind, mid, lo)
        hi = np.where(behind, hi, mid)
    w = (hi + lo) * 0.5
    # A surface hit sits on the depth met just before and after it along the ray; a hit on an
    # outline's side sits between a far value before it and a near value after it.
    delta = CLIFF_PX / np.maximum(np.hypot(qx, qy), 1e-6)
    before = sample(depth, px + qx * (w + delta), py + qy * (w + delta))
    after = sample(depth, px + qx * (w - delta), py + qy * (w - delta))
    low, high = np.minimum(before, after), np.maximum(before, after)
    side = (high - low > CLIFF_JUMP) & (w - low > CLIFF_MARGIN) & (high - w > CLIFF_MARGIN)
    return Hits(w, side)


def render(scene: Scene, view: View3D, out_w: int, out_h: int,
           ) -> tuple[np.ndarray, np.ndarray]:
    """One frame (H x W x 3 uint8) and the disparity each pixel shows (for depth of field)."""
    px, qx, py, qy = view.rays(out_w, out_h)
    front = scene.front

    # 1. the centre of every GRID x GRID block: the full search
    gw, gh = -(-out_w // GRID), -(-out_h // GRID)
    gpx, gqx, gpy, gqy = view.rays(out_w, out_h, np.arange(gw) * GRID + GRID / 2,
                                   np.arange(gh) * GRID + GRID / 2)
    shape = (gh, gw)
    coarse = search(front, np.broadcast_to(gpx[None, :], shape),
                    np.broadcast_to(gpy[:, None], shape), np.broadcast_to(gqx[None, :], shape),
                    np.broadcast_to(gqy[:, None], shape), front.near, front.far)

    # 2. smooth blocks: one fixed-point step (w <- depth at u(w)) from the grid's answer,
    #    exact for any plane; blocks at an outline search again within their neighbours'
    #    range; blocks inside an uncovered area (all neighbours met an outline's side) go
    #    straight to the background layer
    kernel = np.ones((3, 3), np.uint8)
    w_grid = coarse.w.astype(np.float32)
    top, bottom = cv2.dilate(w_grid, kernel), cv2.erode(w_grid, kernel)
    cliff_grid = coarse.cliff.astype(np.uint8)
    hidden = cv2.erode(cliff_grid, kernel, borderType=cv2.BORDER_REPLICATE) > 0
    edge = ((top - bottom > SPREAD) | (cv2.dilate(cliff_grid, kernel) > 0)) & ~hidden
    fx, fy, fqx, fqy = px[None, :], py[:, None], qx[None, :], qy[:, None]
    w = _upsample(w_grid, out_w, out_h)
    w = sample(front.depth, fx + fqx * w, fy + fqy * w)
    behind_y, behind_x, behind_hi = [], [], []
    ey, ex, cell, (by, bx) = _block_pixels(edge, out_w, out_h)
    if ey.size:
        margin = 2 * SPREAD
        hits = search(front, px[ex], py[ey], qx[ex], qy[ey],
                      np.minimum(top[by, bx][cell] + margin, front.near),
                      np.maximum(bottom[by, bx][cell] - margin, front.far))
        w[ey, ex] = hits.w
        behind_y.append(ey[hits.cliff])
        behind_x.append(ex[hits.cliff])
        behind_hi.append(hits.w[hits.cliff])
    hy, hx, cell, (by, bx) = _block_pixels(hidden, out_w, out_h)
    if hy.size:
        behind_y.append(hy)
        behind_x.append(hx)
        behind_hi.append(top[by, bx][cell])
    frame = sample(front.colour, fx + fqx * w, fy + fqy * w)

    # 3. rays that met an outline's side continue behind it, into the background layer
    if behind_y and sum(a.size for a in behind_y):
        cy, cx = np.concatenate(behind_y), np.concatenate(behind_x)
        back = scene.back
        hits = search(back, px[cx], py[cy], qx[cx], qy[cy],
                      np.minimum(np.concatenate(behind_hi), back.near), back.far)
        frame[cy, cx] = sample(back.colour, px[cx] + qx[cx] * hits.w,
                               py[cy] + qy[cy] * hits.w)
        w[cy, cx] = hits.w
    return frame, w


def _block_pixels(blocks: np.ndarray, out_w: int, out_h: int,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The output pixels (rows, cols) of the marked grid blocks, each pixel's block number,
    and the blocks' grid coordinates."""
    by, bx = np.nonzero(blocks)
    offsets = np.arange(GRID)
    ey = (by[:, None, None] * GRID + offsets[None, :, None]).repeat(GRID, axis=2).ravel()
    ex = (bx[:, None, None] * GRID + offsets[None, None, :]).repeat(GRID, axis=1).ravel()
    inside = (ey < out_h) & (ex < out_w)
    cell = np.repeat(np.arange(by.size), GRID * GRID)[inside]
    return ey[inside], ex[inside], cell, (by, bx)


def _upsample(grid: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Bilinear from the block centres to every pixel (resize's alignment is exactly that)."""
    size = (grid.shape[1] * GRID, grid.shape[0] * GRID)
    return cv2.resize(grid, size, interpolation=cv2.INTER_LINEAR)[:out_h, :out_w]
