"""A tiny Wan 2.2 I2V A14B: two experts (transformer, transformer_2) and boundary_ratio 0.9.

The layout follows Wan-AI/Wan2.2-I2V-A14B-Diffusers as ../shared/model-configs/LAYOUTS.md
section 5 records it: WanImageToVideoPipeline with no image encoder or processor (null in
model_index.json), transformers without image cross-attention (image_dim null), a UniPC
flow scheduler, UMT5 text encoder with a tokenizer.json. Dimensions are tiny.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.diffusion.tiny_models import VOCAB_WORDS


def _tiny_transformer(seed: int):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=36,
        out_channels=16, text_dim=16, freq_dim=32, ffn_dim=16, num_layers=2,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32)


def build_wan22_a14b(folder: Path) -> Path:
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(c, -3.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    vocab += [("\u2581" + w, -1.0) for w in VOCAB_WORDS]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0)
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(vocab), d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8))
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        flow_shift=5.0)
    pipe = WanImageToVideoPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
        transformer=_tiny_transformer(1), transformer_2=_tiny_transformer(2),
        boundary_ratio=0.9)
    target = folder / "wan22-a14b-tiny"
    pipe.save_pretrained(target, max_shard_size="10KB")
    return target
