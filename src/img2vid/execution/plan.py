"""A request's plan without loading weights or writing anything: what `--dry-run` prints."""

from __future__ import annotations

from typing import Any

from img2vid.core.config import Settings
from img2vid.core.request import EngineKind, GenerationRequest, output_size
from img2vid.execution.pipeline import require_extras
from img2vid.media.images import load_image


def plan_request(request: GenerationRequest, settings: Settings) -> dict[str, Any]:
    """Resolve everything a run would use. Diffusion: model, hub id and revision, pipeline,
    asked vs used values, dtypes per component, memory level and estimate against the free
    memory, and the download size when the model is not cached (nothing is downloaded)."""
    require_extras(request)  # the planner reads devices and configs with torch/diffusers
    images = [load_image(path, settings.images) for path in request.images]
    first = images[0]
    if request.engine is EngineKind.DIFFUSION:
        from img2vid.engines.diffusion import DiffusionEngine

        engine = DiffusionEngine(settings)
        return {"engine": "diffusion",
                **engine.plan(request, (first.width, first.height),
                              dry_run=True).describe(request)}
    width, height = output_size(request, first.width, first.height)
    return {"engine": "camera", "images": len(images), "width": width, "height": height,
            "fps": request.fps, "num_frames": request.num_frames, "duration": request.duration}


def describe_plan(plan: dict[str, Any]) -> list[str]:
    """The plan as lines for a terminal."""
    if plan["engine"] != "diffusion":
        return [f"{k}: {v}" for k, v in plan.items()]
    where = (f"{plan['hub_id']}@{plan['revision'] or 'newest'}" if plan["hub_id"]
             else plan["path"])
    cached = "cached" if plan["cached"] else f"not downloaded (~{plan['download_gb']:g} GB)"
    lines = [f"model: {plan['model']} ({where}, {cached})",
             f"pipeline: {plan['pipeline']} (family {plan['family']}, preset {plan['preset']})"]
    used, asked = plan["used"], plan["asked"]
    for key in ("width", "height", "num_frames", "fps", "num_inference_steps",
                "guidance_scale", "guidance_scale_2"):
        if key not in used:  # guidance_scale_2: two-expert models only
            continue
        said = asked.get(key)
        lines.append(f"{key}: {used[key]}" + ("" if said is None or said == used[key]
                                              else f" (asked {said})"))
    lines.append("dtypes: " + ", ".join(f"{k} {v}" for k, v in plan["dtypes"].items()))
    memory = plan["memory"]
    lines.append(f"memory: level {memory['level']}, estimated peak "
                 f"{memory['estimated_peak_gb']:.2f} GB vs {memory['free_gb']:.2f} GB free on "
                 f"{plan['device']} ({memory['usable_gb']:.2f} GB usable)")
    lines += [f"note: {note}" for note in plan["notes"]]
    return lines
