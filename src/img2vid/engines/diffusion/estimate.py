"""Rough peak-memory estimates per architecture, for the memory planner.

Formulas count the tensors alive at the worst moment (skip connections plus one block's working
set for UNets; a transformer block's projections and MLP). They are deliberately simple: the
GPU benchmark prints estimate vs measured peak so the factors can be calibrated.
"""

from __future__ import annotations

# Live activation elements per latent pixel, in units of the UNet's first block width:
# ~6.4x for the kept skip connections and ~16x for a transformer block's attention + GEGLU MLP.
UNET_ACTIVATION_FACTOR = 22
# VAE decoder working set per output pixel, in units of its last block's width.
VAE_DECODE_FACTOR = 10
VAE_TILE = 512  # px: the decoder's tile side when tiling is on


def unet_activations(width: int, height: int, frames: int, vae_scale: int, base_channels: int,
                     batch: int, dtype_bytes: int) -> int:
    latent_pixels = (width // vae_scale) * (height // vae_scale)
    return batch * frames * latent_pixels * base_channels * UNET_ACTIVATION_FACTOR * dtype_bytes


def transformer_activations(tokens: int, hidden: int, ffn: int, batch: int,
                            dtype_bytes: int) -> int:
    # q, k, v, attention output, residual and norm (6 x hidden) plus the MLP's hidden layer
    return batch * tokens * (6 * hidden + ffn) * dtype_bytes


def image_decode(width: int, height: int, channels: int, dtype_bytes: int) -> tuple[int, int]:
    """(full, tiled) decoder working set for one frame."""
    full = width * height * channels * VAE_DECODE_FACTOR * dtype_bytes
    tiled = min(width * height, VAE_TILE * VAE_TILE) * channels * VAE_DECODE_FACTOR * dtype_bytes
    return full, tiled
