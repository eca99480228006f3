"""The diffusion engine on tiny random models: frames, seeds, prompts, progress, cancel, OOM."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from img2vid.core.errors import CancelledError, InputError, OutOfMemoryError
from img2vid.core.progress import CancelToken, Progress
from img2vid.core.request import OutputFormat, build_request
from img2vid.media.encode import EncodeOptions, open_writer
from tests.diffusion.conftest import frames_of

SMALL = {"width": 96, "height": 64, "num_frames": 4, "num_inference_steps": 2}


def make_request(model: Path, photo: Path, **fields):
    return build_request(images=(str(photo),), model=str(model), **{**SMALL, **fields})


def run(engine, req, photo, progress=None, cancel=None):
    events: list[Progress] = []
    clip = engine.generate(req, [photo], progress or events.append, cancel or CancelToken())
    return clip, events


def test_i2vgen_clip_encodes_to_mp4(engine, i2vgen_dir, small_photo, loaded_photo, tmp_path):
    import av

    clip, _ = run(engine, make_request(i2vgen_dir, small_photo, prompt="a cat", seed=1), loaded_photo)
    assert (clip.width, clip.height, clip.num_frames, clip.fps) == (96, 64, 4, 8.0)
    out = tmp_path / "clip.mp4"
    with open_writer(out, clip.width, clip.height, clip.fps,
                     EncodeOptions(format=OutputFormat.MP4)) as writer:
        for frame in clip.frames:
            writer.write(frame)
        writer.close()
    with av.open(str(out)) as container:
        decoded = [f for f in container.decode(video=0)]
    assert len(decoded) == 4
    assert (decoded[0].width, decoded[0].height) == (96, 64)
    info = clip.info
    assert info["model"]["family"] == "i2vgen" and info["seed"] == 1
    assert info["dtype"] == "float32"  # library versions: the sidecar's, see test_cli_diffusion
    assert info["memory_plan"]["level"] in {"high", "balanced", "low", "minimum"}


def test_same_seed_same_video_other_seed_differs(engine, i2vgen_dir, small_photo, loaded_photo):
    first = frames_of(run(engine, make_request(i2vgen_dir, small_photo, seed=7), loaded_photo)[0])
    torch.rand(1000)  # other code drawing from the global RNG must not shift our result
    again = frames_of(run(engine, make_request(i2vgen_dir, small_photo, seed=7), loaded_photo)[0])
    other = frames_of(run(engine, make_request(i2vgen_dir, small_photo, seed=8), loaded_photo)[0])
    np.testing.assert_array_equal(first, again)
    assert np.abs(first.astype(int) - other.astype(int)).mean() > 0.5


def test_missing_seed_is_chosen_and_recorded(engine, i2vgen_dir, small_photo, loaded_photo):
    clip, _ = run(engine, make_request(i2vgen_dir, small_photo), loaded_photo)
    seed = clip.info["seed"]
    assert isinstance(seed, int) and seed >= 0
    replay = run(engine, make_request(i2vgen_dir, small_photo, seed=seed), loaded_photo)[0]
    np.testing.assert_array_equal(frames_of(clip), frames_of(replay))


def test_negative_prompt_reaches_the_pipeline(engine, i2vgen_dir, small_photo, loaded_photo,
                                              monkeypatch):
    from img2vid.engines.diffusion import i2vgen

    seen: list[str] = []
    original = i2vgen.encode_prompt

    def spy(pipe, text, device):
        seen.append(text)
        return original(pipe, text, device)

    monkeypatch.setattr(i2vgen, "encode_prompt", spy)
    base = {"prompt": "a cat", "seed": 3}
    plain = frames_of(run(engine, make_request(i2vgen_dir, small_photo, **base), loaded_photo)[0])
    negative = frames_of(run(engine, make_request(i2vgen_dir, small_photo, negative_prompt="blurry dog",
                                             **base), loaded_photo)[0])
    assert seen == ["a cat", "", "a cat", "blurry dog"]
    assert not np.array_equal(plain, negative)


def test_progress_reports_every_step(engine, i2vgen_dir, small_photo, loaded_photo):
    _, events = run(engine, make_request(i2vgen_dir, small_photo, seed=1, num_inference_steps=3),
                    loaded_photo)
    denoise = [(e.done, e.total) for e in events if e.stage == "denoise"]
    assert denoise == [(0, 3), (1, 3), (2, 3), (3, 3)]
    decode = [(e.done, e.total) for e in events if e.stage == "decode"]
    assert decode == [(0, 1), (1, 1)] and events[-1].stage == "decode"


def test_cancel_mid_run_then_next_job_is_unaffected(engine, i2vgen_dir, wan_dir, small_photo,
                                                    loaded_photo):
    for folder in (i2vgen_dir, wan_dir):
        req = make_request(folder, small_photo, seed=5, num_inference_steps=4)
        token = CancelToken()
        done: list[int] = []

        def cancel_after_two(event: Progress, token=token, done=done) -> None:
            if event.stage == "denoise" and event.done:
                done.append(event.done)
                if event.done == 2:
                    token.cancel()

        with pytest.raises(CancelledError):
            engine.generate(req, [loaded_photo], cancel_after_two, token)
        assert done == [1, 2]  # stopped between steps, not after the run
        after_cancel = frames_of(run(engine, req, loaded_photo)[0])
        engine.release()
        fresh = frames_of(run(engine, req, loaded_photo)[0])
        np.testing.assert_array_equal(after_cancel, fresh)


def test_svd_runs_and_says_the_prompt_is_ignored(engine, svd_dir, small_photo, loaded_photo,
                                                 caplog):
    req = make_request(svd_dir, small_photo, prompt="a cat runs", seed=2, motion_bucket_id=40,
                  noise_aug_strength=0.1)
    with caplog.at_level(logging.WARNING):
        clip, events = run(engine, req, loaded_photo)
    frames = frames_of(clip)
    assert frames.shape == (4, 64, 96, 3)
    assert any("takes no text prompt" in r.getMessage() for r in caplog.records)
    assert clip.info["ignored_prompt"]["prompt"] == "a cat runs"
    assert any("takes no text prompt" in w for w in clip.info["warnings"])
    assert (clip.info["motion_bucket_id"], clip.info["noise_aug_strength"]) == (40, 0.1)
    assert [e.done for e in events if e.stage == "denoise"] == [0, 1, 2]
    # motion strength reaches the UNet's added-time conditioning
    other = frames_of(run(engine, make_request(svd_dir, small_photo, seed=2, motion_bucket_id=200,
                                          noise_aug_strength=0.1), loaded_photo)[0])
    assert not np.array_equal(frames, other)


def test_wan_snaps_frames_and_uses_negative_prompt(engine, wan_dir, small_photo, loaded_photo):
    clip, _ = run(engine, make_request(wan_dir, small_photo, prompt="the cat", seed=4), loaded_photo)
    frames = frames_of(clip)
    assert frames.shape == (5, 64, 96, 3)  # 4 frames asked, Wan takes 4k+1
    assert clip.info["size"]["asked"]["num_frames"] == 4
    assert clip.info["size"]["used"]["num_frames"] == 5
    assert clip.fps == 16.0  # Wan 2.1's rate replaces the preset's 8 fps
    explicit = run(engine, make_request(wan_dir, small_photo, seed=4, fps=10), loaded_photo)[0]
    assert explicit.fps == 10.0
    negative = frames_of(run(engine, make_request(wan_dir, small_photo, prompt="the cat", seed=4,
                                             negative_prompt="blurry static"), loaded_photo)[0])
    assert not np.array_equal(frames, negative)


@pytest.mark.parametrize(("model", "size", "frames"), [
    ("ltx_dir", (96, 64), 9),  # 8k+1 frames, sides multiple of 32
    ("cogvideox_dir", (64, 64), 9),  # the size and frames its positional table was made for
])
def test_ltx_and_cogvideox_map_onto_their_pipelines(request, engine, model, size, frames,
                                                    small_photo, loaded_photo):
    folder = request.getfixturevalue(model)
    clip, events = run(engine, make_request(folder, small_photo, prompt="the cat", seed=2),
                       loaded_photo)
    assert frames_of(clip).shape == (frames, size[1], size[0], 3)
    assert clip.info["size"]["used"] == {"width": size[0], "height": size[1],
                                         "num_frames": frames}
    assert any("frames: 4 -> " in w for w in clip.info["warnings"])
    assert [e.done for e in events if e.stage == "denoise"] == [0, 1, 2]
    engine.release()


def test_resolution_keeps_aspect_and_snaps_to_model_multiple(engine, wan_dir, tmp_path):
    from PIL import Image

    from img2vid.engines.diffusion.loading import resolve_folder
    from img2vid.engines.diffusion.sizing import choose_shape

    spec = resolve_folder(wan_dir).spec
    photo = tmp_path / "wide.png"
    Image.new("RGB", (1000, 600)).save(photo)
    req = build_request(images=(str(photo),), model=str(wan_dir), resolution=256)
    shape = choose_shape(spec, req, 1000, 600, 16)
    assert shape.height == 256 and shape.width % 16 == 0
    assert abs(shape.width / shape.height - 1000 / 600) < 16 / 256


def test_out_of_memory_steps_down_once_and_retries(engine, i2vgen_dir, small_photo,
                                                   loaded_photo, monkeypatch):
    from img2vid.engines.diffusion.i2vgen import I2VGenXL

    calls: list[int] = []
    original = I2VGenXL.run

    def flaky(self, pipe, call, generator, steps):
        calls.append(call.decode_chunk)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, pipe, call, generator, steps)

    monkeypatch.setattr(I2VGenXL, "run", flaky)
    req = make_request(i2vgen_dir, small_photo, seed=9, memory="high", num_frames=6)
    clip, _ = run(engine, req, loaded_photo)
    assert clip.num_frames == 6
    attempts = clip.info["memory_attempts"]
    assert [a["level"] for a in attempts] == ["high", "balanced"]
    assert [a["result"] for a in attempts] == ["out of memory", "ok"]
    assert clip.info["memory_plan"]["level"] == "balanced"
    assert "stepped down from high" in clip.info["memory_plan"]["reason"]
    assert calls[1] < calls[0]  # the lighter level decodes fewer frames at once
    monkeypatch.setattr(I2VGenXL, "run", original)
    # the retried video is the same one a direct run at the lower level gives
    direct = run(engine, make_request(i2vgen_dir, small_photo, seed=9, memory="balanced",
                                 num_frames=6), loaded_photo)[0]
    np.testing.assert_array_equal(frames_of(clip), frames_of(direct))


def test_out_of_memory_twice_fails_with_advice_and_engine_survives(
        engine, i2vgen_dir, small_photo, loaded_photo, monkeypatch):
    from img2vid.engines.diffusion.i2vgen import I2VGenXL

    def always_oom(self, pipe, call, generator, steps):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(I2VGenXL, "run", always_oom)
    with pytest.raises(OutOfMemoryError) as err:
        run(engine, make_request(i2vgen_dir, small_photo, seed=1, memory="high"), loaded_photo)
    message = str(err.value)
    assert "\n" not in message
    assert "lower --resolution" in message and "fewer --num-frames" in message
    assert "--memory low" in message
    monkeypatch.undo()
    clip, _ = run(engine, make_request(i2vgen_dir, small_photo, seed=1), loaded_photo)
    assert clip.num_frames == 4


def test_pipeline_is_cached_between_jobs_and_released(engine, wan_dir, small_photo,
                                                      loaded_photo):
    run(engine, make_request(wan_dir, small_photo, seed=1), loaded_photo)
    pipe = engine._loaded.pipe
    clip, _ = run(engine, make_request(wan_dir, small_photo, seed=2), loaded_photo)
    assert engine._loaded.pipe is pipe
    assert clip.info["timings"]["load_s"] < 0.5
    engine.release()
    assert engine._loaded is None


def test_unsupported_speed_options_are_refused(engine, i2vgen_dir, wan_dir, small_photo,
                                               loaded_photo):
    cases = [
        (i2vgen_dir, {"attention": "flash"}, "classic attention processors"),
        (i2vgen_dir, {"step_cache": "first-block"}, "transformer models"),
        (wan_dir, {"attention": "nonsense"}, "unknown backend"),
    ]
    for folder, options, text in cases:
        with pytest.raises(InputError, match=text):
            run(engine, make_request(folder, small_photo, seed=1, **options), loaded_photo)


def test_int8_without_torchao_says_how_to_get_it(engine, wan_dir, small_photo, loaded_photo,
                                                 monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao", None)  # what an install without it gives
    with pytest.raises(InputError, match=r"--quantize int8 needs the quantize extra \(torchao "
                       r"is not installed\); install it with: .*quantize"):
        run(engine, make_request(wan_dir, small_photo, seed=1, quantize="int8"), loaded_photo)


def test_compile_is_refused_with_leaf_offload():
    from img2vid.engines.diffusion.runtime import check_plan
    from img2vid.engines.memory import MemoryPlan

    leaf = MemoryPlan(level="minimum", offload="leaf", decode_chunk=1, vae_tiling=True,
                      estimated_peak=1, budget=2, forced=False, fits=True, reason="")
    req = build_request(images=("x.png",), model="wan2.2-ti2v-5b", compile=True)
    with pytest.raises(InputError, match="--compile cannot trace through leaf-level offload"):
        check_plan(req, leaf, "cuda")
    check_plan(req.model_copy(update={"compile": False}), leaf, "cuda")


def test_wan_speed_options_run_and_are_recorded(engine, wan_dir, small_photo, loaded_photo):
    base = frames_of(run(engine, make_request(wan_dir, small_photo, seed=6), loaded_photo)[0])
    clip, _ = run(engine, make_request(wan_dir, small_photo, seed=6, step_cache="first-block",
                                  attention="_native_math"), loaded_photo)
    assert clip.info["speed"]["step_cache"]["mode"] == "first-block"
    assert clip.info["speed"]["attention"] == "_native_math"
    assert frames_of(clip).shape == base.shape
    quantized, _ = run(engine, make_request(wan_dir, small_photo, seed=6, quantize="fp8"),
                       loaded_photo)
    report = quantized.info["speed"]["quantize"]
    assert report["mode"] == "fp8" and report["bytes_saved"] > 0
    assert report["bytes_after"] < report["bytes_before"]
    # fp8 storage changes the weights a little, not the shape of the result
    assert frames_of(quantized).shape == base.shape
    engine.release()


def test_int8_weights_run_and_report_the_size_saved(engine, wan_dir, small_photo,
                                                    loaded_photo):
    pytest.importorskip("torchao", reason="--quantize int8 needs torchao (img2vid[quantize])")
    base = frames_of(run(engine, make_request(wan_dir, small_photo, seed=6), loaded_photo)[0])
    quantized, _ = run(engine, make_request(wan_dir, small_photo, seed=6, quantize="int8"),
                       loaded_photo)
    report = quantized.info["speed"]["quantize"]
    assert report["mode"] == "int8" and report["component"] == "transformer"
    assert report["bytes_saved"] == report["bytes_before"] - report["bytes_after"]
    # every Linear weight went from 4 bytes (fp32) to 1 byte an element, plus a float32 scale
    # and an int8 zero point per row; norms and the patch embedding stay as they were
    transformer = engine._loaded.pipe.transformer
    linear = [m.weight for m in transformer.modules() if isinstance(m, torch.nn.Linear)]
    elements, rows = sum(w.numel() for w in linear), sum(w.shape[0] for w in linear)
    assert report["bytes_saved"] == 3 * elements - 5 * rows > 0
    frames = frames_of(quantized)
    assert frames.shape == base.shape
    # weight-only int8 perturbs the result a little; it must not be noise
    assert np.abs(frames.astype(int) - base.astype(int)).mean() < 20
    engine.release()


def test_magcache_calibrates_once_then_uses_the_ratios(wan_dir, small_photo, loaded_photo,
                                                     tmp_path):
    from img2vid.core.config import ModelSettings, Settings
    from img2vid.engines.diffusion import DiffusionEngine

    engine = DiffusionEngine(Settings(models=ModelSettings(cache_dir=tmp_path)))
    req = make_request(wan_dir, small_photo, seed=6, step_cache="magcache",
                       num_inference_steps=4)
    first, _ = run(engine, req, loaded_photo)
    report = first.info["speed"]["step_cache"]
    assert report["magcache"].startswith("calibrating")
    saved = json.loads(Path(report["ratios_file"]).read_text())
    assert saved["num_inference_steps"] == 4 and len(saved["mag_ratios"]) == 4
    assert saved["mag_ratios"][0] == 1.0 and all(r > 0 for r in saved["mag_ratios"])
    second, _ = run(engine, make_request(wan_dir, small_photo, seed=6, step_cache="magcache",
                                         num_inference_steps=6), loaded_photo)
    assert second.info["speed"]["step_cache"]["magcache"] == "using calibrated ratios"
    assert frames_of(second).shape == frames_of(first).shape
    engine.release()


def test_several_photos_are_refused(engine, i2vgen_dir, small_photo, loaded_photo):
    req = build_request(images=(str(small_photo), str(small_photo)), model=str(i2vgen_dir),
                        **SMALL)
    with pytest.raises(InputError, match="one photo"):
        engine.generate(req, [loaded_photo, loaded_photo], lambda e: None, CancelToken())


def test_i2vgen_prompt_embeddings_match_the_pipeline_clip_skip_path(i2vgen_dir):
    """Our embeddings equal what I2VGenXLPipeline.encode_prompt(clip_skip=1) computes when its
    text encoder still has the `text_model` attribute transformers >= 5.6 removed."""
    from img2vid.engines.diffusion import i2vgen, runtime
    from img2vid.engines.diffusion.loading import load_pipeline, resolve_folder

    runtime.import_libraries()
    pipe = load_pipeline(resolve_folder(i2vgen_dir), {"default": torch.float32})
    encoder = pipe.text_encoder
    assert not hasattr(encoder, "text_model")  # the trap this code works around

    class WithTextModel(torch.nn.Module):
        """The pre-5.6 layout: the CLIP text tower under `.text_model`."""

        def __init__(self, inner):
            super().__init__()
            self.text_model = inner
            self.config = inner.config

        @property
        def dtype(self):
            return self.text_model.dtype

        def forward(self, *args, **kwargs):
            return self.text_model(*args, **kwargs)

    with torch.inference_mode():
        ours = i2vgen.encode_prompt(pipe, "a cat", torch.device("cpu"))
        pipe.text_encoder = WithTextModel(encoder)
        pipe._guidance_scale = 1.0
        expected, _ = pipe.encode_prompt("a cat", torch.device("cpu"), 1, clip_skip=1)
    torch.testing.assert_close(ours, expected)


@pytest.mark.parametrize("model", ["i2vgen_dir", "svd_dir", "wan_dir"])
def test_group_and_leaf_offload_plumbing_gives_the_same_video(request, model):
    """The offload calls the low/minimum levels make, run with the CPU as the "GPU": every
    component accepts them and the video is the one a plain run makes. (On CUDA the same calls
    move blocks between the devices; that is only exercised on a GPU.)"""
    from img2vid.engines.diffusion import runtime
    from img2vid.engines.diffusion.call import DiffusionCall, fit_image
    from img2vid.engines.diffusion.loading import load_pipeline, resolve_folder
    from img2vid.engines.diffusion.steps import StepReporter
    from img2vid.engines.memory import MemoryPlan

    runtime.import_libraries()
    resolved = resolve_folder(request.getfixturevalue(model))
    family = resolved.spec.family
    pixels = (np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8)
    call = DiffusionCall(image=fit_image(pixels, 96, 64), prompt="a cat", negative_prompt="",
                         width=96, height=64, num_frames=5, num_inference_steps=2,
                         guidance_scale=5.0, fps=8, decode_chunk=1,
                         options=family.job_options(build_request(images=("x.png",))))
    videos = []
    for offload in ("none", "group", "leaf"):
        pipe = load_pipeline(resolved, {"default": torch.float32})
        plan = MemoryPlan(level="low", offload=offload, decode_chunk=1, vae_tiling=False,
                          estimated_peak=0, budget=0, forced=True, fits=True, reason="")
        runtime.apply_offload(pipe, family, plan, "cpu")
        with runtime.seeded(11, "cpu") as generator, torch.inference_mode():
            videos.append(np.asarray(family.run(pipe, call, generator,
                                                StepReporter(2, lambda e: None, CancelToken()))))
    np.testing.assert_allclose(videos[1], videos[0], atol=1e-5)
    np.testing.assert_allclose(videos[2], videos[0], atol=1e-5)


@pytest.mark.slow
def test_compile_runs_the_compiled_denoiser_and_keeps_it_between_jobs(
        engine, wan_dir, small_photo, loaded_photo):
    eager = frames_of(run(engine, make_request(wan_dir, small_photo, seed=8), loaded_photo)[0])
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    clip, _ = run(engine, make_request(wan_dir, small_photo, seed=8, compile=True), loaded_photo)
    transformer = engine._loaded.pipe.transformer
    assert transformer._compiled_call_impl is not None  # compiled in place, hooks kept
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo traced it; inductor ran it
    assert clip.info["speed"]["compile"] is True
    compiled = frames_of(clip)
    # the same model and noise: inductor's fused kernels round differently, nothing more
    assert compiled.shape == eager.shape
    assert np.abs(compiled.astype(int) - eager.astype(int)).max() <= 2
    again, _ = run(engine, make_request(wan_dir, small_photo, seed=8, compile=True),
                   loaded_photo)
    assert engine._loaded.pipe.transformer is transformer  # the compiled model is reused
    assert again.info["timings"]["load_s"] < 0.5
    engine.release()


def test_peak_memory_is_read_on_the_jobs_own_gpu(monkeypatch):
    from img2vid.engines.diffusion import runtime

    asked: list[object] = []
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", asked.append)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated",
                        lambda device: asked.append(device) or 3 * 1024**3)
    runtime.reset_peak("cuda:1")
    assert runtime.peak_memory("cuda:1") == {"peak_vram_gb": 3.0}
    # a worker thread's current device is cuda:0 unless told otherwise; the job's is cuda:1
    assert asked == [torch.device("cuda:1")] * 2


def test_bf16_falls_back_to_fp16_on_the_jobs_gpu_if_it_is_pre_ampere(monkeypatch):
    from img2vid.engines.diffusion import runtime

    capability = {torch.device("cuda:0"): (9, 0), torch.device("cuda:1"): (7, 0)}  # H100, V100
    monkeypatch.setattr(torch.cuda, "get_device_capability", capability.__getitem__)
    assert runtime.bf16_supported("cuda:0") and not runtime.bf16_supported("cuda:1")
    assert runtime.bf16_supported("cpu")


def test_a_pinned_engine_makes_its_gpu_current_for_the_job(wan_dir, small_photo, loaded_photo,
                                                            monkeypatch):
    from contextlib import nullcontext

    from img2vid.core.config import Settings
    from img2vid.engines.diffusion import DiffusionEngine, runtime

    pinned = runtime.on_device("cuda:1")
    assert isinstance(pinned, torch.cuda.device) and pinned.idx == 1
    assert isinstance(runtime.on_device("cpu"), nullcontext)
    assert isinstance(runtime.on_device(None), nullcontext)

    entered: list[str | None] = []
    monkeypatch.setattr(runtime, "on_device", lambda device: entered.append(device)
                        or nullcontext())
    engine = DiffusionEngine(Settings(), device="cpu")
    run(engine, make_request(wan_dir, small_photo, seed=1), loaded_photo)
    assert entered == ["cpu"]
    engine.release()


def test_timing_that_needs_the_models_rate_is_checked_before_loading(wan_dir, small_photo,
                                                                     loaded_photo):
    from img2vid.core.config import Settings
    from img2vid.engines.diffusion import DiffusionEngine

    engine = DiffusionEngine(Settings())
    with pytest.raises(InputError, match=r"target_fps=12 is below wan-tiny's 16 fps"):
        run(engine, make_request(wan_dir, small_photo, seed=1, target_fps=12), loaded_photo)
    with pytest.raises(InputError, match=r"longer than the clip \(5 frames at 16 fps"):
        run(engine, make_request(wan_dir, small_photo, seed=1, num_frames=5, fade_in=0.2,
                                 fade_out=0.2), loaded_photo)
    assert engine._loaded is None  # refused before any weights were read


def test_the_planner_counts_a_quantized_denoiser_at_one_byte_a_weight(wan_dir):
    from img2vid.core.request import Quantize
    from img2vid.engines.diffusion.call import Shape
    from img2vid.engines.diffusion.loading import resolve_folder, weight_census
    from img2vid.engines.diffusion.planning import workload
    from img2vid.engines.diffusion.sizing import Choices

    resolved = resolve_folder(wan_dir)
    choices = Choices(Shape(96, 64, 5, 96, 64, 5), 16, 2, 5.0)
    elements = {k: c.elements for k, c in weight_census(resolved.path, None).items()}
    dtypes = {"default": "float32"}
    plain = workload(resolved.spec, resolved, choices, dtypes, Quantize.NONE)
    for mode in (Quantize.FP8, Quantize.INT8):
        quantized = workload(resolved.spec, resolved, choices, dtypes, mode)
        assert quantized.weights["transformer"] == elements["transformer"]  # 1 byte each
        assert plain.weights["transformer"] == 4 * elements["transformer"]
        assert quantized.weights["vae"] == plain.weights["vae"]  # only the denoiser shrinks


def test_the_loaded_model_counts_as_free_memory_for_the_next_plan(wan_dir, small_photo,
                                                                   loaded_photo, monkeypatch):
    import img2vid.engines.diffusion as diffusion
    from img2vid.core.config import Settings
    from img2vid.engines.memory import probe_memory

    seen: list[int] = []

    def recorded(device, held=0):
        seen.append(held)
        return probe_memory(device, held=held)

    monkeypatch.setattr(diffusion, "probe_memory", recorded)
    engine = diffusion.DiffusionEngine(Settings())
    for _ in range(2):
        run(engine, make_request(wan_dir, small_photo, seed=1), loaded_photo)
    # the second job's plan would otherwise count the cached weights twice: in use and needed
    assert seen[0] == 0 and seen[1] == engine._loaded.weight_bytes > 0
    engine.release()


def test_held_weights_are_free_memory_on_cpu(monkeypatch):
    import types

    import psutil

    from img2vid.engines.memory import probe_memory

    monkeypatch.setattr(psutil, "virtual_memory", lambda: types.SimpleNamespace(available=100))
    assert probe_memory("cpu").ram_free == 100
    assert probe_memory("cpu", held=50).ram_free == 150
