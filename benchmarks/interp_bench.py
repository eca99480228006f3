"""Frame interpolation benchmark: milliseconds per in-between frame (flow, RIFE on CPU, and
RIFE in fp16 on CUDA when there is a GPU) at 512x512 and 1920x1080, and PSNR/SSIM on the
ground-truth triplets against the named peer, a 50/50 blend of the neighbours.

    python benchmarks/interp_bench.py [--quick] [--rife-weights PATH]

Prints a Markdown table (pasted into docs/benchmarks.md) and writes
benchmarks/results/interp_bench.png and .json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]  # this checkout's sources and test data

from tests.triplets import SPEEDS, Motion, photo, psnr, render_frames, triplets

from img2vid.postprocess.interpolate import FlowInterpolator

RESULTS = ROOT / "benchmarks" / "results"
SIZES = {"512x512": (512, 512), "1920x1080": (1920, 1080)}


class BlendPeer:
    """The peer: a 50/50 (or 1-t/t) blend of the two neighbours."""

    name = "blend"

    def prepare(self, a: np.ndarray, b: np.ndarray) -> _BlendPair:
        return _BlendPair(a, b)


class _BlendPair:
    confident = True

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        self.a, self.b = a, b

    def render(self, t: float) -> np.ndarray:
        return cv2.addWeighted(self.a, 1.0 - t, self.b, t, 0.0)


def stream(size: tuple[int, int], count: int) -> list[np.ndarray]:
    """A camera move over a photo with an object crossing it, at the benchmark size."""
    scale = size[0] / 256
    motion = Motion().scaled(1.5)
    motion = Motion(pan=(motion.pan[0] * scale, motion.pan[1] * scale), zoom=motion.zoom,
                    angle=motion.angle, object_velocity=(motion.object_velocity[0] * scale,
                                                         motion.object_velocity[1] * scale),
                    object_spin=motion.object_spin)
    return render_frames(photo("hubble_deep_field"), photo("coffee"), list(range(count)),
                         size=size, motion=motion)


def time_per_frame(interpolator: object, frames: list[np.ndarray], factor: int,
                   repeats: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """Median over repeats of ms per in-between frame, streaming pairs at `factor` x."""
    times = []
    for _ in range(repeats):
        start = clock()
        made = 0
        for a, b in itertools.pairwise(frames):
            pair = interpolator.prepare(a, b)  # type: ignore[attr-defined]
            for j in range(1, factor):
                pair.render(j / factor)
                made += 1
        times.append((clock() - start) * 1000 / made)
    return statistics.median(times)


def single_thread_cpu(interpolator: object, frames: list[np.ndarray], factor: int,
                      repeats: int) -> float:
    """CPU ms per in-between frame with OpenCV on one thread: what one idle core needs,
    and hardly affected by other processes competing for the cores."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return time_per_frame(interpolator, frames, factor, repeats, time.process_time)
    finally:
        cv2.setNumThreads(threads)


def quality(render: Callable[[np.ndarray, np.ndarray], np.ndarray],
            scenes: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]
            ) -> dict[str, tuple[float, float]]:
    """Mean (PSNR, SSIM) of the middle frame, per speed and overall."""
    from skimage.metrics import structural_similarity

    rows: dict[str, list[tuple[float, float]]] = {}
    for label, f0, truth, f2 in scenes:
        out = render(f0, f2)
        score = (psnr(out, truth), structural_similarity(out, truth, channel_axis=2,
                                                         data_range=255))
        rows.setdefault(label.split()[-1], []).append(score)
        rows.setdefault("all", []).append(score)
    return {k: (float(np.mean([s[0] for s in v])), float(np.mean([s[1] for s in v])))
            for k, v in rows.items()}


def load_rife(weights: str | None, device: str) -> tuple[object | None, str]:
    try:
        import torch  # noqa: F401
    except ImportError:
        return None, "torch not installed"
    from img2vid.media.models_cache import DownloadError, cache_dir, download_rife
    from img2vid.postprocess.rife import RifeInterpolator

    try:
        path = Path(weights) if weights else download_rife(cache_dir())
    except DownloadError as exc:
        return None, f"weights unavailable: {exc}"
    return RifeInterpolator(path, device=device), ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--rife-weights", help="flownet.pkl (default: the model cache)")
    parser.add_argument("--no-rife", action="store_true", help="time and score flow only")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch CPU threads (default: all cores)")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3

    import torch

    torch.set_num_threads(args.threads)
    engines: dict[str, object] = {"blend (peer)": BlendPeer(), "flow": FlowInterpolator()}
    notes = []
    rife_cpu, why = (None, "--no-rife") if args.no_rife else load_rife(args.rife_weights, "cpu")
    if rife_cpu is not None:
        engines["rife cpu fp32"] = rife_cpu
    else:
        notes.append(f"RIFE skipped: {why}")
    if torch.cuda.is_available() and not args.no_rife:
        rife_gpu, why = load_rife(args.rife_weights, "cuda")
        if rife_gpu is not None:
            engines["rife cuda fp16"] = rife_gpu
    else:
        notes.append("no CUDA device: RIFE fp16 not measured")

    # --- speed ---
    speed: dict[str, dict[str, float]] = {}
    for size_name, size in SIZES.items():
        for name, engine in engines.items():
            slow = name == "rife cpu fp32"
            count = (2 if size_name == "1920x1080" else 3) if slow else 9
            frames = stream(size, count)
            time_per_frame(engine, frames[:2], 2, 1)  # warm-up (allocations, cudnn)
            reps = 1 if slow else repeats
            speed.setdefault(name, {})[f"{size_name} 2x"] = time_per_frame(engine, frames, 2,
                                                                           reps)
            if name == "flow":
                speed[name][f"{size_name} 4x"] = time_per_frame(engine, frames, 4, reps)
                cpu = speed.setdefault("flow, 1-thread CPU time", {})
                cpu[f"{size_name} 2x"] = single_thread_cpu(engine, frames, 2, reps)
                cpu[f"{size_name} 4x"] = single_thread_cpu(engine, frames, 4, reps)
            print(f"  timed {name} at {size_name}", file=sys.stderr)

    # --- quality ---
    scenes = triplets()
    qual = {}
    for name, engine in engines.items():
        if name == "rife cuda fp16":
            continue  # same network as on CPU
        qual[name] = quality(lambda a, b, e=engine: e.prepare(a, b).render(0.5), scenes)
        print(f"  scored {name}", file=sys.stderr)

    report(speed, qual, notes)
    plot(speed, qual)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "interp_bench.json").write_text(json.dumps(
        {"speed_ms": speed, "quality": qual, "notes": notes, "machine": machine()}, indent=2))
    return 0


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    load = os.getloadavg()[0]
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}, "
            f"OpenCV {cv2.__version__}, torch {torch.__version__}, load average {load:.1f}")


def report(speed: dict[str, dict[str, float]], qual: dict[str, dict[str, tuple[float, float]]],
           notes: list[str]) -> None:
    print(f"\nMachine: {machine()}\n")
    columns = list(dict.fromkeys(c for row in speed.values() for c in row))
    print("| ms per in-between frame | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, row in speed.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.1f}" if c in row else "–"
                                          for c in columns) + " |")
    flow = speed["flow"]["1920x1080 2x"]
    print(f"\nflow 1080p 2x: {flow:.1f} ms per in-between, wall clock (target <= 100 ms): "
          f"{'met' if flow <= 100 else 'NOT met'}; "
          f"{flow / speed['blend (peer)']['1920x1080 2x']:.0f}x the cost of the blend peer")
    if "rife cuda fp16" in speed:
        fps = 1000 / speed["rife cuda fp16"]["1920x1080 2x"]
        print(f"RIFE fp16 1080p: {fps:.0f} in-between frames per second (target >= 100)")
    speeds = [f"x{k:g}" for k in SPEEDS]
    print("\n| PSNR dB / SSIM (middle frame, 18 triplets at 256x256) | "
          + " | ".join(f"motion {s}" for s in speeds) + " | all | vs peer |")
    print("|---|" + "---:|" * (len(speeds) + 2))
    peer = qual["blend (peer)"]["all"][0]
    for name, row in qual.items():
        cells = [f"{row[s][0]:.2f} / {row[s][1]:.3f}" for s in speeds + ["all"]]
        print(f"| {name} | " + " | ".join(cells) + f" | {row['all'][0] - peer:+.2f} dB |")
    for note in notes:
        print(f"\nNote: {note}")


def plot(speed: dict[str, dict[str, float]],
         qual: dict[str, dict[str, tuple[float, float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    columns = [c for c in next(iter(speed.values())) if c.endswith("2x")]
    width = 0.8 / len(speed)
    for i, (name, row) in enumerate(speed.items()):
        left.bar(np.arange(len(columns)) + i * width, [row[c] for c in columns], width,
                 label=name)
    left.set_xticks(np.arange(len(columns)) + 0.4 - width / 2, columns)
    left.set_title("speed (2x)")
    left.set_yscale("log")
    left.axhline(100, color="grey", linestyle="--", linewidth=1)
    left.set_ylabel("ms per in-between frame (2x)")
    left.legend(fontsize=8)
    speeds = [f"x{k:g}" for k in SPEEDS]
    for name, row in qual.items():
        right.plot(speeds, [row[s][0] for s in speeds], marker="o", label=name)
    right.set_xlabel("motion speed")
    right.set_ylabel("PSNR of the middle frame (dB)")
    right.legend(fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "interp_bench.png", dpi=120)
    print(f"\nplot: {RESULTS / 'interp_bench.png'}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
