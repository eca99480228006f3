"""Model registry rules (frames, sizes, guidance) and folder resolution errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from img2vid.core.config import ModelSettings, Settings
from img2vid.core.errors import InputError, ModelNotAvailableError
from img2vid.core.request import build_request
from img2vid.engines.diffusion.call import fit_image
from img2vid.engines.diffusion.family import FrameRule
from img2vid.engines.diffusion.loading import (
    allow_patterns,
    resolve_folder,
    resolve_model,
    weight_census,
)
from img2vid.engines.diffusion.registry import MODELS
from img2vid.engines.diffusion.sizing import choose, choose_shape, shape_notes


@pytest.mark.parametrize(("name", "asked", "used"), [
    ("wan2.1-i2v-14b-480p", 16, 17), ("wan2.1-i2v-14b-480p", 81, 81),
    ("wan2.1-i2v-14b-480p", 2, 5), ("ltx-video", 16, 17), ("ltx-video", 24, 25),
    ("ltx-video", 100, 97), ("cogvideox-5b-i2v", 16, 49), ("i2vgen-xl", 16, 16),
    ("svd-xt", 25, 25),
])
def test_frames_snap_to_what_each_model_accepts(name, asked, used):
    assert MODELS[name].shape_rules.frames.snap(asked) == used


def test_frame_rule_descriptions():
    assert FrameRule(step=4, offset=1).describe() == "4k+1"
    assert FrameRule(fixed=49).describe() == "exactly 49"


@pytest.mark.parametrize("resolution", [256, 512, 768, 1024])
def test_resolution_keeps_the_photo_aspect_and_snaps_sides(resolution):
    req = build_request(images=("a.png",), model="ltx-video", resolution=resolution)
    shape = choose_shape(MODELS["ltx-video"], req, 1200, 800, 24)
    assert shape.width % 32 == 0 and shape.height % 32 == 0
    assert abs(shape.height - resolution) <= 16
    assert abs(shape.width / shape.height - 1.5) < 0.1
    portrait = choose_shape(MODELS["i2vgen-xl"], req, 800, 1200, 8)
    assert portrait.width == resolution and portrait.height % 8 == 0


def test_cogvideox_runs_only_at_720x480_and_the_change_is_noted():
    req = build_request(images=("a.png",), model="cogvideox-5b-i2v", resolution=512)
    spec = MODELS["cogvideox-5b-i2v"]
    shape = choose_shape(spec, req, 1000, 1000, 8)
    assert (shape.width, shape.height, shape.num_frames) == (720, 480, 49)
    notes = shape_notes(shape, spec)
    assert any("512x512 -> 720x480" in n for n in notes)
    fewer = build_request(images=("a.png",), model="cogvideox-5b-i2v", num_frames=16)
    assert any("16 -> 49" in n for n in shape_notes(choose_shape(spec, fewer, 1000, 1000, 8), spec))


def test_guidance_and_fps_are_the_models_own_unless_given():
    preset = build_request(images=("a.png",), model="svd-xt")
    assert (preset.guidance_scale, preset.fps) == (None, None)  # presets leave them to the model
    assert choose(MODELS["svd-xt"], preset, 1024, 576).guidance_scale == 3.0
    assert choose(MODELS["i2vgen-xl"], preset, 1024, 576).guidance_scale == 9.0
    assert choose(MODELS["wan2.1-i2v-14b-480p"], preset, 1024, 576).fps == 16
    assert choose(MODELS["i2vgen-xl"], preset, 1024, 576).fps == 8
    # an explicit value wins, also one equal to another model's default
    explicit = build_request(images=("a.png",), model="svd-xt", guidance_scale=9, fps=8)
    assert choose(MODELS["svd-xt"], explicit, 1024, 576).guidance_scale == 9.0
    assert choose(MODELS["svd-xt"], explicit, 1024, 576).fps == 8


def test_a_duration_is_turned_into_frames_at_the_models_rate():
    req = build_request(images=("a.png",), model="wan2.1-i2v-14b-480p", duration=2)
    assert req.num_frames is None  # the request cannot know the rate yet
    shape = choose_shape(MODELS["wan2.1-i2v-14b-480p"], req, 832, 480, 16)
    assert (shape.asked_frames, shape.num_frames) == (32, 33)  # 2 s at 16 fps, snapped to 4k+1
    with_fps = build_request(images=("a.png",), model="wan2.1-i2v-14b-480p", duration=2, fps=8)
    assert with_fps.num_frames == 16


def test_fit_image_centre_crops_to_the_output_aspect():
    import numpy as np

    pixels = np.zeros((100, 300, 3), np.uint8)
    pixels[:, 100:200] = 255  # the white centre third survives a crop to 1:1
    image = fit_image(pixels, 64, 64)
    assert image.size == (64, 64)
    assert np.asarray(image).mean() > 250


def test_request_validates_the_new_diffusion_fields():
    with pytest.raises(InputError, match="memory"):
        build_request(images=("a.png",), memory="huge")
    with pytest.raises(InputError, match="motion_bucket_id"):
        build_request(images=("a.png",), motion_bucket_id=300)
    with pytest.raises(InputError, match="quantize"):
        build_request(images=("a.png",), quantize="int4")


def test_allow_patterns_fetch_one_weight_variant_and_skip_root_checkpoints():
    import fnmatch

    patterns = allow_patterns(MODELS["i2vgen-xl"])

    def fetched(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) for p in patterns)

    assert fetched("unet/diffusion_pytorch_model.fp16.safetensors")
    assert fetched("tokenizer/merges.txt") and fetched("model_index.json")
    assert not fetched("unet/diffusion_pytorch_model.safetensors")
    assert not fetched("i2vgen_xl.pth") and not fetched("ltx-video-2b-v0.9.safetensors")


def test_folder_errors_are_one_line(tmp_path: Path):
    settings = Settings()
    with pytest.raises(InputError, match="model folder not found"):
        resolve_model(str(tmp_path / "missing"), settings)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no model_index.json"):
        resolve_model(str(empty), settings)
    t2v = tmp_path / "t2v"
    t2v.mkdir()
    (t2v / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    with pytest.raises(InputError, match="text-to-video"):
        resolve_folder(t2v)
    sd = tmp_path / "sd"
    sd.mkdir()
    (sd / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(InputError, match="cannot run"):
        resolve_folder(sd)
    with pytest.raises(InputError, match="unknown model 'sora'"):
        resolve_model("sora", settings)


def test_offline_missing_model_names_both_ways_out(tmp_path: Path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    settings = Settings(models=ModelSettings(cache_dir=tmp_path / "cache"))
    with pytest.raises(ModelNotAvailableError) as err:
        resolve_model("wan2.2-ti2v-5b", settings)
    message = str(err.value)
    assert "wan2.2-ti2v-5b" in message and "offline" in message
    assert "img2vid models download wan2.2-ti2v-5b" in message and "--model /path" in message
    assert err.value.exit_code == 2


def test_configured_local_dir_and_weight_counts(wan_dir: Path):
    settings = Settings(models=ModelSettings(local_dirs={"my-wan": wan_dir}))
    resolved = resolve_model("my-wan", settings)
    assert resolved.spec.family.name == "wan" and resolved.source == "folder"
    # 8x VAE x 2x2 patches, read from the configs
    assert resolved.spec.shape_rules.side_multiple == 16
    counts = weight_census(wan_dir, None)
    assert set(counts) >= {"transformer", "vae", "text_encoder", "image_encoder"}
    assert all(c.elements >= c.largest > 0 for c in counts.values())


def test_a_cached_model_is_resolved_without_asking_the_hub(tmp_path, monkeypatch, i2vgen_dir):
    import huggingface_hub

    from img2vid.core.config import ModelSettings, Settings
    from img2vid.engines.diffusion.loading import resolve_model
    from tests.diffusion.conftest import fake_hub_cache

    commit = fake_hub_cache(tmp_path, "ali-vilab/i2vgen-xl", i2vgen_dir)
    real, asked = huggingface_hub.snapshot_download, []

    def recorded(repo_id, **kwargs):
        asked.append(kwargs["local_files_only"])
        return real(repo_id, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", recorded)
    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: False)  # online
    settings = Settings(models=ModelSettings(cache_dir=tmp_path / "hub"))
    resolved = resolve_model("i2vgen-xl", settings)
    assert resolved.revision == commit
    assert asked == [True]  # the cache answered; nothing went to the network


@pytest.mark.parametrize(("preset", "size", "frames", "steps"), [
    ("preview", (912, 512), 8, 30), ("standard", (912, 512), 16, 50),
    ("high", (1368, 768), 24, 80), ("max", (1824, 1024), 32, 100),
])
def test_i2vgen_xl_keeps_the_seed_preset_table(preset, size, frames, steps):
    req = build_request(images=("a.png",), model="i2vgen-xl", preset=preset)
    chosen = choose(MODELS["i2vgen-xl"], req, 1600, 900)
    shape = chosen.shape
    assert ((shape.width, shape.height), shape.num_frames) == (size, frames)
    assert (chosen.num_inference_steps, chosen.guidance_scale, chosen.fps) == (steps, 9.0, 8)


@pytest.mark.parametrize(("name", "size", "frames", "fps", "steps", "guidance"), [
    ("svd-xt", (1024, 576), 25, 7, 25, 3.0),
    ("wan2.2-ti2v-5b", (1280, 704), 121, 24, 50, 5.0),
    ("wan2.1-i2v-14b-480p", (832, 480), 81, 16, 50, 5.0),
    ("ltx-video", (704, 480), 161, 24, 50, 3.0),
    ("cogvideox-5b-i2v", (720, 480), 49, 8, 50, 6.0),
])
def test_every_model_runs_at_its_native_values_by_default(name, size, frames, fps, steps,
                                                          guidance):
    spec = MODELS[name]
    req = build_request(images=("a.png",), model=name)
    chosen = choose(spec, req, *size)  # a photo of the native aspect gives the native size
    shape = chosen.shape
    assert (shape.width, shape.height, shape.num_frames) == (*size, frames)
    assert (chosen.fps, chosen.num_inference_steps, chosen.guidance_scale) == (fps, steps,
                                                                               guidance)
    # another aspect keeps the area close to the native one, in the model's multiples
    portrait = choose(spec, req, 600, 1000).shape
    multiple = spec.shape_rules.side_multiple
    if spec.shape_rules.fixed_size is None:
        assert portrait.height > portrait.width
        assert portrait.width % multiple == 0 and portrait.height % multiple == 0
        assert abs(portrait.width * portrait.height / (size[0] * size[1]) - 1) < 0.1


def test_presets_are_tiers_relative_to_the_model():
    spec = MODELS["wan2.1-i2v-14b-480p"]
    tiers = {p: choose(spec, build_request(images=("a.png",), model=spec.name, preset=p),
                       832, 480) for p in ("preview", "standard", "high", "max")}
    assert tiers["preview"].shape.num_frames == 41 and tiers["preview"].num_inference_steps == 25
    assert tiers["standard"].shape.num_frames == 81
    assert [tiers[p].num_inference_steps for p in ("standard", "high", "max")] == [50, 75, 100]
    # this 480p model is never asked for a larger size than it was trained at
    assert {(t.shape.width, t.shape.height) for t in tiers.values()} == {(832, 480)}


def test_a_registry_entry_with_an_unknown_key_is_refused() -> None:
    from img2vid.engines.diffusion import registry

    entry = {"family": "wan", "hub_id": "org/name", "description": "d", "download_gb": 1,
             "defaults": {"width": 832, "height": 480, "num_frames": 81, "fps": 16,
                          "num_inference_steps": 50, "guidance_scale": 5.0}}
    spec = registry._spec("ok", {**entry, "side_multiple": 32})
    assert spec.shape_rules.side_multiple == 32 and spec.shape_rules.frames.step == 4
    with pytest.raises(ValueError, match="default_frames"):
        registry._spec("typo", {**entry, "default_frames": 81})
