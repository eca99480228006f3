"""Live previews: the current latents as a small RGB image, without running the VAE decoder.

A linear latent-to-RGB projection per loaded model, fitted once from the model's own VAE: a
chart of random colour patches is encoded, normalised into the space the pipeline denoises in
(the family knows how), and least squares maps each latent cell to its patch's colour. It works
for every family and every checkpoint (even the tests' random ones) without shipping tables.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from img2vid.engines.diffusion.call import DiffusionCall
    from img2vid.engines.diffusion.family import Family

log = logging.getLogger(__name__)

PREVIEWS_PER_JOB = 8  # about this many previews over a job's denoising steps
MIN_HEIGHT = 96  # previews smaller than this are upscaled (latent grids are tiny)


def preview_every(steps: int) -> int:
    return max(1, math.ceil(steps / PREVIEWS_PER_JOB))


class Previewer:
    """Turns a family's in-loop latents into a preview image (HxWx3 uint8)."""

    def __init__(self, family: Family) -> None:
        self.family = family
        self.projection: Any = None  # (channels + 1) x 3, fitted on first use
        self.failed = False

    def __call__(self, pipe: Any, call: DiffusionCall, latents: Any) -> np.ndarray | None:
        if self.failed:
            return None
        try:
            frames = self.family.preview_frames(pipe, call, latents)  # F x C x h x w
            if frames is None:
                return None
            if self.projection is None:
                self.projection = fit_projection(pipe, self.family, int(frames.shape[1]))
            return render(frames, self.projection)
        except NotImplementedError:
            self.failed = True
            return None
        except Exception:  # a preview must never fail the job
            log.warning("live preview failed; no more previews for this model", exc_info=True)
            self.failed = True
            return None


def fit_projection(pipe: Any, family: Family, channels: int) -> Any:
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
