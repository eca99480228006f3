"""A diffusion job's plan, made without loading weights: model, values, dtypes, memory level.

The engine runs this plan; `--dry-run` prints it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from img2vid.core.config import Settings
from img2vid.core.errors import InputError
from img2vid.core.request import GenerationRequest, Quantize
from img2vid.engines.diffusion.family import Family
from img2vid.engines.diffusion.loading import (
    Census,
    ResolvedModel,
    cached_model,
    resolve_model,
    weight_census,
)
from img2vid.engines.diffusion.registry import ModelSpec
from img2vid.engines.diffusion.sizing import Choices, choose, shape_notes
from img2vid.engines.memory import (
    GB,
    MemoryFigures,
    MemoryPlan,
    Workload,
    plan_memory,
)

log = logging.getLogger(__name__)

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
SHARD_BYTES = 10 * 10**9  # diffusers' default max_shard_size
TEXT_LAYERS = 24  # T5-XXL / UMT5-XXL encoder blocks, when a config does not say


@dataclass(frozen=True)
class JobPlan:
    """Everything decided before weights load."""

    spec: ModelSpec
    resolved: ResolvedModel | None  # None: a dry run of a model not downloaded yet
    choices: Choices
    dtypes: dict[str, str]
    work: Workload
    memory: MemoryPlan
    figures: MemoryFigures
    device: str
    notes: list[str]

    @property
    def family(self) -> Family:
        return self.spec.family

    def describe(self, request: GenerationRequest) -> dict[str, Any]:
        """The plan as `--dry-run --json` prints it."""
        c, s = self.choices, self.choices.shape
        r = self.resolved
        free = (self.figures.device_free if self.figures.device == "cuda"
                else self.figures.ram_free)
        return {
            "model": self.spec.name,
            "hub_id": self.spec.hub_id if r is None or r.source == "hub" else None,
            "path": str(r.path) if r else None,
            "revision": (r.revision if r else request.revision or self.spec.revision),
            # components from repos of their own, with the commit each loads at (FramePack)
            **({"components": {p.name: p.describe() for p in r.parts} if r else
                {name: {"id": text, "revision": None} for name, text in
                 self.spec.components.items()}} if self.spec.components else {}),
            "cached": r is not None,
            "download_gb": None if r is not None else self.spec.download_gb,
            "pipeline": self.spec.pipeline_class,
            "family": self.spec.family.name,
            "preset": request.preset.value,
            "asked": {"width": request.width, "height": request.height,
                      "resolution": request.resolution, "num_frames": request.num_frames,
                      "fps": request.fps, "num_inference_steps": request.num_inference_steps,
                      "guidance_scale": request.guidance_scale,
                      "guidance_scale_2": request.guidance_scale_2},
            "used": {"width": s.width, "height": s.height, "num_frames": s.num_frames,
                     "fps": c.fps, "num_inference_steps": c.num_inference_steps,
                     "guidance_scale": c.guidance_scale,
                     **({"guidance_scale_2": c.guidance_scale_2}
                        if c.guidance_scale_2 is not None else {})},
            "native": self.spec.describe_defaults(),
            "device": self.device,
            "dtypes": self.dtypes,
            "memory": {"level": self.memory.level, "offload": self.memory.offload,
                       "estimated_peak_gb": round(self.memory.estimated_peak / GB, 2),
                       "free_gb": round((free or 0) / GB, 2),
                       "usable_gb": round(self.memory.budget / GB, 2),
                       "fits": self.memory.fits, "reason": self.memory.reason},
            "notes": self.notes,
        }


def plan_job(request: GenerationRequest, settings: Settings, source_size: tuple[int, int],
             device: str, figures: MemoryFigures, bf16: bool = True,
             dry_run: bool = False) -> JobPlan:
    """Resolve the model and every value of the job (a dry run never downloads: an uncached
    registered model is planned from the registry's figures)."""
    resolved: ResolvedModel | None
    if dry_run and _is_registered_name(request.model, settings):
        resolved = cached_model(request.model or settings.models.default, settings,
                                request.revision)
    else:
        resolved = resolve_model(request.model, settings, request.revision)
    spec = resolved.spec if resolved else _spec(request.model, settings)
    if request.guidance_scale_2 is not None and spec.defaults.guidance_scale_2 is None:
        from img2vid.engines.diffusion.registry import second_expert_models

        raise InputError(f"--guidance-scale-2: {spec.name} has one denoiser; the low-noise "
                         "expert's guidance is for two-expert models: "
                         + ", ".join(second_expert_models()))
    choices = choose(spec, request, *source_size)
    notes = shape_notes(choices.shape, spec) + ignored_options(spec, request)
    dtypes = spec.family.dtypes(device.split(":")[0], bf16)
    work = workload(spec, resolved, choices, dtypes, request.quantize)
    memory = plan_memory(work, figures, request.memory.value)
    return JobPlan(spec, resolved, choices, dtypes, work, memory, figures, device, notes)


def _is_registered_name(name: str | None, settings: Settings) -> bool:
    from img2vid.engines.diffusion.registry import get_spec

    name = (name or settings.models.default).strip()
    return name not in settings.models.local_dirs and get_spec(name) is not None


def _spec(name: str | None, settings: Settings) -> ModelSpec:
    from img2vid.engines.diffusion.loading import registered

    return registered((name or settings.models.default).strip())


def workload(spec: ModelSpec, resolved: ResolvedModel | None, choices: Choices,
             dtypes: dict[str, str], quantize: Quantize) -> Workload:
    """Memory the job needs: each component's weights at its own dtype (from the folder's
    safetensors headers, else the registry's parameter counts), the denoiser at one byte a
    weight when quantized, activations and decoding from the family's estimate."""
    family = spec.family
    if resolved is not None:
        census = weight_census(resolved.path, resolved.variant,
                               [(p.name, p.path) for p in resolved.parts])
        config = resolved.config
    else:
        # the hub files' precision and shards are unknown here: count them as float32 (the
        # widest) in files of at most diffusers' default shard size
        census = {name: Census(int(b * 1e9), 0, int(b * 4e9), min(int(b * 4e9), SHARD_BYTES))
                  for name, b in spec.params_b.items()}

        def config(component: str) -> dict[str, Any]:
            return {}  # the families' estimates default to the real models' sizes

    def size(name: str) -> int:
        if quantize is not Quantize.NONE and name == family.denoiser:
            return 1
        return DTYPE_BYTES[dtypes.get(name, dtypes["default"])]

    weights = {name: c.elements * size(name) for name, c in census.items()}
    pieces = {name: _group_piece(family, name, c, config, size(name))
              for name, c in census.items()}
    leaves = {name: (c.elements if name in family.no_leaf_offload else
                     c.largest or c.elements // 50) * size(name) for name, c in census.items()}
    run_bytes = DTYPE_BYTES[dtypes.get(family.denoiser, dtypes["default"])]
    activations, full, tiled = family.estimate(config, choices.shape, choices.guidance_scale,
                                               run_bytes)
    return Workload(weights=weights, activations=activations, decode_per_frame=full,
                    num_frames=choices.shape.num_frames, decode_tiled=tiled,
                    tiling=family.vae_tiling, chunked_decode=family.chunked_decode,
                    pieces=pieces, leaves=leaves,
                    transient=max((c.largest_file for c in census.values()), default=0))


def _group_piece(family: Family, name: str, census: Census, config: Any, size: int) -> int:
    """Bytes of a component on the GPU at once under block-level group offload: the
    denoiser streams its block list; a T5 text encoder (offloaded through `encoder`) its
    embedding table plus two blocks; anything without a top-level block list goes whole."""
    from img2vid.engines.memory import GROUP_RESIDENT

    if name == family.denoiser:
        return int(census.elements * size * GROUP_RESIDENT)
    if name in family.block_modules:
        layers = int(config(name).get("num_layers", TEXT_LAYERS)) or TEXT_LAYERS
        rest = census.elements - census.largest
        return (census.largest + 2 * rest // layers) * size
    return census.elements * size


def ignored_options(spec: ModelSpec, request: GenerationRequest) -> list[str]:
    """Options this model does not use: said out loud rather than dropped silently."""
    from img2vid.engines.diffusion.registry import FAMILIES

    notes = []
    if not spec.uses_prompt and (request.prompt or request.negative_prompt):
        notes.append(f"{spec.name} takes no text prompt: the prompt and negative prompt are "
                     "ignored (use i2vgen-xl or wan for prompt-driven motion)")
    if spec.family.long_video and request.window_frames is not None:
        notes.append(f"{spec.name} makes long videos in its own sections: window_frames is "
                     "ignored")
    for family in FAMILIES.values():
        for option in family.options:
            if family is not spec.family and getattr(request, option) is not None:
                owners = ", ".join(s.name for s in _models_of(family))
                notes.append(f"{option} applies to {owners} only; {spec.name} ignores it")
    return notes


def _models_of(family: Family) -> list[ModelSpec]:
    from img2vid.engines.diffusion.registry import MODELS

    return [s for s in MODELS.values() if s.family is family]


def check_request(spec: ModelSpec, request: GenerationRequest, choices: Choices) -> None:
    """What the request could not check without the model, before any loading: an end frame
    on a model not trained for one, a target fps below its rate, fades longer than the clip."""
    from img2vid.engines.diffusion.registry import last_image_models

    if request.last_image is not None and not spec.last_image:
        raise InputError(f"--last-image: {spec.name} was not trained to end on a given frame; "
                         f"models that can: {', '.join(last_image_models())}")
    if request.last_image is None and spec.last_image == "required":
        raise InputError(f"{spec.name} animates from a first to a last frame: give the last "
                         "one with --last-image")
    fps, shape = choices.fps, choices.shape
    if request.target_fps is not None and request.target_fps < fps:
        raise InputError(f"target_fps={request.target_fps:g} is below {spec.name}'s {fps} fps; "
                         "interpolation only adds frames (ask for more, or set --fps)")
    seconds = shape.num_frames / fps
    if request.fade_in + request.fade_out > seconds + 1e-9:
        raise InputError(f"fade_in + fade_out ({request.fade_in + request.fade_out:g} s) is "
                         f"longer than the clip ({shape.num_frames} frames at {fps} fps = "
                         f"{seconds:g} s)")
