"""LTX-Video image-to-video (LTXImageToVideoPipeline): frames 8k+1, sides multiple of 32."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from img2vid.engines.diffusion.estimate import image_decode, transformer_activations
from img2vid.engines.diffusion.job import DiffusionJob, Shape
from img2vid.engines.diffusion.steps import StepReporter

DENOISER = "transformer"
VAE_TILING = True
CHUNKED_DECODE = False
# Lightricks' recommended decode settings for VAEs with timestep conditioning (0.9.1+);
# VAEs without it ignore them.
DECODE_TIMESTEP = 0.03
DECODE_NOISE_SCALE = 0.025


def estimate(config: Callable[[str], dict[str, Any]], shape: Shape, guidance_scale: float,
             dtype_bytes: int) -> tuple[int, int, int]:
    transformer = config("transformer")
    hidden = int(transformer.get("num_attention_heads", 32)) * int(
        transformer.get("attention_head_dim", 64))
    tokens = ((shape.num_frames - 1) // 8 + 1) * (shape.height // 32) * (shape.width // 32)
    batch = 2 if guidance_scale > 1 else 1  # conditional and unconditional passes batched
    acts = transformer_activations(tokens, hidden, 4 * hidden, batch, dtype_bytes)
    full, tiled = image_decode(shape.width, shape.height, 128, dtype_bytes)
    return acts, full, tiled


def run(pipe: Any, job: DiffusionJob, generator: Any, steps: StepReporter) -> Any:
    output = pipe(
        image=job.image,
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        height=job.height,
        width=job.width,
        num_frames=job.num_frames,
        frame_rate=job.fps,
        num_inference_steps=job.num_inference_steps,
        guidance_scale=job.guidance_scale,
        generator=generator,
        decode_timestep=DECODE_TIMESTEP,
        decode_noise_scale=DECODE_NOISE_SCALE,
        output_type="np",
        callback_on_step_end=steps.on_step_end,
    )
    return output.frames
