"""Videos longer than one window of a model: windows chained, each conditioned on the end of
the previous one, joined with colour matching and cross-blending across each seam.

Every window starts from the previous window's frame `overlap` frames before its end (the
pipelines here take one conditioning image), so the overlapping frames cover the same moment
twice and are cross-faded; before that the new window's colours are matched to the video's
over the overlap (postprocess.seams). A prompt may give one part per window: "a | b | c".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from PIL import Image

from img2vid.engines.diffusion.call import DiffusionCall
from img2vid.engines.diffusion.family import FrameRule
from img2vid.postprocess.seams import join_windows

log = logging.getLogger(__name__)

PROMPT_SEPARATOR = "|"


def window_prompts(prompt: str, count: int) -> list[str]:
    """One prompt per window: "a | b | c" gives a, b, c (the last repeats if fewer)."""
    parts = [p.strip() for p in prompt.split(PROMPT_SEPARATOR)] or [""]
    return [parts[min(i, len(parts) - 1)] for i in range(count)]


def overlap_for(window: int) -> int:
    """Frames each window shares with the previous one: an eighth, at least one."""
    return max(1, window // 8)


def window_counts(total: int, window: int, overlap: int, rule: FrameRule) -> list[int]:
    """Frames of each window so that the joined video has at least `total` frames: a later
    window adds its frames less its conditioning frame and the overlap."""
    counts, made = [window], window
    while made < total:
        wanted = max(total - made + overlap + 1, rule.minimum, overlap + 2)
        count = rule.snap(wanted)
        if count < wanted:
            count = rule.snap(wanted + rule.step)
        count = min(window, count)
        counts.append(count)
        made += count - 1 - overlap
    return counts


def run_windows(call: DiffusionCall, total: int, window: int, rule: FrameRule, seed: int,
                run: Callable[[DiffusionCall, int], list[np.ndarray]],
                ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Make `total` frames window by window (`run(call, seed)` makes one); returns the frames
    and what the sidecar records (windows, seams with and without colour matching)."""
    overlap = overlap_for(window)
    counts = window_counts(total, window, overlap, rule)
    prompts = window_prompts(call.prompt, len(counts))
    windows: list[list[np.ndarray]] = []
    for index, (count, prompt) in enumerate(zip(counts, prompts)):
        start = (Image.fromarray(windows[-1][-overlap - 1 if overlap else -1])
                 if windows else call.image)
        this = replace(call, image=start, prompt=prompt, num_frames=count,
                       last_image=call.last_image if index == len(counts) - 1 else None)
        log.info("window %d/%d: %d frames, prompt %r", index + 1, len(counts), count, prompt)
        frames = run(this, seed + index)
        # the model's first frame is (close to) its conditioning frame, already in the video
        windows.append(frames if not windows else frames[1:])
    video, seams = join_windows(windows, overlap, match=True)
    video = video[:total]
    return video, {
        "windows": [{"index": i, "num_frames": c, "prompt": p, "seed": seed + i}
                    for i, (c, p) in enumerate(zip(counts, prompts))],
        "window_overlap": overlap,
        "seams": [s.as_dict() for s in seams],
    }
