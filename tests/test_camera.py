"""Camera engine: sizes and counts, no borders, smooth sub-pixel motion, focus, streaming, cancel."""

from __future__ import annotations

import itertools
import math
import os
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.registration import phase_cross_correlation

from img2vid.core.config import Settings
from img2vid.core.errors import CancelledError
from img2vid.core.progress import CancelToken, Progress, no_progress
from img2vid.core.request import PARALLAX_ONLY_MOTIONS, Easing, Motion, build_request
from img2vid.engines import camera as cam
from img2vid.engines import create_engine, geometry, slideshow
from img2vid.engines.camera import CameraEngine
from img2vid.engines.geometry import (
    Camera,
    Framing,
    Pyramid,
    View,
    camera_at,
    eased,
    render_view,
    warp,
    warp_matrix,
    window_corners,
)
from img2vid.media.images import LoadedImage, load_image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ALL_MOTIONS = [m for m in Motion if m not in PARALLAX_ONLY_MOTIONS]  # those need depth


@pytest.fixture(scope="module")
def astronaut() -> LoadedImage:
    return load_image(EXAMPLES / "astronaut.png")


@pytest.fixture(scope="module")
def coffee() -> LoadedImage:
    return load_image(EXAMPLES / "coffee.png")


@pytest.fixture(scope="module")
def engine() -> CameraEngine:
    return CameraEngine(Settings())


def photo(pixels: np.ndarray, name: str = "test") -> LoadedImage:
    return LoadedImage(pixels=np.ascontiguousarray(pixels), path=name, sha256="",
                       source_format="test")


def render(engine: CameraEngine, images: list[LoadedImage], **fields: object) -> list[np.ndarray]:
    request = build_request(images=tuple(i.path for i in images), **fields)
    clip = engine.generate(request, images, no_progress, CancelToken())
    frames = list(clip.frames)
    assert len(frames) == clip.num_frames == request.num_frames
    for frame in frames:
        assert frame.shape == (clip.height, clip.width, 3) and frame.dtype == np.uint8
    return frames


def before_each_warp(monkeypatch: pytest.MonkeyPatch, hook: Callable[[], None]) -> None:
    """Run `hook` on the render thread just before each photo's warp (cam.warp wrapped)."""
    real_warp = cam.warp

    def watched(view: View, out_w: int, out_h: int) -> np.ndarray:
        hook()
        return real_warp(view, out_w, out_h)

    monkeypatch.setattr(cam, "warp", watched)


def camera_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("img2vid-camera")]


# --------------------------------------------------------------------------------------------
# Sizes and counts
# --------------------------------------------------------------------------------------------

def test_registry_creates_the_camera_engine() -> None:
    assert isinstance(create_engine("camera", Settings()), CameraEngine)


@pytest.mark.parametrize("motion", ALL_MOTIONS)
@pytest.mark.parametrize("size", [(320, 180), (180, 320)])
def test_exact_frame_count_and_size(engine: CameraEngine, astronaut: LoadedImage,
                                    motion: Motion, size: tuple[int, int]) -> None:
    request = build_request(images=("a",), motion=motion, width=size[0], height=size[1],
                            num_frames=13, fps=24, focus="0.6,0.4")
    clip = engine.generate(request, [astronaut], no_progress, CancelToken())
    assert (clip.width, clip.height, clip.num_frames, clip.fps) == (*size, 13, 24.0)
    frames = list(clip.frames)
    assert len(frames) == 13
    assert {f.shape for f in frames} == {(size[1], size[0], 3)}


def test_size_follows_the_photo_aspect_when_not_given(engine: CameraEngine,
                                                      coffee: LoadedImage) -> None:
    # coffee.png is 600 x 400 (3:2); turned a quarter it is a 2:3 portrait.
    frames = render(engine, [coffee], resolution=256, duration=0.5, fps=10)
    assert frames[0].shape == (256, 384, 3) and len(frames) == 5
    portrait = photo(np.rot90(coffee.pixels), "portrait")
    frames = render(engine, [portrait], resolution=256, duration=0.5, fps=10)
    assert frames[0].shape == (384, 256, 3) and len(frames) == 5


def test_slideshow_shares_the_duration_and_fits_other_photos(engine: CameraEngine,
                                                             astronaut: LoadedImage,
                                                             coffee: LoadedImage) -> None:
    request = build_request(images=("a", "b", "c"), width=320, height=180, duration=3.0, fps=20,
                            transition=0.4, motion="ken-burns")
    clip = engine.generate(request, [astronaut, coffee, astronaut], no_progress, CancelToken())
    frames = list(clip.frames)
    assert len(frames) == 60 and frames[0].shape == (180, 320, 3)
    assert clip.info["transition_frames"] == 8
    assert [s["focus_source"] for s in clip.info["slides"]] == ["face", "centre", "face"]


def test_timeline_segments_and_clamped_transition() -> None:
    timeline = slideshow.Timeline.plan(num_frames=90, count=3, overlap=12)
    assert timeline.segment == pytest.approx(38)  # (90 + 2 x 12) / 3
    assert [timeline.start(i) for i in range(3)] == [0, 26, 52]
    assert timeline.shots(0) == (slideshow.Shot(0, 0.0),)
    assert timeline.shots(89)[-1] == slideshow.Shot(2, 1.0)
    assert [s.image for s in timeline.shots(30)] == [0, 1]
    # The incoming photo's weight rises through the crossfade.
    weights = [timeline.shots(i)[-1].weight for i in range(26, 38)]
    assert weights == sorted(weights) and 0 < weights[0] < weights[-1] < 1
    # A crossfade longer than a third of a segment is shortened to that.
    assert slideshow.Timeline.plan(90, 3, overlap=100).overlap == pytest.approx(90 / 7)
    assert slideshow.Timeline.plan(90, 1, overlap=30).overlap == 0


def test_crossfade_blends_the_two_photos(engine: CameraEngine) -> None:
    red = photo(np.full((200, 320, 3), (255, 0, 0), np.uint8), "red")
    blue = photo(np.full((200, 320, 3), (0, 0, 255), np.uint8), "blue")
    frames = render(engine, [red, blue], width=160, height=100, num_frames=30, fps=10,
                    transition=1.0, motion="static")
    assert (frames[0] == (255, 0, 0)).all() and (frames[-1] == (0, 0, 255)).all()
    reds = [int(f[50, 80, 0]) for f in frames]
    assert reds == sorted(reds, reverse=True)
    middle = frames[len(frames) // 2]
    assert 100 < middle[50, 80, 0] < 155 and 100 < middle[50, 80, 2] < 155


# --------------------------------------------------------------------------------------------
# The window never leaves the photo
# --------------------------------------------------------------------------------------------

EXTREME_FOCI = [(0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.5, 0.5)]


@pytest.mark.parametrize("motion", ALL_MOTIONS)
@pytest.mark.parametrize("photo_size,out_size", [((800, 600), (320, 180)),
                                                 ((600, 900), (320, 180)),
                                                 ((1200, 500), (180, 320))])
def test_window_stays_inside_the_photo(motion: Motion, photo_size: tuple[int, int],
                                       out_size: tuple[int, int]) -> None:
    for focus in EXTREME_FOCI:
        framing = Framing.fit(*photo_size, *out_size, focus)
        for zoom in (1.0, 1.3, 4.0):
            for p in np.linspace(0, 1, 21):
                corners = window_corners(camera_at(motion, framing, zoom, p), framing)
                assert corners.min() >= -1e-6
                assert (corners.max(axis=0) <= np.array(photo_size) + 1e-6).all()


@pytest.mark.parametrize("motion", ALL_MOTIONS)
def test_white_photo_renders_white_with_a_black_border_mode(motion: Motion) -> None:
    """With BORDER_CONSTANT black, any sample taken outside the photo would darken a pixel."""
    for photo_size, out_size in [((1000, 700), (160, 90)), ((700, 1000), (90, 160))]:
        white = np.full((photo_size[1], photo_size[0], 3), 255, np.uint8)
        for focus in EXTREME_FOCI:
            framing = Framing.fit(*photo_size, *out_size, focus)
            pyramid = Pyramid(white)
            for p in np.linspace(0, 1, 7):
                frame = render_view(framing, pyramid, camera_at(motion, framing, 1.3, p), *out_size,
                                    border=cv2.BORDER_CONSTANT)
                assert frame.min() == 255, (motion, focus, p)


def test_static_full_size_render_is_the_photo_itself() -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    framing = Framing.fit(160, 90, 160, 90, (0.5, 0.5))
    frame = render_view(framing, Pyramid(pixels), camera_at(Motion.STATIC, framing, 1.3, 0),
                        160, 90)
    assert np.array_equal(frame, pixels)


def test_banded_warp_equals_one_whole_frame_warp(astronaut: LoadedImage) -> None:
    framing = Framing.fit(512, 512, 1280, 720, (0.3, 0.6))
    view = geometry.plan_view(framing, Pyramid(astronaut.pixels),
                              camera_at(Motion.ROTATE, framing, 1.3, 0.7), 1280, 720)
    whole = cv2.warpAffine(view.pixels, view.matrix, (1280, 720),
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REFLECT)
    assert np.array_equal(warp(view, 1280, 720), whole)


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux behaviour")
def test_render_threads_run_at_background_priority(engine: CameraEngine,
                                                   astronaut: LoadedImage,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    seen = set()
    before_each_warp(monkeypatch,
                     lambda: seen.add(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    render(engine, [astronaut], width=128, height=72, num_frames=8, fps=8)
    assert seen == {min(19, before + slideshow.RENDER_NICE)}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_pyramid_levels_are_aligned(astronaut: LoadedImage) -> None:
    """The same view rendered from different levels shows the picture at the same place."""
    framing = Framing.fit(512, 512, 160, 90, (0.5, 0.5))
    pyramid = Pyramid(astronaut.pixels)
    camera = Camera(230.3, 260.7, 1.1)
    grey = []
    for level in (0, 2, 4, 5):
        pixels = pyramid.ensure(level)
        matrix = warp_matrix(camera, framing, 160, 90, pixels.shape[1], pixels.shape[0])
        grey.append(cv2.cvtColor(warp(View(pixels, matrix), 160, 90), cv2.COLOR_RGB2GRAY))
    for other in grey[1:]:
        shift, _, _ = phase_cross_correlation(grey[0].astype(float), other.astype(float),
                                              upsample_factor=100)
        assert np.abs(shift).max() <= 0.05


# --------------------------------------------------------------------------------------------
# Smooth, sub-pixel motion that follows the easing
# --------------------------------------------------------------------------------------------

def grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float64)


def steps(frames: list[np.ndarray], zoom_step: float = 1.0) -> np.ndarray:
    """Frame-to-frame translation (px), after enlarging each frame by the known zoom step."""
    h, w = frames[0].shape[:2]
    enlarge = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), 0, zoom_step)
    out = []
    for a, b in itertools.pairwise(frames):
        grown = cv2.warpAffine(grey(a), enlarge, (w, h), flags=cv2.INTER_CUBIC,
                               borderMode=cv2.BORDER_REFLECT)
        shift, _, _ = phase_cross_correlation(grown[20:-20, 20:-20], grey(b)[20:-20, 20:-20],
                                              upsample_factor=100)
        out.append(shift[::-1])
    return np.array(out)


def jitter(step_list: np.ndarray) -> float:
    second = np.diff(step_list, axis=0)
    return float(np.sqrt(second.var(axis=0).sum()))


def rounded_crop_render(pixels: np.ndarray, cameras: list[Camera], framing: Framing,
                        size: tuple[int, int]) -> list[np.ndarray]:
    """What a whole-pixel crop-and-resize (ffmpeg's zoompan) makes of the same path."""
    frames = []
    for c in cameras:
        w, h = framing.base_w / c.scale, framing.base_h / c.scale
        x0, y0 = round(c.cx - w / 2), round(c.cy - h / 2)
        crop = pixels[y0:y0 + round(h), x0:x0 + round(w)]
        frames.append(cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
    return frames


def test_pan_is_smooth_and_follows_the_easing(engine: CameraEngine,
                                              astronaut: LoadedImage) -> None:
    n = 40
    # Constant speed (linear easing): any second difference of the path is jitter.
    frames = render(engine, [astronaut], motion="pan-right", zoom=1.5, width=320, height=180,
                    num_frames=n, fps=20, easing="linear", focus="0.5,0.4")
    moves = steps(frames)
    assert np.abs(moves[:, 1]).max() < 0.05  # a horizontal pan does not wobble vertically
    framing = Framing.fit(512, 512, 320, 180, (0.5, 0.4))
    cameras = [camera_at(Motion.PAN_RIGHT, framing, 1.5, i / (n - 1)) for i in range(n)]
    naive = rounded_crop_render(astronaut.pixels, cameras, framing, (320, 180))
    ours, theirs = jitter(moves), jitter(steps(naive))
    assert ours < 0.05
    assert ours * 4 < theirs

    frames = render(engine, [astronaut], motion="pan-right", zoom=1.5, width=320, height=180,
                    num_frames=n, fps=20, easing="ease-in-out", focus="0.5,0.4")
    travelled = np.concatenate([[0], np.cumsum(-steps(frames)[:, 0])])
    expected = [eased(Easing.EASE_IN_OUT, i / (n - 1)) for i in range(n)]
    assert np.abs(travelled / travelled[-1] - expected).max() < 0.02


def test_zoom_is_smooth_and_follows_the_easing(engine: CameraEngine,
                                               astronaut: LoadedImage) -> None:
    n, zoom = 40, 1.4
    frames = render(engine, [astronaut], motion="zoom-in", zoom=zoom, width=320, height=180,
                    num_frames=n, fps=20, easing="linear", focus="0.6,0.45")
    step = zoom ** (1 / (n - 1))
    moves = steps(frames, step)
    framing = Framing.fit(512, 512, 320, 180, (0.6, 0.45))
    cameras = [camera_at(Motion.ZOOM_IN, framing, zoom, i / (n - 1)) for i in range(n)]
    naive = rounded_crop_render(astronaut.pixels, cameras, framing, (320, 180))
    ours, theirs = jitter(moves), jitter(steps(naive, step))
    assert ours < 0.05
    assert ours * 4 < theirs

    # The scale each frame adds, measured by ECC, accumulates along the easing curve.
    eased_frames = render(engine, [astronaut], motion="zoom-in", zoom=zoom, width=320,
                          height=180, num_frames=n, fps=20, easing="ease-in", focus="0.5,0.5")
    log_scale = [0.0]
    for a, b in itertools.pairwise(eased_frames):
        warp_m = np.eye(2, 3, dtype=np.float32)
        _, warp_m = cv2.findTransformECC(grey(b).astype(np.float32),
                                         grey(a).astype(np.float32), warp_m, cv2.MOTION_AFFINE,
                                         (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100,
                                          1e-7), None, 3)
        log_scale.append(log_scale[-1] - 0.5 * math.log(abs(np.linalg.det(warp_m[:, :2]))))
    measured = np.array(log_scale) / math.log(zoom)
    expected = [eased(Easing.EASE_IN, i / (n - 1)) for i in range(n)]
    assert np.abs(measured - expected).max() < 0.03


def test_zoom_in_keeps_the_focus_still_and_ken_burns_ends_on_it() -> None:
    framing = Framing.fit(1000, 800, 320, 180, (0.3, 0.7))
    screen = []
    for p in np.linspace(0, 1, 11):
        c = camera_at(Motion.ZOOM_IN, framing, 2.0, p)
        step = framing.base_w / c.scale / 320
        screen.append(((framing.focus_x - c.cx) / step, (framing.focus_y - c.cy) / step))
    assert np.ptp(np.array(screen), axis=0).max() < 1e-9
    end = camera_at(Motion.KEN_BURNS, framing, 2.0, 1.0)
    assert (end.cx, end.cy) == pytest.approx((300, 560))
    start = camera_at(Motion.KEN_BURNS, framing, 2.0, 0.0)
    assert (start.cx, start.cy, start.scale) == pytest.approx((500, 400, 1.0))
    assert camera_at(Motion.ROTATE, framing, 1.3, 1.0).angle == pytest.approx(geometry.ROTATE_DEGREES)
    left = [camera_at(Motion.PAN_LEFT, framing, 1.5, p).cx for p in (0, 0.5, 1)]
    assert left == sorted(left, reverse=True)


# --------------------------------------------------------------------------------------------
# Focus
# --------------------------------------------------------------------------------------------

def test_auto_focus_finds_the_astronauts_face(engine: CameraEngine,
                                              astronaut: LoadedImage) -> None:
    request = build_request(images=("a",), width=160, height=90, num_frames=2, fps=10)
    clip = engine.generate(request, [astronaut], no_progress, CancelToken())
    x, y = clip.info["focus"]
    assert clip.info["focus_source"] == "face"
    # Her face spans about x 0.33-0.57 and y 0.10-0.36 of the photo.
    assert 0.33 < x < 0.57 and 0.10 < y < 0.36


def test_auto_focus_without_a_face_is_the_centre(engine: CameraEngine,
                                                 coffee: LoadedImage) -> None:
    request = build_request(images=("c",), width=160, height=90, num_frames=2, fps=10)
    clip = engine.generate(request, [coffee], no_progress, CancelToken())
    assert clip.info["focus"] == [0.5, 0.5] and clip.info["focus_source"] == "centre"


def test_requested_focus_is_used(engine: CameraEngine, astronaut: LoadedImage) -> None:
    request = build_request(images=("a",), width=160, height=90, num_frames=2, fps=10,
                            focus="0.9,0.1")
    clip = engine.generate(request, [astronaut], no_progress, CancelToken())
    assert clip.info["focus"] == [0.9, 0.1] and clip.info["focus_source"] == "request"


# --------------------------------------------------------------------------------------------
# Streaming, early close, errors, cancel
# --------------------------------------------------------------------------------------------

def test_frames_are_rendered_a_bounded_distance_ahead(engine: CameraEngine,
                                                      astronaut: LoadedImage,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[None] = []
    before_each_warp(monkeypatch, lambda: started.append(None))
    request = build_request(images=("a",), width=128, height=72, num_frames=120, fps=30)
    clip = engine.generate(request, [astronaut], no_progress, CancelToken())
    ahead = []
    for consumed, _ in enumerate(clip.frames, start=1):
        time.sleep(0.002)  # a slow consumer: the workers would race ahead if unbounded
        ahead.append(len(started) - consumed)
    assert max(ahead) <= 2 * engine.threads
    assert len(started) == 120


def test_memory_stays_flat_for_a_long_clip(engine: CameraEngine,
                                           astronaut: LoadedImage) -> None:
    request = build_request(images=("a",), width=256, height=144, num_frames=600, fps=30)
    frame_bytes = 256 * 144 * 3
    tracemalloc.start()
    try:
        clip = engine.generate(request, [astronaut], no_progress, CancelToken())
        count = sum(1 for _ in clip.frames)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 600
    # All 600 frames would be 66 MB; a bounded stream holds a handful plus the pyramid.
    assert peak < 30 * frame_bytes + astronaut.pixels.nbytes


def test_closing_the_generator_early_stops_the_workers(engine: CameraEngine,
                                                       astronaut: LoadedImage) -> None:
    request = build_request(images=("a",), width=128, height=72, num_frames=500, fps=30)
    frames = engine.generate(request, [astronaut], no_progress, CancelToken()).frames
    for _ in range(5):
        next(frames)
    assert camera_threads()
    frames.close()
    assert camera_threads() == []


def test_a_failing_frame_raises_and_stops_the_workers(engine: CameraEngine,
                                                      astronaut: LoadedImage,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls = itertools.count(1)

    def fail_the_tenth() -> None:
        if next(calls) == 10:
            raise RuntimeError("boom")

    before_each_warp(monkeypatch, fail_the_tenth)
    request = build_request(images=("a",), width=128, height=72, num_frames=100, fps=30)
    clip = engine.generate(request, [astronaut], no_progress, CancelToken())
    with pytest.raises(RuntimeError, match="boom"):
        list(clip.frames)
    assert camera_threads() == []


def test_cancel_mid_render_raises(engine: CameraEngine, astronaut: LoadedImage) -> None:
    cancel = CancelToken()
    seen: list[Progress] = []

    def progress(event: Progress) -> None:
        seen.append(event)
        if event.stage == "render" and event.done == 5:
            cancel.cancel()

    request = build_request(images=("a",), width=128, height=72, num_frames=200, fps=30)
    clip = engine.generate(request, [astronaut], progress, cancel)
    got = 0
    with pytest.raises(CancelledError):
        for _ in clip.frames:
            got += 1
    assert got == 5
    assert [(e.stage, e.done, e.total) for e in seen] == (
        [("focus", 1, 1)] + [("render", i, 200) for i in range(1, 6)])
    assert camera_threads() == []


def test_cancel_before_generate_raises(engine: CameraEngine, astronaut: LoadedImage) -> None:
    cancel = CancelToken()
    cancel.cancel()
    request = build_request(images=("a",), width=128, height=72, num_frames=10, fps=30)
    with pytest.raises(CancelledError):
        engine.generate(request, [astronaut], no_progress, cancel)
