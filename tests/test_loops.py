"""Loops, reverse and the post-processing order, on small synthetic clips."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from img2vid.core.clip import Clip
from img2vid.core.progress import CancelToken, no_progress
from img2vid.core.request import TransitionStyle, build_request
from img2vid.postprocess import apply
from img2vid.postprocess.loops import FrameStore, pingpong, reverse, seam_length, seamless
from tests.triplets import Motion, photo, psnr, render_frames


def numbered(n: int, size: tuple[int, int] = (8, 6), fps: float = 10.0) -> Clip:
    """Frame i is filled with the value 10 * i (easy to read back)."""
    w, h = size

    def gen() -> Iterator[np.ndarray]:
        for i in range(n):
            yield np.full((h, w, 3), 10 * i, dtype=np.uint8)

    return Clip(gen(), fps, w, h, n, {"engine": "test"})


def values(clip: Clip) -> list[int]:
    frames = list(clip.frames)
    assert len(frames) == clip.num_frames
    return [int(f[0, 0, 0]) for f in frames]


def test_frame_store_spills_to_disk_and_reads_back():
    store = FrameStore(ram_budget=3 * 8 * 6 * 3)  # room for 3 frames
    frames = [np.random.default_rng(i).integers(0, 255, (6, 8, 3), dtype=np.uint8)
              for i in range(7)]
    for f in frames:
        store.append(f)
    assert len(store) == 7 and store.spilled == 4
    for i in (6, 0, 4, 3, -1):
        assert np.array_equal(store[i], frames[i])
    with pytest.raises(ValueError, match="clip is"):
        store.append(np.zeros((2, 2, 3), np.uint8))
    store.close()


def test_reverse():
    assert values(reverse(numbered(5))) == [40, 30, 20, 10, 0]


def test_reverse_beyond_the_ram_budget():
    clip = reverse(numbered(6), ram_budget=2 * 8 * 6 * 3)
    assert values(clip) == [50, 40, 30, 20, 10, 0]


def test_pingpong_loops_without_repeating_the_ends():
    clip = pingpong(numbered(4))
    assert clip.num_frames == 6
    assert values(clip) == [0, 10, 20, 30, 20, 10]  # ...then 0 again when it loops
    assert values(pingpong(numbered(1))) == [0]


def test_pingpong_streams_the_forward_half():
    pulled = []

    def gen():
        for i in range(4):
            pulled.append(i)
            yield np.full((2, 2, 3), i, np.uint8)

    frames = pingpong(Clip(gen(), 10.0, 2, 2, 4)).frames
    next(frames)
    assert pulled == [0]


def test_seamless_loop_blends_the_end_into_the_start():
    clip = seamless(numbered(12), seconds=0.3)  # 3 seam frames at 10 fps
    assert clip.num_frames == 9 and clip.info["loop_seam_frames"] == 3
    out = values(clip)
    # frames 3..8 as they are, then 9, 10, 11 blended towards 0, 1, 2 by 1/4, 2/4, 3/4
    assert out[:6] == [30, 40, 50, 60, 70, 80]
    assert out[6:] == [round(90 * 0.75 + 0 * 0.25), round(100 * 0.5 + 10 * 0.5),
                       round(110 * 0.25 + 20 * 0.75)]
    # wrapping around: the last frame (~ input 2 + a quarter of 11) leads into input 3


def test_seam_length_is_bounded():
    assert seam_length(90, 30, 1.0) == 30
    assert seam_length(12, 30, 1.0) == 4  # at most a third of the clip
    assert seam_length(12, 30, 0.0) == 1
    clip = numbered(2)
    assert seamless(clip) is clip  # too short to loop: left as is


def test_seamless_morph_moves_instead_of_fading():
    """The seam between the end of a pan and its start: morph follows the motion."""
    motion = Motion(pan=(3.0, 0.0), zoom=1.0, angle=0.0)
    times = list(range(12))
    frames = render_frames(photo("astronaut"), None, times, size=(160, 120), motion=motion)
    clip = Clip(iter(frames), 10.0, 160, 120, 12)
    out = list(seamless(clip, seconds=0.3, style=TransitionStyle.MORPH).frames)
    assert len(out) == 9
    # the middle seam frame is halfway between input 10 and input 1: a 27 px move, which
    # a crossfade shows as two ghosts and the morph as one picture in between
    truth = render_frames(photo("astronaut"), None, [5.5], size=(160, 120), motion=motion)[0]
    fade = (frames[10].astype(np.uint16) + frames[1]) // 2
    assert psnr(out[7], truth) > psnr(fade.astype(np.uint8), truth) + 3


def request(**fields):
    return build_request(images=("x.png",), num_frames=6, fps=10, **fields)


def test_apply_order_interpolate_then_loop_then_fade():
    clip = apply(numbered(6), request(interpolate=2, loop="pingpong", fade_out=0.2),
                 no_progress, CancelToken())
    assert clip.fps == 20.0
    assert clip.num_frames == 2 * 12 - 2  # 12 frames at 20 fps, then ping-pong
    out = values(clip)
    assert out[11] == 50  # the held last frame at the turn
    assert out[-1] == 0  # faded to black over the last 0.2 s (4 frames at 20 fps)
    assert clip.info["interpolation"]["factor"] == 2 and clip.info["loop"] == "pingpong"


def test_apply_reverse_and_seamless():
    clip = apply(numbered(9), request(reverse=True, loop="seamless", transition=0.2),
                 no_progress, CancelToken())
    assert clip.num_frames == 7 and clip.info["reversed"]
    out = values(clip)
    assert out[:5] == [60, 50, 40, 30, 20]  # reversed, after the 2-frame seam head


def test_apply_without_stages_is_identity():
    clip = numbered(3)
    assert apply(clip, request(), no_progress, CancelToken()) is clip
