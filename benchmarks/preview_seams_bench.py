"""Live previews and long-video seams: what previews cost, and what colour matching buys.

A small random-weight Wan 2.1-style model (built here, nothing downloaded) runs through
img2vid's DiffusionEngine:

- preview cost: the same job with previews off (the peer, measured in the same run), at the
  default rate (about 8 per job) and on every step; the table gives generation time and the
  overhead in percent (target: under 5% at the default rate);
- seams: a clip twice the window length, chained; each seam's colour difference (CIE76 delta E
  of the mean colours across it) and PSNR with colour matching, against the same windows
  joined without it.

    python benchmarks/preview_seams_bench.py                # CPU, a minute or two
    python benchmarks/preview_seams_bench.py --device cuda --side 512 --frames 33

Writes benchmarks/results/preview_seams_<device>.json and .png.
"""

from __future__ import annotations

import argparse
import json
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
    """A Wan I2V pipeline with small but non-trivial sizes (about 20 M parameters)."""
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
        vae=AutoencoderKLWan(base_dim=32, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
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


def timed_run(engine: Any, request: Any, photo: Any) -> tuple[float, dict[str, Any], int]:
    from img2vid.core.progress import CancelToken

    previews = []
    t0 = time.perf_counter()
    clip = engine.generate(request, [photo], lambda e: previews.append(e.preview)
                           if e.preview is not None else None, CancelToken())
    frames = list(clip.frames)
    elapsed = time.perf_counter() - t0
    assert frames
    return elapsed - clip.info["timings"]["load_s"], clip.info, len(previews)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from img2vid.core.config import Settings
    from img2vid.core.request import build_request
    from img2vid.engines.diffusion import DiffusionEngine
    from img2vid.media.images import load_image

    photo_path = ROOT / "examples" / "coffee.png"
    photo = load_image(photo_path)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(Path(tmp))
        engine = DiffusionEngine(Settings(), device=args.device)
        base = {"images": (str(photo_path),), "model": str(model), "width": args.side,
                "height": args.side, "num_inference_steps": args.steps, "seed": 1}
        request = build_request(num_frames=args.frames, **base)
        timed_run(engine, request, photo)  # load, warm up, fit the preview projection once
        rows = []
        for label, interval in (("off (peer)", -1), ("default", 0), ("every step", 1)):
            engine.preview_interval = interval
            times, count = [], 0
            for _ in range(args.repeats):
                seconds, _, count = timed_run(engine, request, photo)
                times.append(seconds)
            rows.append({"previews": label, "count": count,
                         "generate_s": round(statistics.median(times), 3)})
            print(f"  previews {label}: {rows[-1]['generate_s']:.3f} s", flush=True)
        peer = rows[0]["generate_s"]
        for row in rows:
            row["overhead_pct"] = round(100 * (row["generate_s"] - peer) / peer, 2)

        engine.preview_interval = 0
        long = build_request(num_frames=2 * args.frames - 1, window_frames=args.frames,
                             prompt="a | b", **base)
        _, info, _ = timed_run(engine, long, photo)
        engine.release()

    print(f"\npreviews: Wan-style model {args.side}x{args.side}, {args.frames} frames, "
          f"{args.steps} steps on {args.device}; peer = previews off, same run")
    print(f"{'previews':<12}{'count':>7}{'generate s':>12}{'overhead %':>12}")
    for row in rows:
        print(f"{row['previews']:<12}{row['count']:>7}{row['generate_s']:>12.3f}"
              f"{row['overhead_pct']:>12.2f}")
    print(f"\nseams of a {2 * args.frames - 1}-frame clip in {args.frames}-frame windows")
    print(f"{'seam at frame':<15}{'dE matched':>12}{'dE unmatched':>14}{'ratio':>8}"
          f"{'PSNR dB':>9}")
    for seam in info["seams"]:
        ratio = seam["colour_difference"] / max(seam["colour_difference_unmatched"], 1e-9)
        print(f"{seam['frame']:<15}{seam['colour_difference']:>12.3f}"
              f"{seam['colour_difference_unmatched']:>14.3f}{ratio:>8.2f}{seam['psnr']:>9.2f}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"preview_seams_{args.device.split(':')[0]}"
    out.with_suffix(".json").write_text(json.dumps(
        {"args": vars(args), "previews": rows, "seams": info["seams"],
         "windows": info["windows"]}, indent=2) + "\n")
    plot(rows, info["seams"], out.with_suffix(".png"))
    print(f"\nwrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return 0


def plot(rows: list[dict[str, Any]], seams: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.bar([r["previews"] for r in rows], [r["overhead_pct"] for r in rows])
    left.axhline(5, color="red", linestyle="--", label="5% target")
    left.set_ylabel("overhead vs previews off (%)")
    left.legend()
    x = np.arange(len(seams))
    right.bar(x - 0.2, [s["colour_difference_unmatched"] for s in seams], 0.4,
              label="unmatched")
    right.bar(x + 0.2, [s["colour_difference"] for s in seams], 0.4, label="colour matched")
    right.set_xticks(x, [f"seam {i + 1}" for i in x])
    right.set_ylabel("colour difference (CIE76 dE)")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
