"""Inputs a newcomer brings, through the CLI: iPhone HEIC photos, formats this install cannot
read, URLs, and videos with sound for `interpolate`."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.batchkit import make_photo
from tests.conftest import run_cli
from tests.test_extras import run_without

FAST = ("--fps", "8", "--duration", "0.5", "--motion", "static")


def make_heic(path: Path) -> Path:
    """A landscape HEIC, red left / blue right, tagged EXIF orientation 6 (shown rotated 90°
    clockwise: red on top), written by pillow-heif itself as an iPhone does."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    pixels = np.zeros((96, 160, 3), np.uint8)
    pixels[:, :80] = (255, 0, 0)
    pixels[:, 80:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), quality=90)
    return path


def first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


def test_a_heic_photo_is_read_upright(tmp_path):
    make_heic(tmp_path / "IMG_0001.HEIC")
    proc = run_cli("generate", "IMG_0001.HEIC", "-o", "clip.mp4", "--resolution", "256", *FAST,
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    frame = first_frame(tmp_path / "clip.mp4")
    assert frame.shape == (426, 256, 3)  # portrait: the orientation was applied
    top, bottom = frame[40, 128].astype(int), frame[-40, 128].astype(int)
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60


def test_without_pillow_heif_heic_says_which_formats_are_read_and_batch_skips_it(tmp_path):
    (tmp_path / "in").mkdir()
    make_heic(tmp_path / "in" / "a.heic")
    make_photo(tmp_path / "in" / "b.png", 1)
    proc = run_without("pillow_heif", "generate", "in/a.heic", *FAST, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == ("img2vid: error: in/a.heic is not an image file that can be read "
                           "(formats read: JPEG, PNG, WebP, TIFF, BMP, GIF, AVIF, QOI, TGA, "
                           "PPM/PGM)\n")
    proc = run_without("pillow_heif", "batch", "in", "-o", "out", "--width", "96", "--height",
                       "64", *FAST, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "1 done, 0 skipped, 0 failed" in proc.stdout
    assert "ignored in/a.heic" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.mp4")) == ["b.mp4"]
    # with pillow-heif, the same folder makes both
    proc = run_cli("batch", "in", "-o", "out", "--width", "96", "--height", "64", *FAST,
                   cwd=tmp_path)
    assert "1 done, 1 skipped, 0 failed" in proc.stdout, proc.stderr


@pytest.mark.parametrize("url", ["https://example.com/photo.jpg", "http://x/y.png",
                                 "s3://bucket/p.jpg"])
def test_a_url_photo_is_refused_clearly(tmp_path, url):
    proc = run_cli("generate", url, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == f"img2vid: error: {url}: URLs are not read; download the file first\n"


# --- interpolate keeps the sound ----------------------------------------------------------------

def clip_with_sound(path: Path, seconds: float = 1.0, fps: int = 8) -> Path:
    """A small H.264 clip with an AAC sine track of the same length, made with PyAV."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
        audio = out.add_stream("aac", rate=44100)
        audio.layout = "mono"
        for i in range(int(seconds * fps)):
            frame = np.full((64, 96, 3), (i * 25) % 255, np.uint8)
            frame[:, : 10 + i * 8] = (200, 40, 40)
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            out.mux(video.encode(vf))
        samples = np.sin(np.arange(int(44100 * seconds)) * 2 * np.pi * 440 / 44100)
        for start in range(0, len(samples), 1024):
            chunk = samples[start:start + 1024].astype(np.float32)[None, :]
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            af.sample_rate, af.pts = 44100, start
            out.mux(audio.encode(af))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    return path


def audio_packets(path: Path) -> tuple[str, list[bytes], float]:
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        demuxed = [p for p in c.demux(stream) if p.size]
        end = max(p.pts + p.duration for p in demuxed) - min(p.pts for p in demuxed)
        return (stream.codec_context.name, [bytes(p) for p in demuxed],
                float(end * stream.time_base))


@pytest.mark.parametrize("name", ["out.mp4", "out.mkv"])
def test_interpolate_keeps_the_audio_by_stream_copy(tmp_path, name):
    src = clip_with_sound(tmp_path / "in.mp4")
    proc = run_cli("interpolate", "in.mp4", "-o", name, "--interpolate", "2", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    codec, packets, duration = audio_packets(tmp_path / name)
    src_codec, src_packets, src_duration = audio_packets(src)
    assert codec == src_codec == "aac" and packets == src_packets  # copied, not re-encoded
    assert duration == pytest.approx(src_duration, abs=0.03)
    with av.open(str(tmp_path / name)) as c:
        video = c.streams.video[0]
        assert video.average_rate == Fraction(16)
        assert sum(1 for _ in c.decode(video)) == 16


@pytest.mark.parametrize("name, why", [
    ("out.gif", "a GIF holds no audio"), ("frames", "a folder of PNG frames holds no audio"),
    ("out.webm", "WEBM cannot hold aac audio")])
def test_interpolate_says_why_the_audio_cannot_be_kept(tmp_path, name, why):
    clip_with_sound(tmp_path / "in.mp4")
    proc = run_cli("interpolate", "in.mp4", "-o", name, "--interpolate", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == (f"img2vid: note: the input's aac audio is not kept: {why}; write "
                           ".mkv (or .mp4) to keep it\n")
    assert (tmp_path / name).exists()
