"""Wan 2.x image-to-video (WanImageToVideoPipeline): frames 4k+1, prompt + negative prompt."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from img2vid.engines.diffusion.estimate import image_decode, transformer_activations
from img2vid.engines.diffusion.job import DiffusionJob, Shape
from img2vid.engines.diffusion.steps import StepReporter

DENOISER = "transformer"
VAE_TILING = True
CHUNKED_DECODE = False  # the causal VAE decodes the whole clip in one call, 4 frames at a time


def estimate(config: Callable[[str], dict[str, Any]], shape: Shape, guidance_scale: float,
             dtype_bytes: int) -> tuple[int, int, int]:
    vae, transformer = config("vae"), config("transformer")
    spatial = int(vae.get("scale_factor_spatial", 8))
    temporal = int(vae.get("scale_factor_temporal", 4))
    patch = transformer.get("patch_size", [1, 2, 2])
    cell = spatial * int(patch[-1])
    latent_frames = (shape.num_frames - 1) // temporal + 1
    tokens = latent_frames * (shape.height // cell) * (shape.width // cell)
    hidden = int(transformer.get("num_attention_heads", 40)) * int(
        transformer.get("attention_head_dim", 128))
    ffn = int(transformer.get("ffn_dim", 4 * hidden))
    # the pipeline runs the conditional and unconditional passes one after the other: batch 1
    acts = transformer_activations(tokens, hidden, ffn, 1, dtype_bytes)
    full, tiled = image_decode(shape.width, shape.height, int(vae.get("base_dim", 96)),
                               dtype_bytes)
    # one call decodes everything but only `temporal` frames' features are alive at once
    share = temporal / shape.num_frames
    return acts, int(full * share), int(tiled * share)


def run(pipe: Any, job: DiffusionJob, generator: Any, steps: StepReporter) -> Any:
    output = pipe(
        image=job.image,
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        height=job.height,
        width=job.width,
        num_frames=job.num_frames,
        num_inference_steps=job.num_inference_steps,
        guidance_scale=job.guidance_scale,
        generator=generator,
        output_type="np",
        callback_on_step_end=steps.on_step_end,
    )
    return output.frames
