"""Parallax engine at 1080p30, 6 s: render speed, end to end against the camera engine, depth
inference on the CPU and the quality of what a move uncovers.

    python benchmarks/parallax_bench.py [--frames 180]

- parallax render: the engine's frames for a dolly-in, a circle and a dolly-in with depth of
  field, discarded (frames/s).
- end to end: `pipeline.generate` with libx264 (crf 18, medium) for the parallax dolly-in
  with a depth map, and for the camera engine's zoom-in on the same photo, clip and encoder
  (the peer), in `--rounds` interleaved rounds (camera then parallax, then the other way
  round) so a shared machine's load hits both alike; best of the rounds, wall and CPU time
  (the process's, which load inflates far less). Target: parallax <= 1.5x the camera
  engine's time.
- depth inference: Depth Anything V2 Small built from its published config with random
  weights (24.8 M parameters: the real model's shapes and compute; no weights can be
  downloaded here), loaded through the engine's own path (AutoImageProcessor +
  AutoModelForDepthEstimation from a saved folder) and run on the 1080p photo: cold (first
  call) and warm (median of 3).
- disocclusion: the end of a sideways truck past a near card over a textured far plane, with
  known depth: PSNR of the uncovered area against the true plane, for the engine and for a
  renderer that stretches the card's outline across it (DepthFlow's behaviour).

The photo is the tests' synthetic scene at 2560x1440 (tests/parallax_scene.py). Prints a
table and the ratio against the target, writes benchmarks/results/parallax_bench.png.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.parallax_scene import make_scene, reveal_quality  # noqa: E402

from img2vid.core.config import OutputSettings, Settings  # noqa: E402
from img2vid.core.progress import CancelToken, no_progress  # noqa: E402
from img2vid.core.request import build_request  # noqa: E402
from img2vid.engines.parallax.engine import ParallaxEngine  # noqa: E402
from img2vid.execution import pipeline  # noqa: E402

WIDTH, HEIGHT, FPS = 1920, 1080, 30
SOURCE = (2560, 1440)
TARGET_E2E = 1.5
RESULTS = ROOT / "benchmarks" / "results"

# Depth-Anything-V2-Small-hf config.json (hub commit 5426e4f; /work/shared/model-configs/
# LAYOUTS.md section 12): dinov2 backbone 384 wide, 6 heads, 12 layers, patch 14.
DEPTH_CONFIG = {"hidden_size": 384, "num_attention_heads": 6, "num_hidden_layers": 12,
                "image_size": 518, "patch_size": 14}


def render_fps(engine: ParallaxEngine, photo, depth: Path, motion: str, frames: int,
               depth_of_field: float = 0.0) -> float:
    request = build_request(images=(photo.path,), engine="parallax", motion=motion,
                            depth=str(depth), width=WIDTH, height=HEIGHT, num_frames=frames,
                            fps=FPS, depth_of_field=depth_of_field)
    start = time.perf_counter()
    clip = engine.generate(request, [photo], no_progress, CancelToken())
    count = sum(1 for _ in clip.frames)
    return count / (time.perf_counter() - start)


def end_to_end(settings: Settings, photo_path: Path, depth: Path | None,
               frames: int) -> tuple[float, float]:
    """(wall, CPU) seconds of one `pipeline.generate` call."""
    fields = ({"engine": "parallax", "motion": "dolly-in", "depth": str(depth)} if depth
              else {"engine": "camera", "motion": "zoom-in"})
    request = build_request(images=(str(photo_path),), width=WIDTH, height=HEIGHT,
                            num_frames=frames, fps=FPS, crf=18, encode_speed="medium",
                            **fields)
    start, cpu = time.perf_counter(), time.process_time()
    pipeline.generate(request, settings)
    return time.perf_counter() - start, time.process_time() - cpu


def rounds(settings: Settings, photo_path: Path, depth: Path, frames: int,
           count: int) -> dict[str, list[float]]:
    """Camera and parallax end to end, interleaved, each going first in every other round."""
    runs: dict[str, list[float]] = {"camera": [], "camera_cpu": [], "parallax": [],
                                    "parallax_cpu": []}
    for index in range(count):
        order = (None, depth) if index % 2 == 0 else (depth, None)
        for which in order:
            name = "parallax" if which else "camera"
            wall, cpu = end_to_end(settings, photo_path, which, frames)
            runs[name].append(wall)
            runs[f"{name}_cpu"].append(cpu)
            print(f"  round {index + 1}: {name} {wall:.1f} s wall, {cpu:.1f} s CPU "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
    return runs


def depth_inference(folder: Path, photo) -> tuple[float, float, int]:
    import torch
    from tests.parallax_scene import save_tiny_depth_model
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    from img2vid.engines.parallax.depth import DepthEstimator, resolve_depth_model

    save_tiny_depth_model(folder)  # the processor config; the model is replaced below
    backbone = Dinov2Config(**DEPTH_CONFIG, out_features=["stage3", "stage6", "stage9",
                                                          "stage12"],
                            out_indices=[3, 6, 9, 12], reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, fusion_hidden_size=64,
                                 head_hidden_size=32, neck_hidden_sizes=[48, 96, 192, 384],
                                 patch_size=14)
    torch.manual_seed(0)
    model = DepthAnythingForDepthEstimation(config)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder)
    estimator = DepthEstimator(resolve_depth_model(str(folder), Settings()))
    start = time.perf_counter()
    estimator(photo.pixels)
    cold = time.perf_counter() - start
    warm = []
    for _ in range(3):
        start = time.perf_counter()
        estimator(photo.pixels)
        warm.append(time.perf_counter() - start)
    return cold, statistics.median(warm), params


def plot(rows: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = ["camera e2e", "parallax e2e"]
    left.bar(names, [rows["camera_e2e_s"], rows["parallax_e2e_s"]], color=["grey", "tab:blue"])
    left.axhline(rows["camera_e2e_s"] * TARGET_E2E, color="red", ls="--", label="1.5x target")
    left.set_ylabel("seconds, 1080p30 6 s incl. x264")
    left.legend()
    right.bar(["engine", "stretched outline"], [rows["reveal_db"], rows["stretched_db"]],
              color=["tab:blue", "grey"])
    right.set_ylabel("PSNR of the uncovered area (dB)")
    fig.suptitle("img2vid parallax engine")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=FPS * 6)
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved camera/parallax end-to-end rounds (best of)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="img2vid-parallax-bench-") as tmp:
        folder = Path(tmp)
        scene = make_scene(folder, *SOURCE)
        settings = Settings(output=OutputSettings(directory=folder / "out"))
        engine = ParallaxEngine(settings)
        rows: dict[str, float] = {}
        rows["render_fps_dolly"] = render_fps(engine, scene.photo, scene.depth_path, "dolly-in",
                                              args.frames)
        rows["render_fps_circle"] = render_fps(engine, scene.photo, scene.depth_path, "circle",
                                               args.frames)
        rows["render_fps_dof"] = render_fps(engine, scene.photo, scene.depth_path, "dolly-in",
                                            args.frames, depth_of_field=1.0)
        photo_path = Path(scene.photo.path)
        runs = rounds(settings, photo_path, scene.depth_path, args.frames, args.rounds)
        for name, values in runs.items():
            rows[f"{name}_e2e_s"] = min(values)
        rows["ratio_rounds"] = statistics.median(
            p / c for p, c in zip(runs["parallax"], runs["camera"]))
        reveal = reveal_quality(engine, scene, WIDTH, HEIGHT)
        rows["reveal_db"], rows["stretched_db"] = reveal.ours_db, reveal.stretched_db
        cold, warm, params = depth_inference(folder / "depth-model", scene.photo)
        rows["depth_cold_s"], rows["depth_warm_s"] = cold, warm
    ratio = rows["parallax_e2e_s"] / rows["camera_e2e_s"]
    cpu_ratio = rows["parallax_cpu_e2e_s"] / rows["camera_cpu_e2e_s"]
    print(f"1080p30, {args.frames} frames, {os.cpu_count()} CPUs, load average at start "
          f"{load:.1f}, at end {os.getloadavg()[0]:.1f}")
    table = [
        ("parallax render, dolly-in", f"{rows['render_fps_dolly']:.1f} frames/s"),
        ("parallax render, circle", f"{rows['render_fps_circle']:.1f} frames/s"),
        ("parallax render, dolly-in, depth of field 1",
         f"{rows['render_fps_dof']:.1f} frames/s"),
        (f"end to end, camera zoom-in (peer), best of {args.rounds}",
         f"{rows['camera_e2e_s']:.1f} s ({rows['camera_cpu_e2e_s']:.1f} s CPU)"),
        (f"end to end, parallax dolly-in, best of {args.rounds}",
         f"{rows['parallax_e2e_s']:.1f} s ({rows['parallax_cpu_e2e_s']:.1f} s CPU)"),
        ("parallax / camera, wall (best of each)",
         f"{ratio:.2f}x (target <= {TARGET_E2E}x: {'met' if ratio <= TARGET_E2E else 'MISSED'})"),
        ("parallax / camera, wall (median of the rounds' ratios)",
         f"{rows['ratio_rounds']:.2f}x"),
        ("parallax / camera, CPU seconds", f"{cpu_ratio:.2f}x"),
        (f"depth, Depth Anything V2 Small shapes ({params / 1e6:.1f} M params), cold",
         f"{rows['depth_cold_s']:.2f} s"),
        ("depth, warm (median of 3)", f"{rows['depth_warm_s']:.2f} s"),
        ("uncovered area PSNR, engine", f"{rows['reveal_db']:.1f} dB"),
        ("uncovered area PSNR, stretched outline", f"{rows['stretched_db']:.1f} dB"),
    ]
    width = max(len(name) for name, _ in table)
    print(f"| {'measure'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in table:
        print(f"| {name.ljust(width)} | {value} |")
    plot(rows, RESULTS / "parallax_bench.png")
    print(f"plot: {RESULTS / 'parallax_bench.png'}")


if __name__ == "__main__":
    main()
