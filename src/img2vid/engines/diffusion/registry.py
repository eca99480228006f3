"""The named diffusion models: hub id, pipeline, family, accepted shapes and defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class FrameRule:
    """Frame counts a model accepts: `step * k + offset` for k >= 1, or one fixed count."""

    step: int = 1
    offset: int = 0
    minimum: int = 2
    fixed: int | None = None

    def snap(self, frames: int) -> int:
        """The accepted count nearest to `frames` (ties go up)."""
        if self.fixed is not None:
            return self.fixed
        k = max(1, math.floor((frames - self.offset) / self.step + 0.5))
        return max(self.minimum, k * self.step + self.offset)

    def describe(self) -> str:
        if self.fixed is not None:
            return f"exactly {self.fixed}"
        if self.step == 1:
            return f"at least {self.minimum}"
        return f"{self.step}k+{self.offset}" if self.offset else f"multiples of {self.step}"


@dataclass(frozen=True)
class ModelSpec:
    """One model the diffusion engine can run.

    `pipeline_class` is the diffusers class used for image-to-video (a repo's model_index may
    name its text-to-video sibling, e.g. LTX-Video's); `variant` picks the smaller weight files
    a hub repo offers (fp16) when downloading.
    """

    name: str
    hub_id: str
    pipeline_class: str
    family: str
    frames: FrameRule
    side_multiple: int
    default_frames: int
    guidance_scale: float
    fps: int  # the frame rate the model was trained to produce
    # approximate size of the files `img2vid models download` fetches; the UNet models' match
    # their parameter counts in fp16 (I2VGen-XL 2.49 B, SVD-XT 2.26 B), the others are estimates
    download_gb: float
    description: str
    fixed_size: tuple[int, int] | None = None  # (width, height) the model only runs at
    variant: str | None = None
    uses_prompt: bool = True


MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec(
        name="i2vgen-xl", hub_id="ali-vilab/i2vgen-xl", pipeline_class="I2VGenXLPipeline",
        family="i2vgen", frames=FrameRule(minimum=2), side_multiple=8, default_frames=16,
        guidance_scale=9.0, fps=8, download_gb=5.0, variant="fp16",
        description="I2VGen-XL (Alibaba): prompt + negative prompt, 16 frames"),
    ModelSpec(
        name="svd-xt", hub_id="stabilityai/stable-video-diffusion-img2vid-xt",
        pipeline_class="StableVideoDiffusionPipeline", family="svd", frames=FrameRule(minimum=2),
        side_multiple=8, default_frames=25, guidance_scale=3.0, fps=7, download_gb=4.5,
        variant="fp16", uses_prompt=False,
        description="Stable Video Diffusion XT: no prompt; motion_bucket_id, noise_aug_strength"),
    ModelSpec(
        name="wan2.2-ti2v-5b", hub_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
        pipeline_class="WanImageToVideoPipeline", family="wan",
        # its VAE downsamples 16x and the transformer patches 2x2: sides multiple of 32
        frames=FrameRule(step=4, offset=1, minimum=5), side_multiple=32, default_frames=121,
        guidance_scale=5.0, fps=24, download_gb=34.0,
        description="Wan 2.2 TI2V 5B: text+image to video, 720p, 24 fps"),
    ModelSpec(
        name="wan2.1-i2v-14b-480p", hub_id="Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
        pipeline_class="WanImageToVideoPipeline", family="wan",
        frames=FrameRule(step=4, offset=1, minimum=5), side_multiple=16, default_frames=81,
        guidance_scale=5.0, fps=16, download_gb=82.0,
        description="Wan 2.1 I2V 14B at 480p, 16 fps"),
    ModelSpec(
        name="ltx-video", hub_id="Lightricks/LTX-Video", pipeline_class="LTXImageToVideoPipeline",
        family="ltx", frames=FrameRule(step=8, offset=1, minimum=9), side_multiple=32,
        default_frames=161, guidance_scale=3.0, fps=24, download_gb=28.0,
        description="LTX-Video (Lightricks) image-to-video, fast, 24 fps"),
    ModelSpec(
        name="cogvideox-5b-i2v", hub_id="THUDM/CogVideoX-5b-I2V",
        pipeline_class="CogVideoXImageToVideoPipeline", family="cogvideox",
        frames=FrameRule(fixed=49), side_multiple=16, default_frames=49, guidance_scale=6.0, fps=8,
        download_gb=22.0, fixed_size=(720, 480),
        description="CogVideoX 5B I2V: 49 frames at 720x480, 8 fps"),
)}

# diffusers pipeline class named in a folder's model_index.json -> family. Text-to-video
# classes map to None: they cannot animate a photo.
PIPELINE_FAMILIES: dict[str, str | None] = {
    "I2VGenXLPipeline": "i2vgen",
    "StableVideoDiffusionPipeline": "svd",
    "WanImageToVideoPipeline": "wan",
    "WanPipeline": "wan",  # Wan 2.2 TI2V ships as WanPipeline with expand_timesteps
    "LTXImageToVideoPipeline": "ltx",
    "LTXPipeline": "ltx",  # Lightricks/LTX-Video's index names the text-to-video class
    "CogVideoXImageToVideoPipeline": "cogvideox",
    "CogVideoXPipeline": None,
}

# family -> the image-to-video class to load a folder with
FAMILY_PIPELINES = {
    "i2vgen": "I2VGenXLPipeline",
    "svd": "StableVideoDiffusionPipeline",
    "wan": "WanImageToVideoPipeline",
    "ltx": "LTXImageToVideoPipeline",
    "cogvideox": "CogVideoXImageToVideoPipeline",
}

# A local folder's spec borrows the rules of its family's reference model.
FAMILY_REFERENCE = {"i2vgen": "i2vgen-xl", "svd": "svd-xt", "wan": "wan2.1-i2v-14b-480p",
                    "ltx": "ltx-video", "cogvideox": "cogvideox-5b-i2v"}


def get_spec(name: str) -> ModelSpec | None:
    return MODELS.get(name.lower())
