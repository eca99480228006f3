"""Stable Video Diffusion (XT): photo -> clip, no text; motion strength and noise augmentation."""

from __future__ import annotations

from typing import Any

from img2vid.core.request import GenerationRequest
from img2vid.engines.diffusion.call import DiffusionCall, Shape
from img2vid.engines.diffusion.estimate import image_decode, unet_activations
from img2vid.engines.diffusion.family import (
    ConfigReader,
    UNetFamily,
    vae_scale,
)

MIN_GUIDANCE_SCALE = 1.0  # guidance ramps from this on the first frame to guidance_scale
MOTION_BUCKET_ID = 127  # the pipeline's defaults
NOISE_AUG_STRENGTH = 0.02


class StableVideoDiffusion(UNetFamily):
    name = "svd"
    pipeline_class = "StableVideoDiffusionPipeline"
    index_classes = ("StableVideoDiffusionPipeline",)
    vae_tiling = False  # the temporal decoder has no tiled path; decoding is chunked by frames
    uses_prompt = False
    options = ("motion_bucket_id", "noise_aug_strength")

    def estimate(self, config: ConfigReader, shape: Shape, guidance_scale: float,
                 dtype_bytes: int) -> tuple[int, int, int]:
        vae = config("vae")
        base = config("unet").get("block_out_channels", [320])[0]
        batch = 2 if guidance_scale > 1 else 1
        acts = unet_activations(shape.width, shape.height, shape.num_frames, vae_scale(config),
                                base, batch, dtype_bytes)
        # the pipeline upcasts a fp16 VAE to fp32 to decode (force_upcast)
        decode_bytes = 4 if vae.get("force_upcast", True) else dtype_bytes
        # the temporal decoder adds 3D convolutions over the chunk: count it as 1.5x an image VAE
        full, _ = image_decode(shape.width, shape.height,
                               vae.get("block_out_channels", [128])[0], decode_bytes)
        return acts, int(full * 1.5), int(full * 1.5)

    def job_options(self, request: GenerationRequest) -> dict[str, Any]:
        return {"motion_bucket_id": (MOTION_BUCKET_ID if request.motion_bucket_id is None
                                     else request.motion_bucket_id),
                "noise_aug_strength": (NOISE_AUG_STRENGTH if request.noise_aug_strength is None
                                       else request.noise_aug_strength)}

    def arguments(self, pipe: Any, call: DiffusionCall, base: dict[str, Any]) -> dict[str, Any]:
        for name in ("prompt", "negative_prompt", "guidance_scale"):
            del base[name]
        return {**base, **call.options, "min_guidance_scale": MIN_GUIDANCE_SCALE,
                "max_guidance_scale": call.guidance_scale, "fps": call.fps,
                "decode_chunk_size": call.decode_chunk}
