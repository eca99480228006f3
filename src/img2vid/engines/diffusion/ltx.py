"""LTX-Video image-to-video (LTXImageToVideoPipeline): frames 8k+1, sides multiple of 32."""

from __future__ import annotations

from typing import Any

from img2vid.engines.diffusion.call import DiffusionCall, Shape
from img2vid.engines.diffusion.estimate import image_decode, transformer_activations
from img2vid.engines.diffusion.family import ConfigReader, Family, FrameRule, ShapeRules

# Lightricks' recommended decode settings for VAEs with timestep conditioning (0.9.1+);
# VAEs without it ignore them.
DECODE_TIMESTEP = 0.03
DECODE_NOISE_SCALE = 0.025


class LTXVideo(Family):
    name = "ltx"
    pipeline_class = "LTXImageToVideoPipeline"
    index_classes = ("LTXImageToVideoPipeline", "LTXPipeline")  # the hub repo names LTXPipeline
    rules = ShapeRules(side_multiple=32, frames=FrameRule(step=8, offset=1, minimum=9))
    block_modules = {"text_encoder": ["encoder"]}

    def estimate(self, config: ConfigReader, shape: Shape, guidance_scale: float,
                 dtype_bytes: int) -> tuple[int, int, int]:
        transformer = config("transformer")
        hidden = int(transformer.get("num_attention_heads", 32)) * int(
            transformer.get("attention_head_dim", 64))
        tokens = ((shape.num_frames - 1) // 8 + 1) * (shape.height // 32) * (shape.width // 32)
        batch = 2 if guidance_scale > 1 else 1  # conditional and unconditional passes batched
        acts = transformer_activations(tokens, hidden, 4 * hidden, batch, dtype_bytes)
        full, tiled = image_decode(shape.width, shape.height, 128, dtype_bytes)
        return acts, full, tiled

    def arguments(self, pipe: Any, call: DiffusionCall, base: dict[str, Any]) -> dict[str, Any]:
        return {**base, "frame_rate": call.fps, "decode_timestep": DECODE_TIMESTEP,
                "decode_noise_scale": DECODE_NOISE_SCALE}
