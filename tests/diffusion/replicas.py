"""Tiny replicas of the registered models' hub repos, in a Hugging Face cache.

Each replica has its hub repo's layout (model_index.json class names and keys, component
folders, tokenizer file formats, fp16 variant files, sharded weights with their index files,
root checkpoints a download skips) with tiny dimensions. `install` lays a replica out in a cache
the way huggingface_hub's snapshot_download does (blobs, snapshots/<commit>/ symlinks,
refs/main), fetching only what img2vid's allow_patterns ask for. Where each fact comes from:
SOURCES.md beside this file.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from tests.diffusion import tiny_models

SHARD = "8KB"  # small enough that every sharded component of a replica has several shards
WORDS = ("a cat dog the blurry static moving waves photo of sea sky runs jumps").split()


# --- tokenizers ------------------------------------------------------------------------------

def spiece_model() -> bytes:
    """A tiny SentencePiece unigram model with T5's special ids (pad 0, eos 1, unk 2)."""
    import sentencepiece as spm

    corpus = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] * 5
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=out,
                                   vocab_size=48, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   model_type="unigram", hard_vocab_limit=False, minloglevel=2)
    return out.getvalue()


def t5_tokenizer(folder: Path, max_length: int, with_json: bool) -> Any:
    """A T5 tokenizer folder as the hub has them. LTX-Video and CogVideoX: spiece.model,
    tokenizer_config.json, special_tokens_map.json, added_tokens.json, no tokenizer.json.
    Wan (UMT5): spiece.model and tokenizer.json, no added_tokens.json."""
    from transformers import T5Tokenizer

    source = Path(tempfile.mkdtemp(prefix="spiece-"))
    (source / "spiece.model").write_bytes(spiece_model())
    extra = 2  # the real ones carry <extra_id_0..99>
    # transformers 5 ignores a vocab_file given to the constructor: load the folder instead,
    # which converts spiece.model (the path a user's load takes)
    (source / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "T5Tokenizer", "extra_ids": extra, "legacy": True,
        "model_max_length": max_length, "eos_token": "</s>", "pad_token": "<pad>",
        "unk_token": "<unk>"}))
    tokenizer = T5Tokenizer.from_pretrained(source)
    tokenizer.save_pretrained(folder)
    shutil.copy(source / "spiece.model", folder / "spiece.model")
    specials = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
                "additional_special_tokens": [f"<extra_id_{i}>" for i in range(extra)]}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
    if with_json:
        (folder / "added_tokens.json").unlink(missing_ok=True)
    else:
        (folder / "tokenizer.json").unlink(missing_ok=True)
        size = len(tokenizer) - extra
        added = {f"<extra_id_{i}>": size + extra - 1 - i for i in range(extra)}
        (folder / "added_tokens.json").write_text(json.dumps(added, indent=2))
    _keep(folder, {"spiece.model", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "tokenizer.json"})
    return tokenizer


def clip_tokenizer(folder: Path, max_length: int = 16) -> None:
    """i2vgen-xl's tokenizer/: merges.txt, special_tokens_map.json, tokenizer_config.json,
    vocab.json, and no tokenizer.json."""
    shutil.rmtree(folder, ignore_errors=True)
    tiny_models.write_clip_tokenizer(folder, max_length)
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": max_length,
              "do_lower_case": True, "bos_token": "<|startoftext|>",
              "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
              "unk_token": "<|endoftext|>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {k: config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")}, indent=2))


def _keep(folder: Path, names: set[str]) -> None:
    for path in folder.iterdir():
        if path.name not in names:
            path.unlink()


# --- weights ---------------------------------------------------------------------------------

def shard(component: Any, folder: Path) -> None:
    """Re-save a component in several shards with their index file, as the hub repo has it."""
    for path in folder.glob("*.safetensors*"):
        path.unlink()
    component.save_pretrained(folder, max_shard_size=SHARD)
    assert any(folder.glob("*.index.json")), f"{folder} did not shard"


def fp16_variants(pipe: Any, repo: Path, names: tuple[str, ...]) -> None:
    """`<name>.fp16.safetensors` beside every full-precision file (i2vgen-xl, SVD-XT)."""
    for name in names:
        component = getattr(pipe, name)
        component.to(torch.float16).save_pretrained(repo / name, variant="fp16")
        component.to(torch.float32)


def write_index(repo: Path, index: dict[str, Any]) -> None:
    (repo / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def edit_index(repo: Path, **changes: Any) -> None:
    index = json.loads((repo / "model_index.json").read_text())
    for key, value in changes.items():
        if value is ...:
            index.pop(key, None)
        else:
            index[key] = value
    write_index(repo, index)


# --- the repos -------------------------------------------------------------------------------

def i2vgen_xl(work: Path) -> Path:
    repo = work / "i2vgen-xl"
    pipe = _load(tiny_models.build_i2vgen(work / "_src"))
    pipe.save_pretrained(repo)
    fp16_variants(pipe, repo, ("image_encoder", "text_encoder", "unet", "vae"))
    clip_tokenizer(repo / "tokenizer")
    edit_index(repo, _name_or_path="i2vgen-xl")
    (repo / "models").mkdir()
    (repo / "models" / "i2vgen_xl_00854500.pth").write_bytes(b"original checkpoint")
    return repo


def svd_xt(work: Path) -> Path:
    repo = work / "svd-xt"
    pipe = _load(tiny_models.build_svd(work / "_src"))
    pipe.save_pretrained(repo)
    fp16_variants(pipe, repo, ("image_encoder", "unet", "vae"))
    edit_index(repo, _name_or_path="diffusers/svd-xt")
    (repo / "svd_xt.safetensors").write_bytes(b"original checkpoint")
    return repo


def wan21_i2v(work: Path) -> Path:
    from diffusers import UniPCMultistepScheduler

    repo = work / "wan2.1"
    pipe = _load(tiny_models.build_wan(work / "_src", projection=True))
    pipe.scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction",
                                             use_flow_sigmas=True, flow_shift=3.0)
    pipe.save_pretrained(repo)
    shard(pipe.transformer, repo / "transformer")
    _retokenize(pipe, repo, 512, with_json=True)
    edit_index(repo, tokenizer=["transformers", "T5TokenizerFast"],
               image_encoder=["transformers", "CLIPVisionModelWithProjection"])
    return repo


def wan22_ti2v(work: Path) -> Path:
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import UMT5Config, UMT5EncoderModel

    repo = work / "wan2.2"
    torch.manual_seed(0)
    tokenizer = t5_tokenizer(work / "_wan22_tok", 512, with_json=True)
    # Wan 2.2's VAE: 16x spatial (2x2 patchify + 3 halvings), 48 latent channels, residual
    vae = AutoencoderKLWan(base_dim=3, z_dim=48, in_channels=12, out_channels=12,
                           is_residual=True, patch_size=2, latents_mean=[0.0] * 48,
                           latents_std=[1.0] * 48, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           scale_factor_spatial=16, scale_factor_temporal=4,
                           temperal_downsample=[False, True, True])
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=48,
        out_channels=48, text_dim=16, freq_dim=32, ffn_dim=16, num_layers=2,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tokenizer), d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8))
    pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
                       transformer=transformer, expand_timesteps=True,
                       scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction",
                                                         use_flow_sigmas=True, flow_shift=5.0))
    pipe.save_pretrained(repo)
    shard(pipe.transformer, repo / "transformer")
    shard(pipe.text_encoder, repo / "text_encoder")
    shutil.rmtree(repo / "tokenizer")
    shutil.copytree(work / "_wan22_tok", repo / "tokenizer")
    edit_index(repo, tokenizer=["transformers", "T5TokenizerFast"])
    return repo


def ltx_video(work: Path) -> Path:
    from diffusers import FlowMatchEulerDiscreteScheduler

    repo = work / "ltx-video"
    pipe = _load(tiny_models.build_ltx(work / "_src"))
    # the repo's scheduler_config.json (dynamic shifting, terminal shift)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=1024, base_shift=0.95, max_image_seq_len=4096, max_shift=2.05,
        shift=1.0, shift_terminal=0.1, use_dynamic_shifting=True)
    pipe.save_pretrained(repo)
    shard(pipe.transformer, repo / "transformer")
    _retokenize(pipe, repo, 128, with_json=False)
    edit_index(repo, _class_name="LTXPipeline", tokenizer=["transformers", "T5Tokenizer"])
    (repo / "ltx-video-2b-v0.9.safetensors").write_bytes(b"original checkpoint")
    return repo


def cogvideox_5b_i2v(work: Path) -> Path:
    repo = work / "cogvideox"
    pipe = _load(tiny_models.build_cogvideox(work / "_src"))
    pipe.save_pretrained(repo)
    shard(pipe.transformer, repo / "transformer")
    _retokenize(pipe, repo, 16, with_json=False)
    edit_index(repo, tokenizer=["transformers", "T5Tokenizer"])
    (repo / "configuration.json").write_text('{"framework":"Pytorch","task":"image-to-video"}')
    return repo


def _retokenize(pipe: Any, repo: Path, max_length: int, with_json: bool) -> None:
    """Swap the tiny T5 tokenizer for one in the hub's file format, and shard the text
    encoder, its embedding table sized to the new vocabulary."""
    shutil.rmtree(repo / "tokenizer")
    tokenizer = t5_tokenizer(repo / "tokenizer", max_length, with_json=with_json)
    pipe.text_encoder.resize_token_embeddings(len(tokenizer))
    shard(pipe.text_encoder, repo / "text_encoder")


def _load(folder: Path) -> Any:
    import diffusers

    index = json.loads((folder / "model_index.json").read_text())
    return getattr(diffusers, index["_class_name"]).from_pretrained(folder)


BUILDERS = {"i2vgen-xl": i2vgen_xl, "svd-xt": svd_xt, "wan2.2-ti2v-5b": wan22_ti2v,
            "wan2.1-i2v-14b-480p": wan21_i2v, "ltx-video": ltx_video,
            "cogvideox-5b-i2v": cogvideox_5b_i2v}


# --- the cache -------------------------------------------------------------------------------

def commit_of(name: str) -> str:
    """A stand-in commit hash per replica (the registry pins none of these repos)."""
    return hashlib.sha1(f"replica {name}".encode()).hexdigest()


def patterns_for(spec: Any, hub_id: str) -> list[str]:
    """What img2vid fetches from `hub_id` for a model: its allow_patterns for the main repo,
    each part's patterns for the repos its components come from."""
    from img2vid.engines.diffusion.loading import allow_patterns
    from img2vid.engines.diffusion.parts import PartSource

    if hub_id == spec.hub_id:
        return allow_patterns(spec)
    sources = [PartSource.parse(text) for text in spec.components.values()]
    return [p for s in sources if s.hub_id == hub_id for p in s.allow_patterns()]


def install(repo: Path, hub_id: str, commit: str, cache: Path,
            patterns: list[str]) -> Path:
    """Lay the repo out in `cache` as huggingface_hub's snapshot_download does: each file a
    blob named by its etag (sha256 for LFS files, the git blob sha1 for the rest), linked from
    snapshots/<commit>/<path>, and refs/main holding the commit. Only files matching
    `patterns` are fetched, as snapshot_download(allow_patterns=...) does."""
    root = cache / ("models--" + hub_id.replace("/", "--"))
    snapshot = root / "snapshots" / commit
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    for path in sorted(p for p in repo.rglob("*") if p.is_file()):
        relative = path.relative_to(repo).as_posix()
        if not any(fnmatch.fnmatch(relative, p) for p in patterns):
            continue
        data = path.read_bytes()
        lfs = path.suffix in (".safetensors", ".model", ".bin", ".pth", ".ckpt")
        etag = (hashlib.sha256(data).hexdigest() if lfs else
                hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())
        blob = root / "blobs" / etag
        if not blob.exists():
            blob.write_bytes(data)
        pointer = snapshot / relative
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    return snapshot


def _more_builders() -> None:
    # the models issue 14 adds live in their own module (it imports this one)
    from tests.diffusion import replicas_hunyuan, replicas_new, replicas_skyreels

    BUILDERS.update(replicas_new.BUILDERS)
    BUILDERS.update(replicas_hunyuan.BUILDERS)
    BUILDERS.update(replicas_skyreels.BUILDERS)


_more_builders()
