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
from img2vid.engines.parallax.search import Hits, Layer, sample, search, search_points

GRID = 8  # the full search runs at every 8th pixel centre; pixels start from its answer
SPREAD = 0.02  # neighbouring grid answers this far apart: an outline, searched at full size


@dataclass(frozen=True)
class Scene:
    """A photo ready to render: the front layer (the photo) and the background layer."""

    front: Layer
    back: Layer


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
