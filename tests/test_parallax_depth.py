"""Parallax depth: a tiny random Depth Anything loaded through the real path (folder and
Hugging Face cache, no download), the cache by photo hash, and the no-depth message."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from img2vid.core.config import ModelSettings, Settings
from img2vid.core.errors import InputError, ModelNotAvailableError
from img2vid.core.progress import CancelToken, no_progress
from img2vid.core.request import build_request
from img2vid.engines.parallax import depth as depth_module
from img2vid.engines.parallax.depth import DEFAULT_DEPTH_MODEL, DEPTH_MODELS, resolve_depth_model
from img2vid.engines.parallax.engine import ParallaxEngine
from img2vid.media.images import load_image
from tests.parallax_scene import save_tiny_depth_model

REVISION = "5426e4f0f36572d16453bbda7a8389317b1bef99"  # the hub repo's main (LAYOUTS.md)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_depth_model(tmp_path_factory.mktemp("tiny-depth"))


@pytest.fixture
def hub_cache(tmp_path: Path, tiny_model: Path) -> Path:
    """A Hugging Face cache holding the tiny model as depth-anything/Depth-Anything-V2-Small-hf."""
    cache = tmp_path / "hf"
    repo = cache / ("models--" + DEPTH_MODELS[DEFAULT_DEPTH_MODEL].hub_id.replace("/", "--"))
    shutil.copytree(tiny_model, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return cache


def settings_with(tmp_path: Path, cache: Path | None = None) -> Settings:
    return Settings(models=ModelSettings(cache_dir=cache or tmp_path / "empty-hf"))


def test_folder_model_gives_depth_at_its_own_resolution(tiny_model: Path, tmp_path: Path,
                                                        photo: Path) -> None:
    settings = settings_with(tmp_path)
    model = resolve_depth_model(str(tiny_model), settings)
    assert model.source == "folder"
    estimator = depth_module.DepthEstimator(model)
    # without torchvision transformers falls back to the PIL processor; it must still work
    assert type(estimator.processor).__name__.startswith("DPTImageProcessor")
    depth = estimator(load_image(photo).pixels)  # 600 x 400: long side 518, multiples of 14
    assert depth.dtype == np.float32 and depth.shape == (350, 518)
    assert np.isfinite(depth).all() and depth.std() > 0


def test_the_default_name_loads_from_the_hub_cache_without_asking_the_hub(
        hub_cache: Path, tmp_path: Path, photo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = settings_with(tmp_path, hub_cache)
    model = resolve_depth_model(None, settings, download=False)
    assert (model.name, model.source, model.revision) == (DEFAULT_DEPTH_MODEL, "hub", REVISION)
    engine = ParallaxEngine(settings)
    request = build_request(images=(str(photo),), engine="parallax", motion="orbit", width=128,
                            height=86, num_frames=3, fps=10)
    image = load_image(photo)
    clip = engine.generate(request, [image], no_progress, CancelToken())
    assert len(list(clip.frames)) == 3
    assert clip.info["depth"]["model"]["revision"] == REVISION
    assert clip.info["depth"]["cached"] is None


def test_depth_is_computed_once_per_photo(hub_cache: Path, tmp_path: Path, photo: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_with(tmp_path, hub_cache)
    calls = []
    real = depth_module.DepthEstimator.__call__

    def counting(self: depth_module.DepthEstimator, pixels: np.ndarray) -> np.ndarray:
        calls.append(pixels.shape)
        return real(self, pixels)

    monkeypatch.setattr(depth_module.DepthEstimator, "__call__", counting)
    image = load_image(photo)
    engine = ParallaxEngine(settings)
    first, info = engine.depth.from_model(None, image)
    again, info_again = engine.depth.from_model(None, image)
    assert len(calls) == 1 and info_again["cached"] == "memory"
    assert again is first
    # a new process (a new engine) finds it on disk under the photo's hash
    fresh, info_disk = ParallaxEngine(settings).depth.from_model(None, image)
    assert len(calls) == 1 and info_disk["cached"] == "disk"
    assert np.array_equal(fresh, first)
    files = list((tmp_path / "hf" / "depth").glob("*.npy"))
    assert len(files) == 1
    # another photo is another entry
    other = load_image(photo.parent / "astronaut.png")
    ParallaxEngine(settings).depth.from_model(None, other)
    assert len(calls) == 2


def test_no_model_and_no_depth_map_is_one_line_with_both_ways_out(
        tmp_path: Path, photo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine = ParallaxEngine(settings_with(tmp_path))
    request = build_request(images=(str(photo),), engine="parallax", width=128, height=86,
                            num_frames=3, fps=10)
    with pytest.raises(ModelNotAvailableError) as caught:
        engine.generate(request, [load_image(photo)], no_progress, CancelToken())
    message = str(caught.value)
    assert "\n" not in message
    assert "img2vid models download depth-anything-v2-small" in message
    assert "--depth" in message


def test_bad_depth_model_names_are_input_errors(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    with pytest.raises(InputError, match="not found"):
        resolve_depth_model("./no/such/folder", settings)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        resolve_depth_model(str(tmp_path / "empty"), settings)
    with pytest.raises(InputError, match="not found"):
        resolve_depth_model("not a name!", settings)


def test_slideshow_gets_depth_for_each_photo(hub_cache: Path, tmp_path: Path, photo: Path,
                                             face_photo: Path) -> None:
    engine = ParallaxEngine(settings_with(tmp_path, hub_cache))
    images = [load_image(photo), load_image(face_photo)]
    request = build_request(images=(str(photo), str(face_photo)), engine="parallax",
                            motion="dolly-in", width=128, height=86, num_frames=12, fps=6,
                            transition=0.5)
    clip = engine.generate(request, images, no_progress, CancelToken())
    frames = list(clip.frames)
    assert len(frames) == 12 and len(clip.info["slides"]) == 2
    assert clip.info["slides"][1]["focus_source"] == "face"  # the astronaut's face, as camera
    assert clip.info["transition_frames"] == pytest.approx(2.4)  # clamped to a fifth
    # the crossfade frames mix both photos: they differ from either neighbour's photo alone
    assert not np.array_equal(frames[5], frames[0]) and not np.array_equal(frames[5], frames[-1])


def test_without_torch_the_depth_model_is_one_line_with_both_ways_out(
        tmp_path: Path, photo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    engine = ParallaxEngine(settings_with(tmp_path))
    with pytest.raises(ModelNotAvailableError, match=r"needs torch: pip install "
                       r"'img2vid\[diffusion\]', or give the photo's depth map with --depth"):
        engine.depth.from_model(None, load_image(photo))
