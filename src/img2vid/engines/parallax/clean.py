"""Depth cleaning and the background layer: edges aligned to the photo, revealed areas filled.

Depth here is a disparity-like map in [0, 1] (1 = nearest), the convention of monocular depth
models and of DepthFlow's height field.
"""

from __future__ import annotations

import cv2
import numpy as np

GUIDED_RADIUS_FRACTION = 1 / 400  # of the long side; 4-5 px at 1080p-2K
GUIDED_EPS = 1e-3  # guided filter regularisation (depth units squared)
EDGE_STEP = 0.06  # a depth change this big within a few pixels is an object outline
NEAR_BIAS = 0.35  # outline pixels go to the near side unless clearly far: fringes move with it
BACKGROUND_SIDE = 640  # long side of the grid the background layer is filled on
FRINGE_PX = 2  # far-side pixels this close to an occluder carry its colour (anti-aliasing,
# halos, the small grid's averaging): they are refilled too, never a source


def normalise(depth: np.ndarray) -> np.ndarray:
    """Float32 in [0, 1] with 1 = nearest, robust to a few outlier pixels."""
    depth = np.nan_to_num(depth.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = np.percentile(depth, (0.5, 99.5))
    if not hi > lo:  # flat: no relative depth at all (a model's scale may be tiny)
        return np.zeros_like(depth)
    return np.clip((depth - lo) / (hi - lo), 0.0, 1.0)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with a grey guide: smooths `src` except across the guide's edges.

    From a radius of 4 up, the linear coefficients are found at 1/s size (s = radius // 3) and
    applied to the full-size guide: He and Sun's fast guided filter, the same edges for a
    fraction of the box filtering.
    """
    height, width = guide.shape[:2]
    s = max(1, radius // 3)
    g, p, r = guide, src, radius
    if s > 1:
        size = (max(1, round(width / s)), max(1, round(height / s)))
        g = cv2.resize(guide, size, interpolation=cv2.INTER_AREA)
        p = cv2.resize(src, size, interpolation=cv2.INTER_AREA)
        r = max(1, round(radius / s))
    box_size = (2 * r + 1, 2 * r + 1)

    def box(a: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(a, cv2.CV_32F, box_size, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(g), box(p)
    cov_ip = box(g * p) - mean_i * mean_p
    var_i = box(g * g) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    mean_a, mean_b = box(a), box(b)
    if s > 1:
        mean_a = cv2.resize(mean_a, (width, height), interpolation=cv2.INTER_LINEAR)
        mean_b = cv2.resize(mean_b, (width, height), interpolation=cv2.INTER_LINEAR)
    return mean_a * guide + mean_b


def snap_edges(depth: np.ndarray, radius: int = 2) -> np.ndarray:
    """Turn soft depth ramps at outlines into steps, biased to the near side.

    A model's depth blurs an outline over a few pixels; rendered as is, those pixels become a
    stretched skin between the object and the background. Each pixel on a steep ramp takes the
    near or the far value of its neighbourhood instead.
    """
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * radius + 1, 2 * radius + 1))
    lo, hi = cv2.erode(depth, kernel), cv2.dilate(depth, kernel)
    ramp = hi - lo > EDGE_STEP
    near = depth > lo + NEAR_BIAS * (hi - lo)
    return np.where(ramp, np.where(near, hi, lo), depth).astype(np.float32)


def clean_depth(depth: np.ndarray, photo: np.ndarray, stretch: bool = True) -> np.ndarray:
    """Depth at the photo's size, its outlines moved onto the photo's edges and made steps.

    `stretch` spreads a model's output (known only up to scale and shift) over [0, 1]; a
    user's map is taken as the disparities it states.
    """
    height, width = photo.shape[:2]
    if depth.shape[:2] != (height, width):
        depth = cv2.resize(depth.astype(np.float32), (width, height),
                           interpolation=cv2.INTER_CUBIC)
    depth = normalise(depth) if stretch else np.clip(depth.astype(np.float32), 0.0, 1.0)
    guide = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    radius = max(1, round(max(width, height) * GUIDED_RADIUS_FRACTION))
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * radius + 1, 2 * radius + 1))
    # no value the neighbourhood did not have: the guide's texture must not ripple a flat wall
    lo, hi = cv2.erode(depth, kernel), cv2.dilate(depth, kernel)
    depth = np.clip(guided_filter(guide, depth, radius, GUIDED_EPS), lo, hi)
    return np.clip(snap_edges(depth), 0.0, 1.0)


def push_pull(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill the unknown pixels from the known ones only (a pull-push pyramid, Gortler et al.).

    Each coarser level averages what is known; filling comes back down, so a hole takes the
    smooth continuation of its known surroundings and nothing from inside the hole.
    """
    weight = known.astype(np.float32)
    premult = values.astype(np.float32) * (weight[..., None] if values.ndim == 3 else weight)
    levels = [(premult, weight)]
    while min(levels[-1][1].shape[:2]) > 2:
        premult, weight = cv2.pyrDown(levels[-1][0]), cv2.pyrDown(levels[-1][1])
        levels.append((premult, weight))

    def colour(premult: np.ndarray, weight: np.ndarray) -> np.ndarray:
        w = np.maximum(weight, 1e-6)
        return premult / (w[..., None] if premult.ndim == 3 else w)

    filled = colour(*levels[-1])
    for premult, weight in reversed(levels[:-1]):
        size = (premult.shape[1], premult.shape[0])
        up = cv2.pyrUp(filled, dstsize=size)
        alpha = np.clip(weight, 0.0, 1.0)
        if premult.ndim == 3:
            alpha = alpha[..., None]
        filled = colour(premult, weight) * alpha + up * (1.0 - alpha)
    return filled


def mirror_fill(colour: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Each hole pixel takes the known pixel mirrored across its nearest known pixel.

    The background's own texture continues under the object (a smooth fill would show a blur
    moving with the reveal); where the mirror lands in the hole too, the given fill stays.
    Only the hole's bounding box (and the known ring around it) is searched: no known pixel
    farther out can be nearer.
    """
    ys, xs = np.nonzero(hole)
    height, width = hole.shape
    if ys.size == 0 or ys.size == hole.size:
        return colour
    y0, y1 = max(0, int(ys.min()) - 1), min(height, int(ys.max()) + 2)
    x0, x1 = max(0, int(xs.min()) - 1), min(width, int(xs.max()) + 2)
    box = hole[y0:y1, x0:x1]
    _, labels = cv2.distanceTransformWithLabels(box.astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    known = np.flatnonzero(~box)  # label k is the k-th known pixel in raster order
    nearest = known[labels[ys - y0, xs - x0] - 1]
    my = 2 * (nearest // box.shape[1] + y0) - ys
    mx = 2 * (nearest % box.shape[1] + x0) - xs
    ok = (my >= 0) & (my < height) & (mx >= 0) & (mx < width)
    ok[ok] = ~hole[my[ok], mx[ok]]
    out = colour.copy()
    out[ys[ok], xs[ok]] = colour[my[ok], mx[ok]]
    return out


def background_layer(photo: np.ndarray, depth: np.ndarray, reach: float,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """What lies behind the near objects a move can uncover: (colour, depth) at the photo's size.

    Pixels that have a much farther surface within `reach` pixels (the most any layer slides
    against another during the move) are occluders: they are refilled from the far side of
    their outline only (the background's texture mirrored across the outline, a smooth
    pull-push fill where the mirror falls in the hole too), so a reveal shows background
    continuing under the object and never the object stretched. Everything else is the photo
    as it is.
    """
    height, width = depth.shape
    shrink = min(1.0, BACKGROUND_SIDE / max(width, height))
    size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
    small_depth = cv2.resize(depth, size, interpolation=cv2.INTER_AREA)
    small_photo = cv2.resize(photo, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    radius = max(1, round(2 * reach * shrink))  # twice: the whole band a reveal can reach
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * radius + 1, 2 * radius + 1))
    far = cv2.erode(small_depth, kernel)
    occluder = small_depth > far + EDGE_STEP
    if not occluder.any():
        return photo, depth
    fill_depth = np.minimum(push_pull(small_depth, ~occluder), small_depth)
    ring = cv2.dilate(occluder.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    fill_colour = push_pull(small_photo, ~ring)
    full = (width, height)
    mask = cv2.resize(occluder.astype(np.uint8), full, interpolation=cv2.INTER_NEAREST) > 0
    # the photo's own near pixels at full size decide too: a mask from the small grid alone
    # would leave a fringe of foreground along the outline
    mask |= cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & (
        depth > cv2.resize(far, full, interpolation=cv2.INTER_LINEAR) + EDGE_STEP)
    size = 2 * FRINGE_PX + 1
    hole = cv2.dilate(mask.astype(np.uint8), np.ones((size, size), np.uint8)) > 0
    colour = photo.copy()
    up_colour = cv2.resize(fill_colour, full, interpolation=cv2.INTER_LINEAR)
    colour[hole] = np.clip(up_colour[hole] + 0.5, 0, 255).astype(np.uint8)
    colour = mirror_fill(colour, hole)
    back = depth.copy()
    up_depth = cv2.resize(fill_depth, full, interpolation=cv2.INTER_LINEAR)
    back[mask] = np.minimum(up_depth[mask], depth[mask])
    return colour, back
