"""Seams between video windows: colour matching in Lab makes a synthetic drift invisible."""

from __future__ import annotations

import numpy as np

from img2vid.postprocess.seams import colour_difference, join_windows, psnr


def scene(n: int, shift: int = 0, tint=(0.0, 0.0, 0.0), gain: float = 1.0) -> list[np.ndarray]:
    """A textured scene panning right one pixel a frame, optionally with a colour cast."""
    rng = np.random.default_rng(0)
    base = rng.integers(40, 200, (48, 128, 3)).astype(np.float32)
    base = (base + np.roll(base, 1, 1) + np.roll(base, 1, 0)) / 3  # some smoothness
    frames = []
    for i in range(n):
        f = np.roll(base, shift + i, axis=1)[:, :64] * gain + np.array(tint, np.float32)
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return frames


def test_matching_lowers_the_colour_difference_of_a_drifted_seam():
    first = scene(9)
    # the second window starts where the first ends (4 frames of overlap) but has drifted:
    # brighter, warmer, as diffusion windows do
    second = scene(9, shift=5, tint=(18, 6, -12), gain=1.1)
    matched, seams = join_windows([first, second], overlap=4, match=True)
    plain, raw = join_windows([first, second], overlap=4, match=False)
    assert len(matched) == len(plain) == 9 + 9 - 4
    (seam,), (raw_seam,) = seams, raw
    assert raw_seam.colour_difference > 5  # clearly visible without matching
    assert seam.colour_difference < raw_seam.colour_difference / 3
    assert seam.colour_difference_unmatched == raw_seam.colour_difference
    assert seam.psnr > raw_seam.psnr
    # after the seam the new window keeps the first one's colours
    assert colour_difference(matched[-1], scene(14)[-1]) < 3


def test_identical_windows_join_without_a_jump():
    frames = scene(6)
    video, (seam,) = join_windows([frames, frames[-2:] + scene(4, shift=6)], overlap=2)
    assert len(video) == 10
    assert seam.colour_difference < 1.0 and psnr(video[3], frames[3]) == float("inf")
