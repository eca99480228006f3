"""Live previews and long-video seams: what previews cost, and what colour matching buys.

A small random-weight Wan 2.1-style model (built here, nothing downloaded: a 1.8 M-parameter
transformer, a 0.8 M-parameter VAE) runs through img2vid's DiffusionEngine. Why this model: a
preview costs the same whatever the denoiser's size (it projects 3 latent frames and writes a
small PNG), so the cheaper a step, the larger the share; this model's steps take about half a
second on one CPU thread (a real model's take seconds on a GPU), so its share is a pessimistic
bound rather than noise, and the whole run stays within a few minutes on a 2-core machine.
The VAE is kept small so that denoising, not decoding, is most of a job, as with real models.

- preview cost: the same job (same seed) with previews off (the peer, measured in the same run,
  runs interleaved), at the default rate (about 8 per job) and on every step. Each preview is
  also written as a PNG the way `--preview PATH` does. The table gives generation time, the
  time spent making previews (measured in the engine, plus the PNG writes) as a percent of
  generation time (target: under 5% at the default rate), the difference of the medians
  against the peer in CPU seconds of this process (steadier than the wall clock on a shared
  machine), and whether the video is identical to the peer's;
- seams: a clip twice the window length, chained; each seam's colour difference (CIE76 delta E
  of the mean colours across it) and PSNR, with colour matching and without it.

    python benchmarks/preview_seams_bench.py                # CPU, about three minutes
    python benchmarks/preview_seams_bench.py --device cuda --side 512 --frames 33

Writes benchmarks/results/preview_seams_<device>.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
RESULTS = ROOT / "benchmarks" / "results"


def build_model(folder: Path) -> Path:
    """A Wan I2V pipeline with small but non-trivial sizes (about 2.7 M parameters)."""
    import torch
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
        T5Tokenizer,
        UMT5Config,
        UMT5EncoderModel,
    )

    torch.manual_seed(0)
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(c, -3.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    pipe = WanImageToVideoPipeline(
        tokenizer=T5Tokenizer(vocab=vocab, extra_ids=0),
        text_encoder=UMT5EncoderModel(UMT5Config(
            vocab_size=len(vocab), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8)),
        vae=AutoencoderKLWan(base_dim=16, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                             temperal_downsample=[False, True, True]),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        image_processor=CLIPImageProcessor(crop_size={"height": 32, "width": 32},
                                           size={"shortest_edge": 32}),
        image_encoder=CLIPVisionModel(CLIPVisionConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=32,
            intermediate_size=64, patch_size=8)),
        transformer=WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=32,
            in_channels=36, out_channels=16, text_dim=64, freq_dim=64, ffn_dim=512,
            num_layers=6, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
            rope_max_seq_len=1024, image_dim=32))
    target = folder / "wan-bench"
    pipe.save_pretrained(target)
    return target


def timed_run(engine: Any, request: Any, photo: Any, preview_file: Path) -> dict[str, Any]:
    """One job; previews written as the CLI's --preview writes them, their time measured."""
    from img2vid.core.progress import CancelToken
    from img2vid.interfaces.cli.app import with_preview

    written = {"count": 0, "seconds": 0.0}

    def record(event: Any) -> None:
        written["count"] += event.preview is not None

    write = with_preview(record, preview_file)

    stages: dict[str, float] = {}

    def progress(event: Any) -> None:
        started = time.perf_counter()
        stages.setdefault(event.stage, started)  # when denoising and decoding began
        write(event)
        if event.preview is not None:
            written["seconds"] += time.perf_counter() - started

    cpu = time.process_time()
    clip = engine.generate(request, [photo], progress, CancelToken())
    frames = np.stack(list(clip.frames))
    cpu = time.process_time() - cpu
    timings = clip.info["timings"]
    return {"generate_s": timings["generate_s"], "count": written["count"],
            "denoise_s": stages["decode"] - stages["denoise"], "cpu_s": cpu,
            "preview_s": timings["preview_s"] + written["seconds"], "frames": frames,
            "info": clip.info}


MODES = (("off (peer)", -1), ("default", 0), ("every step", 1))


def measure_previews(engine: Any, request: Any, photo: Any, repeats: int,
                     folder: Path) -> list[dict[str, Any]]:
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in MODES}
    for _ in range(repeats):
        for label, interval in MODES:  # interleaved: machine load drifts alike for each
            engine.preview_interval = interval
            runs[label].append(timed_run(engine, request, photo, folder / "live.png"))
    engine.preview_interval = 0
    peer = runs[MODES[0][0]]
    # the comparison with the peer is in CPU seconds of this process: on a shared machine the
    # wall clock also counts other people's work (the previews' own share is wall over wall)
    peer_s = statistics.median(r["cpu_s"] for r in peer)
    rows = []
    for label, _ in MODES:
        generate_s = statistics.median(r["generate_s"] for r in runs[label])
        preview_s = statistics.median(r["preview_s"] for r in runs[label])
        same = all(np.array_equal(r["frames"], peer[0]["frames"]) for r in runs[label])
        denoise_s = statistics.median(r["denoise_s"] for r in runs[label])
        cpu_s = statistics.median(r["cpu_s"] for r in runs[label])
        rows.append({"previews": label, "count": runs[label][0]["count"],
                     "generate_s": round(generate_s, 3), "denoise_s": round(denoise_s, 3), "preview_s": round(preview_s, 4),
                     "preview_pct": round(100 * preview_s / generate_s, 2),
                     "cpu_s": round(cpu_s, 3),
                     "vs_peer_pct": round(100 * (cpu_s - peer_s) / peer_s, 2),
                     "same_video": same})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--side", type=int, default=96)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steady "
                        "timings on a shared machine, as the test suite runs)")
    args = parser.parse_args()
    import torch

    if args.device == "cpu":
        torch.set_num_threads(args.threads)

    from img2vid.core.config import Settings
    from img2vid.core.request import build_request
    from img2vid.engines.diffusion import DiffusionEngine
    from img2vid.media.images import load_image

    photo_path = ROOT / "examples" / "coffee.png"
    photo = load_image(photo_path)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(Path(tmp))
        engine = DiffusionEngine(Settings(), device=args.device)
        base = {"images": (str(photo_path),), "model": str(model), "width": args.side,
                "height": args.side, "num_inference_steps": args.steps, "seed": 1}
        request = build_request(num_frames=args.frames, **base)
        timed_run(engine, request, photo, Path(tmp) / "live.png")  # load and warm up
        rows = measure_previews(engine, request, photo, args.repeats, Path(tmp))
        source = engine._loaded.previewer.source if engine._loaded else "?"
        long = build_request(num_frames=2 * args.frames - 1, window_frames=args.frames,
                             prompt="a | b", **base)
        info = timed_run(engine, long, photo, Path(tmp) / "live.png")["info"]
        engine.release()

    print(f"previews: Wan 2.1-style model (2.7 M parameters) {args.side}x{args.side}, "
          f"{args.frames} frames, {args.steps} steps on {args.device}, median of "
          f"{args.repeats}; projection: {source}; peer = previews off, same seed, same run")
    print(f"{'previews':<12}{'count':>6}{'generate s':>12}{'denoise s':>11}{'previews s':>12}"
          f"{'previews %':>12}{'CPU s':>8}{'vs peer %':>11}{'same video':>12}")
    for row in rows:
        print(f"{row['previews']:<12}{row['count']:>6}{row['generate_s']:>12.3f}"
              f"{row['denoise_s']:>11.3f}{row['preview_s']:>12.4f}{row['preview_pct']:>12.2f}"
              f"{row['cpu_s']:>8.2f}{row['vs_peer_pct']:>11.2f}"
              f"{'yes' if row['same_video'] else 'NO':>12}")
    default = rows[1]["preview_pct"]
    print(f"default rate: {default:.2f}% of generation time on previews "
          f"({'under' if default < 5 else 'OVER'} the 5% target)")
    print(f"\nseams of a {2 * args.frames - 1}-frame clip in {args.frames}-frame windows")
    print(f"{'seam at frame':<15}{'dE matched':>12}{'dE unmatched':>14}{'ratio':>8}"
          f"{'PSNR matched':>14}{'PSNR unmatched':>16}")
    for seam in info["seams"]:
        ratio = seam["colour_difference"] / max(seam["colour_difference_unmatched"], 1e-9)
        print(f"{seam['frame']:<15}{seam['colour_difference']:>12.3f}"
              f"{seam['colour_difference_unmatched']:>14.3f}{ratio:>8.2f}"
              f"{seam['psnr']:>14.2f}{seam['psnr_unmatched']:>16.2f}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"preview_seams_{args.device.split(':')[0]}"
    out.with_suffix(".json").write_text(json.dumps(
        {"args": vars(args), "projection": source, "previews": rows, "seams": info["seams"],
         "windows": info["windows"], "wall_s": round(time.perf_counter() - started, 1),
         "load_average": os.getloadavg()},
        indent=2) + "\n")
    plot(rows, info["seams"], out.with_suffix(".png"))
    print(f"\nwrote {out.with_suffix('.json')} and {out.with_suffix('.png')} "
          f"in {time.perf_counter() - started:.0f} s")
    return 0


def plot(rows: list[dict[str, Any]], seams: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.bar([r["previews"] for r in rows], [r["preview_pct"] for r in rows])
    left.axhline(5, color="red", linestyle="--", label="5% target")
    left.set_ylabel("generation time spent on previews (%)")
    left.legend()
    x = np.arange(len(seams))
    right.bar(x - 0.2, [s["colour_difference_unmatched"] for s in seams], 0.4,
              label="unmatched")
    right.bar(x + 0.2, [s["colour_difference"] for s in seams], 0.4, label="colour matched")
    for i, seam in enumerate(seams):
        top = max(seam["colour_difference"], seam["colour_difference_unmatched"])
        right.annotate(f"PSNR {seam['psnr_unmatched']:.1f} -> {seam['psnr']:.1f} dB",
                       (i, top), ha="center", va="bottom", fontsize=8)
    right.set_xticks(x, [f"seam {i + 1}" for i in x])
    right.set_ylabel("colour difference (CIE76 dE)")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
