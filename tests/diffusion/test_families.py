"""Family rules: per-component dtypes per device, the schedulers and calls the authors use,
revision pinning down to the hub call, and the planner's text-encoder offload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from img2vid.core.config import ModelSettings, Settings
from img2vid.core.errors import ModelNotAvailableError
from img2vid.engines.diffusion import loading
from img2vid.engines.diffusion.registry import FAMILIES, MODELS
from img2vid.engines.memory import GB, MemoryFigures, Workload, plan_memory


@pytest.mark.parametrize(("family", "kind", "bf16", "expected"), [
    ("wan", "cuda", True, {"default": "bfloat16", "vae": "float32", "image_encoder": "float32"}),
    ("wan", "cuda", False, {"default": "float16", "vae": "float32", "image_encoder": "float32"}),
    ("wan", "mps", True, {"default": "float16", "vae": "float32", "image_encoder": "float32"}),
    ("wan", "cpu", True, {"default": "float32"}),
    ("i2vgen", "cuda", True, {"default": "float16"}),
    ("svd", "cuda", False, {"default": "float16"}),
    ("ltx", "cuda", True, {"default": "bfloat16"}),
    ("cogvideox", "cuda", False, {"default": "float16"}),
])
def test_dtypes_per_component_and_device(family, kind, bf16, expected):
    assert FAMILIES[family].dtypes(kind, bf16) == expected


def test_the_dtype_map_reaches_from_pretrained_and_the_planner(wan_dir):
    """Wan's VAE and CLIP image encoder load in float32 while the rest runs in bf16, and the
    planner counts each at its own size."""
    from img2vid.core.request import Quantize
    from img2vid.engines.diffusion import runtime
    from img2vid.engines.diffusion.call import Shape
    from img2vid.engines.diffusion.loading import load_pipeline, resolve_folder, weight_census
    from img2vid.engines.diffusion.planning import workload
    from img2vid.engines.diffusion.sizing import Choices

    resolved = resolve_folder(wan_dir)
    dtypes = resolved.spec.family.dtypes("cuda", bf16=True)
    pipe = load_pipeline(resolved, runtime.torch_dtypes(dtypes))
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.text_encoder.dtype == torch.bfloat16
    assert pipe.vae.dtype == torch.float32 and pipe.image_encoder.dtype == torch.float32
    census = weight_census(resolved.path, None)
    work = workload(resolved.spec, resolved, Choices(Shape(96, 64, 5, 96, 64, 5), 16, 2, 5.0),
                    dtypes, Quantize.NONE)
    assert work.weights["vae"] == 4 * census["vae"].elements
    assert work.weights["image_encoder"] == 4 * census["image_encoder"].elements
    assert work.weights["transformer"] == 2 * census["transformer"].elements


def test_cogvideox_runs_the_authors_dpm_scheduler_with_trailing_timesteps(cogvideox_dir):
    from diffusers import CogVideoXDPMScheduler

    from img2vid.engines.diffusion import runtime
    from img2vid.engines.diffusion.loading import load_pipeline, resolve_folder

    pipe = load_pipeline(resolve_folder(cogvideox_dir), runtime.torch_dtypes({"default":
                                                                              "float32"}))
    assert isinstance(pipe.scheduler, CogVideoXDPMScheduler)
    assert pipe.scheduler.config.timestep_spacing == "trailing"
    assert MODELS["cogvideox-5b-i2v"].hub_id == "zai-org/CogVideoX-5b-I2V"


def test_i2vgen_is_conditioned_at_16_fps_and_plays_at_8():
    from img2vid.engines.diffusion.i2vgen import TARGET_FPS

    seen = {}

    class Pipe:
        _execution_device = torch.device("cpu")
        scheduler = type("S", (), {"step": lambda self, *a, **k: None})()

        def __call__(self, **kwargs):
            seen.update(kwargs)
            return type("Out", (), {"frames": []})()

    from img2vid.engines.diffusion import i2vgen
    from img2vid.engines.diffusion.call import DiffusionCall

    call = DiffusionCall(image=None, prompt="", negative_prompt="", width=64, height=64,
                         num_frames=16, num_inference_steps=2, guidance_scale=1.0, fps=8,
                         decode_chunk=1, options={})
    original = i2vgen.encode_prompt
    i2vgen.encode_prompt = lambda pipe, text, device: None
    try:
        FAMILIES["i2vgen"].run(Pipe(), call, None, _Steps())
    finally:
        i2vgen.encode_prompt = original
    assert seen["target_fps"] == TARGET_FPS == 16
    assert MODELS["i2vgen-xl"].defaults.fps == 8  # the playback rate stays the seed's


class _Steps:
    def scheduler_hook(self, scheduler):
        from contextlib import nullcontext

        return nullcontext()


class FakeHub:
    """Records each snapshot call; serves folders from a dict of (revision or None) -> commit."""

    def __init__(self, root: Path, head: str, cached: set[str]) -> None:
        self.root, self.head, self.cached, self.calls = root, head, cached, []

    def snapshot(self, repo_id, *, revision, allow_patterns, cache_dir, local_only):
        from huggingface_hub.errors import LocalEntryNotFoundError

        self.calls.append((revision, local_only))
        commit = revision or self.head
        if local_only and commit not in self.cached:
            raise LocalEntryNotFoundError("not cached")
        self.cached.add(commit)
        folder = self.root / "snapshots" / commit
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)


def test_revision_pinning_reaches_the_download_call(tmp_path, monkeypatch):
    """First run: downloads the hub's newest and records it; later runs load exactly that
    commit even after the repo moves; --revision overrides; `models update` moves the lock."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: False)
    hub = FakeHub(tmp_path, head="a" * 40, cached=set())
    monkeypatch.setattr(loading, "HUB", hub)
    settings = Settings(models=ModelSettings(cache_dir=tmp_path / "hub"))
    lock = tmp_path / "hub" / "img2vid-revisions.json"

    first = loading.resolve_model("svd-xt", settings)
    assert first.revision == "a" * 40
    assert hub.calls == [(None, True), (None, False)]  # not cached: downloaded at main
    assert json.loads(lock.read_text()) == {MODELS["svd-xt"].hub_id: "a" * 40}

    hub.head, hub.calls = "b" * 40, []  # the repo moved on the hub
    again = loading.resolve_model("svd-xt", settings)
    assert again.revision == "a" * 40 and hub.calls == [("a" * 40, True)]

    hub.calls = []
    override = loading.resolve_model("svd-xt", settings, revision="c" * 40)
    assert override.revision == "c" * 40 and hub.calls[-1] == ("c" * 40, False)
    assert json.loads(lock.read_text())[MODELS["svd-xt"].hub_id] == "a" * 40  # not moved

    hub.calls = []
    updated = loading.download_model("svd-xt", settings, update=True)
    assert updated.revision == "b" * 40 and hub.calls == [(None, False)]
    assert json.loads(lock.read_text())[MODELS["svd-xt"].hub_id] == "b" * 40
    assert loading.resolve_model("svd-xt", settings).revision == "b" * 40


def test_a_missing_pinned_revision_offline_says_so(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: True)
    monkeypatch.setattr(loading, "HUB", FakeHub(tmp_path, head="a" * 40, cached=set()))
    settings = Settings(models=ModelSettings(cache_dir=tmp_path / "hub"))
    with pytest.raises(ModelNotAvailableError, match=r"svd-xt .*@dddddddddddd.* offline"):
        loading.resolve_model("svd-xt", settings, revision="d" * 40)


def _wan22_workload(pieces: bool) -> Workload:
    """Wan 2.2 TI2V 5B in bf16: a 10 GB transformer and an 11.4 GB UMT5-XXL encoder whose
    embedding table alone is 2 GB; 24 encoder blocks."""
    text, embedding = int(11.4 * GB), int(2.0 * GB)
    weights = {"transformer": 10 * GB, "text_encoder": text, "vae": int(1.4 * GB)}
    return Workload(
        weights=weights, activations=3 * GB, decode_per_frame=GB // 4, num_frames=121,
        decode_tiled=GB // 64, tiling=True, chunked_decode=False,
        pieces={"transformer": int(10 * GB * 0.12),
                "text_encoder": embedding + 2 * (text - embedding) // 24,
                "vae": int(1.4 * GB)} if pieces else None,
        leaves={"transformer": GB // 10, "text_encoder": embedding, "vae": GB // 20}
        if pieces else None)


def test_low_level_counts_the_text_encoder_piece_that_really_lands_on_the_gpu():
    figures = MemoryFigures("cuda", device_free=8 * GB, device_total=8 * GB, ram_free=64 * GB)
    plan = plan_memory(_wan22_workload(pieces=True), figures)
    # the embedding table plus two streamed UMT5 blocks, not 12% of the transformer
    assert plan.level == "low" and plan.offload == "group"
    assert plan.estimated_peak >= int(2.0 * GB) + 3 * GB
    tight = MemoryFigures("cuda", device_free=int(5.6 * GB), device_total=8 * GB,
                          ram_free=64 * GB)
    assert plan_memory(_wan22_workload(pieces=True), tight).level == "minimum"


def test_t5_text_encoders_are_group_offloaded_through_their_encoder_blocks(ltx_dir):
    """At `low`, LTX's T5 encoder is offloaded block by block (through `encoder`), not as one
    group the size of the whole encoder."""
    from diffusers.hooks import HookRegistry

    from img2vid.engines.diffusion import runtime
    from img2vid.engines.diffusion.loading import load_pipeline, resolve_folder
    from img2vid.engines.memory import MemoryPlan

    resolved = resolve_folder(ltx_dir)
    pipe = load_pipeline(resolved, runtime.torch_dtypes({"default": "float32"}))
    plan = MemoryPlan(level="low", offload="group", decode_chunk=1, vae_tiling=False,
                      estimated_peak=0, budget=0, forced=True, fits=True, reason="")
    runtime.apply_offload(pipe, resolved.spec.family, plan, "cpu")
    blocks = pipe.text_encoder.encoder.block
    hooks = [HookRegistry.check_if_exists_or_initialize(b).get_hook("group_offloading")
             for b in blocks]
    assert len(blocks) > 1 and all(hook is not None for hook in hooks)
    groups = {id(hook.group) for hook in hooks}
    assert len(groups) == len(blocks)  # one group per block, streamed one after the other


def test_models_update_moves_the_lock_and_models_lists_it(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    from img2vid.interfaces.cli.app import main

    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: False)
    hub = FakeHub(tmp_path, head="e" * 40, cached=set())
    monkeypatch.setattr(loading, "HUB", hub)
    monkeypatch.setenv("IMG2VID_MODELS__CACHE_DIR", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    assert main(["models", "update", "ltx-video"]) == 0
    assert f"Lightricks/LTX-Video@{'e' * 40} (was not pinned)" in capsys.readouterr().out
    assert hub.calls == [(None, False)]
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["ltx-video"]["revision"] == "e" * 40
    assert rows["ltx-video"]["defaults"]["num_frames"] == 161
