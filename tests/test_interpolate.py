"""The flow interpolator against ground truth, and the streaming stage's frame timing."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import cv2
import numpy as np
import pytest

from img2vid.core.clip import Clip
from img2vid.core.errors import InputError
from img2vid.core.progress import CancelToken
from img2vid.postprocess.blend import morph, morph_pair
from img2vid.postprocess.interpolate import FlowInterpolator, interpolate_clip, output_timing
from tests.triplets import Motion, blend, photo, psnr, render_frames, triplets


@pytest.fixture(scope="module")
def scenes() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    return triplets()


def test_flow_beats_blend_by_10db_on_ground_truth(scenes):
    flow = FlowInterpolator()
    gains = []
    for label, f0, truth, f2 in scenes:
        pair = flow.prepare(f0, f2)
        assert pair.confident, label
        gains.append(psnr(pair.render(0.5), truth) - psnr(blend(f0, f2), truth))
    assert np.mean(gains) >= 10.0, f"mean gain {np.mean(gains):.2f} dB: {np.round(gains, 1)}"
    assert min(gains) > 4.0  # no scene falls apart


def test_every_in_between_time_from_one_pair():
    """3x: times 1/3 and 2/3 from one prepared pair, each close to its own truth."""
    frames = render_frames(photo("coffee"), photo("astronaut"), [0, 1 / 3, 2 / 3, 1])
    pair = FlowInterpolator().prepare(frames[0], frames[3])
    for t, truth in ((1 / 3, frames[1]), (2 / 3, frames[2])):
        out = pair.render(t)
        assert out.shape == truth.shape and out.dtype == np.uint8
        assert psnr(out, truth) > 31
        other = frames[2] if truth is frames[1] else frames[1]
        assert psnr(out, truth) > psnr(out, other) + 3  # it is the right time, not a blend


def test_scene_cut_repeats_frames_instead_of_smearing():
    a = cv2.resize(photo("chelsea"), (320, 240))
    b = cv2.resize(photo("rocket"), (320, 240))
    pair = FlowInterpolator().prepare(a, b)
    assert not pair.confident
    assert pair.render(0.25) is a and pair.render(0.75) is b
    same_shot = render_frames(photo("chelsea"), None, [0, 1], size=(320, 240))
    assert FlowInterpolator().prepare(*same_shot).confident


def test_out_of_frame_pixels_come_from_the_frame_that_shows_them():
    """A fast pan: the strip entering on one side exists only in the later frame."""
    motion = Motion(pan=(12.0, 0.0), zoom=1.0, angle=0.0)
    f0, truth, f2 = render_frames(photo("astronaut"), None, [0, 1, 2], motion=motion)
    out = FlowInterpolator().prepare(f0, f2).render(0.5)
    edge = slice(-12, None)  # right edge: new content the camera pans onto
    assert psnr(out[:, edge], truth[:, edge]) > psnr(blend(f0, f2)[:, edge], truth[:, edge]) + 8


def _clip(frames: list[np.ndarray], fps: float, pulled: list[int] | None = None) -> Clip:
    def gen() -> Iterator[np.ndarray]:
        for i, frame in enumerate(frames):
            if pulled is not None:
                pulled.append(i)
            yield frame

    h, w = frames[0].shape[:2]
    return Clip(gen(), fps, w, h, len(frames), {"engine": "test"})


@pytest.fixture(scope="module")
def pan_scene():
    """A slow pan sampled at 1/20 frame steps: truth for any output time."""
    motion = Motion(pan=(3.0, 1.0), zoom=1.0, angle=0.0)
    times = [i / 20 for i in range(6 * 20 + 1)]
    frames = render_frames(photo("rocket"), None, times, size=(192, 128), motion=motion)
    return dict(zip(times, frames))


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_factor_counts_and_timestamps(pan_scene, factor):
    inputs = [pan_scene[float(k)] for k in range(6)]
    clip = interpolate_clip(_clip(inputs, 10.0), FlowInterpolator(), factor=factor)
    assert clip.fps == 10.0 * factor
    assert clip.num_frames == 6 * factor  # duration kept: 6 frames at 10 fps = 0.6 s
    out = list(clip.frames)
    assert len(out) == clip.num_frames
    for k, frame in enumerate(out):
        position = min(k / factor, 5.0)  # the last input frame is held to the end
        if position == int(position):
            assert frame is inputs[int(position)]  # input frames pass through untouched
        else:
            truth = pan_scene[round(position * 20) / 20]
            assert psnr(frame, truth) > 32, (k, position)
    assert clip.info["interpolation"]["output_frames"] == 6 * factor
    assert clip.info["engine"] == "test"


def test_target_fps_samples_exact_output_times(pan_scene):
    """12 -> 30 fps (x2.5): output frame k shows input position k * 12 / 30."""
    inputs = [pan_scene[float(k)] for k in range(6)]
    clip = interpolate_clip(_clip(inputs, 12.0), FlowInterpolator(), target_fps=30)
    assert clip.fps == 30.0 and clip.num_frames == 15
    out = list(clip.frames)
    assert len(out) == 15
    for k, frame in enumerate(out):
        position = min(k * 12 / 30, 5.0)  # 0.4 k; the last input frame is held
        truth = pan_scene[round(position * 20) / 20]
        score = psnr(frame, truth)
        assert score > 32, (k, position, score)
        # and it is nearer to its own time than to 0.2 frames either side
        for other in (position - 0.2, position + 0.2):
            if 0 <= other <= 5:
                assert score > psnr(frame, pan_scene[round(other * 20) / 20]), (k, other)


def test_output_timing_rules():
    assert output_timing(10, 24, factor=2)[:2] == (48, 20)
    fps, count, step = output_timing(100, 30000 / 1001, target_fps=60)
    # 29.97 fps is recognised as 30000/1001 exactly, so times do not drift over long clips
    assert fps == 60 and step == Fraction(500, 1001) and count == 200
    assert output_timing(7, 25, target_fps=25)[1] == 7
    with pytest.raises(InputError, match="below the input's 30 fps"):  # the user's to fix
        output_timing(10, 30, target_fps=24)
    with pytest.raises(ValueError, match="exactly one"):
        output_timing(10, 30, factor=2, target_fps=60)


class CountingInterpolator:
    """Wraps the flow interpolator and counts prepare() calls."""

    name = "counting"

    def __init__(self) -> None:
        self.inner = FlowInterpolator()
        self.prepared = 0

    def prepare(self, a, b):
        self.prepared += 1
        return self.inner.prepare(a, b)


def test_streams_with_one_flow_per_pair(pan_scene):
    inputs = [pan_scene[float(k)] for k in range(6)]
    pulled: list[int] = []
    spy = CountingInterpolator()
    clip = interpolate_clip(_clip(inputs, 10.0, pulled), spy, factor=4)
    frames = iter(clip.frames)
    next(frames)
    assert pulled == [0, 1]  # only the first pair is read to emit frame 0
    next(frames), next(frames)
    assert pulled == [0, 1] and spy.prepared == 1
    rest = list(frames)
    assert len(rest) == 24 - 3
    assert spy.prepared == 5  # one prepare per pair, whatever the factor


def test_scene_cut_in_a_clip_is_counted_and_repeated():
    a = [cv2.resize(photo("chelsea"), (160, 120))] * 2
    b = [cv2.resize(photo("coffee"), (160, 120))] * 2
    clip = interpolate_clip(_clip(a + b, 8.0), FlowInterpolator(), factor=4)
    out = list(clip.frames)
    assert len(out) == 16
    assert clip.info["interpolation"]["scene_cuts"] == 1
    # across the cut (input 1 -> 2, output 4 -> 8) the nearest frame is repeated
    assert out[5] is a[1] and out[6] is b[0] and out[7] is b[0]
    for frame in out:  # nothing is a mix of the two shots
        assert max(psnr(frame, a[0]), psnr(frame, b[0])) > 40


def test_cancel_stops_the_stream(pan_scene):
    inputs = [pan_scene[float(k)] for k in range(6)]
    cancel = CancelToken()
    frames = interpolate_clip(_clip(inputs, 10.0), FlowInterpolator(), factor=2,
                              cancel=cancel).frames
    next(frames)
    cancel.cancel()
    from img2vid.core.errors import CancelledError

    with pytest.raises(CancelledError):
        list(frames)


def test_morph_between_related_photos_follows_the_motion():
    f0, truth, f2 = render_frames(photo("astronaut"), None, [0, 1, 2],
                                  motion=Motion(pan=(5.0, 3.0), zoom=1.02, angle=1.0))
    assert morph(f0, f2, 0.0) is f0 and morph(f0, f2, 1.0) is f2
    mid = morph(f0, f2, 0.5)
    assert psnr(mid, truth) > psnr(blend(f0, f2), truth) + 6


def test_morph_between_unrelated_photos_is_a_clean_crossfade():
    a = cv2.resize(photo("chelsea"), (256, 192))
    b = cv2.resize(photo("rocket"), (256, 192))
    pair = morph_pair(a, b)
    for t in (0.25, 0.5, 0.75):
        fade = cv2.addWeighted(a, 1 - t, b, t, 0)
        assert psnr(pair.morph(t), fade) > 30  # no correspondence: no smeared warping
    early, late = pair.morph(0.1), pair.morph(0.9)
    assert psnr(early, a) > psnr(early, b) and psnr(late, b) > psnr(late, a)


def test_morph_transition_in_the_camera_slideshow():
    """Two overlapping views of one photo, 16 px apart: mid-transition, morph shows one
    picture in between where the crossfade shows two ghosts."""
    from img2vid.core.config import Settings
    from img2vid.core.request import build_request
    from img2vid.engines.camera import CameraEngine
    from img2vid.media.images import LoadedImage
    from tests.conftest import EXAMPLES

    base = cv2.cvtColor(cv2.imread(str(EXAMPLES / "coffee.png")), cv2.COLOR_BGR2RGB)
    views = [LoadedImage(pixels=np.ascontiguousarray(base[40:280, x:x + 320]), path=name,
                         sha256="", source_format="test") for x, name in ((0, "a"), (16, "b"))]
    engine = CameraEngine(Settings())

    def middle(style: str) -> list[np.ndarray]:
        request = build_request(images=("a", "b"), width=320, height=240, num_frames=30, fps=10,
                                transition=1.0, motion="static", transition_style=style)
        frames = list(engine.generate(request, views, lambda _: None, CancelToken()).frames)
        return frames[14:16]  # the transition spans frames 12..17

    def best_shift(frame: np.ndarray) -> float:
        return max(psnr(frame, base[40:280, x:x + 320]) for x in range(17))

    for faded, morphed in zip(middle("crossfade"), middle("morph")):
        assert best_shift(morphed) > 28
        assert best_shift(morphed) > best_shift(faded) + 5


def test_memory_does_not_grow_with_the_clip():
    import tracemalloc

    base = render_frames(photo("coffee"), None, [0, 1, 2, 3], size=(256, 192))

    def peak(n: int) -> int:
        def gen() -> Iterator[np.ndarray]:
            for i in range(n):
                yield base[i % 4].copy()

        tracemalloc.start()
        try:
            clip = interpolate_clip(Clip(gen(), 10.0, 256, 192, n), FlowInterpolator(), factor=3)
            assert sum(1 for _ in clip.frames) == 3 * n
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    short, long = peak(12), peak(60)
    assert long < short * 1.1  # 5x the frames, the same peak
    assert long < 60 * base[0].nbytes  # a few frames plus the flow fields
