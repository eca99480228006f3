"""Tiny random-weight I2VGen-XL, SVD and Wan pipelines, saved like real checkpoints.

Same classes and folder layout as the hub models (model_index.json, one folder per component),
a few layers and channels each, so the real loading and inference code runs in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

VOCAB_WORDS = ("a", "cat", "dog", "the", "blurry", "static", "moving", "waves")


def _saved(pipe, folder: Path, name: str) -> Path:
    """Save `pipe` as folder/name, laid out as a hub checkpoint, and return that folder."""
    target = folder / name
    pipe.save_pretrained(target)
    return target


def write_clip_tokenizer(folder: Path, max_length: int = 16) -> Path:
    """vocab.json + merges.txt for a CLIP BPE over printable ASCII (ids far below 49408).

    transformers 5.x ignores vocab_file/merges_file passed to CLIPTokenizer(), so the files
    are written to a folder and loaded with from_pretrained, as a real checkpoint's are.
    """
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for code in range(33, 127):
        vocab[chr(code)] = len(vocab)
        vocab[chr(code) + "</w>"] = len(vocab)
    merges = []
    for word in VOCAB_WORDS:
        # merge each word left to right into one token: c+a -> ca, ca+t</w> -> cat</w>
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            if f"{pieces[0]} {pieces[1]}" not in merges:
                merges.append(f"{pieces[0]} {pieces[1]}")
                vocab.setdefault(merged, len(vocab))
            pieces = [merged] + pieces[2:]
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n",
                                       encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": max_length}), encoding="utf-8")
    return folder


def _clip_vision(image_size: int, patch_size: int, projection: bool, dim: int = 8):
    from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=dim, projection_dim=dim, num_hidden_layers=2,
                              num_attention_heads=2, image_size=image_size,
                              intermediate_size=16, patch_size=patch_size)
    return (CLIPVisionModelWithProjection if projection else CLIPVisionModel)(config)


def _clip_processor(size: int):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(crop_size={"height": size, "width": size},
                              size={"shortest_edge": size})


def build_i2vgen(folder: Path) -> Path:
    from diffusers import AutoencoderKL, DDIMScheduler, I2VGenXLPipeline, I2VGenXLUNet
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = I2VGenXLUNet(
        in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        cross_attention_dim=8, attention_head_dim=4)
    vae = AutoencoderKL(
        block_out_channels=(8, 16, 16), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=4, layers_per_block=1, sample_size=64)
    # the published scheduler settings (v-prediction, zero-SNR rescale)
    scheduler = DDIMScheduler(
        beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
        rescale_betas_zero_snr=True, clip_sample=False, steps_offset=1,
        timestep_spacing="leading", set_alpha_to_one=True)
    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder / "_tokenizer_src"))
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=8, intermediate_size=16,
        num_attention_heads=2, num_hidden_layers=2, vocab_size=len(tokenizer),
        max_position_embeddings=16, projection_dim=8))
    pipe = I2VGenXLPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                            image_encoder=_clip_vision(32, 8, projection=True),
                            feature_extractor=_clip_processor(32), unet=unet,
                            scheduler=scheduler)
    return _saved(pipe, folder, "i2vgen-tiny")


def build_svd(folder: Path) -> Path:
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )

    torch.manual_seed(0)
    # SVD's blocks hard-code 32 norm groups: 32 channels is the smallest width
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, in_channels=8, out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=8, num_attention_heads=(2, 4), num_frames=4,
        projection_class_embeddings_input_dim=24, addition_time_embed_dim=8)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 32, 32), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 3, layers_per_block=1)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type="v_prediction", interpolation_type="linear", sigma_max=700.0,
        sigma_min=0.002, steps_offset=1, timestep_spacing="leading",
        timestep_type="continuous", use_karras_sigmas=True)
    # SVD resizes the photo to 224 px for its image encoder, whatever the output size
    pipe = StableVideoDiffusionPipeline(vae=vae, image_encoder=_clip_vision(224, 32, True),
                                        unet=unet, scheduler=scheduler,
                                        feature_extractor=_clip_processor(224))
    return _saved(pipe, folder, "svd-tiny")


def build_wan(folder: Path, projection: bool = False) -> Path:
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline

    torch.manual_seed(0)
    tokenizer, vocab_size = _t5_tokenizer()
    text_encoder = umt5_encoder(vocab_size)
    vae = wan_vae()
    transformer = wan_transformer(image_dim=8)
    pipe = WanImageToVideoPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        image_processor=_clip_processor(32), image_encoder=_clip_vision(32, 8, projection),
        transformer=transformer)
    return _saved(pipe, folder, "wan-tiny")


def wan_vae():
    """Wan's VAE (2.1's, as the 2.1 and 2.2 A14B models use), tiny."""
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True])


def wan_transformer(**extra):
    """A tiny Wan transformer; `extra` gives a model's own options (image cross-attention...)."""
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=36,
        out_channels=16, text_dim=16, freq_dim=32, ffn_dim=16, num_layers=2,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32, **extra)


def umt5_encoder(vocab_size: int):
    """Wan's text encoder (UMT5), tiny."""
    from transformers import UMT5Config, UMT5EncoderModel

    return UMT5EncoderModel(UMT5Config(
        vocab_size=vocab_size, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8))


def _t5_tokenizer(vocab_words=VOCAB_WORDS):
    """A T5 tokenizer over a few words (and single letters), and its vocabulary's size."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(c, -3.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    vocab += [("\u2581" + w, -1.0) for w in vocab_words]
    return T5Tokenizer(vocab=vocab, extra_ids=0), len(vocab)


def _t5(vocab_words=VOCAB_WORDS, d_model: int = 16):
    from transformers import T5Config, T5EncoderModel

    tokenizer, vocab_size = _t5_tokenizer(vocab_words)
    encoder = T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=4, d_ff=32,
                                      num_layers=2, num_heads=4,
                                      relative_attention_num_buckets=8))
    return tokenizer, encoder


def build_ltx(folder: Path) -> Path:
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXImageToVideoPipeline,
        LTXVideoTransformer3DModel,
    )

    torch.manual_seed(0)
    tokenizer, text_encoder = _t5()
    # the real model's compression (32x spatial via 4x4 patches and 3 halvings, 8x in time)
    vae = AutoencoderKLLTXVideo(
        latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1))
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=8,
        cross_attention_dim=16, num_layers=1, caption_channels=16)
    pipe = LTXImageToVideoPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                                   text_encoder=text_encoder, tokenizer=tokenizer,
                                   transformer=transformer)
    return _saved(pipe, folder, "ltx-tiny")


def build_cogvideox(folder: Path) -> Path:
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXImageToVideoPipeline,
        CogVideoXTransformer3DModel,
    )

    torch.manual_seed(0)
    tokenizer, text_encoder = _t5(d_model=16)
    vae = AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1,
        norm_num_groups=2, temporal_compression_ratio=4)
    # learned positional embeddings pin the size: 8x8 latents (64x64 px) and 9 frames here,
    # as the 5B model's pin it to 720x480 and 49 frames
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=8, out_channels=4,
        time_embed_dim=4, text_embed_dim=16, num_layers=1, sample_width=8, sample_height=8,
        sample_frames=9, patch_size=2, temporal_compression_ratio=4, max_text_seq_length=16,
        use_rotary_positional_embeddings=True, use_learned_positional_embeddings=True)
    pipe = CogVideoXImageToVideoPipeline(tokenizer=tokenizer, text_encoder=text_encoder,
                                         vae=vae, transformer=transformer,
                                         scheduler=CogVideoXDDIMScheduler())
    return _saved(pipe, folder, "cogvideox-tiny")
