"""Wan 2.x image-to-video (WanImageToVideoPipeline): frames 4k+1, UMT5 text, float32 VAE."""

from __future__ import annotations

from typing import Any

from img2vid.engines.diffusion.call import DiffusionCall, Shape
from img2vid.engines.diffusion.estimate import image_decode, transformer_activations
from img2vid.engines.diffusion.family import ConfigReader, Family, FrameRule, ShapeRules


class Wan(Family):
    name = "wan"
    pipeline_class = "WanImageToVideoPipeline"
    # Wan 2.2 TI2V ships as a WanPipeline with expand_timesteps (see accepts)
    index_classes = ("WanImageToVideoPipeline", "WanPipeline")
    text_to_video = ("WanPipeline",)  # without expand_timesteps
    rules = ShapeRules(side_multiple=16, frames=FrameRule(step=4, offset=1, minimum=5))
    # diffusers' Wan docs load the VAE and Wan 2.1's CLIP image encoder in float32
    # "for better decoding quality"
    float32_components = ("vae", "image_encoder")
    block_modules = {"text_encoder": ["encoder"]}

    def accepts(self, index: dict[str, Any]) -> bool:
        name = index.get("_class_name")
        return name == "WanImageToVideoPipeline" or (
            name == "WanPipeline" and bool(index.get("expand_timesteps")))

    def last_image_mode(self, index: dict[str, Any], config: ConfigReader) -> str | None:
        # Wan 2.1 FLF2V has a positional embedding for exactly two CLIP images
        # (pos_embed_seq_len): it cannot run without the last one. Wan 2.2 A14B (two experts,
        # boundary_ratio) takes one optionally. The 2.1 I2V and 2.2 TI2V models were not
        # trained for it.
        if config("transformer").get("pos_embed_seq_len") is not None:
            return "required"
        return "optional" if index.get("boundary_ratio") is not None else None

    def arguments(self, pipe: Any, call: DiffusionCall, base: dict[str, Any]) -> dict[str, Any]:
        if call.guidance_scale_2 is not None:  # two experts: the low-noise one's guidance
            base = {**base, "guidance_scale_2": call.guidance_scale_2}
        if call.last_image is None:
            return base
        return {**base, "last_image": call.last_image}

    def preview_frames(self, pipe: Any, call: DiffusionCall, latents: Any) -> Any:
        return latents[0].permute(1, 0, 2, 3)  # B x C x F x h x w

    def preview_encode(self, pipe: Any, pixels: Any) -> Any:
        import torch

        vae = pipe.vae
        param = next(vae.parameters())
        z = vae.encode(pixels[:, :, None].to(param.device, param.dtype)).latent_dist.mean
        # the pipelines' normalisation: (z - latents_mean) / latents_std
        channels = z.shape[1]
        mean = torch.tensor(vae.config.latents_mean).view(1, channels, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std).view(1, channels, 1, 1, 1)
        return ((z.float().cpu() - mean) / std)[0, :, 0]

    def shape_rules(self, config: ConfigReader) -> ShapeRules:
        # the VAE's spatial factor times the transformer's patch: 16 on 2.1, 32 on 2.2 5B
        patch = config("transformer").get("patch_size", [1, 2, 2])
        side = int(config("vae").get("scale_factor_spatial", 8)) * int(patch[-1])
        return ShapeRules(side, self.rules.frames)

    def estimate(self, config: ConfigReader, shape: Shape, guidance_scale: float,
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
        # the pipeline runs the conditional and unconditional passes one after the other
        acts = transformer_activations(tokens, hidden, ffn, 1, dtype_bytes)
        # the VAE decodes in float32 (float32_components)
        full, tiled = image_decode(shape.width, shape.height, int(vae.get("base_dim", 96)), 4)
        # one call decodes everything but only `temporal` frames' features are alive at once
        share = temporal / shape.num_frames
        return acts, int(full * share), int(tiled * share)
