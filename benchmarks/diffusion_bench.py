"""Diffusion engine benchmark: real-size I2VGen-XL / SVD-XT with random weights, reference table.

Builds the model from the published configs in benchmarks/model-configs (same shapes, compute and
memory as the real checkpoints, nothing downloaded), saves it like a checkpoint, and runs the
reference rows through img2vid's DiffusionEngine (memory planner, seeding, step hooks), recording
time, peak memory and model-FLOPs utilisation (torch.utils.flop_counter on the CUDA attention path
over time x the GPU's peak bf16 rate). The peer measured in the same run is the diffusers
pipeline called directly (everything on the GPU, its own defaults). Ratios are also given
against the published RTX 4090 figures for I2VGen-XL.

    python benchmarks/diffusion_bench.py --device cuda --model i2vgen-xl
    python benchmarks/diffusion_bench.py --device cpu --reduced      # proves the script on CPU

Writes benchmarks/results/diffusion_<model>_<device>.json and .png.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

CONFIGS = ROOT / "benchmarks" / "model-configs"  # provenance: its SOURCES.md
RESULTS = ROOT / "benchmarks" / "results"

# (side px, frames, steps): the diffusion presets preview/standard/high/max, square input.
ROWS = [(512, 8, 30), (512, 16, 50), (768, 24, 80), (1024, 32, 100)]
REDUCED_ROWS = [(64, 4, 2), (64, 6, 3), (96, 6, 3), (128, 8, 3)]
# Published I2VGen-XL figures on an RTX 4090: seconds, peak GB.
RTX4090 = {ROWS[0]: (23, 12.1), ROWS[1]: (51, 13.8), ROWS[2]: (108, 17.6), ROWS[3]: (167, 21.3)}
# Dense bf16 tensor-core peak, TFLOP/s, by a fragment of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0,
                    "L40S": 362.1, "RTX 4090": 165.2, "A10G": 70.0, "L4": 121.0,
                    "RTX 3090": 71.0, "A6000": 154.8}
H100_TARGET = {"row": ROWS[1], "seconds": 10.0, "resident_gb": 10.0, "offload_gb": 8.0}


@dataclass
class Row:
    side: int
    frames: int
    steps: int
    seconds: float
    peak_gb: float | None
    estimate_gb: float
    memory_level: str
    gflop: float | None
    mfu: float | None
    peer_seconds: float | None = None
    peer_peak_gb: float | None = None


# --- building real-size models from configs -------------------------------------------------

def _json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


def _shrink(config: dict[str, Any], kind: str) -> dict[str, Any]:
    """Same architecture, a few channels and layers: the CPU proof of the script."""
    c = dict(config)
    if kind == "unet":
        c["block_out_channels"] = [32, 64, 128, 128]
        c["layers_per_block"] = 1
        c["cross_attention_dim"] = 32
        if "addition_time_embed_dim" in c:  # SVD: 3 added-time ids of this width
            c["addition_time_embed_dim"] = 8
            c["projection_class_embeddings_input_dim"] = 24
            c["num_attention_heads"] = [1, 2, 4, 4]
        else:  # I2VGen-XL reads attention_head_dim as the head count
            c["attention_head_dim"] = 4
            c["num_attention_heads"] = 4
    elif kind == "vae":
        c["block_out_channels"] = [32, 32, 64, 64]
        c["layers_per_block"] = 1
    elif kind in ("text", "vision"):
        c.update(hidden_size=32, intermediate_size=64, num_attention_heads=2,
                 num_hidden_layers=2, projection_dim=32)
    return c


def write_tokenizer(folder: Path) -> Path:
    """A small CLIP BPE (printable ASCII; every id far below the real 49408-token vocab)."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for code in range(33, 127):
        vocab[chr(code)] = len(vocab)
        vocab[chr(code) + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    return folder


def build_pipeline(model: str, configs: Path, reduced: bool, device: str, out: Path) -> Any:
    """Random-weight pipeline from the published configs (device "meta" builds shapes only)."""
    import diffusers
    import torch
    import transformers

    src = configs / model
    index = json.loads((src / "model_index.json").read_text())

    def cfg(component: str, name: str = "config.json", kind: str = "") -> dict[str, Any]:
        data = _json(src / component / name)
        return _shrink(data, kind) if reduced and kind else data

    torch.manual_seed(0)
    parts: dict[str, Any] = {}
    with torch.device(device):
        unet_cls = getattr(diffusers, index["unet"][1])
        parts["unet"] = unet_cls.from_config(cfg("unet", kind="unet"))
        parts["vae"] = getattr(diffusers, index["vae"][1]).from_config(cfg("vae", kind="vae"))
        vision = transformers.CLIPVisionConfig(**cfg("image_encoder", kind="vision"))
        parts["image_encoder"] = transformers.CLIPVisionModelWithProjection(vision)
        if "text_encoder" in index:
            text = transformers.CLIPTextConfig(**cfg("text_encoder", kind="text"))
            parts["text_encoder"] = transformers.CLIPTextModel(text)
    parts["scheduler"] = getattr(diffusers, index["scheduler"][1]).from_config(
        cfg("scheduler", "scheduler_config.json"))
    parts["feature_extractor"] = transformers.CLIPImageProcessor(
        **cfg("feature_extractor", "preprocessor_config.json"))
    if "tokenizer" in index:
        parts["tokenizer"] = transformers.CLIPTokenizer.from_pretrained(
            write_tokenizer(out / "_tokenizer"))
    return getattr(diffusers, index["_class_name"])(**parts)


def build_model(model: str, configs: Path, reduced: bool, dtype: Any, device: str,
                out: Path) -> Path:
    """Random-weight pipeline from the published configs, saved like a hub checkpoint."""
    import torch

    pipe = build_pipeline(model, configs, reduced, device, out)
    if dtype != torch.float32:
        pipe.to(dtype=dtype)
    target = out / model
    pipe.save_pretrained(target)
    del pipe
    return target


# --- measuring -----------------------------------------------------------------------------

def real_size_parameters(model: str, configs: Path) -> dict[str, int]:
    """Parameter counts of the real-size model, built on the meta device (no memory used)."""
    with tempfile.TemporaryDirectory() as tmp:
        pipe = build_pipeline(model, configs, False, "meta", Path(tmp))
    return {name: sum(p.numel() for p in c.parameters())
            for name, c in pipe.components.items() if hasattr(c, "parameters")}


def photo(path: Path, side: int = 1024) -> Path:
    """A square crop of the bundled example photo."""
    from PIL import Image

    with Image.open(ROOT / "examples" / "coffee.png") as im:
        h = min(im.size)
        im.convert("RGB").crop((0, 0, h, h)).resize((side, side)).save(path)
    return path


def engine_run(engine: Any, folder: Path, image: Any, side: int, frames: int, steps: int,
               memory: str) -> dict[str, Any]:
    from img2vid.core.progress import CancelToken
    from img2vid.core.request import build_request

    # SVD takes no prompt and its own guidance scale; the real prompt's length does not
    # change the compute (CLIP pads to 77 tokens)
    text = {"prompt": "waves crash on the rocks", "negative_prompt": "blurry, static",
            "guidance_scale": 9.0} if "i2vgen" in folder.name else {"guidance_scale": 3.0}
    req = build_request(images=(image.path,), model=str(folder), width=side, height=side,
                        num_frames=frames, num_inference_steps=steps, seed=1234, memory=memory,
                        **text)
    clip = engine.generate(req, [image], lambda e: None, CancelToken())
    for _ in clip.frames:
        pass
    return clip.info


def count_gflop(engine: Any, folder: Path, image: Any, side: int, frames: int, steps: int,
                memory: str) -> float:
    """Model FLOPs of a full run: counted at 1 and 2 steps, extended linearly to `steps`."""
    from torch.utils.flop_counter import FlopCounterMode

    totals = []
    for n in (1, 2):
        with FlopCounterMode(display=False) as counter:
            engine_run(engine, folder, image, side, frames, n, memory)
        totals.append(counter.get_total_flops())
    per_step = totals[1] - totals[0]
    return (totals[0] - per_step + per_step * steps) / 1e9


def peer_run(folder: Path, model: str, image_path: Path, side: int, frames: int, steps: int,
             dtype: Any, device: str) -> tuple[float, float | None]:
    """The diffusers pipeline called directly: all on the device, its own defaults."""
    import diffusers
    import torch
    from PIL import Image

    index = json.loads((folder / "model_index.json").read_text())
    pipe = getattr(diffusers, index["_class_name"]).from_pretrained(folder, dtype=dtype)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    image = Image.open(image_path).convert("RGB")
    generator = torch.Generator("cpu").manual_seed(1234)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with torch.inference_mode():
        if model == "i2vgen-xl":
            # clip_skip=None: the pipeline's default clip_skip path reads
            # text_encoder.text_model, which transformers >= 5.6 removed
            pipe(prompt="waves crash on the rocks", negative_prompt="blurry, static",
                 image=image, height=side, width=side, num_frames=frames,
                 num_inference_steps=steps, guidance_scale=9.0, generator=generator,
                 output_type="np", clip_skip=None)
        else:
            pipe(image=image, height=side, width=side, num_frames=frames,
                 num_inference_steps=steps, generator=generator, output_type="np")
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 1024**3 if device == "cuda" else None
    del pipe
    if device == "cuda":
        torch.cuda.empty_cache()
    return seconds, peak


def gpu_peak_tflops(override: float | None) -> tuple[str, float | None]:
    import torch

    if not torch.cuda.is_available():
        return "CPU", override
    name = torch.cuda.get_device_name()
    if override:
        return name, override
    for fragment, tflops in PEAK_BF16_TFLOPS.items():
        if fragment in name:
            return name, tflops
    return name, None


# --- reporting -----------------------------------------------------------------------------

def table(rows: list[Row], model: str, device_name: str, reduced: bool) -> str:
    lines = [f"{model} on {device_name}" + (" (reduced model and sizes: a proof run)"
                                            if reduced else ""),
             "",
             ("| size | frames | steps | img2vid s | peak GB | plan | est. GB | GFLOP | MFU "
              "| diffusers s | diffusers GB | vs 4090 time | vs 4090 GB |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = RTX4090.get((r.side, r.frames, r.steps)) if model == "i2vgen-xl" else None

        def num(v: float | None, fmt: str = ".2f") -> str:
            return "n/a" if v is None else format(v, fmt)

        lines.append(
            f"| {r.side}x{r.side} | {r.frames} | {r.steps} | {r.seconds:.2f} | "
            f"{num(r.peak_gb)} | {r.memory_level} | {r.estimate_gb:.2f} | {num(r.gflop, '.1f')} "
            f"| {num(None if r.mfu is None else 100 * r.mfu, '.1f')}{'%' if r.mfu else ''} | "
            f"{num(r.peer_seconds)} | {num(r.peer_peak_gb)} | "
            f"{num(None if not ref else ref[0] / r.seconds, '.2f')}{'x' if ref else ''} | "
            f"{num(None if not ref or r.peak_gb is None else r.peak_gb / ref[1], '.2f')}"
            f"{'x' if ref and r.peak_gb is not None else ''} |")
    lines.append("")
    lines.append("peak GB: torch.cuda.max_memory_allocated on CUDA, the process's peak RSS on "
                 "CPU. est. GB: the memory planner's estimate. vs 4090 time: reference seconds / "
                 "ours (above 1 is faster); vs 4090 GB: our peak / reference peak (below 1 is "
                 "leaner).")
    return "\n".join(lines)


def plot(rows: list[Row], model: str, device_name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.side}p/{r.frames}f/{r.steps}s" for r in rows]
    x = np.arange(len(rows))
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4))
    ax_t.bar(x - 0.2, [r.seconds for r in rows], 0.4, label="img2vid")
    ax_t.bar(x + 0.2, [r.peer_seconds or 0 for r in rows], 0.4, label="diffusers direct")
    refs = [RTX4090.get((r.side, r.frames, r.steps)) for r in rows]
    if model == "i2vgen-xl" and any(refs):
        ax_t.plot(x, [ref[0] if ref else np.nan for ref in refs], "k_", markersize=25,
                  label="RTX 4090 reference")
        ax_m.plot(x, [ref[1] if ref else np.nan for ref in refs], "k_", markersize=25,
                  label="RTX 4090 reference")
    ax_m.bar(x - 0.2, [r.peak_gb or 0 for r in rows], 0.4, label="img2vid peak")
    ax_m.bar(x + 0.2, [r.peer_peak_gb or 0 for r in rows], 0.4, label="diffusers peak")
    for ax, title in ((ax_t, "seconds"), (ax_m, "peak memory, GB")):
        ax.set_xticks(x, labels, rotation=20)
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.suptitle(f"{model} on {device_name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main ----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--model", choices=["i2vgen-xl", "svd-xt"], default="i2vgen-xl")
    parser.add_argument("--reduced", action="store_true", help="small model and sizes (CPU)")
    parser.add_argument("--memory", default="auto",
                        choices=["auto", "high", "balanced", "low", "minimum"])
    parser.add_argument("--rows", type=int, default=4, help="how many table rows to run")
    parser.add_argument("--no-peer", action="store_true", help="skip the diffusers-direct runs")
    parser.add_argument("--no-flops", action="store_true", help="skip FLOP counting")
    parser.add_argument("--peak-tflops", type=float, help="GPU peak bf16 TFLOP/s for MFU")
    parser.add_argument("--configs", type=Path, default=CONFIGS)
    args = parser.parse_args(argv)

    import torch

    from img2vid.core.config import Settings
    from img2vid.engines.diffusion import DiffusionEngine, runtime
    from img2vid.execution.pipeline import library_versions
    from img2vid.media.images import load_image

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU here (use --device cpu --reduced)")
    if args.device == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    runtime.import_libraries()
    rows_spec = (REDUCED_ROWS if args.reduced else ROWS)[: args.rows]
    device_name, peak_tflops = gpu_peak_tflops(args.peak_tflops)
    RESULTS.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="img2vid-bench-") as tmp:
        tmp_path = Path(tmp)
        dtypes = _spec_for(args.model).family.dtypes(args.device,
                                                     runtime.bf16_supported(args.device))
        dtype = getattr(torch, dtypes["default"])
        print(f"building {args.model} ({'reduced' if args.reduced else 'real size'}) "
              f"in {dtypes}...", flush=True)
        started = time.perf_counter()
        folder = build_model(args.model, args.configs, args.reduced, dtype, args.device,
                             tmp_path)
        print(f"built and saved in {time.perf_counter() - started:.1f} s", flush=True)
        image = load_image(photo(tmp_path / "photo.png", max(r[0] for r in rows_spec)))
        engine = DiffusionEngine(Settings(), device=args.device)

        # warm-up: CUDA context, cuDNN autotuning and the pipeline load stay out of the timings
        engine_run(engine, folder, image, rows_spec[0][0], rows_spec[0][1], 2, args.memory)
        results: list[Row] = []
        for side, frames, steps in rows_spec:
            info = engine_run(engine, folder, image, side, frames, steps, args.memory)
            seconds = info["timings"]["generate_s"]
            gflop = None if args.no_flops else count_gflop(engine, folder, image, side, frames,
                                                           steps, args.memory)
            mfu = (gflop / 1e3 / seconds / peak_tflops) if gflop and peak_tflops else None
            # CUDA: max_memory_allocated; CPU: the process's peak RSS (no per-job figure)
            peak = info.get("peak_vram_gb", info.get("process_peak_rss_gb"))
            row = Row(side, frames, steps, seconds, peak,
                      info["memory_plan"]["estimated_peak_gb"], info["memory_plan"]["level"],
                      gflop, mfu)
            if not args.no_peer:
                engine.release()
                row.peer_seconds, row.peer_peak_gb = peer_run(
                    folder, args.model, tmp_path / "photo.png", side, frames, steps, dtype,
                    args.device)
            results.append(row)
            print(f"  {side}p {frames} frames {steps} steps: {seconds:.2f} s, "
                  f"peak {row.peak_gb} GB ({row.memory_level}), peer {row.peer_seconds} s",
                  flush=True)

        offload_peak = None
        if args.device == "cuda" and not args.reduced and len(rows_spec) > 1:
            side, frames, steps = H100_TARGET["row"]
            info = engine_run(engine, folder, image, side, frames, steps, "low")
            offload_peak = (info["timings"]["generate_s"], info.get("peak_vram_gb"))
        engine.release()

    text = table(results, args.model, device_name, args.reduced)
    params = real_size_parameters(args.model, args.configs)
    text += ("\n\nreal-size parameters (from the configs, built on the meta device): "
             + ", ".join(f"{k} {v / 1e9:.2f} B" for k, v in params.items())
             + f"; {sum(params.values()) * 2 / 1024**3:.2f} GB of weights in 16-bit")
    if offload_peak:
        text += (f"\n\n512x512/16/50 at --memory low (group offload): {offload_peak[0]:.2f} s, "
                 f"peak {offload_peak[1]:.2f} GB")
    if "H100" in device_name and not args.reduced:
        resident = next(r for r in results if (r.side, r.frames, r.steps) == H100_TARGET["row"])
        ok_time = resident.seconds < H100_TARGET["seconds"]
        ok_mem = (resident.peak_gb or 99) < H100_TARGET["resident_gb"]
        ok_off = offload_peak is not None and (offload_peak[1] or 99) < H100_TARGET["offload_gb"]
        text += (f"\nH100 targets (512p/16/50): under 10 s {'met' if ok_time else 'MISSED'}, "
                 f"under 10 GB resident {'met' if ok_mem else 'MISSED'}, under 8 GB with "
                 f"offload {'met' if ok_off else 'MISSED'}")
    print()
    print(text)
    stem = f"diffusion_{args.model}_{args.device}{'_reduced' if args.reduced else ''}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(
        {"model": args.model, "device": device_name, "reduced": args.reduced,
         "peak_bf16_tflops": peak_tflops, "versions": library_versions(),
         "rows": [asdict(r) for r in results], "offload_row": offload_peak,
         "real_size_parameters": params}, indent=2))
    plot(results, args.model, device_name, RESULTS / f"{stem}.png")
    print(f"\nwrote {RESULTS / (stem + '.json')} and .png")
    return 0


def _spec_for(model: str) -> Any:
    from img2vid.engines.diffusion.registry import MODELS

    return MODELS[model]


if __name__ == "__main__":
    raise SystemExit(main())
