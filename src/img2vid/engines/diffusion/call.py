"""One pipeline call's resolved arguments, as the families receive them, and the photo fitted to them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image


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


@dataclass(frozen=True)
class DiffusionCall:
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
    # frames per window where the pipeline chains windows itself (SkyReels-V2 DF); None: one
    window_frames: int | None = None
    guidance_scale_2: float | None = None  # the low-noise expert's (Wan 2.2 A14B)


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
