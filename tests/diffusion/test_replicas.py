"""Every registered model, by name, from a tiny replica of its hub repo in a Hugging Face cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from img2vid.engines.diffusion.registry import MODELS
from tests.conftest import run_cli

# sizes each replica accepts (Wan 2.2's 32-pixel cells, CogVideoX's fixed 64x64 table)
SIZES = {"wan2.2-ti2v-5b": (128, 64), "cogvideox-5b-i2v": (64, 64),
         # a bucket of the tiny HunyuanVideo-1.5's target_size 64; FramePack's tiny VAE is
         # slow per pixel, so it runs at the smallest size a request takes
         "hunyuanvideo-1.5-i2v-480p": (64, 64), "framepack": (64, 64)}
FRAMES = {"hunyuanvideo-1.5-i2v-480p": 5, "framepack": 37, "i2vgen-xl": 4, "svd-xt": 4, "wan2.2-ti2v-5b": 5, "wan2.1-i2v-14b-480p": 5,
          "wan2.2-i2v-a14b": 5, "wan2.1-flf2v-14b-720p": 5,
          "ltx-video": 9, "cogvideox-5b-i2v": 9, "skyreels-v2-i2v-1.3b-540p": 5,
          "skyreels-v2-i2v-14b-720p": 5, "skyreels-v2-df-1.3b-540p": 5,
          "skyreels-v2-df-14b-720p": 5}


def snapshot(cache: Path, name: str, commit: str) -> Path:
    return cache / ("models--" + MODELS[name].hub_id.replace("/", "--")) / "snapshots" / commit


def small_args(name: str) -> list[str]:
    width, height = SIZES.get(name, (96, 64))
    return ["--width", str(width), "--height", str(height), "--num-frames", str(FRAMES[name]),
            "--num-inference-steps", "2", "--seed", "3", "--prompt", "a cat runs"]


def check_mp4(out: Path, name: str, commit: str) -> dict:
    import av

    width, height = SIZES.get(name, (96, 64))
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == FRAMES[name] and frames[0].shape == (height, width, 3)
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    model = sidecar["engine_info"]["model"]
    assert (model["name"], model["id"], model["source"]) == (name, MODELS[name].hub_id, "hub")
    assert model["revision"] == commit  # the sidecar records the commit used
    return sidecar


@pytest.mark.parametrize("name", list(MODELS))
def test_every_registered_model_runs_by_name_from_its_replica_offline(
        name, hub_replicas, small_photo, tmp_path, monkeypatch, capsys):
    """In-process `img2vid generate --model NAME` with the hub offline (the one subprocess
    run below covers the real HF_HUB_OFFLINE=1 environment)."""
    import huggingface_hub.constants

    from img2vid.interfaces.cli.app import main

    cache, commits = hub_replicas
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("IMG2VID_MODELS__CACHE_DIR", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / f"{name}.mp4"
    # a first-last-frame model runs only with its last frame
    last = ["--last-image", str(small_photo)] if MODELS[name].last_image == "required" else []
    code = main(["generate", str(small_photo), "--model", name, *small_args(name), *last, "-o",
                 str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    check_mp4(out, name, commits[name])


def test_ltx_by_name_in_a_real_offline_environment(hub_replicas, small_photo, tmp_path):
    """A spiece.model-only tokenizer (no tokenizer.json), sharded weights, HF_HUB_OFFLINE=1."""
    cache, commits = hub_replicas
    out = tmp_path / "ltx.mp4"
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = run_cli("generate", small_photo, "--model", "ltx-video", *small_args("ltx-video"),
                     "-o", out, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    check_mp4(out, "ltx-video", commits["ltx-video"])
    # the libraries' chatter stays in the log file; img2vid's own notes may show
    assert all(line.startswith("WARNING: ") for line in result.stderr.splitlines()), \
        result.stderr


def test_without_sentencepiece_the_one_line_names_it(hub_replicas, small_photo, tmp_path):
    """transformers then falls back to a tiktoken reader and its error names tiktoken; the
    user's line names the real cause and the fix."""
    import subprocess
    import sys

    from tests.conftest import _cli_env

    cache, _ = hub_replicas
    code = ("import sys; sys.modules['sentencepiece'] = None\n"
            "from img2vid.interfaces.cli.app import main; raise SystemExit(main())")
    env = _cli_env({"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    result = subprocess.run(
        [sys.executable, "-c", code, "generate", str(small_photo), "--model",
         "cogvideox-5b-i2v", *small_args("cogvideox-5b-i2v"), "-o", str(tmp_path / "x.mp4")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "sentencepiece" in lines[0] and "pip install" in lines[0]
    assert "tiktoken" not in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_replicas_have_the_hub_layouts(hub_replicas):
    """What a download of each repo leaves in the cache (facts and sources: SOURCES.md)."""
    cache, commits = hub_replicas
    for name, commit in commits.items():
        snap = snapshot(cache, name, commit)
        root = snap.parent.parent
        assert (root / "refs" / "main").read_text() == commit
        files = {p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file()}
        for relative in files:  # every file is a link into blobs/, as huggingface_hub makes it
            pointer = snap / relative
            assert pointer.is_symlink() and not os.path.isabs(os.readlink(pointer))
            assert pointer.resolve().parent == (root / "blobs").resolve()
        index = json.loads((snap / "model_index.json").read_text())
        tokenizer = {f.split("/", 1)[1] for f in files if f.startswith("tokenizer/")}
        if name in ("ltx-video", "cogvideox-5b-i2v"):
            assert tokenizer == {"spiece.model", "tokenizer_config.json",
                                 "special_tokens_map.json", "added_tokens.json"}
            assert index["tokenizer"] == ["transformers", "T5Tokenizer"]
        if name.startswith(("wan", "skyreels")):
            assert {"spiece.model", "tokenizer.json"} <= tokenizer
            assert index["tokenizer"] == ["transformers", "T5TokenizerFast"]
        if name == "i2vgen-xl":
            assert tokenizer == {"merges.txt", "special_tokens_map.json", "tokenizer_config.json",
                                 "vocab.json"}
        if MODELS[name].variant == "fp16":
            weights = {f for f in files if f.endswith(".safetensors")}
            assert weights and all(".fp16." in f for f in weights)  # one variant fetched
        elif "transformer" not in MODELS[name].components:  # FramePack's: test_hunyuan.py
            assert any(f.startswith("transformer/") and f.endswith(".index.json") for f in files)
            assert any(f.startswith("text_encoder/") and f.endswith(".index.json")
                       for f in files)
        assert all("/" in f or f == "model_index.json" for f in files)  # no root checkpoints
    wan22 = json.loads((snapshot(cache, "wan2.2-ti2v-5b", commits["wan2.2-ti2v-5b"])
                        / "model_index.json").read_text())
    assert wan22["_class_name"] == "WanPipeline" and wan22["expand_timesteps"] is True
    assert "image_encoder" not in wan22 and wan22["transformer_2"] == [None, None]
    _check_skyreels(cache, commits)
    ltx = json.loads((snapshot(cache, "ltx-video", commits["ltx-video"])
                      / "model_index.json").read_text())
    assert ltx["_class_name"] == "LTXPipeline"


def _check_skyreels(cache: Path, commits: dict[str, str]) -> None:
    """I2V repos: a CLIP image encoder and a whole CLIPProcessor save; DF repos: the
    text-to-video class name, no image encoder (loaded with the image-to-video class)."""
    for name in ("skyreels-v2-i2v-1.3b-540p", "skyreels-v2-df-1.3b-540p"):
        snap = snapshot(cache, name, commits[name])
        index = json.loads((snap / "model_index.json").read_text())
        processor = {p.name for p in (snap / "image_processor").glob("*")}
        if "-i2v-" in name:
            assert index["_class_name"] == "SkyReelsV2ImageToVideoPipeline"
            assert index["image_processor"] == ["transformers", "CLIPProcessor"]
            assert processor == {"merges.txt", "preprocessor_config.json", "tokenizer.json",
                                 "special_tokens_map.json", "tokenizer_config.json",
                                 "vocab.json"}
        else:
            assert index["_class_name"] == "SkyReelsV2DiffusionForcingPipeline"
            assert "image_encoder" not in index and not processor
        transformer = json.loads((snap / "transformer" / "config.json").read_text())
        assert transformer["_class_name"] == "SkyReelsV2Transformer3DModel"
        scheduler = json.loads((snap / "scheduler" / "scheduler_config.json").read_text())
        assert scheduler["_class_name"] == "UniPCMultistepScheduler"
        assert scheduler["prediction_type"] == "flow_prediction"


def _dry_run(name: str, photo: Path, cache: Path, monkeypatch, capsys, *extra: str) -> dict:
    import huggingface_hub.constants

    from img2vid.interfaces.cli.app import main

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("IMG2VID_MODELS__CACHE_DIR", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    code = main(["generate", str(photo), "--model", name, "--dry-run", "--json", *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


@pytest.mark.parametrize("name", list(MODELS))
def test_dry_run_shows_each_models_native_plan_without_the_model(name, small_photo, tmp_path,
                                                                 monkeypatch, capsys):
    spec = MODELS[name]
    plan = _dry_run(name, small_photo, tmp_path / "empty", monkeypatch, capsys)
    native, used = spec.defaults, plan["used"]
    assert (plan["model"], plan["hub_id"], plan["pipeline"]) == (name, spec.hub_id,
                                                                 spec.pipeline_class)
    assert plan["cached"] is False and plan["download_gb"] == spec.download_gb
    assert (used["fps"], used["guidance_scale"]) == (native.fps, native.guidance_scale)
    assert used["num_inference_steps"] == spec.tier("standard").num_inference_steps
    assert used["num_frames"] == spec.tier("standard").num_frames
    if spec.tiers is None and spec.shape_rules.fixed_size is None:
        # the photo's 3:2 aspect at about the native area
        assert abs(used["width"] * used["height"] / (native.width * native.height) - 1) < 0.1
        assert abs(used["width"] / used["height"] - 1.5) < 0.1
    assert plan["asked"]["width"] is None and plan["asked"]["num_frames"] is None
    assert plan["dtypes"]["default"] == "float32"  # this CPU
    memory = plan["memory"]
    assert memory["level"] in ("high", "balanced", "low", "minimum")
    assert memory["estimated_peak_gb"] > 0 and memory["free_gb"] > 0


def test_dry_run_of_a_cached_model_reads_its_files_and_revision(hub_replicas, small_photo,
                                                                 monkeypatch, capsys):
    cache, commits = hub_replicas
    plan = _dry_run("cogvideox-5b-i2v", small_photo, cache, monkeypatch, capsys,
                    "--num-inference-steps", "7", "--width", "300")
    assert plan["cached"] is True and plan["download_gb"] is None
    assert plan["revision"] == commits["cogvideox-5b-i2v"]
    # the replica's positional table pins 64x64 and 9 frames: asked vs used
    assert plan["asked"]["width"] == 300 and plan["asked"]["num_inference_steps"] == 7
    used = plan["used"]
    assert (used["width"], used["height"], used["num_frames"]) == (64, 64, 9)
    assert used["num_inference_steps"] == 7
    assert any("only runs at 64x64" in note for note in plan["notes"])


def test_dry_run_prints_a_readable_plan(small_photo, tmp_path):
    env = {"HF_HUB_CACHE": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"}
    result = run_cli("generate", small_photo, "--model", "wan2.2-ti2v-5b", "--dry-run",
                     "--num-frames", "50", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "model: wan2.2-ti2v-5b (Wan-AI/Wan2.2-TI2V-5B-Diffusers@newest, not downloaded" in out
    assert "pipeline: WanImageToVideoPipeline" in out
    assert "num_frames: 49 (asked 50)" in out and "fps: 24" in out
    assert "dtypes: default float32" in out and "memory: level " in out
    assert not list(tmp_path.glob("*.mp4"))


def test_models_lists_the_replicas_as_cached(hub_replicas, tmp_path, monkeypatch, capsys):
    from img2vid.interfaces.cli.app import main

    cache, commits = hub_replicas
    monkeypatch.setenv("IMG2VID_MODELS__CACHE_DIR", str(cache))
    monkeypatch.chdir(tmp_path)
    assert main(["models", "--json"]) == 0
    from img2vid.engines.parallax.depth import DEPTH_MODELS

    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(DEPTH_MODELS) <= set(rows)  # the parallax engine's depth model is listed too
    rows = {name: row for name, row in rows.items() if name not in DEPTH_MODELS}
    assert set(rows) == set(MODELS)
    for name, row in rows.items():
        assert row["cached"] is True and row["size_on_disk_bytes"] > 0
        assert row["family"] == MODELS[name].family.name
