"""The diffusion engine: a photo plus a prompt becomes a clip through a diffusers pipeline."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from img2vid.core.clip import Clip
from img2vid.core.config import Settings
from img2vid.core.errors import InputError, OutOfMemoryError
from img2vid.core.lora import LoraSpec
from img2vid.core.progress import CancelToken, Progress, ProgressCallback
from img2vid.core.request import GenerationRequest
from img2vid.core.seeds import resolve_seed
from img2vid.engines.diffusion.call import DiffusionCall, fit_image, to_uint8_frames
from img2vid.engines.diffusion.loading import load_pipeline
from img2vid.engines.diffusion.lora import loras_loaded
from img2vid.engines.diffusion.planning import JobPlan, check_request, plan_job
from img2vid.engines.diffusion.preview import Previewer, preview_every
from img2vid.engines.diffusion.stepcache import ratios_path, step_cache
from img2vid.engines.diffusion.steps import StepReporter
from img2vid.engines.diffusion.windows import (
    check_prompts,
    join_audio,
    run_chained,
    run_windows,
)
from img2vid.engines.memory import (
    MemoryPlan,
    oom_advice,
    probe_memory,
    step_down,
)
from img2vid.media.images import LoadedImage, load_image

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

__all__ = ["DiffusionEngine"]


@dataclass
class _Loaded:
    key: tuple[Any, ...]
    pipe: Any
    info: dict[str, Any] = field(default_factory=dict)
    weight_bytes: int = 0  # what releasing it gives back (the planner counts it as free)
    previewer: Previewer | None = None  # its latent-to-RGB projection, chosen once


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
        # steps between live previews (0: the default, about PREVIEWS_PER_JOB per job; -1: off)
        self.preview_interval = 0

    def generate(self, request: GenerationRequest, images: Sequence[LoadedImage],
                 progress: ProgressCallback, cancel: CancelToken,
                 lead: Sequence[np.ndarray] = ()) -> Clip:
        """`lead`: frames the video continues (extend): the model starts from its last frames
        where it takes a video condition, else from the photo; info["lead_frames"] says how
        many of the clip's first frames reproduce them."""
        if len(images) != 1:
            raise InputError(f"the diffusion engine animates one photo; got {len(images)} "
                             "(use the camera engine for slideshows)")
        from img2vid.engines.diffusion import runtime

        with self._lock, runtime.on_device(self._device):
            return self._generate(request, images[0], progress, cancel, lead)

    def release(self) -> None:
        """Drop the cached pipeline and give its memory back."""
        loaded, self._loaded = self._loaded, None
        if loaded is None:
            return
        from img2vid.engines.diffusion import runtime

        device = loaded.key[1]
        del loaded
        runtime.free_memory(device)

    def plan(self, request: GenerationRequest, source_size: tuple[int, int],
             dry_run: bool = False) -> JobPlan:
        """Resolve the model and every value of a job without loading weights."""
        from img2vid.engines.diffusion import runtime

        device = self._device or runtime.pick_device()
        held = self._loaded.weight_bytes if self._loaded else 0
        return plan_job(request, self.settings, source_size, device,
                        probe_memory(device, held=held), runtime.bf16_supported(device),
                        dry_run=dry_run)

    # -- one job ---------------------------------------------------------------------------

    def _generate(self, request: GenerationRequest, image: LoadedImage,
                  progress: ProgressCallback, cancel: CancelToken,
                  lead: Sequence[np.ndarray] = ()) -> Clip:
        from img2vid.engines.diffusion import runtime

        runtime.import_libraries()
        plan = self.plan(request, (image.width, image.height))
        total = plan.choices.shape.num_frames
        window = total if plan.family.long_video else plan.spec.shape_rules.frames.snap(
            request.window_frames or plan.spec.defaults.num_frames)
        count = plan.spec.family.lead_frames(window)
        continues = count > 1 and len(lead) >= count
        if continues:  # a continued clip's last `count` frames come back first: make as many more
            total += count - 1
            if total <= window:
                plan = self.plan(request.model_copy(update={"num_frames": total, "duration": None}),
                                 (image.width, image.height))
        if plan.spec.uses_prompt:
            check_prompts(request.prompt, total, window, plan.spec.shape_rules.frames, count)
        if total > window:  # longer than one window: plan (memory too) for one window
            plan = self.plan(request.model_copy(update={"num_frames": window, "duration": None}),
                             (image.width, image.height))
        resolved, spec, choices = plan.resolved, plan.spec, plan.choices
        assert resolved is not None  # only a dry run plans without files
        runtime.check_options(spec, request)
        check_request(spec, request, choices)
        runtime.check_plan(request, plan.memory, plan.device)
        for note in plan.notes:
            log.warning(note)
        shape = choices.shape
        log.info("memory plan for %s %dx%d x%d frames (%s on %s): %s", spec.name, shape.width,
                 shape.height, shape.num_frames, plan.dtypes, plan.device, plan.memory.reason)

        seed = resolve_seed(request.seed)
        last = (load_image(request.last_image, self.settings.images)
                if request.last_image is not None else None)
        call = DiffusionCall(
            image=fit_image(image.pixels, shape.width, shape.height),
            prompt=request.prompt if spec.uses_prompt else "",
            negative_prompt=request.negative_prompt if spec.uses_prompt else "",
            width=shape.width, height=shape.height, num_frames=shape.num_frames,
            num_inference_steps=choices.num_inference_steps,
            guidance_scale=choices.guidance_scale, fps=choices.fps,
            guidance_scale_2=choices.guidance_scale_2,
            decode_chunk=plan.memory.decode_chunk, options=spec.family.job_options(request),
            last_image=fit_image(last.pixels, shape.width, shape.height) if last else None)
        if continues:  # a continued clip conditions like a window
            starts = tuple(fit_image(f, shape.width, shape.height) for f in lead[-count:])
            call = replace(call, image=starts[0], lead_frames=starts)

        attempts: list[dict[str, Any]] = []
        results: list[Any] = []

        def one_call(part: DiffusionCall, part_seed: int = seed) -> list[Any]:
            results.append(self._run_with_fallback(
                plan, request, part, part_seed, progress, cancel, attempts))
            return results[-1][0]

        try:
            made = (run_chained(call, total, window, spec.family, seed, one_call)
                    if total > window else None)
            if made is None and total > window:
                made = run_windows(call, total, window, spec.shape_rules.frames, seed, one_call,
                                   lead=spec.family.lead_frames(window))
            frames, chained = made if made is not None else (one_call(call), {})
            # the sound a model made with its frames (LTX-2), joined across chained windows
            sounds = [r[2].pop("generated_audio", None) for r in results]
            sound = (join_audio(sounds, chained["window_lead_frames"] + chained["window_overlap"],
                                call.fps) if "window_lead_frames" in chained else sounds[-1])
            _, timings, extras = results[-1]
            timings = {k: round(sum(r[1][k] for r in results), 3) for k in timings}
        finally:
            # the weights stay cached; activations and allocator caches go back after every job
            runtime.free_memory(plan.device)
        memory = attempts[-1]["plan"]
        info = {
            "engine": self.name,
            "model": resolved.describe(),
            "seed": seed,
            "size": shape.describe(),
            "num_inference_steps": call.num_inference_steps,
            "guidance_scale": call.guidance_scale,
            **({"guidance_scale_2": call.guidance_scale_2}
               if call.guidance_scale_2 is not None else {}),
            "fps": call.fps,
            # a continued clip's last frames, reproduced at the start (extend drops them)
            **({"lead_frames": len(call.lead_frames)} if call.lead_frames else {}),
            "preset": request.preset.value,
            "device": plan.device,
            "dtype": plan.dtypes["default"],
            "dtypes": plan.dtypes,
            "memory_plan": memory.as_dict(),
            "memory_attempts": [{"level": a["plan"].level, "result": a["result"]}
                                for a in attempts],
            "speed": {"compile": request.compile, "attention": request.attention,
                      "step_cache": extras.pop("step_cache"),
                      "quantize": self._loaded.info.get("quantize", request.quantize.value)},
            "timings": timings,
            **call.options,
            **({"last_image": last.describe()} if last else {}),
            **chained,
            **extras,
            "warnings": list(plan.notes),
        }
        if not spec.uses_prompt and (request.prompt or request.negative_prompt):
            info["ignored_prompt"] = {"prompt": request.prompt,
                                      "negative_prompt": request.negative_prompt}
        return Clip(iter(frames), float(call.fps), shape.width, shape.height, len(frames), info,
                    audio=sound)

    def _run_with_fallback(self, plan: JobPlan, request: GenerationRequest, call: DiffusionCall,
                           seed: int, progress: ProgressCallback, cancel: CancelToken,
                           attempts: list[dict[str, Any]],
                           ) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
        """Run once; after an out-of-memory error step down one level and retry once."""
        from img2vid.engines.diffusion import runtime

        memory = plan.memory
        while True:
            attempt = {"plan": memory, "result": "running"}
            attempts.append(attempt)
            try:
                result = self._run(plan, memory, request, call, seed, progress, cancel)
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
            lower = step_down(memory, plan.work, plan.figures) if len(attempts) == 1 else None
            if lower is None:
                raise OutOfMemoryError(
                    f"{plan.spec.name} ran out of memory on {plan.device} at memory level "
                    f"{memory.level} ({call.width}x{call.height}, {call.num_frames} frames): try "
                    f"{oom_advice(memory)}")
            runtime.check_plan(request, lower, plan.device)
            log.warning("out of memory at memory level %s; retrying at %s", memory.level,
                        lower.level)
            memory = lower
            call = replace(call, decode_chunk=memory.decode_chunk)

    def _run(self, plan: JobPlan, memory: MemoryPlan, request: GenerationRequest,
             call: DiffusionCall, seed: int, progress: ProgressCallback, cancel: CancelToken,
             ) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
        import torch

        from img2vid.engines.diffusion import runtime

        resolved, family, device = plan.resolved, plan.family, plan.device
        assert resolved is not None
        started = time.perf_counter()
        pipe = self._pipeline(plan, memory, request, progress)
        loaded = time.perf_counter()
        runtime.apply_decode(pipe, memory)
        cancel.raise_if_cancelled()
        previewer = self._loaded.previewer if self._loaded else None
        steps = StepReporter(
            family.denoise_steps(call), progress, cancel,
            preview=(lambda latents: previewer(pipe, call, latents)) if previewer else None,
            every=self.preview_interval or preview_every(call.num_inference_steps))
        runtime.reset_peak(device)
        ratios_file = ratios_path(self._cache_root(), resolved.model_id, resolved.revision)
        loras = [LoraSpec.parse(text) for text in request.lora]
        try:
            # LoRA layers are made outside inference mode: they are ordinary parameters
            fuse = (request.lora_fuse if request.lora_fuse is not None
                    else self.settings.models.lora_fuse)
            with (loras_loaded(pipe, family.denoiser, plan.spec.name, loras,
                               fuse) as lora_records,
                  runtime.seeded(seed, device) as generator, torch.inference_mode(),
                  runtime.attention_scope(request.attention),
                  step_cache(pipe, family.denoiser, request.step_cache, call.num_inference_steps,
                             ratios_file) as cache_report):
                progress(Progress("denoise", 0, steps.total))
                video = family.run(pipe, call, generator, steps)
        except BaseException:
            # a cancel or error mid-run leaves offloaded models wherever they were: put them
            # back so the cached pipeline starts the next job clean
            pipe.maybe_free_model_hooks()
            raise
        progress(Progress("decode", 1, 1))
        video, sound = family.split_audio(pipe, video)
        frames = to_uint8_frames(video)
        del video
        finished = time.perf_counter()
        timings = {"load_s": round(loaded - started, 3),
                   "generate_s": round(finished - loaded, 3),
                   "preview_s": round(steps.preview_s, 3)}
        extras = {**runtime.peak_memory(device), "step_cache": cache_report}
        if lora_records:
            extras["loras"] = lora_records
        if sound is not None:
            extras["generated_audio"] = sound  # taken off before the sidecar
        return frames, timings, extras

    def _cache_root(self) -> Path:
        """img2vid's own model cache (beside the RIFE weights): MagCache ratios live here."""
        from img2vid.media.models_cache import cache_dir

        return cache_dir(self.settings)

    def _pipeline(self, plan: JobPlan, memory: MemoryPlan, request: GenerationRequest,
                  progress: ProgressCallback) -> Any:
        from img2vid.engines.diffusion import runtime

        resolved, family, device = plan.resolved, plan.family, plan.device
        assert resolved is not None
        key = (str(resolved.path), *(str(p.path) for p in resolved.parts), device, tuple(sorted(plan.dtypes.items())), resolved.variant,
               memory.offload, request.compile, request.quantize.value)
        if self._loaded is not None and self._loaded.key == key:
            return self._loaded.pipe
        self.release()
        progress(Progress("load", 0, None, f"loading {resolved.spec.name}"))
        dtypes = runtime.torch_dtypes(plan.dtypes)
        pipe = load_pipeline(resolved, dtypes)
        info: dict[str, Any] = {}
        quant = runtime.quantize(pipe, family, request.quantize,
                                 dtypes.get(family.denoiser, dtypes["default"]))
        if quant:
            info["quantize"] = quant
        runtime.apply_offload(pipe, family, memory, device)
        if request.compile:
            runtime.compile_denoiser(pipe, family)
        self._loaded = _Loaded(key, pipe, info, sum(
            runtime.weight_bytes(c) for c in pipe.components.values() if hasattr(c, "parameters")),
            Previewer(family))
        return pipe
