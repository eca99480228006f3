"""HunyuanVideo-1.5 image-to-video (HunyuanVideo15ImageToVideoPipeline): resolution buckets,
frames 4k+1, Qwen2.5-VL + ByT5 text, SigLIP image tokens, guidance through a guider component.

How its call differs: it takes no height, width or guidance_scale. The size is a bucket of the
transformer's `target_size` picked from the photo's aspect ratio (so the job's size is snapped
to that same bucket beforehand, and the photo arrives at exactly that size), and classifier-free
guidance is the `guider` component's scale. It has no step callback either.
"""

from __future__ import annotations

from typing import Any

from img2vid.engines.diffusion.call import DiffusionCall, Shape
from img2vid.engines.diffusion.estimate import image_decode, transformer_activations
from img2vid.engines.diffusion.family import (
    ConfigReader,
    Family,
    FrameRule,
    ShapeRules,
    shared_arguments,
)
from img2vid.engines.diffusion.steps import StepReporter

TARGET_SIZE = 640  # the 480p transformers' target_size (720p: 960)
CELL = 16  # the VAE's spatial factor; the transformer patches 1x1
TEXT_TOKENS = 1000 + 256  # Qwen2.5-VL prompt tokens + ByT5 glyph tokens the pipeline pads to
IMAGE_TOKENS = 729  # SigLIP so400m at 384 px: 27 x 27 patches


def buckets(target_size: int, patch: int) -> tuple[tuple[int, int], ...]:
    """(width, height) buckets of about target_size^2 pixels, aspect at most 4:1, in diffusers'
    order (hunyuan_video1_5 image_processor.generate_crop_size_list, whose pairs are h, w)."""
    patches = round((target_size / patch) ** 2)
    sizes = []
    hp, wp = patches, 1
    while hp > 0:
        if max(hp, wp) / min(hp, wp) <= 4.0:
            sizes.append((wp * patch, hp * patch))
        if (wp + 1) * hp <= patches:
            wp += 1
        else:
            hp -= 1
    return tuple(sizes)


class HunyuanVideo15(Family):
    name = "hunyuan15"
    pipeline_class = "HunyuanVideo15ImageToVideoPipeline"
    index_classes = ("HunyuanVideo15ImageToVideoPipeline",)
    text_to_video = ("HunyuanVideo15Pipeline",)
    rules = ShapeRules(side_multiple=CELL, frames=FrameRule(step=4, offset=1, minimum=5),
                       sizes=buckets(TARGET_SIZE, CELL))
    # the community card and diffusers' docs run it in bfloat16 with VAE tiling
    cuda_dtype = "bfloat16"
    block_modules = {"text_encoder_2": ["encoder"]}  # ByT5: a T5 encoder
    no_leaf_offload = ("image_encoder",)  # SigLIP (family.py)

    def shape_rules(self, config: ConfigReader) -> ShapeRules:
        target = int(config("transformer").get("target_size", TARGET_SIZE))
        cell = int(config("vae").get("spatial_compression_ratio", CELL))
        return ShapeRules(cell, self.rules.frames, sizes=buckets(target, cell))

    def run(self, pipe: Any, call: DiffusionCall, generator: Any, steps: StepReporter) -> Any:
        # guidance is a component: set per job, as the cached pipeline serves the next job too
        pipe.guider = pipe.guider.new(guidance_scale=call.guidance_scale)
        arguments = shared_arguments(call, generator, None)
        for name in ("height", "width", "guidance_scale"):  # not in its call (see above)
            del arguments[name]
        # no step callback: the scheduler hook reports progress and cancels instead
        with steps.scheduler_hook(pipe.scheduler):
            return pipe(**arguments).frames

    def estimate(self, config: ConfigReader, shape: Shape, guidance_scale: float,
                 dtype_bytes: int) -> tuple[int, int, int]:
        vae, transformer = config("vae"), config("transformer")
        cell = int(vae.get("spatial_compression_ratio", CELL))
        temporal = int(vae.get("temporal_compression_ratio", 4))
        latent_frames = (shape.num_frames - 1) // temporal + 1
        tokens = latent_frames * (shape.height // cell) * (shape.width // cell)
        tokens += TEXT_TOKENS + IMAGE_TOKENS
        hidden = int(transformer.get("num_attention_heads", 16)) * int(
            transformer.get("attention_head_dim", 128))
        ffn = int(hidden * float(transformer.get("mlp_ratio", 4.0)))
        # the guider runs the conditional and unconditional passes one after the other
        acts = transformer_activations(tokens, hidden, ffn, 1, dtype_bytes)
        channels = int(vae.get("block_out_channels", [128])[0])
        full, tiled = image_decode(shape.width, shape.height, channels, dtype_bytes)
        # one call decodes the whole clip; causal convolutions keep a few frames' features
        share = temporal / shape.num_frames
        return acts, int(full * share), int(tiled * share)
