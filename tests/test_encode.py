"""Encoders: decode what we wrote with PyAV and check every property a player relies on."""

import json
from fractions import Fraction

import av
import numpy as np
import pytest

from img2vid.core.request import OutputFormat
from img2vid.media.encode import GIF_MAX_SIDE, EncodeOptions, open_writer


def _frames(n, w, h):
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[:, :, 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
        f[:, (i * 7) % w:(i * 7) % w + 16, 1] = 255
        yield f


def _write(path, fmt, n=36, w=320, h=180, fps=24, comment=""):
    writer = open_writer(path, w, h, fps, EncodeOptions(format=fmt, comment=comment))
    for f in _frames(n, w, h):
        writer.write(f)
    return writer.close()


def _probe(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [f for f in c.decode(s)]
        return {"codec": s.codec_context.name, "pix_fmt": s.codec_context.pix_fmt,
                "width": s.codec_context.width, "height": s.codec_context.height,
                "frames": len(frames), "rate": s.average_rate,
                "duration": float((frames[-1].pts + 1) * s.time_base) if frames else 0,
                "last_time": frames[-1].time, "ctx": s.codec_context,
                "metadata": dict(c.metadata), "first": frames[0]}


def test_mp4_is_h264_yuv420p_bt709_limited_with_faststart(tmp_path):
    path = tmp_path / "a.mp4"
    info = _write(path, OutputFormat.MP4, comment=json.dumps({"seed": 3}))
    p = _probe(path)
    assert (p["codec"], p["pix_fmt"], p["width"], p["height"]) == ("h264", "yuv420p", 320, 180)
    assert p["frames"] == 36 == info.frames
    assert p["rate"] == Fraction(24)
    assert p["last_time"] == pytest.approx(35 / 24)
    ctx = p["ctx"]
    assert (ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range) == (1, 1, 1, 1)
    assert json.loads(p["metadata"]["comment"]) == {"seed": 3}
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat"), "moov atom must come first (faststart)"
    assert info.duration == pytest.approx(1.5)


def test_mp4_colours_survive_the_round_trip(tmp_path):
    path = tmp_path / "c.mp4"
    w = open_writer(path, 64, 64, 10, EncodeOptions(format=OutputFormat.MP4, crf=0))
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (128, 128, 128)]
    for c in colours:
        w.write(np.full((64, 64, 3), c, np.uint8))
    w.close()
    with av.open(str(path)) as c:
        decoded = [f.to_ndarray(format="rgb24", src_colorspace="ITU709", src_color_range="MPEG",
                                dst_color_range="JPEG") for f in c.decode(video=0)]
    for want, got in zip(colours, decoded):
        assert np.abs(got[32, 32].astype(int) - want).max() <= 3


def test_webm_is_vp9(tmp_path):
    info = _write(tmp_path / "a.webm", OutputFormat.WEBM, fps=30, n=30)
    p = _probe(tmp_path / "a.webm")
    assert p["codec"] in ("vp9", "libvpx-vp9") and p["pix_fmt"] == "yuv420p"
    assert (p["frames"], info.frames) == (30, 30)
    assert p["last_time"] == pytest.approx(29 / 30, abs=1e-3)


def test_mkv_is_lossless_ffv1(tmp_path):
    _write(tmp_path / "a.mkv", OutputFormat.MKV, n=5)
    p = _probe(tmp_path / "a.mkv")
    assert p["codec"] == "ffv1" and p["frames"] == 5
    # every value of every frame comes back: noise is what a YUV round trip would round
    frames = [np.random.default_rng(i).integers(0, 256, (36, 64, 3), np.uint8) for i in range(3)]
    writer = open_writer(tmp_path / "noise.mkv", 64, 36, 24, EncodeOptions(format=OutputFormat.MKV))
    for frame in frames:
        writer.write(frame)
    writer.close()
    with av.open(str(tmp_path / "noise.mkv")) as c:
        back = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(back) == 3 and all(np.array_equal(a, b) for a, b in zip(frames, back))


def test_gif_has_a_palette_and_is_scaled_down(tmp_path):
    info = _write(tmp_path / "a.gif", OutputFormat.GIF, n=20, w=1280, h=720, fps=10)
    p = _probe(tmp_path / "a.gif")
    assert p["codec"] == "gif" and p["frames"] == 20 == info.frames
    assert max(p["width"], p["height"]) == GIF_MAX_SIDE and p["width"] % 2 == 0
    assert p["last_time"] == pytest.approx(1.9, abs=0.011)
    rgb = p["first"].to_ndarray(format="rgb24")
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 16  # a real palette, not 8 colours


def test_a_gif_faster_than_50_fps_drops_frames_and_keeps_its_duration(tmp_path):
    info = _write(tmp_path / "fast.gif", OutputFormat.GIF, n=48, fps=120)  # 0.4 s
    p = _probe(tmp_path / "fast.gif")
    assert p["frames"] == info.frames == 20  # one frame per 2 cs, the fastest GIFs play
    assert info.duration == pytest.approx(0.4) and info.fps == pytest.approx(50)
    assert p["last_time"] == pytest.approx(0.38, abs=0.011)


def test_png_folder_has_numbered_lossless_frames(tmp_path):
    info = _write(tmp_path / "frames", OutputFormat.PNG, n=7)
    files = sorted((tmp_path / "frames").iterdir())
    assert [f.name for f in files] == [f"frame_{i:06d}.png" for i in range(1, 8)]
    from PIL import Image

    first = np.asarray(Image.open(files[0]))
    assert np.array_equal(first, next(_frames(1, 320, 180)))
    assert info.frames == 7 and info.duration == pytest.approx(7 / 24)


def test_odd_sizes_are_refused_for_420(tmp_path):
    with pytest.raises(ValueError, match="even"):
        open_writer(tmp_path / "x.mp4", 321, 180, 24, EncodeOptions())


def test_wrong_frame_shape_is_refused(tmp_path):
    w = open_writer(tmp_path / "x.mp4", 64, 64, 24, EncodeOptions())
    with pytest.raises(ValueError, match="expected"):
        w.write(np.zeros((32, 32, 3), np.uint8))
    w.abort()
