"""Replicas of the Hunyuan models issue 14 registers: HunyuanVideo-1.5 I2V and FramePack.

hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v (LAYOUTS.md section 9): a
HunyuanVideo15ImageToVideoPipeline with a `guider` component, Qwen2.5-VL text model with a
Qwen2 BPE tokenizer (vocab.json + merges.txt + chat_template.jinja, no tokenizer.json), ByT5
glyph encoder with its file-less tokenizer, SigLIP image encoder + processor.
FramePack (section 10) is three repos: lllyasviel/FramePackI2V_HY (a bare transformer, sharded
at the root), hunyuanvideo-community/HunyuanVideo (a HunyuanVideoPipeline: Llama text encoder
with a tokenizer.json-only tokenizer, CLIP text encoder with a BPE tokenizer, VAE, scheduler and
its own T2V transformer, which img2vid does not fetch) and lllyasviel/flux_redux_bfl (a
FluxPriorReduxPipeline whose image_encoder/feature_extractor FramePack borrows).
Where each fact comes from: SOURCES.md.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

SIGLIP_SIZE = 32  # the tiny SigLIP's input side (384 on the real so400m encoder)
SIGLIP_DIM = 12


# --- tokenizers ------------------------------------------------------------------------------

def byte_alphabet() -> list[str]:
    """GPT-2's byte-to-unicode table: the 256 base symbols of a byte-level BPE (Qwen2, Llama 3)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def qwen2_tokenizer(folder: Path) -> None:
    """tokenizer/ as HunyuanImage-2.1 (same org, same Qwen2.5-VL text stack) has it:
    added_tokens.json, chat_template.jinja, merges.txt, special_tokens_map.json,
    tokenizer_config.json, vocab.json; no tokenizer.json."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    vocab = {ch: i for i, ch in enumerate(byte_alphabet())}
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    added = {token: len(vocab) + i for i, token in enumerate(specials)}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    (folder / "added_tokens.json").write_text(json.dumps(added, indent=2))
    config = {"tokenizer_class": "Qwen2Tokenizer", "model_max_length": 131072,
              "padding_side": "right", "pad_token": "<|endoftext|>", "eos_token": "<|im_end|>",
              "bos_token": None, "unk_token": None,
              "added_tokens_decoder": {str(i): {"content": t, "special": True} for t, i in
                                       added.items()}}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, indent=2))
    # Qwen2.5-VL's template for text-only messages
    (folder / "chat_template.jinja").write_text(
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{{ message['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def llama3_tokenizer(folder: Path) -> None:
    """HunyuanVideo's tokenizer/: special_tokens_map.json, tokenizer.json,
    tokenizer_config.json and no tokenizer.model (a Llama 3 byte-level BPE)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    bpe = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(byte_alphabet())},
                               merges=[]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.add_special_tokens(["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                            "<|end_header_id|>", "<|eot_id|>"])
    bpe.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<|begin_of_text|>",
              "eos_token": "<|end_of_text|>", "pad_token": "<|end_of_text|>",
              "model_max_length": 131072, "clean_up_tokenization_spaces": True}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {k: config[k] for k in ("bos_token", "eos_token", "pad_token")}, indent=2))


# --- shared pieces ---------------------------------------------------------------------------

def siglip(seed: int):
    """FLUX Redux's SigLIP vision tower and processor, tiny."""
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(seed)
    model = SiglipVisionModel(SiglipVisionConfig(
        hidden_size=SIGLIP_DIM, intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=2, image_size=SIGLIP_SIZE, patch_size=8))
    processor = SiglipImageProcessor(size={"height": SIGLIP_SIZE, "width": SIGLIP_SIZE})
    return model, processor


# --- HunyuanVideo-1.5 ------------------------------------------------------------------------

def hunyuanvideo15_i2v(work: Path) -> Path:
    from diffusers import (
        AutoencoderKLHunyuanVideo15,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideo15ImageToVideoPipeline,
        HunyuanVideo15Transformer3DModel,
    )
    from diffusers.guiders import ClassifierFreeGuidance
    from transformers import (
        ByT5Tokenizer,
        Qwen2_5_VLTextConfig,
        Qwen2_5_VLTextModel,
        Qwen2Tokenizer,
        T5Config,
        T5EncoderModel,
    )

    from tests.diffusion import replicas

    repo = work / "hunyuanvideo-1.5-i2v"
    qwen2_tokenizer(work / "_qwen_tok")
    tokenizer = Qwen2Tokenizer.from_pretrained(work / "_qwen_tok")
    torch.manual_seed(0)
    # target_size 64 (640 on the 480p model): buckets of about 64 x 64 pixels, 16-pixel cells
    transformer = HunyuanVideo15Transformer3DModel(
        in_channels=9, out_channels=4, num_attention_heads=2, attention_head_dim=8,
        num_layers=1, num_refiner_layers=1, mlp_ratio=2.0, text_embed_dim=16,
        text_embed_2_dim=16, image_embed_dim=SIGLIP_DIM, rope_axes_dim=(2, 2, 4),
        target_size=64, task_type="i2v")
    # five blocks: 16x spatial as on the real VAE, 4x temporal
    vae = AutoencoderKLHunyuanVideo15(
        latent_channels=4, block_out_channels=(8, 8, 8, 8, 8), layers_per_block=1,
        spatial_compression_ratio=16, temporal_compression_ratio=4,
        downsample_match_channel=False, upsample_match_channel=False)
    text_encoder = Qwen2_5_VLTextModel(Qwen2_5_VLTextConfig(
        hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, vocab_size=len(tokenizer), rope_theta=1e6,
        rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}))
    byt5 = T5EncoderModel(T5Config(vocab_size=384, d_model=16, d_kv=4, d_ff=32, num_layers=1,
                                   num_heads=4, relative_attention_num_buckets=8))
    # the conversion adds Glyph-SDXL-v2's colour and font tokens to ByT5 (a few here)
    tokenizer_2 = ByT5Tokenizer()
    tokenizer_2.add_tokens(["<color-0>", "<color-1>", "<en-font-0>"], special_tokens=True)
    byt5.resize_token_embeddings(len(tokenizer_2), mean_resizing=False)
    image_encoder, processor = siglip(1)
    pipe = HunyuanVideo15ImageToVideoPipeline(
        text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0), text_encoder_2=byt5,
        tokenizer_2=tokenizer_2, guider=ClassifierFreeGuidance(guidance_scale=6.0),
        image_encoder=image_encoder, feature_extractor=processor)
    pipe.save_pretrained(repo)
    replicas.shard(pipe.transformer, repo / "transformer")
    replicas.shard(pipe.text_encoder, repo / "text_encoder")
    qwen2_tokenizer(repo / "tokenizer")
    (repo / "tokenizer_2" / "special_tokens_map.json").write_text(json.dumps(
        {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}, indent=2))
    return repo


# --- FramePack -------------------------------------------------------------------------------

def framepack_transformer(seed: int = 0):
    from diffusers import HunyuanVideoFramepackTransformer3DModel

    torch.manual_seed(seed)
    return HunyuanVideoFramepackTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10,
        num_layers=1, num_single_layers=1, num_refiner_layers=1, patch_size=2,
        text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(2, 4, 4),
        has_image_proj=True, image_proj_dim=SIGLIP_DIM, has_clean_x_embedder=True)


def hunyuanvideo_base(work: Path) -> Path:
    """hunyuanvideo-community/HunyuanVideo: the text-to-video pipeline FramePack borrows from."""
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTokenizer,
        LlamaConfig,
        LlamaModel,
        LlamaTokenizerFast,
    )

    from tests.diffusion import replicas

    repo = work / "hunyuanvideo"
    llama3_tokenizer(work / "_llama_tok")
    replicas.clip_tokenizer(work / "_clip_tok", 77)
    tokenizer = LlamaTokenizerFast.from_pretrained(work / "_llama_tok")
    tokenizer_2 = CLIPTokenizer.from_pretrained(work / "_clip_tok")
    torch.manual_seed(0)
    text_encoder = LlamaModel(LlamaConfig(
        hidden_size=16, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    text_encoder_2 = CLIPTextModel(CLIPTextConfig(
        hidden_size=8, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=len(tokenizer_2), projection_dim=8, max_position_embeddings=77,
        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    vae = AutoencoderKLHunyuanVideo(
        latent_channels=4, block_out_channels=(4, 4, 4, 4), layers_per_block=1,
        norm_num_groups=2, spatial_compression_ratio=8, temporal_compression_ratio=4)
    t2v = HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10,
        num_layers=1, num_single_layers=1, num_refiner_layers=1, text_embed_dim=16,
        pooled_projection_dim=8, rope_axes_dim=(2, 4, 4))
    pipe = HunyuanVideoPipeline(
        text_encoder=text_encoder, tokenizer=tokenizer, transformer=t2v, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2)
    pipe.save_pretrained(repo)
    replicas.shard(pipe.transformer, repo / "transformer")
    replicas.shard(pipe.text_encoder, repo / "text_encoder")
    llama3_tokenizer(repo / "tokenizer")
    replicas.clip_tokenizer(repo / "tokenizer_2", 77)
    replicas.edit_index(repo, tokenizer=["transformers", "LlamaTokenizerFast"],
                        tokenizer_2=["transformers", "CLIPTokenizer"])
    return repo


def flux_redux(work: Path) -> Path:
    """lllyasviel/flux_redux_bfl: a FluxPriorReduxPipeline (FramePack takes two folders)."""
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder

    from tests.diffusion import replicas

    repo = work / "flux_redux_bfl"
    image_encoder, processor = siglip(2)
    image_encoder.save_pretrained(repo / "image_encoder")
    processor.save_pretrained(repo / "feature_extractor")
    torch.manual_seed(3)
    ReduxImageEncoder(redux_dim=SIGLIP_DIM, txt_in_features=16).save_pretrained(
        repo / "image_embedder")
    replicas.write_index(repo, {
        "_class_name": "FluxPriorReduxPipeline", "_diffusers_version": "0.32.0.dev0",
        "feature_extractor": ["transformers", "SiglipImageProcessor"],
        "image_embedder": ["flux", "ReduxImageEncoder"],
        "image_encoder": ["transformers", "SiglipVisionModel"]})
    return repo


def framepack(work: Path) -> dict[str, Path]:
    from tests.diffusion import replicas

    transformer = work / "FramePackI2V_HY"
    replicas.shard(framepack_transformer(), transformer)  # at the repo root, no model_index
    (transformer / "README.md").write_text("FramePack: https://github.com/lllyasviel/FramePack\n")
    return {"hunyuanvideo-community/HunyuanVideo": hunyuanvideo_base(work),
            "lllyasviel/FramePackI2V_HY": transformer,
            "lllyasviel/flux_redux_bfl": flux_redux(work)}


BUILDERS = {"hunyuanvideo-1.5-i2v-480p": hunyuanvideo15_i2v, "framepack": framepack}
