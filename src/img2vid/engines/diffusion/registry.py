"""The named diffusion models: a family, a hub id, a pinned revision and native defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from img2vid.engines.diffusion.cogvideox import CogVideoX
from img2vid.engines.diffusion.family import Family, ShapeRules
from img2vid.engines.diffusion.i2vgen import I2VGenXL
from img2vid.engines.diffusion.ltx import LTXVideo
from img2vid.engines.diffusion.ltx2 import LTX2
from img2vid.engines.diffusion.ltx_condition import LTXCondition, LTXConditionDistilled
from img2vid.engines.diffusion.svd import StableVideoDiffusion
from img2vid.engines.diffusion.wan import Wan

FAMILIES: dict[str, Family] = {f.name: f for f in (
    I2VGenXL(), StableVideoDiffusion(), Wan(), LTXVideo(), CogVideoX(), LTXCondition(),
    LTXConditionDistilled(), LTX2())}
TIERS = ("preview", "standard", "high", "max")


@dataclass(frozen=True)
class Defaults:
    """What a model runs at when the request leaves a value unset (its authors' settings)."""

    width: int  # landscape; a photo's aspect keeps the area close to width x height
    height: int
    num_frames: int
    fps: int  # the frame rate its motion is made for
    num_inference_steps: int
    guidance_scale: float


@dataclass(frozen=True)
class Tier:
    """One preset on one model: a short side (None: the native area), frames and steps."""

    short_side: int | None
    num_frames: int
    num_inference_steps: int


@dataclass(frozen=True)
class ModelSpec:
    """A registered model (or a local folder, with its family's rules and no defaults).

    `revision` is a full hub commit, set only where one is established from a reliable source;
    otherwise the commit first downloaded is kept in the revision lock file.
    """

    name: str
    family: Family
    hub_id: str
    defaults: Defaults
    # approximate size of the files `img2vid models download` fetches
    download_gb: float
    description: str
    # billions of parameters per component, from the hub's file sizes: what the planner counts
    # before a model is downloaded (the safetensors headers replace it once it is)
    params_b: dict[str, float] = field(default_factory=dict)
    revision: str | None = None
    variant: str | None = None  # smaller weight files the hub repo offers (fp16)
    rules: ShapeRules | None = None  # where the model differs from its family's
    tiers: dict[str, Tier] | None = None  # an explicit preset table; else derived (tier())
    # ends on a given frame (--last-image): "optional", "required", or None (not trained for it)
    last_image: str | None = None

    @property
    def shape_rules(self) -> ShapeRules:
        return self.rules or self.family.rules

    @property
    def pipeline_class(self) -> str:
        return self.family.pipeline_class

    @property
    def uses_prompt(self) -> bool:
        return self.family.uses_prompt

    def tier(self, preset: str) -> Tier:
        """Presets are quality tiers relative to the model: preview has fewer frames and
        steps, standard is native, high and max add steps (the models here are trained at
        one resolution, so their size stays native)."""
        if self.tiers is not None:
            return self.tiers[preset]
        d, frames = self.defaults, self.shape_rules.frames
        scale = {"preview": 0.5, "standard": 1.0, "high": 1.5, "max": 2.0}[preset]
        num_frames = frames.snap(d.num_frames // 2) if preset == "preview" else d.num_frames
        return Tier(None, num_frames, max(4, round(d.num_inference_steps * scale)))

    def describe_defaults(self) -> dict[str, Any]:
        d = self.defaults
        return {"width": d.width, "height": d.height, "num_frames": d.num_frames, "fps": d.fps,
                "num_inference_steps": d.num_inference_steps,
                "guidance_scale": d.guidance_scale}


# LTX-Video 0.9.7/0.9.8 13B (diffusers' convert_ltx_to_diffusers.py configs): components
LTXV13B_PARAMS = {"transformer": 13.04, "text_encoder": 4.76, "vae": 1.25}
# distilled: 8 steps of their own schedule at guidance 1 whatever the tier (more steps leave it)
LTXV_DISTILLED_TIERS = {"preview": Tier(None, 81, 8), "standard": Tier(None, 161, 8),
                        "high": Tier(None, 161, 8), "max": Tier(None, 161, 8)}

# Wan 2.1's 14B models share their components (billions of parameters per component)
WAN21_14B_PARAMS = {"transformer": 16.4, "text_encoder": 5.7, "image_encoder": 0.632,
                    "vae": 0.127}

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec(
        name="i2vgen-xl", family=FAMILIES["i2vgen"], hub_id="ali-vilab/i2vgen-xl",
        # the seed's table: 16 frames played at 8 fps (2 s), guidance 9
        defaults=Defaults(912, 512, 16, 8, 50, 9.0),
        tiers={"preview": Tier(512, 8, 30), "standard": Tier(512, 16, 50),
               "high": Tier(768, 24, 80), "max": Tier(1024, 32, 100)},
        download_gb=5.0, variant="fp16",
        params_b={"unet": 1.42, "text_encoder": 0.354, "image_encoder": 0.632, "vae": 0.084},
        description="I2VGen-XL (Alibaba): prompt + negative prompt, 16 frames"),
    ModelSpec(
        name="svd-xt", family=FAMILIES["svd"],
        hub_id="stabilityai/stable-video-diffusion-img2vid-xt",
        defaults=Defaults(1024, 576, 25, 7, 25, 3.0), download_gb=4.5, variant="fp16",
        params_b={"unet": 1.52, "image_encoder": 0.632, "vae": 0.098},
        description="Stable Video Diffusion XT: no prompt; motion_bucket_id, noise_aug_strength"),
    ModelSpec(
        name="wan2.2-ti2v-5b", family=FAMILIES["wan"], hub_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
        # its VAE downsamples 16x and the transformer patches 2x2: sides multiple of 32
        rules=ShapeRules(32, FAMILIES["wan"].rules.frames),
        defaults=Defaults(1280, 704, 121, 24, 50, 5.0), download_gb=34.0,
        params_b={"transformer": 5.0, "text_encoder": 5.7, "vae": 0.705},
        description="Wan 2.2 TI2V 5B: text+image to video, 720p, 24 fps"),
    ModelSpec(
        name="wan2.1-i2v-14b-480p", family=FAMILIES["wan"],
        hub_id="Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
        defaults=Defaults(832, 480, 81, 16, 50, 5.0), download_gb=82.0,
        params_b=WAN21_14B_PARAMS,
        description="Wan 2.1 I2V 14B at 480p, 16 fps"),
    ModelSpec(
        name="wan2.1-flf2v-14b-720p", family=FAMILIES["wan"],
        hub_id="Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers",
        # diffusers' Wan docs run it at 1280x720 area, 81 frames, guidance 5.5, 16 fps
        defaults=Defaults(1280, 720, 81, 16, 50, 5.5), download_gb=82.0,
        last_image="required",
        params_b=WAN21_14B_PARAMS,
        description="Wan 2.1 FLF2V 14B 720p: first and last frame (--last-image) to video"),
    ModelSpec(
        name="wan2.2-i2v-a14b", family=FAMILIES["wan"],
        hub_id="Wan-AI/Wan2.2-I2V-A14B-Diffusers",
        # two 14B experts (transformer: high noise, transformer_2: low noise, switched at
        # boundary_ratio 0.9); the authors' settings: 40 steps, guidance 3.5 on both
        defaults=Defaults(832, 480, 81, 16, 40, 3.5), download_gb=126.0,
        last_image="optional",
        params_b={"transformer": 14.3, "transformer_2": 14.3, "text_encoder": 5.7,
                  "vae": 0.127},
        description="Wan 2.2 I2V A14B: two experts, 480p/720p, 16 fps, optional end frame"),
    ModelSpec(
        name="ltx-video", family=FAMILIES["ltx"], hub_id="Lightricks/LTX-Video",
        defaults=Defaults(704, 480, 161, 24, 50, 3.0), download_gb=28.0,
        params_b={"transformer": 1.92, "text_encoder": 4.76, "vae": 0.42},
        description="LTX-Video (Lightricks) image-to-video, fast, 24 fps"),
    # diffusers' LTX-Video docs: 0.9.7 at 1152x768 (their expected size), 161 frames, 24 fps;
    # dev 30 steps at guidance 5, distilled 8 steps at guidance 1; 0.9.8 distilled at 832x480
    ModelSpec(
        name="ltx-video-0.9.7-dev", family=FAMILIES["ltx-condition"],
        hub_id="Lightricks/LTX-Video-0.9.7-dev",
        defaults=Defaults(1152, 768, 161, 24, 30, 5.0), download_gb=47.0, last_image="optional",
        params_b=LTXV13B_PARAMS,
        description="LTX-Video 0.9.7 13B dev: condition pipeline, optional end frame, 24 fps"),
    ModelSpec(
        name="ltx-video-0.9.7-distilled", family=FAMILIES["ltx-condition-distilled"],
        hub_id="Lightricks/LTX-Video-0.9.7-distilled",
        defaults=Defaults(1152, 768, 161, 24, 8, 1.0), download_gb=47.0, last_image="optional",
        tiers=LTXV_DISTILLED_TIERS, params_b=LTXV13B_PARAMS,
        description="LTX-Video 0.9.7 13B distilled: 8 steps, optional end frame, 24 fps"),
    ModelSpec(
        name="ltx-video-0.9.8-distilled", family=FAMILIES["ltx-condition-distilled"],
        hub_id="Lightricks/LTX-Video-0.9.8-13B-distilled",
        defaults=Defaults(832, 480, 161, 24, 8, 1.0), download_gb=47.0, last_image="optional",
        tiers=LTXV_DISTILLED_TIERS, params_b=LTXV13B_PARAMS,
        description="LTX-Video 0.9.8 13B distilled: 8 steps, long videos, optional end frame"),
    ModelSpec(
        # the pipeline's example: 768x512, 121 frames at 24 fps, 30 steps, guidance 3; the
        # sizes: diffusers' convert_ltx2_to_diffusers.py configs and Gemma 3 12B
        name="ltx-2", family=FAMILIES["ltx2"], hub_id="Lightricks/LTX-2",
        defaults=Defaults(768, 512, 121, 24, 30, 3.0), download_gb=69.0,
        params_b={"transformer": 18.88, "text_encoder": 12.19, "connectors": 1.43,
                  "vae": 1.22, "audio_vae": 0.053, "vocoder": 0.056},
        description="LTX-2 (Lightricks): video with its sound (AAC in the MP4), 24 fps"),
    ModelSpec(
        name="cogvideox-5b-i2v", family=FAMILIES["cogvideox"], hub_id="zai-org/CogVideoX-5b-I2V",
        defaults=Defaults(720, 480, 49, 8, 50, 6.0), download_gb=22.0,
        params_b={"transformer": 5.6, "text_encoder": 4.76, "vae": 0.216},
        description="CogVideoX 5B I2V: 49 frames at 720x480, 8 fps"),
)}


def preset_table(preset: str) -> dict[str, dict[str, Any]]:
    """What a preset means on each registered model (the API's presets and the README)."""
    table = {}
    for spec in MODELS.values():
        tier, d = spec.tier(preset), spec.defaults
        size = ({"resolution": tier.short_side} if tier.short_side
                else {"width": d.width, "height": d.height})
        table[spec.name] = {**size, "num_frames": tier.num_frames,
                            "num_inference_steps": tier.num_inference_steps,
                            "guidance_scale": d.guidance_scale, "fps": d.fps}
    return table


def last_image_models() -> list[str]:
    """Registered models that can end on a given frame (named when another one refuses)."""
    return [spec.name for spec in MODELS.values() if spec.last_image]


def get_spec(name: str) -> ModelSpec | None:
    return MODELS.get(name.lower())


def family_of(index: dict[str, Any]) -> Family | None:
    """The family that loads a folder with this model_index.json, if any."""
    return next((f for f in FAMILIES.values() if f.accepts(index)), None)
