"""FramePack (HunyuanVideoFramepackPipeline): long videos on small GPUs, section by section.

FramePack generates a video in sections of `latent_window_size` latent frames, each conditioned
on the photo and a compressed history of what is already made, so memory stays that of one
section however long the video is. It is its own long-video sampler: a long --duration is one
call with more sections, never our generic window chaining. Its default sampling
("inverted anti-drifting") makes the sections from the end backwards, anchored on the photo,
and can anchor the end on a last image (--last-image) too.

Its weights are three repos (parts.py): the FramePack transformer, the HunyuanVideo text
encoders, tokenizers, VAE and scheduler, and FLUX Redux's SigLIP image encoder.
"""

from __future__ import annotations

from typing import Any

from img2vid.engines.diffusion.call import DiffusionCall, Shape
from img2vid.engines.diffusion.estimate import image_decode, transformer_activations
from img2vid.engines.diffusion.family import ConfigReader, Family, FrameRule, ShapeRules

# Latent frames per section: the released checkpoints' setting (the FramePack demo says it
# "should not change"). A section adds 4 x 9 = 36 frames: a video is 36k + 1 frames long.
LATENT_WINDOW = 9
TEMPORAL = 4  # HunyuanVideo's VAE: 4 frames per latent frame
SECTION_FRAMES = LATENT_WINDOW * TEMPORAL
# history latents each section also attends to: 1x (2 frames incl. the photo), 2x (2), 4x (16)
HISTORY_TOKENS = 2 + 2 / 4 + 16 / 16


def sections(num_frames: int) -> int:
    return max(1, (num_frames - 1) // SECTION_FRAMES)


class FramePack(Family):
    name = "framepack"
    pipeline_class = "HunyuanVideoFramepackPipeline"
    index_classes = ("HunyuanVideoFramepackPipeline",)
    rules = ShapeRules(side_multiple=16, frames=FrameRule(
        step=SECTION_FRAMES, offset=1, minimum=SECTION_FRAMES + 1))
    long_video = True
    no_leaf_offload = ("image_encoder",)  # SigLIP (family.py)
    part_classes = {
        "transformer": ("diffusers", "HunyuanVideoFramepackTransformer3DModel"),
        "image_encoder": ("transformers", "SiglipVisionModel"),
        "feature_extractor": ("transformers", "SiglipImageProcessor"),
    }
    base_components = ("scheduler", "text_encoder", "text_encoder_2", "tokenizer",
                       "tokenizer_2", "vae")
    sampling_type = "inverted_anti_drifting"  # FramePack F1 samples "vanilla" (no end frame)

    def dtypes(self, device_kind: str, bf16: bool = True) -> dict[str, str]:
        # diffusers' FramePack docs: the transformer in bfloat16 (its release precision), the
        # rest (HunyuanVideo's text encoders and VAE, the SigLIP encoder) in float16
        dtypes = super().dtypes(device_kind, bf16)
        if device_kind == "cuda" and bf16:
            return {**dtypes, "default": "float16", "transformer": "bfloat16"}
        return dtypes

    def last_image_mode(self, index: dict[str, Any], config: ConfigReader) -> str | None:
        return "optional" if self.sampling_type == "inverted_anti_drifting" else None

    def denoise_steps(self, call: DiffusionCall) -> int:
        return call.num_inference_steps * sections(call.num_frames)

    def arguments(self, pipe: Any, call: DiffusionCall, base: dict[str, Any]) -> dict[str, Any]:
        # the pipeline makes ceil(num_frames / 33) sections of 36 frames (+ the photo): ask
        # for exactly the sections that give the job's 36k + 1 frames
        window = (LATENT_WINDOW - 1) * TEMPORAL + 1
        arguments = {**base, "num_frames": sections(call.num_frames) * window,
                     "latent_window_size": LATENT_WINDOW, "sampling_type": self.sampling_type}
        if call.last_image is not None:
            arguments["last_image"] = call.last_image
        return arguments

    def preview_frames(self, pipe: Any, call: DiffusionCall, latents: Any) -> Any:
        return latents[0].permute(1, 0, 2, 3)  # the section's B x C x F x h x w

    def preview_encode(self, pipe: Any, pixels: Any) -> Any:
        vae = pipe.vae
        param = next(vae.parameters())
        z = vae.encode(pixels[:, :, None].to(param.device, param.dtype)).latent_dist.mean
        return (z.float().cpu() * vae.config.scaling_factor)[0, :, 0]

    def estimate(self, config: ConfigReader, shape: Shape, guidance_scale: float,
                 dtype_bytes: int) -> tuple[int, int, int]:
        vae, transformer = config("vae"), config("transformer")
        cell = int(vae.get("spatial_compression_ratio", 8)) * int(
            transformer.get("patch_size", 2))
        # one section at a time, whatever the video's length: that is FramePack's point
        per_frame = (shape.height // cell) * (shape.width // cell)
        tokens = int((LATENT_WINDOW + HISTORY_TOKENS) * per_frame) + 256  # + prompt tokens
        hidden = int(transformer.get("num_attention_heads", 24)) * int(
            transformer.get("attention_head_dim", 128))
        acts = transformer_activations(tokens, hidden, 4 * hidden, 1, dtype_bytes)
        channels = int(vae.get("block_out_channels", [128])[0])
        full, tiled = image_decode(shape.width, shape.height, channels, dtype_bytes)
        # each section decodes up to 2 windows (73 frames) at once, and the decoded video so
        # far stays in memory as float32 pixels until the end
        share = min(1.0, (2 * SECTION_FRAMES + 1) / shape.num_frames)
        pixels = shape.width * shape.height * 3 * 4
        return acts, int(full * share) + pixels, int(tiled * share) + pixels
