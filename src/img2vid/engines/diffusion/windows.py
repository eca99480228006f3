"""Videos longer than one window of a model: windows chained, each conditioned on the end of
the previous one, joined with colour matching and cross-blending across each seam.

Every window starts from the previous window's `lead` frames ending `overlap` frames before
its end: one frame (an image) for most pipelines, several for those that take a video condition
(LTX-Video's condition pipeline), so motion carries across. The window reproduces those lead
frames first (they are dropped), then the overlapping frames cover the same moment twice and
are cross-faded; before that the new window's colours are matched to the video's over the
overlap (postprocess.seams). A prompt may give one part per window: "a | b | c".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from PIL import Image

from img2vid.core.clip import GeneratedAudio
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


def check_prompts(prompt: str, total: int, window: int, rule: FrameRule, lead: int = 1) -> None:
    """More window prompts than windows is refused (one line); fewer: the last one repeats."""
    parts = prompt_parts(prompt)
    count = len(window_plan(total, window, rule, lead)[2]) if total > window else 1
    if len(parts) > count:
        raise InputError(
            f"prompt: {len(parts)} window prompts for {count} window{'s' * (count > 1)} "
            f"({total} frames, {window} per window): give at most {count}, or more frames "
            "(--duration, --num-frames) or fewer per window (--window-frames)")


def overlap_for(window: int) -> int:
    """Frames each window shares with the previous one: an eighth, at least one."""
    return max(1, window // 8)


def window_counts(total: int, window: int, overlap: int, rule: FrameRule,
                  lead: int = 1) -> list[int]:
    """Frames of each window so that the joined video has at least `total` frames: a later
    window adds its frames less its `lead` conditioning frames and the overlap."""
    counts, made = [window], window
    while made < total:
        wanted = max(total - made + overlap + lead, rule.minimum, overlap + lead + 1)
        count = rule.snap(wanted)
        if count < wanted:
            count = rule.snap(wanted + rule.step)
        count = min(window, count)
        counts.append(count)
        made += count - lead - overlap
    return counts


def window_plan(total: int, window: int, rule: FrameRule,
                lead: int) -> tuple[int, int, list[int]]:
    """(overlap, lead frames, frames of each window) of a chained video."""
    overlap = overlap_for(window)
    lead = max(1, min(lead, window - overlap - 1))
    return overlap, lead, window_counts(total, window, overlap, rule, lead)


def run_windows(call: DiffusionCall, total: int, window: int, rule: FrameRule, seed: int,
                run: Callable[[DiffusionCall, int], list[np.ndarray]], lead: int = 1,
                ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Make `total` frames window by window (`run(call, seed)` makes one), each later one
    conditioned on `lead` frames of the previous; returns the frames and what the sidecar
    records (windows, seams with and without colour matching)."""
    overlap, lead, counts = window_plan(total, window, rule, lead)
    prompts = window_prompts(call.prompt, len(counts))
    windows: list[list[np.ndarray]] = []
    previous: list[np.ndarray] = []  # the last window as the model made it
    for index, (count, prompt) in enumerate(zip(counts, prompts)):
        this = replace(call, prompt=prompt, num_frames=count,
                       last_image=call.last_image if index == len(counts) - 1 else None)
        if previous:
            end = len(previous) - overlap
            starts = tuple(Image.fromarray(f) for f in previous[end - lead:end])
            this = replace(this, image=starts[0], lead_frames=starts if lead > 1 else ())
        log.info("window %d/%d: %d frames, prompt %r", index + 1, len(counts), count, prompt)
        previous = run(this, seed + index)
        # the model's first frames are (close to) its conditioning frames, already in the video
        windows.append(previous if not windows else previous[lead:])
    video, seams = join_windows(windows, overlap, match=True)
    video = video[:total]
    return video, {
        "windows": [{"index": i, "num_frames": c, "prompt": p, "seed": seed + i}
                    for i, (c, p) in enumerate(zip(counts, prompts))],
        "window_overlap": overlap,
        "window_lead_frames": lead,
        "seams": [s.as_dict() for s in seams],
    }


def join_audio(parts: list[GeneratedAudio | None], skip: int,
               fps: float) -> GeneratedAudio | None:
    """The windows' sound as one track: each later window's from where its new frames begin
    (after its `skip` lead and overlap frames), so it lasts as long as the joined video."""
    if not parts or any(part is None for part in parts):
        return None
    rate = parts[0].sample_rate
    cut = round(skip / fps * rate)
    samples = [parts[0].samples] + [part.samples[:, cut:] for part in parts[1:]]
    return GeneratedAudio(np.concatenate(samples, axis=1), rate)


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
