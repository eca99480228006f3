"""Ray search through a height field: the first surface each ray u(w) = P + Q w meets, going
from near to far (DepthFlow's shader loop, vectorised over many rays with OpenCV remaps), and
whether it met an outline's side rather than a surface.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Coarse-to-fine search: a ray advances at most `radius` px per step against the depth map
# dilated by that radius, so it cannot jump over a surface; then finer radii, a fine walk, one
# bisection and a secant step.
SEARCH_RADII = (32, 8)
FINE_STEP_PX = 2.0  # depth maps are smooth: a 2 px step brackets the crossing
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
            cv2.dilate(depth, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 5, 2 * r + 5)))
            for r in SEARCH_RADII)
        return cls(depth, dilated, colour, float(depth.max()), float(depth.min()))


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
    return radius + (radius + 2) * 1.5 + 1


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
        # the nearest pixel is enough (and 4x cheaper): the kernel's extra 2 px cover the
        # half pixel it rounds by and the pixel a bilinear depth sample reaches
        hit = sample(depth, px + qx * w, py + qy * w, cv2.INTER_NEAREST) >= w
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
