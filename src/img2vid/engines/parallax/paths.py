"""Parallax camera paths: dolly, truck, pedestal, orbit, circle and vertigo as rays per pixel.

Depth is disparity w in [0, 1] (1 = the nearest surface, 0 = infinitely far). A camera that
moves by t (sideways, in photo pixels of shift at w = 1) and by tz towards the scene (as a
fraction of the nearest surface's distance), seen through a window centred on c at `scale`,
shows at output offset o the photo point

    u(w) = a + (c - a + o) g (1 - tz w) + t (w - pivot)

where a is the point the dolly aims at (it keeps its place on screen), g compensates the
magnification at the pivot depth (the vertigo effect) and `pivot` is the depth that stays
still in a sideways move (0: a real truck, the focus depth: an orbit). u is affine in w, so a
pixel's ray is u = P + Q w. Every path keeps u inside the photo for all w in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from img2vid.core.request import Easing, Motion
from img2vid.engines.geometry import Framing, eased

MAX_DOLLY = 0.75  # the nearest surface at most 4x nearer at the end of a dolly
MAX_VERTIGO = 3.0  # how far back a dolly-zoom may pull, in nearest-surface distances

TRUCKS = {Motion.TRUCK_LEFT: (1, 0), Motion.TRUCK_RIGHT: (-1, 0), Motion.PEDESTAL_UP: (0, 1),
          Motion.PEDESTAL_DOWN: (0, -1), Motion.PAN_LEFT: (1, 0), Motion.PAN_RIGHT: (-1, 0),
          Motion.PAN_UP: (0, 1), Motion.PAN_DOWN: (0, -1)}
DOLLIES = {Motion.DOLLY_IN: False, Motion.ZOOM_IN: False, Motion.KEN_BURNS: False,
           Motion.DOLLY_OUT: True, Motion.ZOOM_OUT: True}
PARALLAX_MOTIONS = frozenset({Motion.STATIC, Motion.ORBIT, Motion.CIRCLE, Motion.VERTIGO,
                              *TRUCKS, *DOLLIES})


@dataclass(frozen=True)
class View3D:
    """One instant of a parallax move (all lengths in photo pixels of the rendered photo)."""

    cx: float
    cy: float
    scale: float
    base_w: float
    ax: float
    ay: float
    g: float = 1.0
    tx: float = 0.0
    ty: float = 0.0
    tz: float = 0.0
    pivot: float = 0.0

    def rays(self, out_w: int, out_h: int, cols: np.ndarray | None = None,
             rows: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        """(Px, Qx) per output column and (Py, Qy) per row: pixel (col, row) sees the photo
        pixel index (Px + Qx w, Py + Qy w) (index i is the centre of the photo's pixel i).
        `cols`/`rows` are output coordinates (default every pixel centre, i + 0.5)."""
        if cols is None:
            cols = np.arange(out_w, dtype=np.float64) + 0.5
        if rows is None:
            rows = np.arange(out_h, dtype=np.float64) + 0.5
        step = self.base_w / (self.scale * out_w)

        def axis(centres: np.ndarray, size: int, c: float, a: float, t: float,
                 ) -> tuple[np.ndarray, np.ndarray]:
            r = (c - a + (np.asarray(centres, np.float64) - size / 2) * step) * self.g
            return ((a + r - t * self.pivot - 0.5).astype(np.float32),
                    (t - r * self.tz).astype(np.float32))

        return (*axis(cols, out_w, self.cx, self.ax, self.tx),
                *axis(rows, out_h, self.cy, self.ay, self.ty))

    def point(self, x: float, y: float, w: float, out_w: int, out_h: int) -> tuple[float, float]:
        """The photo point (continuous, pixel i covers [i, i + 1)) that output point (x, y)
        shows on a surface of disparity w."""
        px, qx, py, qy = self.rays(out_w, out_h, np.array([x]), np.array([y]))
        return float(px[0] + qx[0] * w) + 0.5, float(py[0] + qy[0] * w) + 0.5


@dataclass(frozen=True)
class Move:
    """A parallax motion over one photo: its framing, focus depth and amount."""

    motion: Motion
    framing: Framing
    focus_depth: float
    zoom: float
    easing: Easing

    def slack(self) -> tuple[float, float]:
        """How far a window at `zoom` can slide inside the base window, each way (px)."""
        f = self.framing
        return f.base_w / 2 * (1 - 1 / self.zoom), f.base_h / 2 * (1 - 1 / self.zoom)

    def reach(self) -> float:
        """The most one depth slides against another over the move (px): what a reveal needs."""
        f = self.framing
        if self.motion in DOLLIES:
            return math.hypot(f.base_w, f.base_h) / 2 * self._dolly()
        if self.motion is Motion.VERTIGO:
            return math.hypot(f.base_w, f.base_h) / 2 * (self.zoom - 1)
        return math.hypot(*self.slack()) * 2

    def _dolly(self) -> float:
        """tz at the end of a dolly: the focus grows by `zoom` (less if that needs too much)."""
        return min(MAX_DOLLY, (1 - 1 / self.zoom) / max(self.focus_depth, 1e-3))

    def _vertigo(self) -> float:
        """How far a dolly-zoom pulls back so the nearest surface shrinks by `zoom`."""
        room = 1 - self.zoom * self.focus_depth
        return MAX_VERTIGO if room <= 0 else min(MAX_VERTIGO, (self.zoom - 1) / room)

    def at(self, t: float, loop: bool = False) -> View3D:
        """The view at time fraction t in [0, 1] (a circle's t = 1 is its t = 0 again)."""
        f = self.framing
        bx, by = f.base_centre
        m = self.motion
        p = eased(self.easing, t)
        if m is Motion.STATIC:
            return View3D(bx, by, 1.0, f.base_w, bx, by)
        if m in DOLLIES:
            if DOLLIES[m]:
                p = 1.0 - p
            return View3D(bx, by, 1.0, f.base_w, f.focus_x, f.focus_y, tz=self._dolly() * p)
        if m is Motion.VERTIGO:
            # the camera-engine window zoomed about the focus; pulling back widens it again
            cx = f.focus_x + (bx - f.focus_x) / self.zoom
            cy = f.focus_y + (by - f.focus_y) / self.zoom
            tz = -self._vertigo() * p
            return View3D(cx, cy, self.zoom, f.base_w, f.focus_x, f.focus_y,
                          g=1 / (1 - tz * self.focus_depth), tz=tz)
        sx, sy = self.slack()
        if m in TRUCKS:  # background at infinity stays, nearer layers slide by their disparity
            dx, dy = TRUCKS[m]
            s = 1 - 2 * p
            return View3D(bx, by, self.zoom, f.base_w, bx, by, tx=dx * sx * s, ty=dy * sy * s)
        # orbit and circle turn about the focus depth: nearer and farther slide opposite ways
        lever = max(self.focus_depth, 1 - self.focus_depth, 1e-3)
        if m is Motion.ORBIT:
            return View3D(bx, by, self.zoom, f.base_w, bx, by, tx=sx / lever * (2 * p - 1),
                          pivot=self.focus_depth)
        if m is Motion.CIRCLE:
            angle = 2 * math.pi * t  # constant speed: easing would stop the loop at its seam
            return View3D(bx, by, self.zoom, f.base_w, bx, by, tx=sx / lever * math.cos(angle),
                          ty=sy / lever * math.sin(angle), pivot=self.focus_depth)
        raise ValueError(f"not a parallax motion: {m.value}")
