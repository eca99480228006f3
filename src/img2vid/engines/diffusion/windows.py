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

from img2vid.core.errors import InputError
from img2vid.engines.diffusion.call import DiffusionCall
from img2vid.engines.diffusion.family import Family, FrameRule
from img2vid.postprocess.seams import colour_difference, join_windows, psnr

log = logging.getLogger(__name__)

PROMPT_SEPARATOR = "|"


def prompt_parts(prompt: str) -> list[str]:
    """The window prompts in "a | b | c"."""
    return [p.strip() for p in prompt.split(PROMPT_SEPARATOR)]


def window_prompts(prompt: str, count: int) -> list[str]:
    """One prompt per window: "a | b | c" gives a, b, c (the last repeats if fewer)."""
    parts = prompt_parts(prompt)
    return [parts[min(i, len(parts) - 1)] for i in range(count)]


def check_prompts(prompt: str, total: int, window: int, rule: FrameRule) -> None:
    """More window prompts than windows is refused (one line); fewer: the last one repeats."""
    parts = prompt_parts(prompt)
    count = len(window_counts(total, window, overlap_for(window), rule)) if total > window else 1
    if len(parts) > count:
        raise InputError(
            f"prompt: {len(parts)} window prompts for {count} window{'s' * (count > 1)} "
            f"({total} frames, {window} per window): give at most {count}, or more frames "
            "(--duration, --num-frames) or fewer per window (--window-frames)")


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


def run_chained(call: DiffusionCall, total: int, window: int, family: Family, seed: int,
                run: Callable[[DiffusionCall], list[np.ndarray]],
                ) -> tuple[list[np.ndarray], dict[str, Any]] | None:
    """`total` frames in one call where the family's pipeline chains its own windows on
    latents (SkyReels-V2 diffusion forcing) and one prompt serves them all; None otherwise
    (the caller then chains windows with run_windows)."""
    chain = family.chain(total, window)
    if chain is None or len(prompt_parts(call.prompt)) > 1:
        return None
    log.info("%d frames in one call: windows of %d frames, each re-reading %d", total, window,
             chain.overlap)
    video = run(replace(call, num_frames=chain.num_frames, window_frames=window))[:total]
    # the pipeline blends the windows in latent space: score each seam as it came out
    seams = [{"frame": i, "colour_difference": round(colour_difference(video[i - 1], video[i]), 3),
              "psnr": round(psnr(video[i - 1], video[i]), 2)} for i in chain.starts]
    return video, {
        "windows": [{"index": i, "num_frames": window, "prompt": call.prompt, "seed": seed}
                    for i in range(len(chain.starts) + 1)],
        "window_overlap": chain.overlap, "window_chaining": "latents (in the pipeline)",
        "seams": seams,
    }
