"""SkyReels-V2: diffusion forcing makes a longer --duration in one call (windows chained on
latents, seams scored), ends on an optional last frame; the I2V repos refuse one; both run at
the authors' flow shift."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2vid.core.errors import InputError
from img2vid.core.request import build_request
from img2vid.engines.diffusion.skyreels import SkyReelsV2DiffusionForcing, overlap_history
from tests.diffusion.conftest import frames_of, run_model
from tests.diffusion.replicas_skyreels import skyreels_df, skyreels_i2v

SMALL = {"width": 64, "height": 64, "num_inference_steps": 2, "seed": 5}


@pytest.fixture(scope="module")
def df_dir(tiny_dir: Path) -> Path:
    return skyreels_df(tiny_dir / "sky-df", inject_sample_info=True)


@pytest.fixture(scope="module")
def i2v_dir(tiny_dir: Path) -> Path:
    return skyreels_i2v(tiny_dir / "sky-i2v")


run = partial(run_model, small=SMALL)


def test_chain_plan_asks_for_whole_windows_and_names_the_seams():
    family = SkyReelsV2DiffusionForcing()
    assert overlap_history(97) == 17 and overlap_history(121) == 21  # authors: 17 on 97
    chain = family.chain(193, 97)  # 97 + 4 s at 24 fps
    assert chain is not None and chain.overlap == 17
    # latent windows of 25 advancing by 20: 25 + 2 x 20 = 65 latents = 257 frames (the
    # docs' example length), seams where windows 2 and 3 begin
    assert chain.num_frames == 257 and chain.starts == [97, 177]
    tiny = family.chain(13, 5)
    assert tiny is not None and tiny.num_frames == 13 and tiny.starts == [5, 9]


def test_df_longer_than_a_window_is_one_call_chained_on_latents(engine, df_dir, small_photo,
                                                                loaded_photo):
    clip = run(engine, df_dir, small_photo, loaded_photo, num_frames=13, window_frames=5,
               prompt="a cat runs")
    frames = frames_of(clip)
    assert frames.shape == (13, 64, 64, 3)
    info = clip.info
    assert len(info["memory_attempts"]) == 1  # one pipeline call, not one per window
    assert info["window_chaining"] == "latents (in the pipeline)"
    assert [w["index"] for w in info["windows"]] == [0, 1, 2]
    assert [s["frame"] for s in info["seams"]] == [5, 9]
    assert all(s["psnr"] > 0 and s["colour_difference"] >= 0 for s in info["seams"])


def test_df_with_a_prompt_per_window_chains_windows_on_frames(engine, df_dir, small_photo,
                                                              loaded_photo):
    clip = run(engine, df_dir, small_photo, loaded_photo, num_frames=9, window_frames=5,
               prompt="a cat | a dog")
    info = clip.info
    assert frames_of(clip).shape[0] == 9
    assert [w["prompt"] for w in info["windows"]] == ["a cat", "a dog", "a dog"]
    assert "window_chaining" not in info and len(info["memory_attempts"]) == 3


def test_df_ends_on_the_last_image_and_i2v_refuses_one(engine, df_dir, i2v_dir, small_photo,
                                                       loaded_photo, tmp_path):
    end = tmp_path / "end.png"
    Image.fromarray(np.full((64, 64, 3), (20, 200, 90), np.uint8)).save(end)
    plain = frames_of(run(engine, df_dir, small_photo, loaded_photo, num_frames=5))
    ended = run(engine, df_dir, small_photo, loaded_photo, num_frames=5, last_image=str(end))
    made = frames_of(ended)
    assert made.shape == plain.shape
    assert np.abs(made.astype(int) - plain.astype(int)).mean() > 0.1
    assert ended.info["last_image"]["path"] == str(end)
    with pytest.raises(InputError) as caught:
        run(engine, i2v_dir, small_photo, loaded_photo, num_frames=5, last_image=str(end))
    message = str(caught.value)
    assert "\n" not in message and "skyreels-v2-df-1.3b-540p" in message


def test_both_pipelines_run_at_the_authors_flow_shift(engine, i2v_dir, small_photo,
                                                      loaded_photo):
    clip = run(engine, i2v_dir, small_photo, loaded_photo, num_frames=5)
    assert frames_of(clip).shape == (5, 64, 64, 3)
    pipe = engine._loaded.pipe
    assert type(pipe).__name__ == "SkyReelsV2ImageToVideoPipeline"
    assert pipe.scheduler.config.flow_shift == 5.0


@pytest.mark.parametrize("name", ["skyreels-v2-i2v-14b-720p", "skyreels-v2-df-1.3b-540p"])
def test_planner_counts_each_component_at_its_dtype(name, tmp_path):
    """Before a download: the registry's parameter counts, bf16 on CUDA but the Wan VAE and
    CLIP image encoder in float32; activations from the native 720p/540p window."""
    from img2vid.core.config import ModelSettings, Settings
    from img2vid.engines.diffusion.planning import plan_job
    from img2vid.engines.diffusion.registry import MODELS
    from img2vid.engines.memory import GB, MemoryFigures

    spec = MODELS[name]
    settings = Settings(models=ModelSettings(cache_dir=tmp_path / "empty"))
    request = build_request(images=("p.jpg",), model=name)
    figures = MemoryFigures("cuda", int(80 * GB), int(80 * GB), int(128 * GB))
    plan = plan_job(request, settings, (1600, 900), "cuda:0", figures, dry_run=True)
    assert plan.resolved is None and plan.dtypes["vae"] == "float32"
    for component, billions in spec.params_b.items():
        size = 4 if component in ("vae", "image_encoder") else 2
        assert plan.work.weights[component] == int(billions * 1e9) * size
    shape = plan.choices.shape
    assert (shape.width * shape.height, shape.num_frames) == (
        pytest.approx(spec.defaults.width * spec.defaults.height, rel=0.1),
        spec.defaults.num_frames)
    assert plan.work.activations > GB // 4
    assert plan.memory.estimated_peak > sum(plan.work.weights.values()) * 0.5


def test_df_by_name_offline_makes_a_longer_mp4(hub_replicas, small_photo, tmp_path,
                                               monkeypatch, capsys):
    """`img2vid generate --model skyreels-v2-df-1.3b-540p` from its hub replica, offline, for
    three windows' worth of frames: one MP4, the windows and seams in the sidecar."""
    import json

    import av
    import huggingface_hub.constants

    from img2vid.interfaces.cli.app import main

    cache, commits = hub_replicas
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("IMG2VID_MODELS__CACHE_DIR", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "long.mp4"
    code = main(["generate", str(small_photo), "--model", "skyreels-v2-df-1.3b-540p",
                 "--width", "96", "--height", "64", "--num-frames", "13", "--window-frames",
                 "5", "--num-inference-steps", "2", "--seed", "2", "--prompt", "a cat runs",
                 "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 13 and frames[0].shape == (64, 96, 3)
    info = json.loads(out.with_name(out.name + ".json").read_text())["engine_info"]
    assert info["model"]["revision"] == commits["skyreels-v2-df-1.3b-540p"]
    assert info["window_chaining"] == "latents (in the pipeline)" and len(info["seams"]) == 2
