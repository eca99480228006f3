"""Stable Video Diffusion (XT): photo -> clip, no text; motion strength and noise augmentation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from img2vid.engines.diffusion.estimate import image_decode, unet_activations
from img2vid.engines.diffusion.job import DiffusionJob, Shape
from img2vid.engines.diffusion.steps import StepReporter

DENOISER = "unet"
VAE_TILING = False  # the temporal decoder has no tiled path; decoding is chunked by frames
CHUNKED_DECODE = True
MIN_GUIDANCE_SCALE = 1.0  # guidance ramps from this on the first frame to guidance_scale


def estimate(config: Callable[[str], dict[str, Any]], shape: Shape, guidance_scale: float,
             dtype_bytes: int) -> tuple[int, int, int]:
    vae = config("vae")
    scale = 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)
    base = config("unet").get("block_out_channels", [320])[0]
    batch = 2 if guidance_scale > 1 else 1
    acts = unet_activations(shape.width, shape.height, shape.num_frames, scale, base, batch,
                            dtype_bytes)
    # the pipeline upcasts a fp16 VAE to fp32 to decode (force_upcast)
    decode_bytes = 4 if vae.get("force_upcast", True) else dtype_bytes
    # the temporal decoder adds 3D convolutions over the chunk: count it as 1.5x an image VAE
    full, _ = image_decode(shape.width, shape.height, vae.get("block_out_channels", [128])[0],
                           decode_bytes)
    return acts, int(full * 1.5), int(full * 1.5)


def run(pipe: Any, job: DiffusionJob, generator: Any, steps: StepReporter) -> Any:
    output = pipe(
        image=job.image,
        height=job.height,
        width=job.width,
        num_frames=job.num_frames,
        num_inference_steps=job.num_inference_steps,
        min_guidance_scale=MIN_GUIDANCE_SCALE,
        max_guidance_scale=job.guidance_scale,
        fps=job.fps,
        motion_bucket_id=job.motion_bucket_id,
        noise_aug_strength=job.noise_aug_strength,
        decode_chunk_size=job.decode_chunk,
        generator=generator,
        output_type="np",
        callback_on_step_end=steps.on_step_end,
    )
    return output.frames
