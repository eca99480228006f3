"""Replicas of the SkyReels-V2 hub repos (Skywork/SkyReels-V2-{I2V,DF}-*-Diffusers).

As diffusers' scripts/convert_skyreelsv2_to_diffusers.py saves them (SOURCES.md): I2V repos are
a SkyReelsV2ImageToVideoPipeline with a CLIP ViT-H image encoder and a whole CLIPProcessor save
in image_processor/ (merges.txt, preprocessor_config.json, special_tokens_map.json,
tokenizer.json, tokenizer_config.json, vocab.json); DF repos are a text-to-video
SkyReelsV2DiffusionForcingPipeline (no image encoder) whose 1.3B transformer injects the fps
(inject_sample_info). Both: UMT5 text encoder and tokenizer (spiece.model + tokenizer.json),
the Wan VAE, UniPC flow scheduler at its default shift, weights sharded (max_shard_size 5GB).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from tests.diffusion import tiny_models

PROCESSOR_FILES = {"merges.txt", "preprocessor_config.json", "special_tokens_map.json",
                   "tokenizer.json", "tokenizer_config.json", "vocab.json"}


def _transformer(seed: int, **extra):
    from diffusers import SkyReelsV2Transformer3DModel

    torch.manual_seed(seed)
    return SkyReelsV2Transformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, out_channels=16,
        text_dim=16, freq_dim=32, ffn_dim=16, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32, **extra)


def _common(work: Path, tag: str):
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler
    from transformers import UMT5Config, UMT5EncoderModel

    from tests.diffusion import replicas

    torch.manual_seed(0)
    tokenizer = replicas.t5_tokenizer(work / f"_{tag}_tok", 512, with_json=True)
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tokenizer), d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8))
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    # the conversion script leaves flow_shift at its default: the family sets the authors' 5.0
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction",
                                        num_train_timesteps=1000, use_flow_sigmas=True)
    return {"tokenizer": tokenizer, "text_encoder": text_encoder, "vae": vae,
            "scheduler": scheduler}


def _finish(pipe, repo: Path, work: Path, tag: str) -> Path:
    from tests.diffusion import replicas

    pipe.save_pretrained(repo)
    for name in ("transformer", "text_encoder"):
        replicas.shard(getattr(pipe, name), repo / name)
    shutil.rmtree(repo / "tokenizer")  # the hub's UMT5 files (spiece.model + tokenizer.json)
    shutil.copytree(work / f"_{tag}_tok", repo / "tokenizer")
    replicas.edit_index(repo, tokenizer=["transformers", "T5TokenizerFast"])
    return repo


def skyreels_i2v(work: Path) -> Path:
    from diffusers import SkyReelsV2ImageToVideoPipeline
    from transformers import CLIPProcessor, CLIPTokenizer

    repo = work / "skyreels-i2v"
    tiny_models.write_clip_tokenizer(work / "_clip_tok")
    processor = CLIPProcessor(image_processor=tiny_models._clip_processor(32),
                              tokenizer=CLIPTokenizer.from_pretrained(work / "_clip_tok"))
    pipe = SkyReelsV2ImageToVideoPipeline(
        **_common(work, "i2v"), image_processor=processor,
        image_encoder=tiny_models._clip_vision(32, 8, projection=True),
        transformer=_transformer(1, in_channels=36, image_dim=8, added_kv_proj_dim=16))
    _finish(pipe, repo, work, "i2v")
    # a whole CLIPProcessor save in the older per-part files, as the hub repo has them
    folder = repo / "image_processor"
    processor.image_processor.save_pretrained(folder)  # preprocessor_config.json
    processor.tokenizer.save_pretrained(folder)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(work / "_clip_tok" / name, folder / name)
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
         "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}, indent=2))
    for path in folder.iterdir():
        if path.name not in PROCESSOR_FILES:
            path.unlink()
    return repo


def skyreels_df(work: Path, inject_sample_info: bool) -> Path:
    from diffusers import SkyReelsV2DiffusionForcingPipeline

    repo = work / "skyreels-df"
    pipe = SkyReelsV2DiffusionForcingPipeline(
        **_common(work, "df"),
        transformer=_transformer(2, in_channels=16, inject_sample_info=inject_sample_info))
    return _finish(pipe, repo, work, "df")


BUILDERS = {
    "skyreels-v2-i2v-1.3b-540p": skyreels_i2v,
    "skyreels-v2-i2v-14b-720p": skyreels_i2v,
    "skyreels-v2-df-1.3b-540p": lambda work: skyreels_df(work, inject_sample_info=True),
    "skyreels-v2-df-14b-720p": lambda work: skyreels_df(work, inject_sample_info=False),
}
