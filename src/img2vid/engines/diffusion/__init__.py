"""The diffusion engine: a photo plus a prompt becomes a clip through a diffusers pipeline."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from img2vid.core.clip import Clip
from img2vid.core.config import Settings
from img2vid.core.errors import InputError, OutOfMemoryError
from img2vid.core.progress import CancelToken, Progress, ProgressCallback
from img2vid.core.request import GenerationRequest, Quantize
from img2vid.core.seeds import resolve_seed
from img2vid.engines.diffusion.job import (
    SVD_MOTION_BUCKET_ID,
    SVD_NOISE_AUG_STRENGTH,
    DiffusionJob,
    Shape,
    choose_fps,
    choose_guidance,
    choose_shape,
    fit_image,
    to_uint8_frames,
)
from img2vid.engines.diffusion.loading import (
    ResolvedModel,
    load_pipeline,
    read_config,
    resolve_model,
    weight_elements,
)
from img2vid.engines.diffusion.stepcache import ratios_path, step_cache
from img2vid.engines.diffusion.steps import StepReporter
from img2vid.engines.memory import (
    MemoryFigures,
    MemoryPlan,
    Workload,
    oom_advice,
    plan_memory,
    probe_memory,
    step_down,
)
from img2vid.media.images import LoadedImage

log = logging.getLogger(__name__)

__all__ = ["DiffusionEngine"]


@dataclass
class _Loaded:
    key: tuple[Any, ...]
    pipe: Any
    info: dict[str, Any] = field(default_factory=dict)
    weight_bytes: int = 0  # what releasing it gives back (the planner counts it as free)


class DiffusionEngine:
    """Runs diffusion jobs one at a time, keeping the last pipeline loaded between jobs.

    The cached pipeline is keyed by model, device, dtype, offload mode and the load-time speed
    options; anything else (decode chunking, tiling, step cache, attention backend) is set per
    job, so consecutive jobs on one model reuse it.
    """

    name = "diffusion"

    def __init__(self, settings: Settings, device: str | None = None) -> None:
        self.settings = settings
        self._device = device
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    def generate(self, request: GenerationRequest, images: Sequence[LoadedImage],
                 progress: ProgressCallback, cancel: CancelToken) -> Clip:
        if len(images) != 1:
            raise InputError(f"the diffusion engine animates one photo; got {len(images)} "
                             "(use the camera engine for slideshows)")
        from img2vid.engines.diffusion import runtime

        with self._lock, runtime.on_device(self._device):
            return self._generate(request, images[0], progress, cancel)

    def release(self) -> None:
        """Drop the cached pipeline and give its memory back."""
        loaded, self._loaded = self._loaded, None
        if loaded is None:
            return
        from img2vid.engines.diffusion import runtime

        device = loaded.key[1]
        del loaded
        runtime.free_memory(device)

    # -- one job ---------------------------------------------------------------------------

    def _generate(self, request: GenerationRequest, image: LoadedImage,
                  progress: ProgressCallback, cancel: CancelToken) -> Clip:
        from img2vid.engines.diffusion import runtime

        resolved = resolve_model(request.model, self.settings)
        spec = resolved.spec
        family = runtime.family_module(spec.family)
        runtime.import_libraries()
        runtime.check_options(spec, family, request)

        seed = resolve_seed(request.seed)
        fps = choose_fps(spec, request)
        guidance = choose_guidance(spec, request)
        shape = choose_shape(spec, request, image.width, image.height, fps)
        _check_timing(spec, request, shape, fps)
        notes = shape.notes(spec) + _ignored_options(spec, request)
        for note in notes:
            log.warning(note)

        device = self._device or runtime.pick_device()
        dtype = runtime.pick_dtype(device, spec)
        work = _workload(resolved, family, shape, guidance, dtype, request.quantize)
        figures = probe_memory(device, held=self._loaded.weight_bytes if self._loaded else 0)
        plan = plan_memory(work, figures, request.memory.value)
        runtime.check_plan(request, plan, device)
        log.info("memory plan for %s %dx%d x%d frames (%s on %s): %s", spec.name, shape.width,
                 shape.height, shape.num_frames, runtime.dtype_name(dtype), device, plan.reason)

        job = DiffusionJob(
            image=fit_image(image.pixels, shape.width, shape.height),
            prompt=request.prompt if spec.uses_prompt else "",
            negative_prompt=request.negative_prompt if spec.uses_prompt else "",
            width=shape.width, height=shape.height, num_frames=shape.num_frames,
            num_inference_steps=request.num_inference_steps or 50,
            guidance_scale=guidance, fps=fps, decode_chunk=plan.decode_chunk,
            motion_bucket_id=(request.motion_bucket_id if request.motion_bucket_id is not None
                              else SVD_MOTION_BUCKET_ID),
            noise_aug_strength=(request.noise_aug_strength
                                if request.noise_aug_strength is not None
                                else SVD_NOISE_AUG_STRENGTH))

        attempts: list[dict[str, Any]] = []
        try:
            frames, timings, extras = self._run_with_fallback(
                resolved, family, request, job, work, figures, plan, device, dtype, seed,
                progress, cancel, attempts)
        finally:
            # the weights stay cached; activations and allocator caches go back after every job
            runtime.free_memory(device)
        plan = attempts[-1]["plan"]
        info = {
            "engine": self.name,
            "model": resolved.describe(),
            "seed": seed,
            "size": shape.describe(),
            "num_inference_steps": job.num_inference_steps,
            "guidance_scale": job.guidance_scale,
            "fps": job.fps,
            "device": device,
            "dtype": runtime.dtype_name(dtype),
            "memory_plan": plan.as_dict(),
            "memory_attempts": [{"level": a["plan"].level, "result": a["result"]}
                                for a in attempts],
            "speed": {"compile": request.compile, "attention": request.attention,
                      "step_cache": extras.pop("step_cache"),
                      "quantize": self._loaded.info.get("quantize", request.quantize.value)},
            "timings": timings,
            **extras,
            "warnings": list(notes),
        }
        if spec.family == "svd":
            info["motion_bucket_id"] = job.motion_bucket_id
            info["noise_aug_strength"] = job.noise_aug_strength
        if not spec.uses_prompt and (request.prompt or request.negative_prompt):
            info["ignored_prompt"] = {"prompt": request.prompt,
                                      "negative_prompt": request.negative_prompt}
        return Clip(iter(frames), float(job.fps), shape.width, shape.height, len(frames), info)

    def _run_with_fallback(self, resolved: ResolvedModel, family: ModuleType,
                           request: GenerationRequest, job: DiffusionJob, work: Workload,
                           figures: MemoryFigures, plan: MemoryPlan, device: str, dtype: Any,
                           seed: int, progress: ProgressCallback, cancel: CancelToken,
                           attempts: list[dict[str, Any]],
                           ) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
        """Run once; after an out-of-memory error step down one level and retry once."""
        from img2vid.engines.diffusion import runtime

        while True:
            attempt = {"plan": plan, "result": "running"}
            attempts.append(attempt)
            try:
                result = self._run(resolved, family, request, job, plan, device, dtype, seed,
                                   progress, cancel)
                attempt["result"] = "ok"
                return result
            except Exception as exc:
                if not runtime.is_out_of_memory(exc):
                    attempt["result"] = type(exc).__name__
                    raise
                attempt["result"] = "out of memory"
            # Outside the except block the traceback, and the tensors its frames hold, are
            # gone: drop the pipeline too (the lighter level offloads differently) and retry.
            self.release()
            lower = step_down(plan, work, figures) if len(attempts) == 1 else None
            if lower is None:
                raise OutOfMemoryError(
                    f"{resolved.spec.name} ran out of memory on {device} at memory level "
                    f"{plan.level} ({job.width}x{job.height}, {job.num_frames} frames): try "
                    f"{oom_advice(plan)}")
            runtime.check_plan(request, lower, device)
            log.warning("out of memory at memory level %s; retrying at %s", plan.level,
                        lower.level)
            plan = lower
            job = replace(job, decode_chunk=plan.decode_chunk)

    def _run(self, resolved: ResolvedModel, family: ModuleType, request: GenerationRequest,
             job: DiffusionJob, plan: MemoryPlan, device: str, dtype: Any, seed: int,
             progress: ProgressCallback, cancel: CancelToken,
             ) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
        import torch

        from img2vid.engines.diffusion import runtime

        started = time.perf_counter()
        pipe = self._pipeline(resolved, family, request, plan, device, dtype, progress)
        loaded = time.perf_counter()
        runtime.apply_decode(pipe, plan)
        cancel.raise_if_cancelled()
        steps = StepReporter(job.num_inference_steps, progress, cancel)
        runtime.reset_peak(device)
        ratios_file = ratios_path(self._cache_root(), resolved.model_id, resolved.revision)
        try:
            with (runtime.seeded(seed, device) as generator, torch.inference_mode(),
                  runtime.attention_scope(request.attention),
                  step_cache(pipe, family.DENOISER, request.step_cache, job.num_inference_steps,
                             ratios_file) as cache_report):
                progress(Progress("denoise", 0, job.num_inference_steps))
                video = family.run(pipe, job, generator, steps)
        except BaseException:
            # a cancel or error mid-run leaves offloaded models wherever they were: put them
            # back so the cached pipeline starts the next job clean
            pipe.maybe_free_model_hooks()
            raise
        progress(Progress("decode", 1, 1))
        frames = to_uint8_frames(video)
        del video
        finished = time.perf_counter()
        timings = {"load_s": round(loaded - started, 3),
                   "generate_s": round(finished - loaded, 3)}
        return frames, timings, {**runtime.peak_memory(device), "step_cache": cache_report}

    def _cache_root(self) -> Path:
        """img2vid's own model cache (beside the RIFE weights): MagCache ratios live here."""
        from img2vid.media.models_cache import cache_dir

        return cache_dir(self.settings)

    def _pipeline(self, resolved: ResolvedModel, family: ModuleType, request: GenerationRequest,
                  plan: MemoryPlan, device: str, dtype: Any, progress: ProgressCallback) -> Any:
        from img2vid.engines.diffusion import runtime

        key = (str(resolved.path), device, str(dtype), resolved.variant, plan.offload,
               request.compile, request.quantize.value)
        if self._loaded is not None and self._loaded.key == key:
            return self._loaded.pipe
        self.release()
        progress(Progress("load", 0, None, f"loading {resolved.spec.name}"))
        pipe = load_pipeline(resolved, dtype)
        info: dict[str, Any] = {}
        quant = runtime.quantize(pipe, family, request.quantize, dtype)
        if quant:
            info["quantize"] = quant
        runtime.apply_offload(pipe, plan, device)
        if request.compile:
            runtime.compile_denoiser(pipe, family)
        self._loaded = _Loaded(key, pipe, info, sum(
            runtime.weight_bytes(c) for c in pipe.components.values() if hasattr(c, "parameters")))
        return pipe


def _workload(resolved: ResolvedModel, family: ModuleType, shape: Shape, guidance: float,
              dtype: Any, quantize: Quantize) -> Workload:
    """Memory the job needs: weights from the folder's safetensors headers (the denoiser at
    one byte a weight when quantized), activations and decoding from the family's estimate."""
    dtype_bytes = dtype.itemsize

    def config(component: str) -> dict[str, Any]:
        return read_config(resolved.path, component)

    weights = {name: count * (1 if quantize is not Quantize.NONE and name == family.DENOISER
                              else dtype_bytes)
               for name, count in weight_elements(resolved.path, resolved.variant).items()}
    activations, decode_full, decode_tiled = family.estimate(config, shape, guidance,
                                                             dtype_bytes)
    return Workload(weights=weights, activations=activations, decode_per_frame=decode_full,
                    num_frames=shape.num_frames, decode_tiled=decode_tiled,
                    tiling=family.VAE_TILING, chunked_decode=family.CHUNKED_DECODE)


def _ignored_options(spec: Any, request: GenerationRequest) -> list[str]:
    """Options this model does not use: said out loud rather than dropped silently."""
    notes = []
    if not spec.uses_prompt and (request.prompt or request.negative_prompt):
        notes.append(f"{spec.name} takes no text prompt: the prompt and negative prompt are "
                     "ignored (use i2vgen-xl or wan for prompt-driven motion)")
    if spec.family != "svd":
        for name in ("motion_bucket_id", "noise_aug_strength"):
            if getattr(request, name) is not None:
                notes.append(f"{name} applies to svd-xt only; {spec.name} ignores it")
    return notes


def _check_timing(spec: Any, request: GenerationRequest, shape: Shape, fps: int) -> None:
    """What the request could not check without the model's frame rate, before any loading:
    a target fps below it, or fades longer than the clip."""
    if request.target_fps is not None and request.target_fps < fps:
        raise InputError(f"target_fps={request.target_fps:g} is below {spec.name}'s {fps} fps; "
                         "interpolation only adds frames (ask for more, or set --fps)")
    seconds = shape.num_frames / fps
    if request.fade_in + request.fade_out > seconds + 1e-9:
        raise InputError(f"fade_in + fade_out ({request.fade_in + request.fade_out:g} s) is "
                         f"longer than the clip ({shape.num_frames} frames at {fps} fps = "
                         f"{seconds:g} s)")
