"""Live previews: the current latents as a small RGB image, without running the VAE decoder.

Each family says how its step callback's latents are laid out and normalised (a
`LatentPreview` on the family class). The latents are projected linearly to RGB: with the
published factors of the family's latent format (latent_rgb.json, from ComfyUI) when the
model's latents have that format's channel count, otherwise with a projection fitted once
from the model's own VAE (a chart of random colour patches is encoded, normalised into the
space the pipeline denoises in, and least squares maps each latent cell to its patch's colour),
so checkpoints without a published table (CogVideoX, the tests' random ones) get previews too.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from img2vid.engines.diffusion.call import DiffusionCall

log = logging.getLogger(__name__)

PREVIEWS_PER_JOB = 8  # about this many previews over a job's denoising steps
MIN_HEIGHT = 96  # previews smaller than this are upscaled (latent grids are tiny)
TABLES = Path(__file__).with_name("latent_rgb.json")

FramesOf = Callable[[Any, "DiffusionCall", Any], Any]  # (pipe, call, latents) -> F x C x h x w


def preview_every(steps: int) -> int:
    return max(1, math.ceil(steps / PREVIEWS_PER_JOB))


# --- where the frames are in the latents a pipeline hands its step callback (batch item 0) ---

def channels_then_frames(pipe: Any, call: DiffusionCall, latents: Any) -> Any:
    """B x C x F x h x w: Wan, HunyuanVideo, SkyReels-V2."""
    return latents[0].transpose(0, 1)


def frames_then_channels(pipe: Any, call: DiffusionCall, latents: Any) -> Any:
    """B x F x C x h x w: Stable Video Diffusion, CogVideoX."""
    return latents[0]


def frames_in_batch(pipe: Any, call: DiffusionCall, latents: Any) -> Any:
    """(B * F) x C x h x w: I2VGen-XL's scheduler steps on the frames folded into the batch."""
    return latents[: call.num_frames]


def packed_tokens(pipe: Any, call: DiffusionCall, latents: Any) -> Any:
    """B x tokens x (C * patch): LTX-Video denoises the video as a sequence of patch tokens;
    the pipeline's own inverse of its packing restores B x C x F x h x w."""
    spatial = pipe.vae_spatial_compression_ratio
    grid = ((call.num_frames - 1) // pipe.vae_temporal_compression_ratio + 1,
            call.height // spatial, call.width // spatial)
    video = pipe._unpack_latents(latents[:1], *grid, pipe.transformer_spatial_patch_size,
                                 pipe.transformer_temporal_patch_size)
    return video[0].transpose(0, 1)


# --- how a VAE's raw latents become the space the pipeline denoises in (for the fit) ---

def scaled(vae: Any, z: Any) -> Any:
    """z * scaling_factor: the Stable Diffusion VAE (SVD, I2VGen-XL), CogVideoX, HunyuanVideo."""
    return z * float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)


def standardised(vae: Any, z: Any) -> Any:
    """(z - mean) * scaling_factor / std per channel: Wan (statistics in its config) and
    LTX-Video (statistics as buffers on the VAE, scaling_factor 1 on the released models)."""
    import torch

    shape = (1, z.shape[1]) + (1,) * (z.ndim - 2)
    mean = torch.as_tensor(_statistic(vae, "latents_mean"), dtype=torch.float32).view(shape)
    std = torch.as_tensor(_statistic(vae, "latents_std"), dtype=torch.float32).view(shape)
    return (z - mean) * float(getattr(vae.config, "scaling_factor", 1.0) or 1.0) / std


def _statistic(vae: Any, name: str) -> Any:
    value = getattr(vae, name, None)
    if value is None or not hasattr(value, "cpu"):
        return getattr(vae.config, name)
    return value.detach().float().cpu()


@dataclass(frozen=True)
class LatentPreview:
    """How one family's in-loop latents become a preview: one line on the family class."""

    frames: FramesOf  # the step callback's latents as F x C x h x w
    tables: tuple[str, ...] = ()  # published latent formats of its released models
    normalise: Callable[[Any, Any], Any] = scaled  # raw VAE latents -> denoised space
    image_vae: bool = False  # the VAE encodes images (4-D), not videos (5-D)


class PreviewFamily(Protocol):
    """What previews need of a model family (family.Family, which imports this module)."""

    name: str
    preview: LatentPreview | None

    def preview_cell(self, pipe: Any) -> int: ...

    def preview_encode(self, pipe: Any, pixels: Any) -> Any: ...


class Previewer:
    """Turns a family's in-loop latents into a preview image (HxWx3 uint8)."""

    def __init__(self, family: PreviewFamily) -> None:
        self.family = family
        self.projection: Any = None  # (channels + 1) x 3, chosen or fitted on first use
        self.source = ""  # "published <format>" or "fitted from the VAE"
        self.failed = family.preview is None

    def __call__(self, pipe: Any, call: DiffusionCall, latents: Any) -> np.ndarray | None:
        spec = self.family.preview
        if self.failed or spec is None:
            return None
        try:
            frames = spec.frames(pipe, call, latents)  # F x C x h x w
            if self.projection is None:
                self.projection, self.source = projection_for(pipe, self.family, spec,
                                                              int(frames.shape[1]))
                log.debug("live previews of %s: %s", self.family.name, self.source)
            return render(frames, self.projection)
        except Exception:  # a preview must never fail the job
            log.warning("live preview failed; no more previews for this model", exc_info=True)
            self.failed = True
            return None


def projection_for(pipe: Any, family: PreviewFamily, spec: LatentPreview,
                   channels: int) -> tuple[Any, str]:
    """The published table of the family's latent format with this many channels, or a fit."""
    for name in spec.tables:
        table = published(name)
        if table.shape[0] == channels + 1:
            return table, f"published {name}"
    return fit_projection(pipe, family, channels), "fitted from the VAE"


@functools.cache
def published(name: str) -> Any:
    """(channels + 1) x 3: the factors, then the bias row."""
    import torch

    entry = json.loads(TABLES.read_text())[name]
    return torch.tensor(entry["factors"] + [entry["bias"]], dtype=torch.float32)


def encode_chart(pipe: Any, family: PreviewFamily, pixels: Any) -> Any:
    """An RGB image (1 x 3 x H x W in [-1, 1]) as normalised latents, channels x h x w."""
    spec = family.preview
    assert spec is not None
    vae = pipe.vae
    param = next(vae.parameters())
    x = pixels.to(param.device, param.dtype)
    z = vae.encode(x if spec.image_vae else x[:, :, None]).latent_dist.mean.float().cpu()
    z = spec.normalise(vae, z)
    return z[0] if spec.image_vae else z[0, :, 0]


def latent_cell(pipe: Any) -> int:
    """Pixels per latent cell, under the names the pipelines give it."""
    for name in ("vae_scale_factor_spatial", "vae_spatial_compression_ratio",
                 "vae_scale_factor"):
        if isinstance(getattr(pipe, name, None), int):
            return int(getattr(pipe, name))
    return 8


def fit_projection(pipe: Any, family: PreviewFamily, channels: int) -> Any:
    """Least-squares (channels + 1) x 3 map from normalised latents to RGB in [-1, 1]."""
    import torch

    cell = family.preview_cell(pipe)
    side = max(8, math.ceil(math.sqrt(3 * (channels + 1))))  # patches per side, 2 cells each
    gen = torch.Generator().manual_seed(0)
    colours = torch.rand(3, side, side, generator=gen) * 2 - 1
    chart = colours.repeat_interleave(2 * cell, 1).repeat_interleave(2 * cell, 2)
    latents = family.preview_encode(pipe, chart[None]).float().cpu()  # C x h x w
    target = torch.nn.functional.avg_pool2d(chart[None], cell)[0]  # 3 x h x w
    h, w = min(latents.shape[1], target.shape[1]), min(latents.shape[2], target.shape[2])
    x = latents[:, :h, :w].reshape(latents.shape[0], -1).T
    x = torch.cat([x, torch.ones(x.shape[0], 1)], dim=1)
    y = target[:, :h, :w].reshape(3, -1).T
    return torch.linalg.lstsq(x, y).solution  # (C + 1) x 3


def render(frames: Any, projection: Any) -> np.ndarray:
    """First, middle and last latent frames side by side, projected to RGB."""
    import torch

    count = frames.shape[0]
    picks = sorted({0, count // 2, count - 1})
    # project where the latents are (the GPU in a real run): only 3 x h x w comes back
    weights = projection.to(frames.device, torch.float32)
    chosen = frames[picks].to(torch.float32)  # k x C x h x w
    rgb = torch.einsum("kchw,cr->krhw", chosen, weights[:-1]) + weights[-1][None, :, None, None]
    strip = torch.cat(list(rgb), dim=2).cpu()  # 3 x h x (k*w)
    image = ((strip.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    scale = max(1, math.ceil(MIN_HEIGHT / image.shape[0]))
    if scale > 1:
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    return np.ascontiguousarray(image)
