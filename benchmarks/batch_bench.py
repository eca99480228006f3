"""Batch throughput of the camera engine at 720p: local runs vs Ray Data on the same photos.

    python benchmarks/batch_bench.py [--photos 12] [--preset preview] [--skip-ray]

The job: N photos (scikit-image's public-domain photos, cycled and mirrored so every file is
different), one 720p clip each through `img2vid.execution.batch.run_batch` with the camera engine,
into a fresh folder per variant (nothing skipped):

- local, 1 worker: one clip at a time (each clip still renders and encodes on several threads);
- local, N workers: the default, `--workers` = the CPU count;
- ray: the same batch on a local Ray cluster with as many CPUs (`--ray`), one CPU actor per
  CPU. Ray's time counts from the batch call to the last report row, so it includes starting
  the actors and importing img2vid in them (Ray Data does that for every batch); starting the
  cluster itself is shown apart.

Variants run in interleaved rounds and the best time counts, so a burst of load from other
processes skews one round, not one variant. Prints a table with clips per minute and the
ratios to the local default run (the named peer), writes benchmarks/results/batch_bench.json
and batch_bench.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from img2vid.core.config import Settings
from img2vid.core.request import build_request
from img2vid.execution.batch import DONE, run_batch

RESULTS = ROOT / "benchmarks" / "results"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
          "hubble_deep_field", "retina")


def make_photos(folder: Path, count: int) -> list[Path]:
    from skimage import data

    paths = []
    for i in range(count):
        pixels = getattr(data, PHOTOS[i % len(PHOTOS)])()
        if (i // len(PHOTOS)) % 2:
            pixels = pixels[:, ::-1]
        path = folder / f"photo{i:03d}.png"
        Image.fromarray(np.ascontiguousarray(pixels)).save(path)
        paths.append(path)
    return paths


def timed_batch(source: Path, options: dict, out: Path, **kwargs) -> tuple[float, float]:
    """(seconds for the batch, seconds until the first clip was done)."""
    t0 = time.perf_counter()
    first: list[float] = []

    def progress(event) -> None:
        if event.done and not first:
            first.append(time.perf_counter() - t0)

    result = run_batch(str(source), options, Settings(), output_dir=out, progress=progress,
                       **kwargs)
    seconds = time.perf_counter() - t0
    if result.counts[DONE] != result.ran or result.counts["skipped"]:
        raise SystemExit(f"batch did not make every clip: {result.counts}")
    return seconds, first[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--preset", default="preview", help="preview: 720p 24 fps 4 s veryfast; "
                        "standard: 30 fps 5 s medium (both at --resolution 720)")
    parser.add_argument("--rounds", type=int, default=2, help="each variant runs once per "
                        "round, rounds interleaved; the best time counts")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()

    cpus = os.cpu_count() or 1
    options = {"resolution": 720, "preset": args.preset}
    request = build_request(images=("x.png",), **options)
    job = (f"{args.photos} clips, 720p, {request.fps} fps, {request.duration:g} s "
           f"({request.num_frames} frames), x264 crf {request.crf} {request.encode_speed}")
    load_before = os.getloadavg()[0]
    print(f"{job}; {cpus} CPUs ({platform.processor() or platform.machine()}), "
          f"load average {load_before:.1f}")

    variants = {f"local, {w} worker{'s' if w > 1 else ''}": {"workers": w}
                for w in sorted({1, cpus})}
    if not args.skip_ray:
        variants[f"ray, {cpus} CPU actors"] = {"workers": cpus, "ray_address": ""}
    times: dict[str, list[float]] = {name: [] for name in variants}
    firsts: dict[str, list[float]] = {name: [] for name in variants}
    startup = None
    with tempfile.TemporaryDirectory(prefix="img2vid-batch-bench-") as tmp:
        tmp_path = Path(tmp)
        source = tmp_path / "photos"
        source.mkdir()
        make_photos(source, args.photos)

        # Warm-up (imports, first-use caches) so no variant pays for them.
        warm = tmp_path / "warm"
        warm.mkdir()
        make_photos(warm, 1)
        timed_batch(warm, options, tmp_path / "warm-out", workers=1)

        if not args.skip_ray:
            import ray

            t0 = time.perf_counter()
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": str(ROOT / "src")}})
            startup = time.perf_counter() - t0
        try:
            for round_ in range(args.rounds):
                for i, (name, kwargs) in enumerate(variants.items()):
                    out = tmp_path / f"round{round_}-variant{i}"
                    seconds, first = timed_batch(source, options, out, **kwargs)
                    times[name].append(seconds)
                    firsts[name].append(first)
                    print(f"  round {round_ + 1}: {name}: {seconds:.1f} s (first clip after "
                          f"{first:.1f} s)", flush=True)
        finally:
            if not args.skip_ray:
                ray.shutdown()

    rows = []
    for name, kwargs in variants.items():
        best = times[name].index(min(times[name]))
        rows.append({"variant": name, "runner": "ray" if "ray_address" in kwargs else "local",
                     "workers": kwargs["workers"], "clips": args.photos,
                     "seconds": times[name][best], "first_clip_s": firsts[name][best],
                     "all_seconds": times[name], "all_first_clip_s": firsts[name]})
    peer = next(r for r in rows if r["runner"] == "local" and r["workers"] == cpus)
    for row in rows:
        row["clips_per_min"] = row["clips"] / row["seconds"] * 60
        row["time_vs_local"] = row["seconds"] / peer["seconds"]
        row["overhead_s_per_batch"] = row["seconds"] - peer["seconds"]

    print(f"\nbest of {args.rounds} round(s)")
    print(f"{'variant':<22} {'seconds':>8} {'first clip':>11} {'clips/min':>10} "
          f"{'time vs local':>14}")
    for row in rows:
        print(f"{row['variant']:<22} {row['seconds']:8.1f} {row['first_clip_s']:10.1f}s "
              f"{row['clips_per_min']:10.1f} {row['time_vs_local']:13.2f}x")
    for row in rows:
        if row["runner"] == "ray":
            start_up = row["first_clip_s"] - peer["first_clip_s"]
            print(f"\nRay overhead vs {peer['variant']}: {row['time_vs_local']:.2f}x the time, "
                  f"{row['overhead_s_per_batch']:+.1f} s for a batch of {row['clips']} clips, "
                  f"{start_up:+.1f} s of it before the first clip (Ray Data starts the actors "
                  f"and imports img2vid in them for every batch); starting the cluster "
                  f"itself took {startup:.1f} s")

    # Other processes' load skews every variant: it is recorded so results can be judged.
    load = {"before": load_before, "after": os.getloadavg()[0]}
    print(f"load average (1 min) before {load['before']:.1f}, after {load['after']:.1f} "
          f"on {cpus} CPUs")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "batch_bench.json").write_text(json.dumps(
        {"job": job, "cpus": cpus, "machine": platform.platform(), "load_average": load,
         "ray_cluster_start_s": startup, "rounds": args.rounds, "rows": rows}, indent=2))
    plot(rows, f"{job}; {cpus} CPUs, best of {args.rounds}", RESULTS / "batch_bench.png")
    print(f"\nwrote {RESULTS / 'batch_bench.json'} and {RESULTS / 'batch_bench.png'}")


def plot(rows: list[dict], job: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = [r["variant"] for r in rows]
    values = [r["clips_per_min"] for r in rows]
    bars = ax.barh(names, values, color=["#4c72b0" if r["runner"] == "local" else "#dd8452"
                                         for r in rows])
    ax.bar_label(bars, fmt="%.1f", padding=3)
    ax.invert_yaxis()
    ax.set_xlabel("clips per minute (higher is better)")
    ax.set_title(job, fontsize=9)
    ax.set_xlim(0, max(values) * 1.2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
