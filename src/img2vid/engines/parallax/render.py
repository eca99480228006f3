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

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from img2vid.engines.parallax.paths import View3D

# Coarse-to-fine search: a ray advances at most `radius` px per step against the depth map
# dilated by that radius, so it cannot jump over a surface; then finer radii, then bisection.
SEARCH_RADII = (32, 8)
FINE_STEP_PX = 2.0  # depth maps are smooth: a 2 px step brackets the crossing
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
    The fine level walks only the last coarse step and brackets the crossing; one bisection
    and a secant step find it, sub-pixel exact. A ray whose coarse hit was a near miss is
    clear that far and searches on from there.
    """
    qn = np.maximum(np.hypot(qx, qy), 1e-6)
    hi = np.broadcast_to(np.asarray(w_hi, np.float32), qn.shape).astype(np.float32)
    lo = np.broadcast_to(np.asarray(w_lo, np.float32), qn.shape).astype(np.float32)
    lo = np.minimum(lo, hi)
    previous = None
    for radius, dilated in zip(SEARCH_RADII, layer.dilated):
        floor = lo if previous is None else np.maximum(lo, hi - _window(previous) / qn)
        hi = _advance(dilated, px, py, qx, qy, qn, hi, floor, radius)
        previous = radius
    floor = np.maximum(lo, hi - _window(previous) / qn)
    bracket = _bracket(layer.depth, px, py, qx, qy, qn, hi, floor)
    hits = _refine(layer.depth, px, py, qx, qy, bracket)
    missed = ~bracket.found & (floor > lo)
    if missed.any() and _passes < MAX_PASSES:
        again = search_points(layer, px[missed], py[missed], qx[missed], qy[missed],
                              floor[missed], lo[missed], _passes + 1)
        hits.w[missed], hits.cliff[missed] = again.w, again.cliff
    return hits


def search_points(layer: Layer, px: np.ndarray, py: np.ndarray, qx: np.ndarray,
                  qy: np.ndarray, w_hi: np.ndarray | float, w_lo: np.ndarray | float,
                  _passes: int = 0) -> Hits:
    """`search` for flat lists of rays, laid out once as rows that remap takes as they are."""
    n = px.size
    rows = max(1, -(-n // REMAP_WIDTH))

    def lay(a: np.ndarray | float) -> np.ndarray:
        flat = np.broadcast_to(np.asarray(a, np.float32), (n,))
        out = np.empty(rows * REMAP_WIDTH, np.float32)
        out[:n] = flat
        out[n:] = flat[0] if n else 0.0  # a real ray: padding must not search further
        return out.reshape(rows, REMAP_WIDTH)

    if n == 0:
        return Hits(np.zeros(0, np.float32), np.zeros(0, bool))
    hits = search(layer, lay(px), lay(py), lay(qx), lay(qy), lay(w_hi), lay(w_lo), _passes)
    return Hits(hits.w.ravel()[:n], hits.cliff.ravel()[:n])


def _window(radius: float) -> float:
    """How far (px) past the last clear step a dilated hit's surface can be: one step of
    `radius` plus the square kernel's half-diagonal."""
    return radius + (radius + 1) * 1.5 + 1


def _steps(hi: np.ndarray, lo: np.ndarray, qn: np.ndarray, step_px: float,
           ) -> tuple[int, np.ndarray]:
    """Equal steps in w from hi down to lo, none longer than step_px in the photo."""
    span = np.maximum(hi - lo, 0.0)
    steps = int(np.ceil(float((span * qn).max(initial=0.0)) / step_px)) if span.size else 0
    steps = max(1, min(steps, 4096))
    return steps, span / steps


def _advance(depth: np.ndarray, px: np.ndarray, py: np.ndarray, qx: np.ndarray,
             qy: np.ndarray, qn: np.ndarray, hi: np.ndarray, lo: np.ndarray,
             step_px: float) -> np.ndarray:
    """Each ray's upper bound `hi` moved down to the last step before `depth` meets the ray;
    a ray that meets nothing down to `lo` is clear to there."""
    steps, dw = _steps(hi, lo, qn, step_px)
    start, hi = hi, lo.copy()
    found = np.zeros(hi.shape, bool)
    for k in range(1, steps + 1):
        w = start - k * dw
        hit = sample(depth, px + qx * w, py + qy * w) >= w
        hit &= ~found
        if hit.any():
            np.copyto(hi, w + dw, where=hit)
            found |= hit
            if found.all():
                break
    return hi


@dataclass
class _Bracket:
    """Where each ray crosses the depth: between lo (behind, depth - w = f_lo >= 0) and hi
    (in front, f_hi < 0), for the rays that `found` one."""

    hi: np.ndarray
    lo: np.ndarray
    f_hi: np.ndarray
    f_lo: np.ndarray
    found: np.ndarray


def _bracket(depth: np.ndarray, px: np.ndarray, py: np.ndarray, qx: np.ndarray,
             qy: np.ndarray, qn: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> _Bracket:
    """Walk from hi to lo in FINE_STEP_PX steps to the first step behind the depth."""
    steps, dw = _steps(hi, lo, qn, FINE_STEP_PX)
    start = hi
    f_prev = sample(depth, px + qx * start, py + qy * start) - start
    b = _Bracket(lo + dw, lo.copy(), np.full(hi.shape, -1.0, np.float32),
                 np.zeros(hi.shape, np.float32), np.zeros(hi.shape, bool))
    for k in range(1, steps + 1):
        w = start - k * dw
        f = sample(depth, px + qx * w, py + qy * w) - w
        hit = (f >= 0) & ~b.found
        if hit.any():
            np.copyto(b.hi, w + dw, where=hit)
            np.copyto(b.lo, w, where=hit)
            np.copyto(b.f_hi, f_prev, where=hit)
            np.copyto(b.f_lo, f, where=hit)
            b.found |= hit
            if b.found.all():
                break
        f_prev = f
    return b


def _refine(depth: np.ndarray, px: np.ndarray, py: np.ndarray, qx: np.ndarray,
            qy: np.ndarray, b: _Bracket) -> Hits:
    """The crossing inside each bracket: one bisection, then the secant of what is left
    (the depth along a ray is near linear over a pixel), sub-pixel exact."""
    mid = (b.hi + b.lo) * 0.5
    f = sample(depth, px + qx * mid, py + qy * mid) - mid
    behind = f >= 0
    lo, hi = np.where(behind, mid, b.lo), np.where(behind, b.hi, mid)
    f_lo, f_hi = np.where(behind, f, b.f_lo), np.where(behind, b.f_hi, f)
    t = np.clip(f_lo / np.maximum(f_lo - f_hi, 1e-9), 0.0, 1.0)
    w = np.where(b.found, lo + (hi - lo) * t, b.lo)
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

    # 1. every GRID-th pixel centre: the full search
    grid = _grid_search(front, view, out_w, out_h, None)

    # 2. a cell (the square between four grid points) where they agree: one fixed-point step
    #    (w <- depth at u(w)) from their bilinear answer, at half resolution (w is smooth
    #    there); a cell across an outline searches again within its corners' range, at full
    #    size; a cell whose corners all met an outline's side (inside an uncovered area)
    #    goes straight to the background layer
    cells = Cells.of(grid)
    w = _fixed_point(front.depth, view, grid.w, out_w, out_h)
    # half-resolution values next to an outline's cell mix across it: its neighbours again
    by, bx, _ = cells.pixels(cells.border, out_w, out_h)
    if by.size:
        w[by, bx] = _fixed_point_at(front.depth, view, grid.w, bx, by, out_w, out_h)
    behind_y, behind_x, behind_hi = [], [], []
    ey, ex, cell = cells.pixels(cells.edge, out_w, out_h)
    if ey.size:
        margin = 2 * SPREAD
        hits = search_points(front, px[ex], py[ey], qx[ex], qy[ey],
                             np.minimum(cells.top.ravel()[cell] + margin, front.near),
                             np.maximum(cells.bottom.ravel()[cell] - margin, front.far))
        w[ey, ex] = hits.w
        behind_y.append(ey[hits.cliff])
        behind_x.append(ex[hits.cliff])
        behind_hi.append(hits.w[hits.cliff])
    hy, hx, cell = cells.pixels(cells.hidden, out_w, out_h)
    if hy.size:
        behind_y.append(hy)
        behind_x.append(hx)
        behind_hi.append(cells.top.ravel()[cell])
    frame = sample(front.colour, px[None, :] + qx[None, :] * w, py[:, None] + qy[:, None] * w)

    # 3. rays that met an outline's side continue behind it, into the background layer
    if behind_y and sum(a.size for a in behind_y):
        cy, cx = np.concatenate(behind_y), np.concatenate(behind_x)
        w_back = _behind(scene.back, view, out_w, out_h, cells.edge | cells.hidden, cx, cy,
                         np.concatenate(behind_hi))
        frame[cy, cx] = sample(scene.back.colour, px[cx] + qx[cx] * w_back,
                               py[cy] + qy[cy] * w_back)
        w[cy, cx] = w_back
    return frame, w


@dataclass(frozen=True)
class Cells:
    """The squares between neighbouring grid points (with the grid's border repeated: one
    more each way), which an output pixel's bilinear start interpolates between."""

    top: np.ndarray  # the nearest and farthest of the cell's four corners
    bottom: np.ndarray
    edge: np.ndarray  # corners far apart, or some on an outline's side: search each pixel
    hidden: np.ndarray  # every corner on an outline's side: behind it
    border: np.ndarray  # neither, next to one that is

    @classmethod
    def of(cls, grid: Hits) -> Cells:
        top, bottom = _corners(grid.w, cv2.dilate), _corners(grid.w, cv2.erode)
        cliff = grid.cliff.astype(np.uint8)
        some, every = _corners(cliff, cv2.dilate) > 0, _corners(cliff, cv2.erode) > 0
        edge = ((top - bottom > SPREAD) | some) & ~every
        marked = (edge | every).astype(np.uint8)
        border = (cv2.dilate(marked, np.ones((3, 3), np.uint8)) > 0) & ~(edge | every)
        return cls(top, bottom, edge, every, border)

    @staticmethod
    def pixels(marked: np.ndarray, out_w: int, out_h: int,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The output pixels (rows, cols) of the marked cells, and each one's cell index."""
        cy, cx = np.nonzero(marked)
        offsets = np.arange(GRID) - GRID // 2  # cell (i, j) spans the grid points i-1..i
        ey = (cy[:, None, None] * GRID + offsets[None, :, None]).repeat(GRID, axis=2).ravel()
        ex = (cx[:, None, None] * GRID + offsets[None, None, :]).repeat(GRID, axis=1).ravel()
        inside = (ey >= 0) & (ey < out_h) & (ex >= 0) & (ex < out_w)
        index = np.repeat(cy * marked.shape[1] + cx, GRID * GRID)[inside]
        return ey[inside], ex[inside], index


def _corners(grid: np.ndarray, reduce: Callable[..., np.ndarray]) -> np.ndarray:
    """`reduce` (dilate: max, erode: min) over each cell's 2 x 2 corners."""
    padded = cv2.copyMakeBorder(grid, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    return reduce(padded, np.ones((2, 2), np.uint8), anchor=(0, 0))[:-1, :-1]


def _grid_points(out_w: int, out_h: int) -> tuple[np.ndarray, np.ndarray]:
    """Output coordinates of the grid points: every GRID-th pixel centre."""
    return (np.arange(-(-out_w // GRID)) * GRID + GRID / 2,
            np.arange(-(-out_h // GRID)) * GRID + GRID / 2)


def _grid_search(layer: Layer, view: View3D, out_w: int, out_h: int,
                 marked: np.ndarray | None) -> Hits:
    """The search from the nearest to the farthest depth at each grid point (only the marked
    ones if given, the others left at 0)."""
    cols, rows = _grid_points(out_w, out_h)
    gpx, gqx, gpy, gqy = view.rays(out_w, out_h, cols, rows)
    shape = (rows.size, cols.size)
    if marked is None:
        hits = search(layer, np.broadcast_to(gpx[None, :], shape),
                      np.broadcast_to(gpy[:, None], shape), np.broadcast_to(gqx[None, :], shape),
                      np.broadcast_to(gqy[:, None], shape), layer.near, layer.far)
        return Hits(hits.w.astype(np.float32), hits.cliff)
    gy, gx = np.nonzero(marked)
    some = search_points(layer, gpx[gx], gpy[gy], gqx[gx], gqy[gy], layer.near, layer.far)
    w, cliff = np.zeros(shape, np.float32), np.zeros(shape, bool)
    w[gy, gx], cliff[gy, gx] = some.w, some.cliff
    return Hits(w, cliff)


def _fixed_point(depth: np.ndarray, view: View3D, w_grid: np.ndarray, out_w: int,
                 out_h: int) -> np.ndarray:
    """w <- depth at u(w) from the grid's bilinear answer (exact on a surface seen face on;
    the grid's error times the surface's slope otherwise), computed at half resolution and
    upsampled: it is only kept where the surface is smooth."""
    hw, hh = -(-out_w // 2), -(-out_h // 2)
    hpx, hqx, hpy, hqy = view.rays(out_w, out_h, np.arange(hw) * 2 + 1.0,
                                   np.arange(hh) * 2 + 1.0)
    # resize's alignment puts grid point k at half-res pixel 4k + 1.5 (GRID 8): its own place
    half = cv2.resize(w_grid, (w_grid.shape[1] * GRID // 2, w_grid.shape[0] * GRID // 2),
                      interpolation=cv2.INTER_LINEAR)[:hh, :hw]
    half = sample(depth, hpx[None, :] + hqx[None, :] * half, hpy[:, None] + hqy[:, None] * half)
    return cv2.resize(half, (2 * hw, 2 * hh), interpolation=cv2.INTER_LINEAR)[:out_h, :out_w]


def _fixed_point_at(depth: np.ndarray, view: View3D, w_grid: np.ndarray, cx: np.ndarray,
                    cy: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """`_fixed_point` at full resolution for output pixels (cx, cy)."""
    px, qx, py, qy = view.rays(out_w, out_h, cx + 0.5, cy + 0.5)
    w = sample(w_grid, ((cx + 0.5) / GRID - 0.5).astype(np.float32),
               ((cy + 0.5) / GRID - 0.5).astype(np.float32))
    return sample(depth, px + qx * w, py + qy * w)


def _behind(back: Layer, view: View3D, out_w: int, out_h: int, marked: np.ndarray,
            cx: np.ndarray, cy: np.ndarray, w_hi: np.ndarray) -> np.ndarray:
    """The background layer's disparity seen by output pixels (cx, cy) behind the outline
    they met at w_hi (their cells are `marked`).

    The background layer is smooth where it was filled, so this is the front's scheme again:
    the search at the marked cells' corners, one fixed-point step per pixel, and a full
    search only where the corners disagree or meet a surface in front of w_hi.
    """
    m = marked  # a grid point is a corner of the four cells around it
    points = m[:-1, :-1] | m[1:, :-1] | m[:-1, 1:] | m[1:, 1:]
    grid = _grid_search(back, view, out_w, out_h, points)
    cells = Cells.of(grid)
    w = _fixed_point_at(back.depth, view, grid.w, cx, cy, out_w, out_h)
    index = (cy + GRID // 2) // GRID * cells.top.shape[1] + (cx + GRID // 2) // GRID
    top = cells.top.ravel()[index]
    again = cells.edge.ravel()[index] | cells.hidden.ravel()[index] | (top > w_hi + SPREAD)
    if again.any():
        px, qx, py, qy = view.rays(out_w, out_h, cx[again] + 0.5, cy[again] + 0.5)
        w[again] = search_points(back, px, py, qx, qy, np.minimum(w_hi[again], back.near),
                                 back.far).w
    return w
