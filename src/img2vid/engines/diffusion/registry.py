"""The named diffusion models: a family, a hub id, a pinned revision and native defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from img2vid.engines.diffusion.cogvideox import CogVideoX
from img2vid.engines.diffusion.family import Family, ShapeRules
from img2vid.engines.diffusion.framepack import FramePack
from img2vid.engines.diffusion.hunyuan15 import HunyuanVideo15
from img2vid.engines.diffusion.i2vgen import I2VGenXL
from img2vid.engines.diffusion.ltx import LTXVideo
from img2vid.engines.diffusion.skyreels import SkyReelsV2, SkyReelsV2DiffusionForcing
from img2vid.engines.diffusion.svd import StableVideoDiffusion
from img2vid.engines.diffusion.wan import Wan

FAMILIES: dict[str, Family] = {f.name: f for f in (
    I2VGenXL(), StableVideoDiffusion(), Wan(), LTXVideo(), CogVideoX(), HunyuanVideo15(),
    FramePack(), SkyReelsV2(), SkyReelsV2DiffusionForcing())}
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
    guidance_scale_2: float | None = None  # the low-noise expert's, on two-expert models


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
    # components from repos of their own: name -> "org/repo" or "org/repo/subfolder" (parts.py)
    components: dict[str, str] = field(default_factory=dict)

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
                "guidance_scale": d.guidance_scale,
                **({"guidance_scale_2": d.guidance_scale_2}
                   if d.guidance_scale_2 is not None else {})}


MODELS_FILE = Path(__file__).with_name("models.yaml")
_KEYS = {"family", "hub_id", "description", "download_gb", "defaults", "params_b", "variant",
         "revision", "side_multiple", "tiers", "last_image", "components"}


def _spec(name: str, entry: dict[str, Any]) -> ModelSpec:
    """One models.yaml entry as a ModelSpec; a typo in a key or a family fails loudly."""
    unknown = set(entry) - _KEYS
    if unknown:
        raise ValueError(f"{MODELS_FILE.name}: {name} has unknown keys {sorted(unknown)}")
    family = FAMILIES[entry["family"]]
    side = entry.get("side_multiple")
    tiers = entry.get("tiers")
    return ModelSpec(
        name=name, family=family, hub_id=entry["hub_id"], description=entry["description"],
        download_gb=float(entry["download_gb"]), defaults=Defaults(**entry["defaults"]),
        params_b=dict(entry.get("params_b", {})), variant=entry.get("variant"),
        revision=entry.get("revision"), last_image=entry.get("last_image"),
        components=dict(entry.get("components", {})),
        rules=ShapeRules(side, family.rules.frames) if side else None,
        tiers={k: Tier(*v) for k, v in tiers.items()} if tiers else None)


def _load_models() -> dict[str, ModelSpec]:
    entries = yaml.safe_load(MODELS_FILE.read_text(encoding="utf-8"))
    # keys starting with x- hold YAML anchors shared by several entries
    return {name: _spec(name, entry) for name, entry in entries.items()
            if not name.startswith("x-")}


MODELS: dict[str, ModelSpec] = _load_models()


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


def second_expert_models() -> list[str]:
    """Registered models with a low-noise expert of their own guidance (guidance_scale_2)."""
    return [s.name for s in MODELS.values() if s.defaults.guidance_scale_2 is not None]


def get_spec(name: str) -> ModelSpec | None:
    return MODELS.get(name.lower())


def family_of(index: dict[str, Any]) -> Family | None:
    """The family that loads a folder with this model_index.json, if any."""
    return next((f for f in FAMILIES.values() if f.accepts(index)), None)
