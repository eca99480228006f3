"""Longer than one window: windows chained on the end of the previous one, a prompt per
window, seams colour matched and scored in the sidecar; `img2vid extend` on a clip."""

from __future__ import annotations

from img2vid.core.progress import CancelToken
from img2vid.core.request import build_request
from img2vid.engines.diffusion.family import FrameRule
from img2vid.engines.diffusion.windows import window_counts, window_prompts
from tests.diffusion.conftest import frames_of


def test_window_plan_covers_the_clip_with_valid_counts():
    rule = FrameRule(step=4, offset=1, minimum=5)
    counts = window_counts(17, 9, 1, rule)
    assert counts == [9, 9, 5]
    assert all(rule.snap(c) == c for c in counts)
    assert 9 + sum(c - 2 for c in counts[1:]) >= 17
    assert window_prompts("a cat | a dog", 3) == ["a cat", "a dog", "a dog"]
    assert window_prompts("one prompt", 2) == ["one prompt", "one prompt"]


def test_a_clip_longer_than_a_window_chains_windows(engine, wan_dir, small_photo,
                                                    loaded_photo):
    request = build_request(images=(str(small_photo),), model=str(wan_dir), width=64,
                            height=64, num_frames=17, window_frames=9, num_inference_steps=2,
                            seed=4, prompt="a cat | a dog")
    clip = engine.generate(request, [loaded_photo], lambda _: None, CancelToken())
    frames = frames_of(clip)
    assert frames.shape == (17, 64, 64, 3) and clip.num_frames == 17
    info = clip.info
    assert [w["prompt"] for w in info["windows"]] == ["a cat", "a dog", "a dog"]
    assert [w["seed"] for w in info["windows"]] == [4, 5, 6]
    assert len(info["seams"]) == 2
    for seam in info["seams"]:
        assert {"frame", "colour_difference", "psnr", "colour_difference_unmatched"} <= set(seam)
