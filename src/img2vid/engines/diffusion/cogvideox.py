"""CogVideoX 5B image-to-video (CogVideoXImageToVideoPipeline): 49 frames at 720x480."""

from __future__ import annotations

from typing import Any

from img2vid.engines.diffusion.call import DiffusionCall, Shape
from img2vid.engines.diffusion.estimate import image_decode, transformer_activations
from img2vid.engines.diffusion.family import (
    ConfigReader,
    Family,
    FrameRule,
    ShapeRules,
    vae_scale,
)


class CogVideoX(Family):
    name = "cogvideox"
    pipeline_class = "CogVideoXImageToVideoPipeline"
    index_classes = ("CogVideoXImageToVideoPipeline",)
    text_to_video = ("CogVideoXPipeline",)
    rules = ShapeRules(side_multiple=16, frames=FrameRule(fixed=49), fixed_size=(720, 480))
    block_modules = {"text_encoder": ["encoder"]}

    def shape_rules(self, config: ConfigReader) -> ShapeRules:
        """The learned positional embeddings pin one size and frame count: read them from the
        transformer config (60x90 latents and 49 frames on the 5B model: 720x480)."""
        transformer = config("transformer")
        if not transformer.get("use_learned_positional_embeddings", True):
            return ShapeRules(self.rules.side_multiple, FrameRule(step=4, offset=1, minimum=5))
        scale = vae_scale(config)
        size = (int(transformer.get("sample_width", 90)) * scale,
                int(transformer.get("sample_height", 60)) * scale)
        return ShapeRules(self.rules.side_multiple,
                          FrameRule(fixed=int(transformer.get("sample_frames", 49))), size)

    def prepare(self, pipe: Any) -> None:
        """The authors run the 5B models with CogVideoXDPMScheduler, trailing timesteps (their
        reference cli_demo swaps it in for the repo's DDIM), and dynamic CFG is for DPM only."""
        from diffusers import CogVideoXDPMScheduler

        if not isinstance(pipe.scheduler, CogVideoXDPMScheduler):
            pipe.scheduler = CogVideoXDPMScheduler.from_config(pipe.scheduler.config,
                                                               timestep_spacing="trailing")

    def estimate(self, config: ConfigReader, shape: Shape, guidance_scale: float,
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

    def arguments(self, pipe: Any, call: DiffusionCall, base: dict[str, Any]) -> dict[str, Any]:
        # the learned positional table covers exactly this many text tokens (226 on the 5B)
        return {**base, "use_dynamic_cfg": True,
                "max_sequence_length": pipe.transformer.config.max_text_seq_length}
