"""MP4 codecs on the camera clip: size and encode time at matched quality (PSNR-Y against
the lossless render), so a user can choose between H.264, HEVC and AV1 (and NVENC if here).

    python benchmarks/codec_bench.py [--frames 60] [--resolution 1080] [--speed medium]

The clip: examples/coffee.png, Ken Burns, rendered once by the camera engine and kept in
memory (the lossless reference). The peer is libx264 at crf 18 (img2vid's default); every
other encoder's crf is searched (bisection) until its PSNR-Y is the closest to x264's, then
that encode is timed. Prints a table and the ratios against x264, writes
benchmarks/results/codec_bench.png.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from img2vid.core.config import Settings  # noqa: E402
from img2vid.core.progress import CancelToken, no_progress  # noqa: E402
from img2vid.core.request import EncoderKind, OutputFormat, VideoCodec, build_request  # noqa: E402
from img2vid.engines.camera import CameraEngine  # noqa: E402
from img2vid.media.encode import EncodeOptions, MP4Writer  # noqa: E402
from img2vid.media.encoders import GPU_ENCODERS, nvenc_works  # noqa: E402
from img2vid.media.images import load_image  # noqa: E402

PEER_CRF = 18


def render(frames: int, resolution: int) -> tuple[list[np.ndarray], float]:
    request = build_request(images=[str(ROOT / "examples" / "coffee.png")], fps=30,
                            num_frames=frames, resolution=resolution)
    clip = CameraEngine(Settings()).generate(request, [load_image(request.images[0])],
                                             no_progress, CancelToken())
    return list(clip.frames), clip.fps


def luma(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Y planes as the MP4 writer makes them (BT.709, limited range)."""
    from av.video.reformatter import ColorRange, Colorspace

    return [av.VideoFrame.from_ndarray(f, format="rgb24").reformat(
        format="yuv420p", src_colorspace=Colorspace.ITU709, dst_colorspace=Colorspace.ITU709,
        src_color_range=ColorRange.JPEG, dst_color_range=ColorRange.MPEG,
    ).to_ndarray()[: f.shape[0]].astype(np.float64) for f in frames]


def encode(frames: list[np.ndarray], fps: float, codec: VideoCodec, kind: EncoderKind,
           crf: int, speed: str, path: Path) -> tuple[float, int, str]:
    """(seconds, bytes, encoder name)."""
    path.unlink(missing_ok=True)
    h, w = frames[0].shape[:2]
    t0 = time.perf_counter()
    writer = MP4Writer(path, w, h, fps, EncodeOptions(format=OutputFormat.MP4, crf=crf,
                                                      speed=speed, codec=codec, encoder=kind))
    for frame in frames:
        writer.write(frame)
    info = writer.close()
    return time.perf_counter() - t0, info.bytes, info.codec


def psnr_y(path: Path, reference: list[np.ndarray]) -> float:
    mse = []
    with av.open(str(path)) as container:
        for frame, ref in zip(container.decode(video=0), reference):
            y = frame.to_ndarray(format="yuv420p")[: ref.shape[0]].astype(np.float64)
            mse.append(np.mean((y - ref) ** 2))
    return float(10 * np.log10(255**2 / max(np.mean(mse), 1e-10)))


def matched(frames, fps, reference, codec, kind, target, speed, path):  # type: ignore[no-untyped-def]
    """Bisect crf (x264's scale) for the PSNR closest to `target`; returns the row."""
    lo, hi, best = 0, 51, None
    while lo <= hi:
        crf = (lo + hi) // 2
        seconds, size, name = encode(frames, fps, codec, kind, crf, speed, path)
        quality = psnr_y(path, reference)
        row = (abs(quality - target), crf, quality, seconds, size, name)
        best = min(best, row) if best else row
        if quality > target:
            lo = crf + 1
        else:
            hi = crf - 1
    _, crf, quality, _, size, name = best
    seconds, size, name = encode(frames, fps, codec, kind, crf, speed, path)  # timed again
    return {"encoder": name, "crf": crf, "psnr": quality, "seconds": seconds, "bytes": size}


def compare(frames: list[np.ndarray], fps: float, speed: str) -> tuple[float, list[dict]]:  # type: ignore[type-arg]
    """(x264's PSNR-Y, one row per encoder) for these frames; the camera benchmark uses it."""
    reference = luma(frames)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        seconds, size, name = encode(frames, fps, VideoCodec.H264, EncoderKind.CPU, PEER_CRF,
                                     speed, path)
        target = psnr_y(path, reference)
        rows.append({"encoder": name, "crf": PEER_CRF, "psnr": target, "seconds": seconds,
                     "bytes": size})
        choices = [(VideoCodec.HEVC, EncoderKind.CPU), (VideoCodec.AV1, EncoderKind.CPU)]
        choices += [(c, EncoderKind.GPU) for c, name in GPU_ENCODERS.items() if nvenc_works(name)]
        for codec, kind in choices:
            rows.append(matched(frames, fps, reference, codec, kind, target, speed, path))
    return target, rows


def print_rows(rows: list[dict]) -> None:  # type: ignore[type-arg]
    peer = rows[0]
    print(f"{'encoder':<12} {'crf':>4} {'PSNR-Y':>7} {'MB':>7} {'s':>7} {'size/x264':>10} "
          f"{'time/x264':>10}")
    for row in rows:
        print(f"{row['encoder']:<12} {row['crf']:>4} {row['psnr']:>7.2f} "
              f"{row['bytes'] / 1e6:>7.2f} {row['seconds']:>7.2f} "
              f"{row['bytes'] / peer['bytes']:>10.2f} {row['seconds'] / peer['seconds']:>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--resolution", type=int, default=1080)
    parser.add_argument("--speed", default="medium")
    args = parser.parse_args()

    frames, fps = render(args.frames, args.resolution)
    target, rows = compare(frames, fps, args.speed)
    h, w = frames[0].shape[:2]
    print(f"{len(frames)} frames {w}x{h}, speed {args.speed}, matched to x264 crf {PEER_CRF} "
          f"(PSNR-Y {target:.2f} dB)")
    print_rows(rows)
    plot(rows, ROOT / "benchmarks" / "results" / "codec_bench.png")


def plot(rows: list[dict], path: Path) -> None:  # type: ignore[type-arg]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        ax.scatter(row["seconds"], row["bytes"] / 1e6, s=60)
        ax.annotate(f"{row['encoder']} (crf {row['crf']})", (row["seconds"], row["bytes"] / 1e6),
                    textcoords="offset points", xytext=(6, 4))
    ax.set_xlabel("encode time (s)")
    ax.set_ylabel("size (MB)")
    ax.set_title("MP4 encoders at matched PSNR-Y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
