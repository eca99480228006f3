"""Frame interpolation: the FrameInterpolator protocol, the weightless optical-flow interpolator
(whose pairs also morph between photos, see blend.py), and the streaming stage that raises a
clip's frame rate."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction
from typing import Protocol

import cv2
import numpy as np

from img2vid.core.clip import Clip
from img2vid.core.errors import InputError
from img2vid.core.progress import CancelToken, Progress, ProgressCallback, no_progress

log = logging.getLogger(__name__)


class PreparedPair(Protocol):
    """Two neighbouring frames with their motion estimated once; renders any time between."""

    @property
    def confident(self) -> bool:
        """False when the frames do not match (a scene cut): render() then repeats frames."""
        ...

    def render(self, t: float) -> np.ndarray:
        """The frame at time t in (0, 1) between the pair's first (0) and second (1) frame."""
        ...


class FrameInterpolator(Protocol):
    """Estimates motion between two H x W x 3 uint8 RGB frames of the same size."""

    name: str

    def prepare(self, a: np.ndarray, b: np.ndarray) -> PreparedPair: ...


# ---------------------------------------------------------------------------------------------
# Optical flow (OpenCV DIS)


class FlowInterpolator:
    """OpenCV DIS optical flow both ways at reduced size, with occlusion-aware blending.

    Flows are computed once per pair (`prepare`) on grey images whose longest side is at
    most `max_side`; every in-between time reuses them, so 3x or 4x output costs little
    more than 2x. A forward-backward consistency check marks pixels with no match in the
    other frame (occluded or gone out of frame); at time t each output pixel takes its
    colour from whichever frame still shows it. Pairs with too few matches are scene cuts.

    Not thread-safe (the DIS object is reused): use one instance per thread.
    """

    name = "flow"

    def __init__(self, max_side: int = 512, cut_threshold: float = 0.3) -> None:
        if max_side < 32:
            raise ValueError(f"max_side must be at least 32, got {max_side}")
        self.max_side = max_side
        # Below this fraction of pixels matched both ways, the pair is treated as a scene cut.
        self.cut_threshold = cut_threshold
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        # 3 variational refinement passes instead of FAST's 5: as good on the test
        # triplets, 3 ms less per pair at 1080p.
        self._dis.setVariationalRefinementIterations(3)
        self._grids: dict[tuple[int, int], np.ndarray] = {}
        self._scratch: dict[str, np.ndarray] = {}
        self._last_grey: tuple[np.ndarray, np.ndarray] | None = None

    def grid(self, width: int, height: int) -> np.ndarray:
        """H x W x 2 float32 pixel coordinates (x, y), cached per size."""
        key = (width, height)
        if key not in self._grids:
            xs, ys = np.meshgrid(np.arange(width, dtype=np.float32),
                                 np.arange(height, dtype=np.float32))
            self._grids[key] = np.dstack([xs, ys])
            if len(self._grids) > 4:  # a clip has one or two sizes; do not grow without bound
                self._grids.pop(next(iter(self._grids)))
        return self._grids[key]

    def scratch(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A reusable float32 work buffer. Full-size maps are 16 MB at 1080p: allocating
        them afresh for every frame costs more in page faults than filling them."""
        buffer = self._scratch.get(name)
        if buffer is None or buffer.shape != shape:
            buffer = self._scratch[name] = np.empty(shape, dtype=np.float32)
        return buffer

    def working_size(self, width: int, height: int) -> tuple[int, int]:
        scale = min(1.0, self.max_side / max(width, height))
        return max(16, round(width * scale)), max(16, round(height * scale))

    def _grey(self, frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        # In a stream each frame is the second of one pair and the first of the next.
        if self._last_grey is not None and self._last_grey[0] is frame:
            grey = self._last_grey[1]
            if grey.shape[::-1] == size:
                return grey
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        while grey.shape[1] >= 2 * size[0] and grey.shape[0] >= 2 * size[1]:
            grey = cv2.pyrDown(grey)  # halving first: INTER_AREA is slow at large factors
        if grey.shape[::-1] != size:
            grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        self._last_grey = (frame, grey)
        return grey

    def prepare(self, a: np.ndarray, b: np.ndarray) -> FlowPair:
        if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"frames must be H x W x 3 and the same size, got {a.shape} "
                             f"and {b.shape}")
        size = self.working_size(a.shape[1], a.shape[0])
        g0 = self._grey(a, size)
        g1 = self._grey(b, size)
        # The FAST preset stops refining at 1/4 of the working size, which blurs motion
        # edges. Refine down to about 256 px on the long side instead: 1/2 of the usual
        # 512 px working size, the full size for smaller frames (+1 to +2 dB at edges).
        self._dis.setFinestScale(1 if max(size) > 384 else 0)
        f01 = self._dis.calc(g0, g1, None)
        f10 = self._dis.calc(g1, g0, None)
        return FlowPair(self, a, b, g0, g1, f01, f10)


def _sample(field: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """field sampled at coords (H x W x 2 absolute pixel positions), bilinear, edges clamped."""
    return cv2.remap(field, coords, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _inside(coords: np.ndarray, width: int, height: int) -> np.ndarray:
    """1.0 where coords fall inside a width x height frame, else 0.0 (float32)."""
    mask = cv2.inRange(coords, (-0.5, -0.5), (width - 0.5, height - 0.5))
    return mask.astype(np.float32) * np.float32(1 / 255)


def _consistency(forward: np.ndarray, back: np.ndarray, target: np.ndarray) -> np.ndarray:
    """1 where following `forward` then the backward flow (`back`, already sampled at the
    forward target) returns to the start, i.e. the pixel has a match in the other frame;
    0 where it does not (occluded there, or out of frame).

    The tolerance grows with the motion (Sundaram et al., ECCV 2010) so that fast but
    correct motion is not flagged.
    """
    height, width = forward.shape[:2]
    err = cv2.magnitude(*cv2.split(forward + back))
    mag_f = cv2.magnitude(*cv2.split(forward))
    mag_b = cv2.magnitude(*cv2.split(back))
    ok = (err * err < 0.01 * (mag_f * mag_f + mag_b * mag_b) + 0.5).astype(np.float32)
    ok *= _inside(target, width, height)
    # Soften the mask edge so the blend weights do not switch abruptly across one pixel.
    return cv2.blur(ok, (3, 3))


def _fill(flow: np.ndarray, known: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    """Flow where `known` is 1, filled in from the surrounding known flow where it is 0.

    DIS has no answer for pixels without a match: it drags a moving object's motion onto
    the background it uncovers, and reports ~0 motion for content leaving the frame.
    Those pixels fail the match test and get the matched motion around them instead:
    a Gaussian-weighted average of it (normalised convolution) near known pixels, and
    push-pull hole filling over an image pyramid for holes too wide for that.
    """
    k = known[..., None]
    # (flow x known, known) in one array, so each blur and pyramid step is one pass; the
    # filling is smooth, so it runs at half size (a quarter of the work).
    packed = np.concatenate([flow * k, k], axis=2)
    height, width = known.shape
    half = cv2.resize(packed, ((width + 1) // 2, (height + 1) // 2),
                      interpolation=cv2.INTER_AREA)
    sigma /= 2
    size = 2 * round(2.5 * sigma) + 1
    blurred = cv2.GaussianBlur(half, (size, size), sigma)
    weight = blurred[..., 2:]
    near = blurred[..., :2] / np.maximum(weight, 1e-6)
    reach = np.minimum(weight * 200.0, 1.0)
    filled = near * reach + _push_pull(half) * (1.0 - reach)
    filled = cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)
    return flow * k + filled * (1.0 - k)


def _push_pull(packed: np.ndarray) -> np.ndarray:
    """Values averaged over known pixels at ever coarser pyramid levels, then pulled back
    down: every pixel gets the nearest known values, however far away they are.

    `packed` is (values x known, known) in its channels, as made by _fill.
    """
    levels = []
    level = packed
    while min(level.shape[:2]) > 8:
        levels.append(level)
        level = cv2.pyrDown(level)
    estimate = level[..., :2] / np.maximum(level[..., 2:], 1e-6)
    for level in reversed(levels):
        up = cv2.pyrUp(estimate, dstsize=(level.shape[1], level.shape[0]))
        # A pixel with a quarter of its neighbourhood known keeps its own average.
        weight = level[..., 2:]
        trust = np.minimum(weight * 4.0, 1.0)
        estimate = level[..., :2] / np.maximum(weight, 1e-6) * trust + up * (1.0 - trust)
    return estimate


class FlowPair:
    """A prepared pair for FlowInterpolator: flows both ways and their match masks."""

    # Grey-level difference (0..255) above which a flow match is not believed.
    PHOTO_TOLERANCE = 24.0
    FIXED_POINT_STEPS = 2  # a third step does not improve the test triplets

    def __init__(self, owner: FlowInterpolator, a: np.ndarray, b: np.ndarray,
                 g0: np.ndarray, g1: np.ndarray, f01: np.ndarray, f10: np.ndarray) -> None:
        self.owner = owner
        self.a, self.b = a, b
        self.height, self.width = a.shape[:2]
        self.lh, self.lw = f01.shape[:2]
        self.low_grid = grid = owner.grid(self.lw, self.lh)
        self.full_grid = owner.grid(self.width, self.height)
        target01 = grid + f01
        target10 = grid + f10
        self.o0 = _consistency(f01, _sample(f10, target01), target01)
        self.o1 = _consistency(f10, _sample(f01, target10), target10)
        # A match counts when the flow is consistent both ways and the colours agree too:
        # between unrelated pictures DIS still finds "consistent" zero flow in flat areas.
        g0f, g1f = g0.astype(np.float32), g1.astype(np.float32)
        photo0 = cv2.absdiff(g0f, _sample(g1f, target01)) < self.PHOTO_TOLERANCE
        photo1 = cv2.absdiff(g1f, _sample(g0f, target10)) < self.PHOTO_TOLERANCE
        self.match0 = self.o0 * photo0
        self.match1 = self.o1 * photo1
        self.confidence = float(0.5 * (cv2.mean(self.match0)[0] + cv2.mean(self.match1)[0]))
        self.confident = self.confidence >= owner.cut_threshold
        if self.confident:
            f01 = _fill(f01, (self.match0 > 0.99).astype(np.float32))
            f10 = _fill(f10, (self.match1 > 0.99).astype(np.float32))
        self.f01, self.f10 = f01, f10
        self.scale = (self.width / self.lw, self.height / self.lh)

    def _flows_at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Working-size backward flows from time t to frame 0 and to frame 1.

        Solved by fixed-point iteration: the pixel at x at time t came from p in frame 0
        with p + t * F01(p) = x, so F_t0(x) = -t * F01(x + F_t0(x)) (and likewise with F10
        towards frame 1). Right for any smooth motion (zoom, rotation), unlike the usual
        linear approximation that reads the flow at the wrong place.
        """
        grid = self.low_grid
        ft0 = -t * self.f01
        ft1 = -(1.0 - t) * self.f10
        for _ in range(self.FIXED_POINT_STEPS):
            ft0 = -t * _sample(self.f01, grid + ft0)
            ft1 = -(1.0 - t) * _sample(self.f10, grid + ft1)
        return ft0, ft1

    def _full_coords(self, flow: np.ndarray, name: str) -> np.ndarray:
        """Full-resolution sampling coordinates from a working-size flow (in the owner's
        scratch buffer `name`: valid until the next call with that name)."""
        coords = self.owner.scratch(name, (self.height, self.width, 2))
        if (self.lw, self.lh) == (self.width, self.height):
            return cv2.add(self.full_grid, flow, dst=coords)
        flow = flow * np.array(self.scale, dtype=np.float32)
        cv2.resize(flow, (self.width, self.height), dst=coords, interpolation=cv2.INTER_LINEAR)
        return cv2.add(coords, self.full_grid, dst=coords)

    def _full(self, field: np.ndarray, name: str) -> np.ndarray:
        if (self.lw, self.lh) == (self.width, self.height):
            return field
        out = self.owner.scratch(name, (self.height, self.width))
        return cv2.resize(field, (self.width, self.height), dst=out,
                          interpolation=cv2.INTER_LINEAR)

    def _warp(self, ft0: np.ndarray, ft1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        warped0 = cv2.remap(self.a, self._full_coords(ft0, "coords0"), None, cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
        warped1 = cv2.remap(self.b, self._full_coords(ft1, "coords1"), None, cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
        return warped0, warped1

    def render(self, t: float) -> np.ndarray:
        if not self.confident:
            # A scene cut: repeat the nearest frame rather than smear two shots together.
            return self.a if t < 0.5 else self.b
        ft0, ft1 = self._flows_at(t)
        p0 = self.low_grid + ft0
        p1 = self.low_grid + ft1
        # If the frame-1 sample lands on a pixel that exists only in frame 1 (no match in
        # frame 0), the content at x is hidden in frame 0, so frame 0 must not contribute;
        # and the other way round. A sample from outside its frame does not contribute,
        # and says nothing against the other one.
        in0 = _inside(p0, self.lw, self.lh)
        in1 = _inside(p1, self.lw, self.lh)
        vis0 = in0 * (1.0 - in1 * (1.0 - _sample(self.o1, p1)))
        vis1 = in1 * (1.0 - in0 * (1.0 - _sample(self.o0, p0)))
        w0 = (1.0 - t) * (vis0 + 1e-3)
        w1 = t * (vis1 + 1e-3)
        warped0, warped1 = self._warp(ft0, ft1)
        # blendLinear normalises: (w0 * warped0 + w1 * warped1) / (w0 + w1).
        return cv2.blendLinear(warped0, warped1, self._full(w0, "w0"), self._full(w1, "w1"))

    def morph(self, t: float) -> np.ndarray:
        """A transition frame: flow-warped where the photos correspond, a crossfade elsewhere.

        Unlike render() it never cuts: it always goes from a to b, following t.
        """
        ft0, ft1 = self._flows_at(t)
        # How far both samples are real matches; where they are not, crossfade.
        trust = np.minimum(_sample(self.match0, self.low_grid + ft0),
                           _sample(self.match1, self.low_grid + ft1))
        trust = self._full(cv2.GaussianBlur(trust, (0, 0), 2.0), "w0")
        warped0, warped1 = self._warp(ft0, ft1)
        moved = cv2.addWeighted(warped0, 1.0 - t, warped1, t, 0.0)
        faded = cv2.addWeighted(self.a, 1.0 - t, self.b, t, 0.0)
        return cv2.blendLinear(moved, faded, cv2.add(trust, 1e-4),
                               cv2.subtract(1.0 + 1e-4, trust))


# ---------------------------------------------------------------------------------------------
# The streaming stage


def output_timing(num_frames: int, fps: float, *, factor: int | None = None,
                  target_fps: float | None = None) -> tuple[Fraction, int, Fraction]:
    """(output fps, output frame count, input frames per output frame) for a clip.

    The clip's duration is kept: n input frames at fps last n/fps seconds, and so do the
    output frames. Output frame k is shown at k / out_fps, i.e. at input position
    k * in_fps / out_fps (in frames); past the last input frame the last frame is held.
    """
    if (factor is None) == (target_fps is None):
        raise ValueError("give exactly one of factor or target_fps")
    in_fps = Fraction(fps).limit_denominator(1001)
    if factor is not None:
        if factor < 1:
            raise ValueError(f"factor must be at least 1, got {factor}")
        out_fps = in_fps * factor
    else:
        out_fps = Fraction(target_fps).limit_denominator(1001)
        if out_fps < in_fps:
            raise InputError(f"target fps {float(out_fps):g} is below the input's "
                             f"{float(in_fps):g} fps; interpolation only adds frames")
    step = in_fps / out_fps
    count = max(1, round(num_frames / step)) if num_frames > 0 else 0
    return out_fps, count, step


def interpolate_clip(clip: Clip, interpolator: FrameInterpolator, *, factor: int | None = None,
                     target_fps: float | None = None, progress: ProgressCallback = no_progress,
                     cancel: CancelToken | None = None) -> Clip:
    """A new Clip at factor x the frame rate, or at target_fps, streaming over `clip.frames`.

    Only two input frames and one prepared pair are held at a time. Exact output times
    that fall on an input frame reuse it unchanged. The returned clip's `info` gains an
    `interpolation` entry; its `scene_cuts` count is filled in as the frames stream.
    """
    out_fps, count, step = output_timing(clip.num_frames, clip.fps, factor=factor,
                                         target_fps=target_fps)
    stats = {"interpolator": interpolator.name, "input_fps": float(clip.fps),
             "output_fps": float(out_fps), "input_frames": clip.num_frames,
             "output_frames": count, "scene_cuts": 0}
    if factor is not None:
        stats["factor"] = factor
    else:
        stats["target_fps"] = float(out_fps)
    info = {**clip.info, "interpolation": stats}

    def frames() -> Iterator[np.ndarray]:
        source = iter(clip.frames)
        a = next(source, None)
        if a is None:
            return
        b = next(source, None)
        index = 0  # position of `a` in the input
        pair: PreparedPair | None = None
        for k in range(count):
            position = k * step
            while b is not None and position >= index + 1:
                a, b, index, pair = b, next(source, None), index + 1, None
            if b is None or position == index:
                yield a  # on an input frame, or holding the last one
            else:
                if pair is None:
                    if cancel is not None:
                        cancel.raise_if_cancelled()
                    pair = interpolator.prepare(a, b)
                    if not pair.confident:
                        stats["scene_cuts"] += 1
                        log.info("scene cut between input frames %d and %d: repeating frames",
                                 index, index + 1)
                yield pair.render(float(position - index))
            progress(Progress("interpolate", k + 1, count))

    return Clip(frames(), float(out_fps), clip.width, clip.height, count, info)
