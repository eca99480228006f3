"""Replicas of the LTX models issue 14 registers, with their hub layouts (facts: SOURCES.md).

Lightricks/LTX-Video-0.9.7-dev, -0.9.7-distilled and -0.9.8-13B-distilled: LTXConditionPipeline
with the 0.9.5+ VAE (LTXVideo095DownBlock3D, timestep-conditioned decoder, residual 2x
upsamplers), a FlowMatchEuler scheduler without dynamic shifting, a T5 tokenizer of
spiece.model only (no tokenizer.json), sharded transformer and T5 encoder.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from tests.diffusion import tiny_models


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

    from tests.diffusion import replicas  # imports this module: not at the top

    repo = work / "ltx-condition"
    torch.manual_seed(0)
    tokenizer = replicas.t5_tokenizer(repo / "tokenizer", 128, with_json=False)
    text_encoder = tiny_models.t5_encoder(len(tokenizer))
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




# --- LTX-2 ---------------------------------------------------------------------------------

GEMMA_WORDS = ("a cat dog the blurry static moving waves photo of sea sky runs jumps sound "
               "music rain").split()


def gemma_tokenizer(folder: Path) -> Any:
    """A Gemma-3-style tokenizer folder: tokenizer.json (BPE), tokenizer.model, tokenizer_config,
    special_tokens_map and added_tokens.json with `<image_soft_token>`."""
    import json

    from transformers import GemmaTokenizer

    from tests.diffusion import replicas

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_image>",
                "<end_of_image>"]
    pieces = [*"abcdefghijklmnopqrstuvwxyz", "\u2581", *("\u2581" + w for w in GEMMA_WORDS)]
    vocab = {token: i for i, token in enumerate(specials + pieces)}
    tokenizer = GemmaTokenizer(vocab=vocab, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image_soft_token>"]})
    tokenizer.model_max_length = 1024
    tokenizer.save_pretrained(folder)
    (folder / "tokenizer.model").write_bytes(replicas.spiece_model())
    soft = tokenizer.convert_tokens_to_ids("<image_soft_token>")
    (folder / "added_tokens.json").write_text(json.dumps({"<image_soft_token>": soft}))
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "boi_token": "<start_of_image>", "bos_token": "<bos>", "eoi_token": "<end_of_image>",
        "eos_token": "<eos>", "image_token": "<image_soft_token>", "pad_token": "<pad>",
        "unk_token": "<unk>"}, indent=2))
    return tokenizer


def gemma3(vocab_size: int, soft_token: int) -> Any:
    """A tiny Gemma3ForConditionalGeneration (text tower + SigLIP vision tower)."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    config = Gemma3Config(
        text_config={"vocab_size": vocab_size, "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 1, "head_dim": 8, "sliding_window": 64,
                     "max_position_embeddings": 2048},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 28, "patch_size": 14},
        mm_tokens_per_image=4, image_token_index=soft_token, boi_token_index=5,
        eoi_token_index=6)
    return Gemma3ForConditionalGeneration(config)


def ltx2(work: Path) -> Path:
    """Lightricks/LTX-2 in the diffusers layout: LTX2Pipeline with audio VAE, text connectors,
    Gemma-3 text encoder and vocoder; tiny sizes after diffusers' own LTX-2 fast tests."""
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2ImageToVideoPipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel, LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    from tests.diffusion import replicas

    repo = work / "ltx-2"
    torch.manual_seed(0)
    tokenizer = gemma_tokenizer(work / "_gemma_tok")
    text_encoder = gemma3(len(tokenizer), tokenizer.convert_tokens_to_ids("<image_soft_token>"))
    text = text_encoder.config.text_config
    transformer = LTX2VideoTransformer3DModel(
        in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2,
        attention_head_dim=8, cross_attention_dim=16, audio_in_channels=4,
        audio_out_channels=4, audio_num_attention_heads=2, audio_attention_head_dim=4,
        audio_cross_attention_dim=8, num_layers=2, qk_norm="rms_norm_across_heads",
        caption_channels=text.hidden_size, rope_double_precision=False, rope_type="split")
    connectors = LTX2TextConnectors(
        caption_channels=text.hidden_size, text_proj_in_factor=text.num_hidden_layers + 1,
        video_connector_num_attention_heads=4, video_connector_attention_head_dim=8,
        video_connector_num_layers=1, video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=4, audio_connector_attention_head_dim=8,
        audio_connector_num_layers=1, audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32, rope_theta=10000.0, rope_double_precision=False,
        causal_temporal_positioning=False, rope_type="split")
    vae = AutoencoderKLLTX2Video(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,),
        decoder_block_out_channels=(8,), layers_per_block=(1,), decoder_layers_per_block=(1, 1),
        spatio_temporal_scaling=(True,), decoder_spatio_temporal_scaling=(True,),
        decoder_inject_noise=(False, False), downsample_type=("spatial",),
        upsample_residual=(False,), upsample_factor=(1,), timestep_conditioning=False,
        patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False)
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4, output_channels=2, ch_mult=(1,), num_res_blocks=1,
        attn_resolutions=None, in_channels=2, resolution=32, latent_channels=2,
        norm_type="pixel", causality_axis="height", dropout=0.0, mid_block_add_attention=False,
        sample_rate=16000, mel_hop_length=160, is_causal=True, mel_bins=8)
    vocoder = LTX2Vocoder(
        in_channels=audio_vae.config.output_channels * audio_vae.config.mel_bins,
        # upsampling by the mel hop (4 x 4 x 10 = 160), so the sound lasts as long as the video
        hidden_channels=32, out_channels=2, upsample_kernel_sizes=[8, 8, 20],
        upsample_factors=[4, 4, 10], resnet_kernel_sizes=[3], resnet_dilations=[[1, 3, 5]],
        leaky_relu_negative_slope=0.1, output_sampling_rate=16000)
    # scripts/convert_ltx2_to_diffusers.py's scheduler
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05, base_image_seq_len=1024,
        max_image_seq_len=4096, shift_terminal=0.1)
    pipe = LTX2ImageToVideoPipeline(
        scheduler=scheduler, vae=vae, audio_vae=audio_vae, text_encoder=text_encoder,
        tokenizer=tokenizer, connectors=connectors, transformer=transformer, vocoder=vocoder)
    pipe.save_pretrained(repo)
    # the spatial upsampler's folder, which model_index.json does not list
    LTX2LatentUpsamplerModel(in_channels=4, mid_channels=32, num_blocks_per_stage=1
                             ).save_pretrained(repo / "latent_upsampler")
    for name in ("transformer", "text_encoder"):
        replicas.shard(getattr(pipe, name), repo / name)
    shutil.rmtree(repo / "tokenizer")
    shutil.copytree(work / "_gemma_tok", repo / "tokenizer")
    # the hub repo's model_index: the text-to-video class, a fast Gemma tokenizer, and no
    # optional components
    replicas.edit_index(repo, _class_name="LTX2Pipeline",
                        tokenizer=["transformers", "GemmaTokenizerFast"], processor=...,
                        prompt_enhancer=..., duration_head=...)
    return repo


BUILDERS = {"ltx-video-0.9.7-dev": ltx_condition, "ltx-video-0.9.7-distilled": ltx_condition,
            "ltx-video-0.9.8-distilled": ltx_condition, "ltx-2": ltx2}
