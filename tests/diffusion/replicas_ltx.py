"""Replicas of the LTX models issue 14 registers, with their hub layouts (facts: SOURCES.md).

Lightricks/LTX-Video-0.9.7-dev, -0.9.7-distilled and -0.9.8-13B-distilled: LTXConditionPipeline
with the 0.9.5+ VAE (LTXVideo095DownBlock3D, timestep-conditioned decoder, residual 2x
upsamplers), a FlowMatchEuler scheduler without dynamic shifting, a T5 tokenizer of
spiece.model only (no tokenizer.json), sharded transformer and T5 encoder.
"""

from __future__ import annotations

from pathlib import Path

import torch


def ltx_vae():
    """The 0.9.7 VAE's structure (diffusers' convert_ltx_to_diffusers.py, version 0.9.7) with
    tiny widths: 32x spatial (patch 4 + 3 spatial halvings), 8x temporal."""
    from diffusers import AutoencoderKLLTXVideo

    return AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8, 8),
        down_block_types=("LTXVideo095DownBlock3D",) * 4, decoder_block_out_channels=(8, 16, 32),
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1),
        spatio_temporal_scaling=(True,) * 4, decoder_spatio_temporal_scaling=(True,) * 3,
        decoder_inject_noise=(False,) * 4,
        downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
        upsample_residual=(True,) * 3, upsample_factor=(2, 2, 2), timestep_conditioning=True,
        patch_size=4, patch_size_t=1, resnet_norm_eps=1e-6, scaling_factor=1.0,
        encoder_causal=True, decoder_causal=False, spatial_compression_ratio=32,
        temporal_compression_ratio=8)


def ltx_condition(work: Path) -> Path:
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        LTXConditionPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    from tests.diffusion import replicas  # imports this module: not at the top

    repo = work / "ltx-condition"
    torch.manual_seed(0)
    tokenizer = replicas.t5_tokenizer(repo / "tokenizer", 128, with_json=False)
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer), d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8))
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=8,
        cross_attention_dim=16, num_layers=1, caption_channels=16,
        qk_norm="rms_norm_across_heads", attention_bias=True, attention_out_bias=True)
    pipe = LTXConditionPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=False), vae=ltx_vae(),
        text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer)
    pipe.save_pretrained(repo)  # the tokenizer folder is rewritten in the hub's form below
    replicas.t5_tokenizer(repo / "tokenizer", 128, with_json=False)
    replicas.shard(pipe.transformer, repo / "transformer")
    replicas.shard(pipe.text_encoder, repo / "text_encoder")
    replicas.edit_index(repo, tokenizer=["transformers", "T5Tokenizer"])
    return repo


BUILDERS = {"ltx-video-0.9.7-dev": ltx_condition, "ltx-video-0.9.7-distilled": ltx_condition,
            "ltx-video-0.9.8-distilled": ltx_condition}
