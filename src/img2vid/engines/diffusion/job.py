"""One diffusion job's resolved values: sizes and frames snapped to the model, guidance, the photo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from img2vid.core.request import GenerationRequest, output_size
from img2vid.engines.diffusion.registry import ModelSpec

SVD_MOTION_BUCKET_ID = 127
SVD_NOISE_AUG_STRENGTH = 0.02


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
        if (self.width, self.height) != (self.asked_width, self.asked_height):
            rule = (f"only runs at {spec.fixed_size[0]}x{spec.fixed_size[1]}" if spec.fixed_size
                    else f"needs sides that are multiples of {spec.side_multiple}")
            notes.append(f"{spec.name} {rule}: size {self.asked_width}x{self.asked_height} -> "
                         f"{self.width}x{self.height}")
        if self.num_frames != self.asked_frames:
            notes.append(f"{spec.name} takes {spec.frames.describe()} frames: "
                         f"{self.asked_frames} -> {self.num_frames}")
        return notes


def choose_fps(spec: ModelSpec, request: GenerationRequest) -> int:
    """The request's frame rate, else the rate the model's motion is made for (Wan 2.1 makes
    16 fps motion: shown at 8 fps it would play in slow motion)."""
    return int(request.fps) if request.fps is not None else spec.fps


def choose_guidance(spec: ModelSpec, request: GenerationRequest) -> float:
    """The request's guidance scale, else the model's (9 suits I2VGen-XL; SVD, Wan, LTX and
    CogVideoX are tuned for 3-6)."""
    return (float(request.guidance_scale) if request.guidance_scale is not None
            else spec.guidance_scale)


def choose_shape(spec: ModelSpec, request: GenerationRequest, source_width: int,
                 source_height: int, fps: int) -> Shape:
    """Snap the request's size and frames to what the model accepts, keeping the aspect ratio.
    A duration asks for that many seconds at `fps`, the rate the clip will play at."""
    asked_w, asked_h = output_size(request, source_width, source_height)
    if spec.fixed_size is not None:
        width, height = spec.fixed_size
    else:
        width, height = output_size(request, source_width, source_height,
                                    multiple=spec.side_multiple)
    asked_frames = request.num_frames or (max(1, round(request.duration * fps))
                                          if request.duration else spec.default_frames)
    return Shape(asked_w, asked_h, asked_frames, width, height, spec.frames.snap(asked_frames))


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
    motion_bucket_id: int  # SVD only, like the next
    noise_aug_strength: float


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
