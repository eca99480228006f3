"""Streaming effects on a Clip: fades from and to black."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from img2vid.core.clip import Clip


def fade(clip: Clip, fade_in: float, fade_out: float) -> Clip:
    """Fade from black over `fade_in` seconds and to black over the last `fade_out` seconds."""
    n_in = round(fade_in * clip.fps)
    n_out = round(fade_out * clip.fps)
    total = clip.num_frames

    def gain(i: int) -> float:
        # Frame i is shown at time i/fps; the first frame of a fade-in is fully black and
        # the last frame of a fade-out is too, so both ends meet black exactly.
        g = 1.0
        if n_in > 0 and i < n_in:
            g = min(g, i / n_in)
        if n_out > 0 and i >= total - n_out:
            g = min(g, (total - 1 - i) / n_out)
        return max(0.0, g)

    def frames() -> Iterator[np.ndarray]:
        for i, frame in enumerate(clip.frames):
            g = gain(i)
            if g >= 1.0:
                yield frame
            else:
                yield (frame.astype(np.float32) * g + 0.5).astype(np.uint8)

    return Clip(frames(), clip.fps, clip.width, clip.height, total,
                {**clip.info, "fade_in_frames": n_in, "fade_out_frames": n_out})
