"""Parallax engine on a scene with known depth: true parallax ratios, background-filled
reveals, no holes, a smooth path, a seamless circle, depth-of-field, streaming."""

from __future__ import annotations

import itertools
import threading
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.registration import phase_cross_correlation

from img2vid.core.config import Settings
from img2vid.core.errors import InputError
from img2vid.core.progress import CancelToken, no_progress
from img2vid.core.request import build_request
from img2vid.engines import create_engine
from img2vid.engines.parallax.engine import ParallaxEngine
from img2vid.engines.parallax.paths import View3D
from tests.parallax_scene import FAR, NEAR, Scene, make_scene, reveal_quality

OUT_W, OUT_H = 512, 288  # at zoom 1.3 the 640 x 360 photo is rendered at its own size


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    return make_scene(tmp_path_factory.mktemp("parallax"))


@pytest.fixture(scope="module")
def engine() -> ParallaxEngine:
    return ParallaxEngine(Settings())


def frames_of(engine: ParallaxEngine, scene: Scene, **fields: object) -> list[np.ndarray]:
    fields = {"width": OUT_W, "height": OUT_H, "fps": 10, "easing": "linear", **fields}
    request = build_request(images=(scene.photo.path,), engine="parallax",
                            depth=str(scene.depth_path), **fields)
    clip = engine.generate(request, [scene.photo], no_progress, CancelToken())
    frames = list(clip.frames)
    assert len(frames) == clip.num_frames == request.num_frames
    size = (fields["height"], fields["width"], 3)
    assert all(f.shape == size and f.dtype == np.uint8 for f in frames)
    return frames


def grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float64)


def shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(dx, dy) that content moved from a to b, sub-pixel."""
    found, _, _ = phase_cross_correlation(grey(a), grey(b), upsample_factor=100,
                                          normalization=None)
    return -found[::-1]


def test_registry_creates_the_parallax_engine() -> None:
    assert isinstance(create_engine("parallax", Settings()), ParallaxEngine)


def test_truck_moves_each_layer_by_its_disparity(engine: ParallaxEngine, scene: Scene) -> None:
    frames = frames_of(engine, scene, motion="truck-right", num_frames=24)
    # the far plane: a strip above the card; the card: a patch inside it all along
    far_moves = np.array([shift(a[10:70, 40:-40], b[10:70, 40:-40])
                          for a, b in itertools.pairwise(frames)])
    card_moves = []
    for a, b in itertools.pairwise(frames):
        # a patch following the card: the middle of its red (the plane has red pixels too,
        # but not with green and blue this low)
        red, green, blue = (a[120:170, :, c].astype(int) for c in range(3))
        x = int(np.median(np.nonzero((red >= 160) & (green <= 90) & (blue <= 90))[1])) - 30
        card_moves.append(shift(a[120:170, x:x + 60], b[120:170, x:x + 60]))
    far_dx, card_dx = far_moves[:, 0].mean(), np.array(card_moves)[:, 0].mean()
    assert far_dx < -0.5  # the camera goes right: the scene goes left
    assert card_dx / far_dx == pytest.approx(NEAR / FAR, rel=0.03)
    assert np.abs(far_moves[:, 1]).max() < 0.05  # no vertical wobble


def test_truck_path_is_smooth(engine: ParallaxEngine, scene: Scene) -> None:
    frames = frames_of(engine, scene, motion="truck-left", num_frames=30)
    moves = np.array([shift(a[10:70, 40:-40], b[10:70, 40:-40])
                      for a, b in itertools.pairwise(frames)])
    assert moves[:, 0].mean() > 0.5
    jitter = float(np.sqrt(np.diff(moves, axis=0).var(axis=0).sum()))
    assert jitter < 0.05  # the camera engine's bar for a sub-pixel exact path


def test_reveal_shows_the_background_not_a_stretched_card(engine: ParallaxEngine,
                                                          scene: Scene) -> None:
    reveal = reveal_quality(engine, scene, OUT_W, OUT_H)
    assert reveal.slide.photo.shape[:2] == scene.photo.pixels.shape[:2]  # at its own size
    assert reveal.region.sum() > 2000
    assert reveal.ours_db > reveal.stretched_db + 3.0, reveal
    # the revealed pixels are known to lie on the far plane
    assert (np.abs(reveal.disparity[reveal.region] - FAR) < 0.02).mean() > 0.99
    # the card itself is drawn where its depth puts it, pixel exact
    card = cv2.erode((~reveal.region & (np.abs(reveal.disparity - NEAR) < 0.02)
                      ).astype(np.uint8), np.ones((3, 3))).astype(bool)
    assert card.sum() > 5000 and (reveal.frame[card][:, 0].astype(int) >= 150).mean() > 0.98


def test_the_background_fill_takes_nothing_from_the_outline_fringe(scene: Scene) -> None:
    """Real outlines carry a pixel or two of mixed colour on the far side (anti-aliasing,
    sharpening halos): the fill behind the object continues the background from beyond them."""
    from img2vid.engines.parallax.clean import background_layer

    x0, y0, x1, y1 = scene.rect
    pixels = scene.photo.pixels.copy()
    ring = np.zeros(pixels.shape[:2], bool)
    ring[y0 - 2:y1 + 2, x0 - 2:x1 + 2] = True
    ring[y0:y1, x0:x1] = False
    pixels[ring] = (0, 255, 0)  # a green the scene has nowhere else (the plane's G <= 215)
    depth = np.full(ring.shape, FAR, np.float32)
    depth[y0:y1, x0:x1] = NEAR
    colour, back = background_layer(pixels, depth, reach=40.0)
    behind = colour[y0:y1, x0:x1]
    assert (np.abs(back[y0:y1, x0:x1] - FAR) < 0.01).all()  # the plane continues, flat
    assert not (behind[..., 1] > 222).any()  # no fringe copied in
    assert (behind[..., 0] < 150).mean() > 0.5  # nor the red card: the plane's own colours
    assert (colour[ring] == pixels[ring]).mean() < 0.05  # the fringe itself is refilled


@pytest.mark.parametrize("motion", ["dolly-in", "dolly-out", "truck-left", "pedestal-up",
                                    "pedestal-down", "orbit", "circle", "vertigo", "zoom-in",
                                    "ken-burns", "pan-right", "static"])
def test_every_move_fills_every_pixel(engine: ParallaxEngine, scene: Scene,
                                      motion: str) -> None:
    frames = frames_of(engine, scene, motion=motion, num_frames=6, width=256, height=144,
                       zoom=1.5)
    for frame in frames:
        # the scene has no value under 40 except the card's green/blue: nothing is black
        assert (frame.max(axis=2) >= 40).all()
    if motion != "static":
        assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 2


@pytest.mark.parametrize("motion", ["circle", "dolly-in", "truck-right", "vertigo"])
def test_every_pixel_shows_the_surface_its_ray_meets(engine: ParallaxEngine, scene: Scene,
                                                     motion: str) -> None:
    """The renderer's shortcuts (a coarse grid, half-resolution steps, cells that skip the
    search) against the scene's exact geometry: each ray sees the card if it lands on it at
    the card's depth, the plane otherwise (also behind the card, where a move uncovers it)."""
    from img2vid.engines.parallax.engine import ParallaxPlanner
    from img2vid.engines.parallax.render import render
    from img2vid.engines.slideshow import Timeline

    request = build_request(images=(scene.photo.path,), engine="parallax", motion=motion,
                            depth=str(scene.depth_path), width=OUT_W, height=OUT_H,
                            num_frames=8, fps=10, zoom=1.4)
    slide = engine.prepare(request, scene.photo, OUT_W, OUT_H)
    built = ParallaxPlanner([slide], Timeline.plan(8, 1, 0), loop=False).build(0)
    scale = slide.photo.shape[1] / scene.photo.pixels.shape[1]
    x0, y0, x1, y1 = (v * scale for v in scene.rect)
    for t in (0.3, 0.8):
        view = slide.move.at(t)
        _, disparity = render(built, view, OUT_W, OUT_H)
        px, qx, py, qy = view.rays(OUT_W, OUT_H)
        x = px[None, :] + qx[None, :] * NEAR + 0.5
        y = py[:, None] + qy[:, None] * NEAR + 0.5
        on_card = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
        truth = np.where(on_card, NEAR, FAR)
        # near the outline either is right: depth cleaning (a guided filter of radius 2 here)
        # leaves a fringe of a pixel or two there
        outline = cv2.dilate(cv2.Canny(on_card.astype(np.uint8) * 255, 1, 1),
                             np.ones((7, 7), np.uint8)) > 0
        wrong = (np.abs(disparity - truth) > 0.02) & ~outline
        assert wrong.mean() < 1e-3, (motion, t, wrong.sum())


def move_of(engine: ParallaxEngine, scene: Scene, motion: str, zoom: float):  # noqa: ANN201
    request = build_request(images=(scene.photo.path,), engine="parallax", motion=motion,
                            depth=str(scene.depth_path), width=OUT_W, height=OUT_H,
                            num_frames=10, fps=10, zoom=zoom, focus="0.5,0.5")
    return engine.prepare(request, scene.photo, OUT_W, OUT_H).move


def shown_width(view: View3D, w: float) -> float:
    """Photo pixels shown across the output's middle row on a surface of disparity w."""
    left = view.point(0, OUT_H / 2, w, OUT_W, OUT_H)[0]
    return view.point(OUT_W, OUT_H / 2, w, OUT_W, OUT_H)[0] - left


def test_dolly_in_grows_the_focus_by_zoom_and_the_near_card_more(engine: ParallaxEngine,
                                                                scene: Scene) -> None:
    move = move_of(engine, scene, "dolly-in", 1.2)
    assert move.focus_depth == pytest.approx(NEAR, abs=0.01)
    start, end = move.at(0.0), move.at(1.0)
    assert shown_width(start, NEAR) / shown_width(end, NEAR) == pytest.approx(1.2, rel=1e-5)
    assert shown_width(start, FAR) / shown_width(end, FAR) < 1.1  # the plane barely grows
    # the focus keeps its place on screen
    fx, fy = end.point(OUT_W / 2, OUT_H / 2, NEAR, OUT_W, OUT_H)
    assert start.point(OUT_W / 2, OUT_H / 2, NEAR, OUT_W, OUT_H) == pytest.approx((fx, fy))


def test_vertigo_keeps_the_subject_and_grows_the_background(engine: ParallaxEngine,
                                                            scene: Scene) -> None:
    start, end = (move_of(engine, scene, "vertigo", 1.3).at(t) for t in (0.0, 1.0))
    assert shown_width(start, NEAR) == pytest.approx(shown_width(end, NEAR), rel=1e-5)
    # less of the plane fills the frame at the end: it looms
    assert shown_width(start, FAR) / shown_width(end, FAR) > 1.15


def test_circle_loop_last_frame_meets_the_first(engine: ParallaxEngine, scene: Scene) -> None:
    frames = frames_of(engine, scene, motion="circle", num_frames=24, easing="ease-in-out")
    steps = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in itertools.pairwise(frames)]
    seam = np.abs(frames[-1].astype(int) - frames[0].astype(int)).mean()
    assert min(steps) > 0.5  # it moves all the way round at one speed
    assert seam == pytest.approx(np.mean(steps), rel=0.25)
    assert max(steps) < 1.5 * min(steps)


def test_depth_of_field_blurs_away_from_the_focus(engine: ParallaxEngine,
                                                  scene: Scene) -> None:
    sharp = frames_of(engine, scene, motion="static", num_frames=1, focus="0.5,0.5")[0]
    soft = frames_of(engine, scene, motion="static", num_frames=1, focus="0.5,0.5",
                     depth_of_field=1.0)[0]

    def detail(img: np.ndarray, region: tuple[slice, slice]) -> float:
        return float(cv2.Laplacian(grey(img)[region], cv2.CV_64F).var())

    card = (slice(130, 160), slice(230, 280))
    plane = (slice(10, 60), slice(20, 120))
    assert detail(soft, card) == pytest.approx(detail(sharp, card), rel=0.05)
    assert detail(soft, plane) < 0.6 * detail(sharp, plane)


@pytest.mark.parametrize("sigma", [1.5, 5.0, 8.0, 12.0])
def test_depth_of_field_blur_matches_a_gaussian(scene: Scene, sigma: float) -> None:
    """Wide blurs run on a shrunk copy: they still match OpenCV's full-size Gaussian."""
    from img2vid.engines.parallax.engine import gaussian

    photo = scene.photo.pixels
    exact = cv2.GaussianBlur(photo, (0, 0), sigma).astype(int)
    quick = gaussian(photo, sigma).astype(int)
    assert quick.shape == photo.shape
    inside = (slice(20, -20), slice(20, -20))  # borders are extended differently
    assert np.abs(quick - exact)[inside].mean() < 0.5


def test_invert_reads_darker_as_nearer(engine: ParallaxEngine, scene: Scene,
                                       tmp_path: Path) -> None:
    inverted = tmp_path / "inverted.png"
    depth = cv2.imread(str(scene.depth_path), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(inverted), 65535 - depth)
    request = build_request(images=(scene.photo.path,), engine="parallax", motion="orbit",
                            depth=str(inverted), depth_invert=True, width=OUT_W,
                            height=OUT_H, num_frames=4, fps=10, focus="0.5,0.5")
    assert engine.prepare(request, scene.photo, OUT_W, OUT_H).move.focus_depth == \
        pytest.approx(NEAR, abs=0.01)


def test_a_depth_map_of_another_size_is_resized_to_the_photo(engine: ParallaxEngine,
                                                            scene: Scene,
                                                            tmp_path: Path) -> None:
    small = tmp_path / "small.png"
    depth = cv2.imread(str(scene.depth_path), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(small), cv2.resize(depth, (320, 180), interpolation=cv2.INTER_NEAREST))
    request = build_request(images=(scene.photo.path,), engine="parallax", motion="static",
                            depth=str(small), width=OUT_W, height=OUT_H, num_frames=1, fps=10)
    slide = engine.prepare(request, scene.photo, OUT_W, OUT_H)
    assert slide.depth.shape == scene.photo.pixels.shape[:2]
    x0, y0, x1, y1 = scene.rect
    assert slide.depth[(y0 + y1) // 2, (x0 + x1) // 2] == pytest.approx(NEAR, abs=0.01)


def test_a_broken_depth_map_is_one_clear_line(engine: ParallaxEngine, scene: Scene,
                                              tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    request = build_request(images=(scene.photo.path,), engine="parallax", depth=str(bad),
                            width=OUT_W, height=OUT_H, num_frames=2, fps=10)
    with pytest.raises(InputError, match="bad.png"):
        engine.generate(request, [scene.photo], no_progress, CancelToken())


def test_one_depth_map_for_several_photos_is_refused(scene: Scene) -> None:
    with pytest.raises(InputError, match="one depth map cannot serve several photos"):
        build_request(images=(scene.photo.path, scene.photo.path), engine="parallax",
                      depth=str(scene.depth_path))


def test_frames_stream_with_flat_memory(engine: ParallaxEngine, scene: Scene) -> None:
    request = build_request(images=(scene.photo.path,), engine="parallax", motion="circle",
                            depth=str(scene.depth_path), width=128, height=72, num_frames=300,
                            fps=30)
    tracemalloc.start()
    try:
        clip = engine.generate(request, [scene.photo], no_progress, CancelToken())
        count = sum(1 for _ in clip.frames)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 300
    # all 300 frames would be 8 MB; the scene (photo, depths, dilations, background) is ~12 MB
    assert peak < 24 * 1024**2
    assert not [t for t in threading.enumerate() if t.name.startswith("img2vid-parallax")]
