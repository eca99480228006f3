"""Replicas of the models issue 14 registers (end frames, two-expert Wan 2.2), hub layouts.

Wan-AI/Wan2.2-I2V-A14B-Diffusers (LAYOUTS.md section 5): WanImageToVideoPipeline with two
experts (`transformer` high noise, `transformer_2` low noise) switched at boundary_ratio 0.9,
no image encoder or processor (null in model_index.json), transformers without image
cross-attention, UniPC flow scheduler, sharded transformers and UMT5 encoder, tokenizer.json.
Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers: the Wan 2.1 I2V layout (section 3) with a CLIP image
encoder fed both frames, which the transformer tells apart by a learned positional embedding
(`pos_embed_seq_len`: 2 x 257 CLIP tokens on the real model, 2 x 17 here).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from tests.diffusion import tiny_models

CLIP_TOKENS = 17  # the tiny CLIP vision tower: (32 / 8)^2 patches + the class token


def _wan_transformer(seed: int, **extra):
    torch.manual_seed(seed)
    return tiny_models.wan_transformer(**extra)


def _unipc(shift: float):
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                   flow_shift=shift)


def wan22_i2v_a14b(work: Path) -> Path:
    from diffusers import WanImageToVideoPipeline

    from tests.diffusion import replicas  # imports this module: not at the top

    repo = work / "wan2.2-a14b"
    torch.manual_seed(0)
    tokenizer = replicas.t5_tokenizer(work / "_a14b_tok", 512, with_json=True)
    text_encoder = tiny_models.umt5_encoder(len(tokenizer))
    vae = tiny_models.wan_vae()
    pipe = WanImageToVideoPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=_unipc(5.0),
        transformer=_wan_transformer(1), transformer_2=_wan_transformer(2), boundary_ratio=0.9)
    pipe.save_pretrained(repo)
    for name in ("transformer", "transformer_2", "text_encoder"):
        replicas.shard(getattr(pipe, name), repo / name)
    shutil.rmtree(repo / "tokenizer")  # the hub's files (spiece.model + tokenizer.json)
    shutil.copytree(work / "_a14b_tok", repo / "tokenizer")
    replicas.edit_index(repo, tokenizer=["transformers", "T5TokenizerFast"])
    return repo


def wan21_flf2v(work: Path) -> Path:
    from tests.diffusion import replicas

    repo = work / "wan2.1-flf2v"
    pipe = replicas._load(tiny_models.build_wan(work / "_src", projection=True))
    pipe.transformer = _wan_transformer(3, image_dim=8, added_kv_proj_dim=16,
                                        pos_embed_seq_len=2 * CLIP_TOKENS)
    pipe.scheduler = _unipc(5.0)  # 720p: the docs' 5.0
    pipe.save_pretrained(repo)
    replicas.shard(pipe.transformer, repo / "transformer")
    replicas._retokenize(pipe, repo, 512, with_json=True)
    replicas.edit_index(repo, tokenizer=["transformers", "T5TokenizerFast"],
                        image_encoder=["transformers", "CLIPVisionModelWithProjection"])
    return repo


BUILDERS = {"wan2.2-i2v-a14b": wan22_i2v_a14b, "wan2.1-flf2v-14b-720p": wan21_flf2v}
