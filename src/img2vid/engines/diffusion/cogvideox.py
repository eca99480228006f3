"""CogVideoX 5B image-to-video (CogVideoXImageToVideoPipeline): 49 frames at 720x480."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from img2vid.engines.diffusion.estimate import image_decode, transformer_activations
from img2vid.engines.diffusion.job import DiffusionJob, Shape
from img2vid.engines.diffusion.steps import StepReporter

DENOISER = "transformer"
VAE_TILING = True
CHUNKED_DECODE = False
USE_DYNAMIC_CFG = True  # the guidance schedule THUDM recommends for the I2V model


def estimate(config: Callable[[str], dict[str, Any]], shape: Shape, guidance_scale: float,
             dtype_bytes: int) -> tuple[int, int, int]:
    transformer = config("transformer")
    hidden = int(transformer.get("num_attention_heads", 48)) * int(
        transformer.get("attention_head_dim", 64))
    patch = int(transformer.get("patch_size", 2))
    tokens = ((shape.num_frames - 1) // 4 + 1) * (shape.height // (8 * patch)) * (
        shape.width // (8 * patch))
    batch = 2 if guidance_scale > 1 else 1
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
        num_inference_steps=job.num_inference_steps,
        guidance_scale=job.guidance_scale,
        use_dynamic_cfg=USE_DYNAMIC_CFG,
        generator=generator,
        # the learned positional table covers exactly this many text tokens (226 on the 5B)
        max_sequence_length=pipe.transformer.config.max_text_seq_length,
        output_type="np",
        callback_on_step_end=steps.on_step_end,
    )
    return output.frames
