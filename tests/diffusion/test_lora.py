"""--lora: a tiny LoRA built here changes the output, is recorded with its hash and scale, and
unloads cleanly; a LoRA made for other layers is refused with exit 2 and one line."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from img2vid.media.images import file_sha256
from tests.diffusion.conftest import frames_of, run_model

SMALL = {"width": 64, "height": 64, "num_frames": 5, "num_inference_steps": 2, "seed": 5}


def write_lora(path: Path, blocks: int, width: int, rank: int = 2, seed: int = 0) -> Path:
    """A diffusers-format Wan LoRA on every block's self-attention q/k/v/o projections."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    state = {}
    for block in range(blocks):
        for proj in ("to_q", "to_k", "to_v", "to_out.0"):
            name = f"transformer.blocks.{block}.attn1.{proj}"
            state[f"{name}.lora_A.weight"] = torch.randn(rank, width, generator=gen)
            state[f"{name}.lora_B.weight"] = torch.randn(width, rank, generator=gen)
    save_file(state, str(path))
    return path


@pytest.fixture(scope="module")
def tiny_lora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # the tiny Wan's transformer: 2 blocks, hidden width 2 heads x 8 = 16
    return write_lora(tmp_path_factory.mktemp("lora") / "tiny wan lora.safetensors", 2, 16)


@pytest.fixture(scope="module")
def wan14b_lora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # shaped like a LoRA for Wan 14B (40 blocks of width 5120), rank 1 to stay small
    return write_lora(tmp_path_factory.mktemp("lora") / "wan14b.safetensors", 40, 5120, rank=1)


run = partial(run_model, small=SMALL)


def test_lora_changes_the_output_is_recorded_and_unloads(engine, wan_dir, small_photo,
                                                         loaded_photo, tiny_lora):
    before = frames_of(run(engine, wan_dir, small_photo, loaded_photo))
    with_lora = run(engine, wan_dir, small_photo, loaded_photo, lora=(f"{tiny_lora}:0.8",))
    after = frames_of(run(engine, wan_dir, small_photo, loaded_photo))
    assert np.abs(frames_of(with_lora).astype(int) - before.astype(int)).mean() > 0.5
    np.testing.assert_array_equal(before, after)  # the cached pipeline is clean again
    (record,) = with_lora.info["loras"]
    assert record["sha256"] == file_sha256(tiny_lora) and record["scale"] == 0.8
    assert record["layers"] == 8 and record["source"] == str(tiny_lora)
    transformer = engine._loaded.pipe.transformer
    assert not any("lora" in name for name, _ in transformer.named_parameters())


def test_lora_for_other_layers_is_refused_with_one_line(engine, wan_dir, small_photo,
                                                        loaded_photo, wan14b_lora, tmp_path,
                                                        capsys):
    from img2vid.interfaces.cli.app import main

    out = tmp_path / "x.mp4"
    code = main(["generate", str(small_photo), "--model", str(wan_dir), "--lora",
                 str(wan14b_lora), "--num-inference-steps", "1", "--width", "64",
                 "--height", "64", "--num-frames", "5", "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "only 0 of its 160 layers fit" in err[0] and "width 16" in err[0]
    assert "seems made for Wan 14B" in err[0] and "40 blocks, width 5120" in err[0]
    assert not out.exists()


def test_cli_lora_is_repeatable_and_batch_rows_take_a_lora_column(wan_dir, small_photo,
                                                                  tiny_lora, tmp_path):
    from img2vid.execution.batch import DONE, run_batch
    from img2vid.interfaces.cli.app import build_parser

    args = build_parser().parse_args(["generate", "p.png", "--lora", "a/b:0.5", "--lora",
                                      "c.safetensors"])
    assert args.lora == ["a/b:0.5", "c.safetensors"]

    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "style.safetensors").write_bytes(tiny_lora.read_bytes())
    manifest = folder / "rows.csv"
    manifest.write_text(f"image,lora,seed\n{small_photo},style.safetensors:0.5,5\n")
    options = {"model": str(wan_dir), **{k: v for k, v in SMALL.items() if k != "seed"}}
    from img2vid.core.config import Settings

    result = run_batch(str(manifest), options, Settings(), output_dir=tmp_path / "out")
    assert result.counts[DONE] == 1, result.rows
    sidecar = json.loads((tmp_path / "out" / "photo.mp4.json").read_text())
    (record,) = sidecar["engine_info"]["loras"]
    assert record["scale"] == 0.5 and record["sha256"] == file_sha256(tiny_lora)


def test_a_fused_lora_matches_the_unfused_one_and_unfuses_cleanly(engine, wan_dir, small_photo,
                                                                   loaded_photo, tiny_lora):
    def weights() -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in engine._loaded.pipe.transformer.state_dict().items()}

    before = frames_of(run(engine, wan_dir, small_photo, loaded_photo))
    clean = weights()
    unfused = frames_of(run(engine, wan_dir, small_photo, loaded_photo,
                            lora=(f"{tiny_lora}:0.8",)))
    fused_clip = run(engine, wan_dir, small_photo, loaded_photo, lora=(f"{tiny_lora}:0.8",),
                     lora_fuse=True)
    fused = frames_of(fused_clip)
    after = frames_of(run(engine, wan_dir, small_photo, loaded_photo))
    # the same deltas added into the weights: equal up to float rounding
    assert np.abs(fused.astype(int) - before.astype(int)).mean() > 0.5
    assert np.abs(fused.astype(int) - unfused.astype(int)).max() <= 2
    assert [r["fused"] for r in fused_clip.info["loras"]] == [True]
    # unfused and unloaded: the next job is the one that never had it, bit for bit
    np.testing.assert_array_equal(before, after)
    for name, tensor in weights().items():
        torch.testing.assert_close(tensor, clean[name], rtol=0, atol=1e-6)


def test_config_fuses_loras_unless_the_request_says_not_to(wan_dir, small_photo, loaded_photo,
                                                           tiny_lora):
    from img2vid.core.config import ModelSettings, Settings
    from img2vid.engines.diffusion import DiffusionEngine

    fusing = DiffusionEngine(Settings(models=ModelSettings(lora_fuse=True)))
    try:
        by_config = run(fusing, wan_dir, small_photo, loaded_photo, lora=(str(tiny_lora),))
        asked_not = run(fusing, wan_dir, small_photo, loaded_photo, lora=(str(tiny_lora),),
                        lora_fuse=False)
    finally:
        fusing.release()
    assert by_config.info["loras"][0]["fused"] is True
    assert asked_not.info["loras"][0]["fused"] is False
