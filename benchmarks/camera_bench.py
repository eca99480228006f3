"""Camera engine vs FFmpeg's zoompan: speed, CPU, memory and jitter of a 6 s 1080p zoom.

    python benchmarks/camera_bench.py [--frames 180] [--keep-source]

The job: 1920x1080, 30 fps, 180 frames, zoom 1.0 -> 1.3 toward (0.6, 0.4) with linear
easing, from a 3200x1800 photo mosaic full of fine detail (scikit-image's public-domain
photos and textures at their native resolution). Each variant runs in a fresh subprocess so
its peak RSS is its own:

- img2vid render: the camera engine, frames discarded.
- img2vid end to end: the same frames encoded with libx264 (crf 18, medium) while rendering.
- zoompan render / + x264: FFmpeg's zoompan filter through PyAV's libavfilter (the same
  library the ffmpeg CLI uses), the same path in its expression language, yuv420p output
  as `ffmpeg -i photo.png -vf zoompan=... -pix_fmt yuv420p` gives.
- zoompan 8k: the usual anti-jitter recipe, `scale=8000:-1` before zoompan.
- encode alone: the 180 img2vid frames, rendered beforehand, through the same encoder:
  the floor no renderer can beat.

Jitter: each renderer's frames are registered against their predecessor after undoing the
known zoom step (upsampled phase correlation), which gives the frame-to-frame shift of the window in
output pixels; jitter is the spread (std, both axes pooled) of its second difference, i.e.
how unevenly the camera moves. A perfectly smooth move scores ~0.

Prints a table and the ratios against the targets, writes benchmarks/results/camera_bench.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from img2vid.core.config import Settings
from img2vid.core.progress import CancelToken, no_progress
from img2vid.core.request import GenerationRequest, build_request
from img2vid.engines.camera import CameraEngine
from img2vid.execution import pipeline
from img2vid.media.encode import EncodeOptions, open_writer
from img2vid.media.images import LoadedImage, load_image

WIDTH, HEIGHT, FPS = 1920, 1080, 30
SOURCE_SIZE = (3200, 1800)
ZOOM, FOCUS = 1.3, (0.6, 0.4)
CRF, SPEED = 18, "medium"
RESULTS = ROOT / "benchmarks" / "results"

# "rgb": frames as RGB arrays, like the engine's Clip; "yuv": zoompan working in yuv420p, as
# it does when its output goes straight to x264.
VARIANTS = ("img2vid", "zoompan rgb", "zoompan yuv", "zoompan8k rgb", "zoompan8k yuv",
            "img2vid+x264", "zoompan+x264", "zoompan8k+x264", "x264 alone")
RENDERERS = ("img2vid", "zoompan rgb", "zoompan yuv", "zoompan8k rgb", "zoompan8k yuv")
TARGETS = {"render_vs_zoompan": 2.0, "render_vs_zoompan8k": 8.0, "e2e_vs_encode": 1.10}


# --------------------------------------------------------------------------------------------
# The source photo
# --------------------------------------------------------------------------------------------

def build_source(path: Path) -> None:
    """A 3200x1800 mosaic of native-resolution photos and textures (nothing upscaled)."""
    from skimage import data

    def tint(grey: np.ndarray, colour: tuple[float, float, float]) -> np.ndarray:
        return np.clip(grey[:, :, None] * np.array(colour), 0, 255).astype(np.uint8)

    tiles = [
        data.astronaut(), tint(data.grass(), (0.6, 1.0, 0.5)), data.coffee(),
        tint(data.gravel(), (1.0, 0.9, 0.8)), data.hubble_deep_field(), data.chelsea(),
        tint(data.brick(), (1.0, 0.6, 0.5)), data.rocket(), data.retina(),
        tint(data.camera(), (0.9, 0.9, 1.0)),
    ]
    width, height = SOURCE_SIZE
    cell_w, cell_h = 400, 450
    canvas = np.zeros((height, width, 3), np.uint8)
    for n, (y, x) in enumerate((y, x) for y in range(0, height, cell_h)
                               for x in range(0, width, cell_w)):
        tile = tiles[(n * 3) % len(tiles)]
        # Different crops of the large tiles so the mosaic does not repeat exactly.
        oy = (n * 97) % max(1, tile.shape[0] - cell_h + 1)
        ox = (n * 61) % max(1, tile.shape[1] - cell_w + 1)
        crop = tile[oy:oy + cell_h, ox:ox + cell_w]
        canvas[y:y + crop.shape[0], x:x + crop.shape[1]] = crop
    cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))


# --------------------------------------------------------------------------------------------
# Renderers (each yields RGB or yuv420p frames)
# --------------------------------------------------------------------------------------------

def img2vid_request(source: Path, frames: int) -> GenerationRequest:
    return build_request(images=(str(source),), motion="zoom-in", zoom=ZOOM, focus=FOCUS,
                         easing="linear", width=WIDTH, height=HEIGHT, fps=FPS, num_frames=frames,
                         crf=CRF, encode_speed=SPEED)


def img2vid_clip(image: LoadedImage, frames: int) -> Iterator[np.ndarray]:
    clip = CameraEngine(Settings()).generate(img2vid_request(Path(image.path), frames), [image],
                                             no_progress, CancelToken())
    return clip.frames


def zoompan_expr(frames: int) -> str:
    """The same path as the camera engine's zoom-in: geometric zoom, fixed point at the focus."""
    last = max(1, frames - 1)
    return (f"zoompan=z='pow({ZOOM},on/{last})':x='(iw-iw/zoom)*{FOCUS[0]}'"
            f":y='(ih-ih/zoom)*{FOCUS[1]}':d={frames}:s={WIDTH}x{HEIGHT}:fps={FPS}")


def zoompan_frames(pixels: np.ndarray, frames: int, prescale: bool,
                   pix_fmt: str) -> Iterator[av.VideoFrame]:
    """FFmpeg's zoompan over one still, as `-vf [scale=8000:-1,]zoompan=...,format=PIX_FMT`.

    libavfilter negotiates zoompan's working format from both ends: planar RGB for rgb24
    output, yuv420p (a quarter of the chroma to scale) for yuv420p output.
    """
    graph = av.filter.Graph()
    chain = [graph.add_buffer(width=pixels.shape[1], height=pixels.shape[0], format="rgb24",
                              time_base=Fraction(1, FPS))]
    if prescale:
        chain.append(graph.add("scale", "8000:-1"))
    name, args = zoompan_expr(frames).split("=", 1)
    chain += [graph.add(name, args), graph.add("format", pix_fmt), graph.add("buffersink")]
    graph.link_nodes(*chain).configure()
    still = av.VideoFrame.from_ndarray(pixels, format="rgb24")
    still.pts = 0
    graph.push(still)
    graph.push(None)
    for _ in range(frames):
        yield graph.pull()


# --------------------------------------------------------------------------------------------
# One timed variant (runs in its own subprocess)
# --------------------------------------------------------------------------------------------

@dataclass
class Measured:
    variant: str
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    frames: int


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_variant(variant: str, source: Path, frames: int, workdir: Path) -> Measured:
    """Time one variant; the photo is decoded before the clock starts (except through the
    pipeline, which loads it itself, as a user's run does)."""
    image = load_image(source)
    pixels = image.pixels
    out = workdir / f"{variant.replace(' ', '_').replace('+', '_')}.mp4"
    out.unlink(missing_ok=True)
    options = EncodeOptions(crf=CRF, speed=SPEED)
    prepared: list[np.ndarray] = []
    if variant == "x264 alone":
        prepared = list(img2vid_clip(image, frames))
    wall, cpu = time.perf_counter(), _cpu()
    if variant == "img2vid":
        count = sum(1 for _ in img2vid_clip(image, frames))
    elif variant == "img2vid+x264":
        result = pipeline.generate(img2vid_request(source, frames), Settings(), output=out)
        count = result.metadata["output"]["frames"]
    elif variant.startswith("zoompan"):
        name, _, kind = variant.partition(" ")
        prescale = name.startswith("zoompan8k")
        if kind:  # rendering alone
            fmt = "rgb24" if kind == "rgb" else "yuv420p"
            count = sum(1 for _ in zoompan_frames(pixels, frames, prescale, fmt))
        else:
            # The writer's own stream (same codec options); the frames are yuv420p already.
            writer = open_writer(out, WIDTH, HEIGHT, FPS, options)
            for index, frame in enumerate(zoompan_frames(pixels, frames, prescale, "yuv420p")):
                frame.pts = index
                writer.container.mux(writer.stream.encode(frame))
            writer.frames = frames
            count = writer.close().frames
    else:
        writer = open_writer(out, WIDTH, HEIGHT, FPS, options)
        for frame in prepared:
            writer.write(frame)
        count = writer.close().frames
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return Measured(variant, wall, cpu, peak, count)


def measure_in_subprocess(variant: str, source: Path, frames: int, workdir: Path) -> Measured:
    cmd = [sys.executable, __file__, "--variant", variant, "--source", str(source),
           "--frames", str(frames), "--workdir", str(workdir)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return Measured(**json.loads(done.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------------------------
# Jitter
# --------------------------------------------------------------------------------------------

def to_grey(frame: np.ndarray | av.VideoFrame) -> np.ndarray:
    if isinstance(frame, av.VideoFrame):
        return frame.to_ndarray(format="gray").astype(np.float32)
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)


def frame_shifts(frames: Iterator[np.ndarray | av.VideoFrame], count: int) -> np.ndarray:
    """Per-step shift (dx, dy) of the window in output pixels, the known zoom step undone.

    Frame i + 1 shows the photo 1.3^(1/(n-1)) times larger than frame i; enlarging frame i by
    that much about the frame centre leaves only the window's translation, which upsampled
    phase correlation (Guizar-Sicairos, in scikit-image) measures to 0.01 px on the central
    1024x768 region.
    """
    from skimage.registration import phase_cross_correlation

    step = ZOOM ** (1 / max(1, count - 1))
    cu, cv_ = (WIDTH - 1) / 2, (HEIGHT - 1) / 2
    enlarge = np.array([[1 / step, 0, cu * (1 - 1 / step)], [0, 1 / step, cv_ * (1 - 1 / step)]])
    centre = (slice(HEIGHT // 2 - 384, HEIGHT // 2 + 384),
              slice(WIDTH // 2 - 512, WIDTH // 2 + 512))
    shifts, previous = [], None
    for frame in frames:
        grey = to_grey(frame)
        if previous is not None:
            grown = cv2.warpAffine(previous, enlarge, (WIDTH, HEIGHT),
                                   flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                                   borderMode=cv2.BORDER_REFLECT)
            (dy, dx), _, _ = phase_cross_correlation(grown[centre], grey[centre],
                                                     upsample_factor=100, normalization=None)
            shifts.append((dx, dy))
        previous = grey
    return np.array(shifts)


def jitter(shifts: np.ndarray) -> float:
    """Std of the trajectory's second difference, both axes pooled (output pixels)."""
    second = np.diff(shifts, axis=0)
    return float(math.sqrt(second[:, 0].var() + second[:, 1].var()))


def renderer_frames(name: str, source: Path, frames: int
                    ) -> Iterator[np.ndarray | av.VideoFrame]:
    image = load_image(source)
    if name == "img2vid":
        return img2vid_clip(image, frames)
    base, kind = name.split()
    return zoompan_frames(image.pixels, frames, base == "zoompan8k",
                          "rgb24" if kind == "rgb" else "yuv420p")


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Python "
            f"{sys.version.split()[0]}, OpenCV {cv2.__version__}, PyAV {av.__version__} "
            f"(libavfilter {'.'.join(map(str, av.library_versions['libavfilter']))})")


def plot(results: dict[str, Measured], shifts: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_path) = plt.subplots(1, 2, figsize=(14, 5))
    names = list(results)
    y = np.arange(len(names))
    ax_time.barh(y - 0.2, [results[n].wall_s for n in names], 0.4, label="wall")
    ax_time.barh(y + 0.2, [results[n].cpu_s for n in names], 0.4, label="CPU (all threads)")
    ax_time.set_yticks(y, names)
    ax_time.invert_yaxis()
    ax_time.set_xscale("log")
    ax_time.set_xlabel(f"seconds for {results['img2vid'].frames} frames of {WIDTH}x{HEIGHT} "
                       "(best of the rounds)")
    ax_time.legend()
    ax_time.set_title("time")
    for name, steps in shifts.items():
        second = np.diff(steps, axis=0)
        ax_path.plot(np.maximum(np.hypot(second[:, 0], second[:, 1]), 1e-3),
                     label=f"{name}: jitter {jitter(steps):.3f} px", lw=1)
    ax_path.set_yscale("log")
    ax_path.set_xlabel("frame")
    ax_path.set_ylabel("|second difference of the window's path| (output px)")
    ax_path.set_title("camera path smoothness (lower is smoother)")
    ax_path.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=180)
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of every variant, interleaved; the best is reported "
                        "(steadier on a busy machine)")
    parser.add_argument("--keep-source", action="store_true",
                        help="keep the generated source photo in benchmarks/results/")
    parser.add_argument("--codecs", action="store_true",
                        help="also a row per MP4 codec (x264, x265, SVT-AV1, NVENC if here): "
                        "size and time at matched PSNR-Y on the first 60 frames "
                        "(benchmarks/codec_bench.py)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.variant:  # child process: one timed variant, JSON on stdout
        measured = run_variant(args.variant, args.source, args.frames, args.workdir)
        print(json.dumps(measured.__dict__))
        return

    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="camera_bench_") as tmp:
        workdir = Path(tmp)
        source = (RESULTS if args.keep_source else workdir) / "bench_source.png"
        build_source(source)
        print(f"machine: {machine()}")
        print(f"job: {WIDTH}x{HEIGHT}, {FPS} fps, {args.frames} frames, zoom 1.0 -> {ZOOM} "
              f"toward {FOCUS}, from a {SOURCE_SIZE[0]}x{SOURCE_SIZE[1]} photo; "
              f"libx264 crf {CRF} {SPEED}; best of {args.rounds} rounds")
        print(f"load average before: {os.getloadavg()[0]:.1f} (other work on the machine "
              "inflates wall times; CPU times are the steadier figure)\n")
        runs: dict[str, list[Measured]] = {v: [] for v in VARIANTS}
        for round_ in range(1, args.rounds + 1):
            for variant in VARIANTS:
                m = measure_in_subprocess(variant, source, args.frames, workdir)
                runs[variant].append(m)
                print(f"  round {round_}: {variant:<15} {m.wall_s:7.2f} s wall "
                      f"{m.cpu_s:7.2f} s CPU", flush=True)
        print("  measuring jitter...", flush=True)
        shifts = {name: frame_shifts(renderer_frames(name, source, args.frames), args.frames)
                  for name in RENDERERS}
        if args.codecs:
            import codec_bench

            print("  comparing codecs...", flush=True)
            frames = list(img2vid_clip(load_image(source), min(args.frames, 60)))
            codec_target, codec_rows = codec_bench.compare(frames, FPS, SPEED)

    results = {v: Measured(v, min(m.wall_s for m in ms), min(m.cpu_s for m in ms),
                           max(m.peak_rss_mb for m in ms), ms[0].frames)
               for v, ms in runs.items()}
    jitters = {name: jitter(s) for name, s in shifts.items()}
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    print(f"\n{'variant':<16}{'wall s':>8}{'CPU s':>8}{'peak RSS MB':>13}{'fps':>8}"
          f"{'jitter px':>11}")
    for name, m in results.items():
        jit = f"{jitters[name]:.3f}" if name in jitters else "-"
        print(f"{name:<16}{m.wall_s:8.2f}{m.cpu_s:8.2f}{m.peak_rss_mb:13.0f}"
              f"{m.frames / m.wall_s:8.1f}{jit:>11}")
    print("(x264 alone holds the 180 rendered frames in memory before it starts: its RSS is "
          "not comparable)")

    r = results
    best_8k_jitter = min(jitters["zoompan8k rgb"], jitters["zoompan8k yuv"])
    checks = [
        ("img2vid render vs zoompan render, RGB frames (x)",
         r["zoompan rgb"].wall_s / r["img2vid"].wall_s,
         r["zoompan rgb"].cpu_s / r["img2vid"].cpu_s, ">=", TARGETS["render_vs_zoompan"]),
        ("img2vid render vs zoompan 8k render, RGB frames (x)",
         r["zoompan8k rgb"].wall_s / r["img2vid"].wall_s,
         r["zoompan8k rgb"].cpu_s / r["img2vid"].cpu_s, ">=", TARGETS["render_vs_zoompan8k"]),
        ("img2vid end to end / x264 alone",
         r["img2vid+x264"].wall_s / r["x264 alone"].wall_s,
         r["img2vid+x264"].cpu_s / r["x264 alone"].cpu_s, "<=", TARGETS["e2e_vs_encode"]),
    ]
    print(f"\n{'targets (on wall time)':<56}{'wall':>7}{'CPU':>7}")
    for label, value, cpu_value, op, target in checks:
        ok = value >= target if op == ">=" else value <= target
        print(f"  {label:<54}{value:7.2f}{cpu_value:7.2f}  (target {op} {target:g})  "
              f"{'ok' if ok else 'MISSED'}")
    jitter_ratio = jitters["img2vid"] / best_8k_jitter
    print(f"  {'img2vid jitter / best zoompan 8k jitter':<54}{jitter_ratio:7.3f}{'':7}  "
          f"(target <= 1)  {'ok' if jitter_ratio <= 1 else 'MISSED'}")
    print("for reference:")
    print(f"  img2vid render vs zoompan rendering yuv420p (x)        "
          f"{r['zoompan yuv'].wall_s / r['img2vid'].wall_s:7.2f}")
    print(f"  img2vid render vs zoompan 8k rendering yuv420p (x)     "
          f"{r['zoompan8k yuv'].wall_s / r['img2vid'].wall_s:7.2f}")
    print(f"  img2vid end to end vs zoompan + x264 (wall)            "
          f"{r['img2vid+x264'].wall_s / r['zoompan+x264'].wall_s:7.2f}")
    print(f"  plain zoompan jitter / img2vid jitter                  "
          f"{jitters['zoompan yuv'] / jitters['img2vid']:7.0f}")

    if args.codecs:
        print(f"\ncodecs at x264 crf {codec_bench.PEER_CRF}'s quality "
              f"(PSNR-Y {codec_target:.2f} dB):")
        codec_bench.print_rows(codec_rows)

    figure = RESULTS / "camera_bench.png"
    plot(results, shifts, figure)
    print(f"\nplot: {figure}")


if __name__ == "__main__":
    main()
