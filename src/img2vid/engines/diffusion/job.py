"""One diffusion job's resolved values: sizes and frames snapped to the model, guidance, the photo."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from img2vid.core.request import GenerationRequest, output_size

if TYPE_CHECKING:
    from img2vid.engines.diffusion.registry import ModelSpec


@dataclass(frozen=True)
class Shape:
    """Asked and used output size and frame count (the sidecar records both)."""

    asked_width: int
    asked_height: int
    asked_frames: int
    width: int
    height: int
    num_frames: int

    def describe(self) -> dict[str, Any]:
        return {"asked": {"width": self.asked_width, "height": self.asked_height,
                          "num_frames": self.asked_frames},
                "used": {"width": self.width, "height": self.height,
                         "num_frames": self.num_frames}}

    def notes(self, spec: ModelSpec) -> list[str]:
        notes = []
        rules = spec.shape_rules
        if (self.width, self.height) != (self.asked_width, self.asked_height):
            rule = (f"only runs at {rules.fixed_size[0]}x{rules.fixed_size[1]}"
                    if rules.fixed_size else f"needs sides that are multiples of "
                    f"{rules.side_multiple}")
            notes.append(f"{spec.name} {rule}: size {self.asked_width}x{self.asked_height} -> "
                         f"{self.width}x{self.height}")
        if self.num_frames != self.asked_frames:
            notes.append(f"{spec.name} takes {rules.frames.describe()} frames: "
                         f"{self.asked_frames} -> {self.num_frames}")
        return notes


@dataclass(frozen=True)
class Choices:
    """The values a job runs with: the request's where set, else the model's for the preset."""

    shape: Shape
    fps: int
    num_inference_steps: int
    guidance_scale: float


def choose(spec: ModelSpec, request: GenerationRequest, source_width: int,
           source_height: int) -> Choices:
    tier = spec.tier(request.preset.value)
    fps = int(request.fps) if request.fps is not None else spec.defaults.fps
    guidance = (float(request.guidance_scale) if request.guidance_scale is not None
                else spec.defaults.guidance_scale)
    steps = request.num_inference_steps or tier.num_inference_steps
    return Choices(choose_shape(spec, request, source_width, source_height, fps), fps, steps,
                   guidance)


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
    else:
        asked_w, asked_h = native_size(spec.defaults.width * spec.defaults.height,
                                       source_width / source_height, 2)
        width, height = native_size(spec.defaults.width * spec.defaults.height,
                                    source_width / source_height, rules.side_multiple)
    if rules.fixed_size is not None:
        width, height = rules.fixed_size
    asked_frames = request.num_frames or (max(1, round(request.duration * fps))
                                          if request.duration else tier.num_frames)
    return Shape(asked_w, asked_h, asked_frames, width, height, rules.frames.snap(asked_frames))


def native_size(area: int, aspect: float, multiple: int) -> tuple[int, int]:
    """Sides with this aspect ratio whose product is close to `area`, in multiples."""
    width, height = math.sqrt(area * aspect), math.sqrt(area / aspect)
    return (max(multiple, round(width / multiple) * multiple),
            max(multiple, round(height / multiple) * multiple))


@dataclass(frozen=True)
class DiffusionJob:
    """Everything a family module passes to its pipeline, already validated and snapped."""

    image: Image.Image  # the photo cropped and resized to width x height
    prompt: str
    negative_prompt: str
    width: int
    height: int
    num_frames: int
    num_inference_steps: int
    guidance_scale: float
    fps: int
    decode_chunk: int
    options: dict[str, Any]  # the family's own (SVD: motion_bucket_id, noise_aug_strength)
    last_image: Image.Image | None = None  # the frame to end on, fitted like `image`


def fit_image(pixels: np.ndarray, width: int, height: int) -> Image.Image:
    """Centre-crop the photo to the output's aspect ratio, then resize it to width x height."""
    src_h, src_w = pixels.shape[:2]
    target = width / height
    if src_w / src_h > target:
        crop_w, crop_h = max(1, round(src_h * target)), src_h
    else:
        crop_w, crop_h = src_w, max(1, round(src_w / target))
    left, top = (src_w - crop_w) // 2, (src_h - crop_h) // 2
    image = Image.fromarray(pixels[top:top + crop_h, left:left + crop_w])
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return image


def to_uint8_frames(video: Any) -> list[np.ndarray]:
    """A pipeline's float output (batch x frames x H x W x 3 in [0, 1]) as uint8 RGB frames."""
    array = np.asarray(video)
    if array.ndim == 5:
        array = array[0]
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"unexpected video shape from the pipeline: {array.shape}")
    frames = np.clip(array * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return [np.ascontiguousarray(f) for f in frames]
