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


def run_windows(call: DiffusionCall, total: int, window: int, rule: FrameRule, seed: int,
                run: Callable[[DiffusionCall, int], list[np.ndarray]], lead: int = 1,
                ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Make `total` frames window by window (`run(call, seed)` makes one), each later one
    conditioned on `lead` frames of the previous; returns the frames and what the sidecar
    records (windows, seams with and without colour matching)."""
    overlap = overlap_for(window)
    lead = max(1, min(lead, window - overlap - 1))
    counts = window_counts(total, window, overlap, rule, lead)
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
