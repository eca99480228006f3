"""Sizes, frames, steps, guidance and fps of a job: the request's, else the model's for the preset."""

from __future__ import annotations

import math
from dataclasses import dataclass

from img2vid.core.request import GenerationRequest, output_size
from img2vid.engines.diffusion.call import Shape
from img2vid.engines.diffusion.registry import ModelSpec


@dataclass(frozen=True)
class Choices:
    """The values a job runs with: the request's where set, else the model's for the preset."""

    shape: Shape
    fps: int
    num_inference_steps: int
    guidance_scale: float
    guidance_scale_2: float | None = None  # the low-noise expert's (two-expert models)


def choose(spec: ModelSpec, request: GenerationRequest, source_width: int,
           source_height: int) -> Choices:
    tier = spec.tier(request.preset.value)
    fps = int(request.fps) if request.fps is not None else spec.defaults.fps
    guidance = (float(request.guidance_scale) if request.guidance_scale is not None
                else spec.defaults.guidance_scale)
    steps = request.num_inference_steps or tier.num_inference_steps
    second = (float(request.guidance_scale_2) if request.guidance_scale_2 is not None
              else spec.defaults.guidance_scale_2)
    return Choices(choose_shape(spec, request, source_width, source_height, fps), fps, steps,
                   guidance, second)


def choose_shape(spec: ModelSpec, request: GenerationRequest, source_width: int,
                 source_height: int, fps: int) -> Shape:
    """Snap the request's size and frames to what the model accepts, keeping the aspect ratio.
    Unset, they are the preset tier's: the model's native area (or the tier's short side)
    with the photo's aspect ratio. A duration asks for that many seconds at `fps`."""
    rules = spec.shape_rules
    tier = spec.tier(request.preset.value)
    if request.width or request.height or request.resolution:
        sized = request
    elif tier.short_side is not None:
        sized = request.model_copy(update={"resolution": tier.short_side})
    else:
        sized = None
    if sized is not None:
        asked_w, asked_h = output_size(sized, source_width, source_height)
        width, height = output_size(sized, source_width, source_height,
                                    multiple=rules.side_multiple)
    else:  # nothing asked: the native area, in the model's multiples
        width, height = native_size(spec.defaults.width * spec.defaults.height,
                                    source_width / source_height, rules.side_multiple)
        asked_w, asked_h = width, height
    if rules.fixed_size is not None:
        width, height = rules.fixed_size
    elif rules.sizes:
        width, height = bucket_for(rules.sizes, width, height)
    asked_frames = request.num_frames or (max(1, round(request.duration * fps))
                                          if request.duration else tier.num_frames)
    return Shape(asked_w, asked_h, asked_frames, width, height, rules.frames.snap(asked_frames))


def native_size(area: int, aspect: float, multiple: int) -> tuple[int, int]:
    """Sides with this aspect ratio whose product is close to `area`, in multiples."""
    width, height = math.sqrt(area * aspect), math.sqrt(area / aspect)
    return (max(multiple, round(width / multiple) * multiple),
            max(multiple, round(height / multiple) * multiple))


def bucket_for(sizes: tuple[tuple[int, int], ...], width: int, height: int) -> tuple[int, int]:
    """The (width, height) bucket HunyuanVideo-1.5's pipeline runs a width x height photo at:
    the nearest height/width ratio that is no further from square than the photo's
    (diffusers' hunyuan_video1_5 image_processor.get_closest_ratio)."""
    aspect = height / width

    def ratio(size: tuple[int, int]) -> float:
        return round(size[1] / size[0], 5)

    side = [s for s in sizes if (ratio(s) <= aspect if aspect >= 1 else ratio(s) >= aspect)]
    return min(side or sizes, key=lambda s: abs(ratio(s) - aspect))


def shape_notes(shape: Shape, spec: ModelSpec) -> list[str]:
    """What snapping changed, said out loud."""
    notes = []
    rules = spec.shape_rules
    if (shape.width, shape.height) != (shape.asked_width, shape.asked_height):
        if rules.fixed_size:
            rule = f"only runs at {rules.fixed_size[0]}x{rules.fixed_size[1]}"
        elif rules.sizes:
            rule = "runs at its resolution buckets (the one nearest the aspect ratio)"
        else:
            rule = f"needs sides that are multiples of {rules.side_multiple}"
        notes.append(f"{spec.name} {rule}: size {shape.asked_width}x{shape.asked_height} -> "
                     f"{shape.width}x{shape.height}")
    if shape.num_frames != shape.asked_frames:
        notes.append(f"{spec.name} takes {rules.frames.describe()} frames: "
                     f"{shape.asked_frames} -> {shape.num_frames}")
    return notes
