"""Joining video windows without visible seams: colour matching in CIE Lab, cross-blending the
overlap, and a score for each seam (colour difference and PSNR across it).

A model that makes a long video window by window drifts: each window's colours and brightness
wander a little from the frame it started from, and the jump shows at the seam. The next
window's colours are matched to the previous one's from the statistics of their overlap (mean
and spread of L*, a*, b*: Reinhard-style transfer in a perceptual space), then the overlapping
frames are cross-faded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from img2vid.postprocess.blend import crossfade


def to_lab(frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """uint8 RGB frames as float32 CIE L*a*b* (L in 0..100)."""
    return np.stack([cv2.cvtColor(f.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
                     for f in frames])


def from_lab(lab: np.ndarray) -> np.ndarray:
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def match_colour(frames: Sequence[np.ndarray], reference: Sequence[np.ndarray],
                 head: Sequence[np.ndarray]) -> list[np.ndarray]:
    """`frames` with the colour statistics of `head` (their start, over the overlap) moved to
    those of `reference` (the previous window's end over the same overlap)."""
    ref, own = to_lab(reference), to_lab(head)
    ref_mean, ref_std = ref.reshape(-1, 3).mean(0), ref.reshape(-1, 3).std(0)
    own_mean, own_std = own.reshape(-1, 3).mean(0), own.reshape(-1, 3).std(0)
    # a flat channel has no spread to scale; keep the gain sane so noise is not amplified
    gain = np.clip(ref_std / np.maximum(own_std, 1e-3), 0.5, 2.0)
    out = []
    for lab in to_lab(frames):
        out.append(from_lab((lab - own_mean) * gain + ref_mean))
    return out


def colour_difference(a: np.ndarray, b: np.ndarray) -> float:
    """CIE76 delta E between the two frames' average colours: the colour and brightness shift
    people see at a seam, apart from motion (about 2.3 is a just noticeable difference)."""
    la, lb = to_lab([a])[0].reshape(-1, 3).mean(0), to_lab([b])[0].reshape(-1, 3).mean(0)
    return float(np.sqrt(((la - lb) ** 2).sum()))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


@dataclass(frozen=True)
class Seam:
    """Scores across one seam of the joined video: the last frame before it and the first
    after, with and without colour matching."""

    index: int  # frame index of the first frame after the seam
    colour_difference: float
    psnr: float
    colour_difference_unmatched: float
    psnr_unmatched: float

    def as_dict(self) -> dict[str, float | int]:
        return {"frame": self.index, "colour_difference": round(self.colour_difference, 3),
                "psnr": round(self.psnr, 2),
                "colour_difference_unmatched": round(self.colour_difference_unmatched, 3),
                "psnr_unmatched": round(self.psnr_unmatched, 2)}


def join_windows(windows: Sequence[Sequence[np.ndarray]], overlap: int,
                 match: bool = True) -> tuple[list[np.ndarray], list[Seam]]:
    """One video from windows whose first `overlap` frames repeat (start from) the previous
    window's last `overlap` frames: each window colour matched to the video so far, the
    overlap cross-faded, and a score per seam."""
    video = list(windows[0])
    seams = []
    for window in windows[1:]:
        window = list(window)
        o = max(0, min(overlap, len(window) - 1, len(video) - 1))
        start = len(video) - o  # where the overlap begins in the video so far
        reference = video[start:] if o else video[-1:]
        matched = match_colour(window, reference, window[:o] if o else window[:1]) \
            if match else window
        joined = [crossfade(video[start + i], matched[i], (i + 1) / (o + 1)) for i in range(o)]
        before = video[start - 1]
        seams.append(Seam(start + o, colour_difference(before, matched[o]),
                          psnr(before, matched[o]), colour_difference(before, window[o]),
                          psnr(before, window[o])))
        video = video[:start] + joined + matched[o:]
    return video, seams
