"""HunyuanVideo-1.5 I2V and FramePack by their registered names, from their hub replicas:
resolution buckets, FramePack's three repos, its end frame and its own long-video sections."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from img2vid.engines.diffusion.registry import MODELS
from img2vid.media.images import file_sha256
from tests.diffusion import replicas
from tests.diffusion.test_replicas import snapshot

FRAMEPACK_ARGS = ["--width", "64", "--height", "64", "--num-inference-steps", "2", "--seed", "3",
                  "--prompt", "a cat runs"]


@pytest.fixture
def framepack_calls(monkeypatch) -> list[dict]:
    """The keyword arguments of every HunyuanVideoFramepackPipeline call (the real one runs)."""
    import diffusers

    calls: list[dict] = []
    original = diffusers.HunyuanVideoFramepackPipeline.__call__

    def spy(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(diffusers.HunyuanVideoFramepackPipeline, "__call__", spy)
    return calls


def generate(name: str, photo: Path, out: Path, hub_replicas, monkeypatch, capsys,
             *args: str) -> tuple[np.ndarray, dict]:
    """`img2vid generate --model NAME` offline from the replica cache: frames and sidecar."""
    import av
    import huggingface_hub.constants

    from img2vid.interfaces.cli.app import main

    cache, _ = hub_replicas
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("IMG2VID_MODELS__CACHE_DIR", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(out.parent)
    code = main(["generate", str(photo), "--model", name, *args, "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    with av.open(str(out)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return frames, json.loads(out.with_name(out.name + ".json").read_text())


def test_buckets_are_the_pipelines():
    """The sizes the registry snaps to are those HunyuanVideo-1.5's pipeline picks itself."""
    from diffusers.pipelines.hunyuan_video1_5.image_processor import (
        HunyuanVideo15ImageProcessor,
        generate_crop_size_list,
    )

    from img2vid.engines.diffusion.hunyuan15 import buckets
    from img2vid.engines.diffusion.sizing import bucket_for

    processor = HunyuanVideo15ImageProcessor(vae_scale_factor=16)
    for target in (640, 960, 64):
        sizes = buckets(target, 16)
        assert sizes == tuple((w, h) for h, w in generate_crop_size_list(target, 16))
        for width, height in [(1920, 1080), (1080, 1920), (150, 100), (100, 100), (3000, 700)]:
            h, w = processor.calculate_default_height_width(height, width, target)
            assert bucket_for(sizes, width, height) == (w, h)


def test_hunyuan15_dry_run_snaps_an_asked_size_to_its_bucket(small_photo, tmp_path,
                                                             monkeypatch, capsys):
    from img2vid.interfaces.cli.app import main

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["generate", str(small_photo), "--model", "hunyuanvideo-1.5-i2v-480p",
                 "--dry-run", "--json", "--width", "1280", "--height", "720"])
    assert code == 0, capsys.readouterr().err
    plan = json.loads(capsys.readouterr().out)
    assert (plan["used"]["width"], plan["used"]["height"]) == (848, 480)
    assert (plan["used"]["num_frames"], plan["used"]["fps"]) == (121, 24)
    assert any("resolution buckets" in note for note in plan["notes"])


def test_framepack_dry_run_names_its_three_repos(small_photo, tmp_path, monkeypatch, capsys):
    from img2vid.interfaces.cli.app import main

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["generate", str(small_photo), "--model", "framepack", "--dry-run", "--json",
                 "--duration", "10", "--window-frames", "33"])
    assert code == 0, capsys.readouterr().err
    plan = json.loads(capsys.readouterr().out)
    assert plan["components"]["transformer"] == {"id": "lllyasviel/FramePackI2V_HY",
                                                 "revision": None}
    assert plan["used"]["num_frames"] == 289  # 10 s at 30 fps: 8 sections of 36 + the photo
    assert any("window_frames is ignored" in note for note in plan["notes"])


def test_hunyuan15_runs_at_its_bucket_with_the_guidance_asked(hub_replicas, small_photo,
                                                              tmp_path, monkeypatch, capsys):
    """No height/width/guidance_scale in its call: the photo arrives at the bucket's size and
    the guidance lands on the guider component."""
    import diffusers

    seen = []
    original = diffusers.HunyuanVideo15ImageToVideoPipeline.__call__

    def spy(self, *args, **kwargs):
        seen.append((self.guider.guidance_scale, kwargs["image"].size, kwargs))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(diffusers.HunyuanVideo15ImageToVideoPipeline, "__call__", spy)
    # 150x100 asked: the tiny transformer's buckets (target_size 64) give 64x48
    frames, sidecar = generate(
        "hunyuanvideo-1.5-i2v-480p", small_photo, tmp_path / "hy.mp4", hub_replicas,
        monkeypatch, capsys, "--width", "150", "--height", "100", "--num-frames", "5",
        "--num-inference-steps", "2", "--guidance-scale", "3.5", "--seed", "1")
    assert frames.shape == (5, 48, 64, 3)
    guidance, size, kwargs = seen[0]
    assert guidance == 3.5 and size == (64, 48)
    assert not {"height", "width", "guidance_scale"} & set(kwargs)
    assert sidecar["engine_info"]["size"]["used"] == {"width": 64, "height": 48,
                                                       "num_frames": 5}


def test_framepack_comes_from_three_repos_each_locked(hub_replicas, small_photo, end_photo,
                                                      tmp_path, monkeypatch, capsys,
                                                      framepack_calls):
    """The end frame reaches the pipeline's `last_image`, changes the video and is recorded;
    the sidecar names each repo's commit; HunyuanVideo's own transformer is never fetched."""
    cache, commits = hub_replicas
    plain, _ = generate("framepack", small_photo, tmp_path / "plain.mp4", hub_replicas,
                        monkeypatch, capsys, *FRAMEPACK_ARGS, "--num-frames", "37")
    ended, sidecar = generate("framepack", small_photo, tmp_path / "ended.mp4", hub_replicas,
                              monkeypatch, capsys, *FRAMEPACK_ARGS, "--num-frames", "37",
                              "--last-image", str(end_photo))
    assert plain.shape == ended.shape == (37, 64, 64, 3)  # one section of 36 frames + the photo
    assert "last_image" not in framepack_calls[0]
    last = framepack_calls[1]["last_image"]
    assert last.size == (64, 64)
    assert np.array_equal(np.asarray(last), np.asarray(Image.open(end_photo).convert("RGB")))
    assert framepack_calls[1]["sampling_type"] == "inverted_anti_drifting"
    # the end section is conditioned on the end frame: the video changes, most at its end
    change = np.abs(plain.astype(int) - ended.astype(int)).mean(axis=(1, 2, 3))
    assert change[-1] > 0.5
    info = sidecar["engine_info"]
    assert info["last_image"]["sha256"] == file_sha256(end_photo)
    model = info["model"]
    assert model["revision"] == commits["framepack"]
    assert model["components"] == {
        "transformer": {"id": "lllyasviel/FramePackI2V_HY",
                        "revision": replicas.commit_of("lllyasviel/FramePackI2V_HY")},
        "image_encoder": {"id": "lllyasviel/flux_redux_bfl/image_encoder",
                          "revision": replicas.commit_of("lllyasviel/flux_redux_bfl")},
        "feature_extractor": {"id": "lllyasviel/flux_redux_bfl/feature_extractor",
                              "revision": replicas.commit_of("lllyasviel/flux_redux_bfl")}}
    base = snapshot(cache, "framepack", commits["framepack"])
    assert not (base / "transformer").exists()
    assert {p.name for p in base.iterdir()} == {"model_index.json", "scheduler", "text_encoder",
                                                "text_encoder_2", "tokenizer", "tokenizer_2",
                                                "vae"}
    assert {p.name for p in (base / "tokenizer").iterdir()} == {
        "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"}
    assert any(p.name.endswith(".index.json") for p in (base / "text_encoder").iterdir())
    locks = json.loads((cache / "img2vid-revisions.json").read_text())
    assert locks["lllyasviel/FramePackI2V_HY"] == replicas.commit_of("lllyasviel/FramePackI2V_HY")


def test_framepack_long_duration_is_its_own_sections(hub_replicas, small_photo, tmp_path,
                                                     monkeypatch, capsys, framepack_calls):
    """3.6 s at its 30 fps is 108 frames: three sections (3 x 36 + the photo) in one call,
    not windows chained by img2vid."""
    frames, sidecar = generate("framepack", small_photo, tmp_path / "long.mp4", hub_replicas,
                               monkeypatch, capsys, *FRAMEPACK_ARGS, "--duration", "3.6")
    assert frames.shape == (109, 64, 64, 3)
    [call] = framepack_calls
    assert (call["num_frames"], call["latent_window_size"]) == (3 * 33, 9)
    info = sidecar["engine_info"]
    assert "windows" not in info and "seams" not in info
    assert info["size"]["asked"]["num_frames"] == 108
    assert info["size"]["used"]["num_frames"] == 109


def test_planner_counts_one_framepack_section_whatever_the_length():
    from img2vid.engines.diffusion.call import Shape

    def activations(name: str, frames: int) -> int:
        shape = Shape(832, 480, frames, 832, 480, frames)
        return MODELS[name].family.estimate(lambda _: {}, shape, 9.0, 2)[0]

    assert activations("framepack", 109) == activations("framepack", 1081)
    assert activations("hunyuanvideo-1.5-i2v-480p", 241) > 1.8 * activations(
        "hunyuanvideo-1.5-i2v-480p", 121)


def test_hunyuan15_replica_has_the_hub_layout(hub_replicas):
    cache, commits = hub_replicas
    snap = snapshot(cache, "hunyuanvideo-1.5-i2v-480p", commits["hunyuanvideo-1.5-i2v-480p"])
    index = json.loads((snap / "model_index.json").read_text())
    assert index["_class_name"] == "HunyuanVideo15ImageToVideoPipeline"
    assert index["guider"] == ["diffusers", "ClassifierFreeGuidance"]
    assert index["text_encoder"] == ["transformers", "Qwen2_5_VLTextModel"]
    assert index["image_encoder"] == ["transformers", "SiglipVisionModel"]

    def names(folder: str) -> set[str]:
        return {p.name for p in (snap / folder).iterdir()}

    assert names("tokenizer") == {"added_tokens.json", "chat_template.jinja", "merges.txt",
                                  "special_tokens_map.json", "tokenizer_config.json",
                                  "vocab.json"}
    assert names("tokenizer_2") == {"added_tokens.json", "special_tokens_map.json",
                                    "tokenizer_config.json"}
    assert names("guider") == {"guider_config.json"}
    for folder in ("transformer", "text_encoder"):
        assert any(name.endswith(".index.json") for name in names(folder))


class ReposHub:
    """A fake hub of several repos: records (repo, revision, patterns, local_only) per call."""

    def __init__(self, root: Path, heads: dict[str, str]) -> None:
        self.root, self.heads, self.cached, self.calls = root, heads, set(), []

    def snapshot(self, repo_id, *, revision, allow_patterns, cache_dir, local_only):
        from huggingface_hub.errors import LocalEntryNotFoundError

        self.calls.append((repo_id, revision, tuple(allow_patterns), local_only))
        commit = revision or self.heads[repo_id]
        if local_only and (repo_id, commit) not in self.cached:
            raise LocalEntryNotFoundError("not cached")
        self.cached.add((repo_id, commit))
        folder = self.root / repo_id / "snapshots" / commit
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)


def test_framepack_downloads_three_repos_each_at_its_locked_commit(tmp_path, monkeypatch):
    import huggingface_hub

    from img2vid.core.config import ModelSettings, Settings
    from img2vid.core.errors import ModelNotAvailableError
    from img2vid.engines.diffusion import loading

    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: False)
    repos = {"hunyuanvideo-community/HunyuanVideo": "a" * 40,
             "lllyasviel/FramePackI2V_HY": "b" * 40, "lllyasviel/flux_redux_bfl": "c" * 40}
    hub = ReposHub(tmp_path, dict(repos))
    monkeypatch.setattr(loading, "HUB", hub)
    settings = Settings(models=ModelSettings(cache_dir=tmp_path / "hub"))

    resolved = loading.resolve_model("framepack", settings)
    downloads = {call[0]: call[2] for call in hub.calls if not call[3]}
    assert set(downloads) == set(repos)
    base = downloads["hunyuanvideo-community/HunyuanVideo"]
    assert "vae/*.safetensors" in base and not any(p.startswith(("transformer", "*")) for p in base)
    assert downloads["lllyasviel/FramePackI2V_HY"] == ("*.json", "*.txt", "*.model", "*.jinja",
                                                       "*.safetensors")
    assert all(p.startswith(("image_encoder/", "feature_extractor/"))
               for p in downloads["lllyasviel/flux_redux_bfl"])
    assert {p.name: p.revision for p in resolved.parts} == {
        "transformer": "b" * 40, "image_encoder": "c" * 40, "feature_extractor": "c" * 40}
    assert resolved.component_dir("image_encoder").name == "image_encoder"
    lock = json.loads((tmp_path / "hub" / "img2vid-revisions.json").read_text())
    assert lock == repos

    hub.heads["lllyasviel/FramePackI2V_HY"], hub.calls = "d" * 40, []  # the repo moved on
    again = loading.resolve_model("framepack", settings)
    assert again.parts[0].revision == "b" * 40 and all(call[3] for call in hub.calls)
    updated = loading.download_model("framepack", settings, update=True)
    assert updated.parts[0].revision == "d" * 40

    # offline with a part missing: one line naming that repo
    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: True)
    hub.cached.discard(("lllyasviel/flux_redux_bfl", "c" * 40))
    with pytest.raises(ModelNotAvailableError, match="lllyasviel/flux_redux_bfl.*offline"):
        loading.resolve_model("framepack", settings)


def test_siglip_image_encoders_go_by_blocks_even_at_leaf_level(monkeypatch):
    """A leaf hook never moves SigLIP's pooling-head out_proj (MultiheadAttention hands its
    weight to a functional call): the image encoder is offloaded as a block instead."""
    from types import SimpleNamespace

    import diffusers.hooks

    from img2vid.engines.diffusion import runtime

    calls = {}
    monkeypatch.setattr(diffusers.hooks, "apply_group_offloading",
                        lambda module, **options: calls.setdefault(module.name, options))
    pipe = SimpleNamespace(components={
        name: torch.nn.Module() for name in ("transformer", "image_encoder", "vae")})
    for name, module in pipe.components.items():
        module.name = name
    runtime.apply_offload(pipe, MODELS["framepack"].family, SimpleNamespace(offload="leaf"),
                          "cpu")
    assert calls["image_encoder"]["offload_type"] == "block_level"
    assert calls["transformer"]["offload_type"] == calls["vae"]["offload_type"] == "leaf_level"
