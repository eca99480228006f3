"""`img2vid interpolate` on existing clips: formats, sizes, colour, bad input, the pipeline."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from av.video.reformatter import ColorRange, Colorspace

from img2vid.core.errors import InputError
from img2vid.core.request import OutputFormat
from img2vid.core.rework import InterpolationRequest, build_rework
from img2vid.execution.rework import rework_video
from img2vid.media.encode import EncodeOptions, open_writer
from img2vid.media.video_input import open_clip
from tests.conftest import run_cli
from tests.triplets import Motion, photo, psnr, render_frames

MOTION = Motion(pan=(2.0, 1.0), zoom=1.01, angle=0.3)


def interpolate_file(source, output, settings, **options):
    """The sidecar of interpolating `source` into `output` with `options`."""
    request = build_rework(InterpolationRequest, source=source, output=output, **options)
    return rework_video(request, settings).metadata


def scene(n: int, size: tuple[int, int], step: float = 1.0) -> list[np.ndarray]:
    return render_frames(photo("coffee"), photo("astronaut"), [i * step for i in range(n)],
                         size=size, motion=MOTION)


def write(path: Path, frames: list[np.ndarray], fps: float, fmt: OutputFormat,
          crf: int = 10) -> Path:
    h, w = frames[0].shape[:2]
    writer = open_writer(path, w, h, fps, EncodeOptions(format=fmt, crf=crf, speed="ultrafast"))
    for f in frames:
        writer.write(f)
    writer.close()
    return path


def decode(path: Path) -> tuple[list[np.ndarray], Fraction]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
        return frames, stream.average_rate


def test_cli_mp4_to_mp4_triples_the_rate(tmp_path):
    write(tmp_path / "in.mp4", scene(8, (320, 240)), 10, OutputFormat.MP4)
    done = run_cli("interpolate", "in.mp4", "-o", "out.mp4", "--interpolate", "3",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "out.mp4"
    frames, rate = decode(tmp_path / "out.mp4")
    assert len(frames) == 24 and rate == 30 and frames[0].shape == (240, 320, 3)
    sidecar = json.loads((tmp_path / "out.mp4.json").read_text())
    assert sidecar["interpolation"]["factor"] == 3
    assert sidecar["interpolation"]["scene_cuts"] == 0
    assert sidecar["input"]["frames"] == 8 and sidecar["output"]["frames"] == 24


def test_frame_folder_to_png_frames_is_lossless_and_correct(tmp_path, settings):
    truth = scene(11, (200, 150), step=0.5)  # every other frame is the input
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(truth[::2]):
        cv2.imwrite(str(folder / f"img{i + 1}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("ignored")
    meta = interpolate_file(folder, tmp_path / "out", settings, factor=2, fps=12)
    assert meta["output"]["fps"] == 24 and meta["output"]["frames"] == 12
    out = sorted((tmp_path / "out").iterdir())
    assert len(out) == 12
    read = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in out]
    for i in range(6):
        assert np.array_equal(read[2 * i], truth[2 * i])  # inputs pass through bit-exact
    for i in range(5):
        assert psnr(read[2 * i + 1], truth[2 * i + 1]) > 30  # in-betweens match the truth
    # numeric order: img10 after img9, not after img1
    assert np.array_equal(read[10], truth[10])


def test_odd_sizes_are_kept_in_lossless_mkv_and_refused_for_mp4(tmp_path, settings):
    frames = scene(5, (161, 121))
    src = write(tmp_path / "odd.mkv", frames, 8, OutputFormat.MKV)
    meta = interpolate_file(src, tmp_path / "out.mkv", settings, target_fps=20)
    decoded, rate = decode(tmp_path / "out.mkv")
    assert decoded[0].shape == (121, 161, 3) and rate == 20
    assert len(decoded) == meta["output"]["frames"] == round(5 * 20 / 8)
    assert psnr(decoded[0], frames[0]) > 45  # FFV1 4:4:4: only YUV rounding
    done = run_cli("interpolate", str(src), "-o", "out.mp4", "--interpolate", "2",
                   cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "even dimensions" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".img2vid")]


@pytest.mark.parametrize(("matrix", "tag", "color_range", "height"), [
    (Colorspace.ITU601, 6, ColorRange.MPEG, 64),  # SD broadcast, tagged
    (Colorspace.ITU709, 1, ColorRange.MPEG, 64),  # HD matrix, tagged
    (Colorspace.ITU709, 1, ColorRange.JPEG, 64),  # full range (phones)
    (Colorspace.ITU601, 2, ColorRange.MPEG, 64),  # untagged SD: BT.601
    (Colorspace.ITU709, 2, ColorRange.MPEG, 720),  # untagged HD: BT.709
], ids=["601", "709", "709-full", "untagged-sd", "untagged-hd"])
def test_decoding_honours_the_colour_matrix_and_range(tmp_path, matrix, tag, color_range,
                                                      height):
    colour = np.array([200, 60, 30], np.uint8)  # saturated: matrices differ by ~10 levels
    width = height * 3 // 2
    rgb = np.broadcast_to(colour, (height, width, 3)).copy()
    path = tmp_path / "c.mkv"
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=10)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.codec_context.colorspace = tag
        s.codec_context.color_range = int(color_range) if tag != 2 else 0
        for i in range(2):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p", dst_colorspace=matrix, dst_color_range=color_range)
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    clip = open_clip(path)
    frame = next(clip.frames)
    centre = frame[height // 2, width // 2]
    assert np.abs(centre.astype(int) - colour).max() <= 3, centre


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("not a video")
    write(tmp_path / "in.mp4", scene(3, (64, 64)), 30, OutputFormat.MP4)
    cases = [
        (["notes.txt", "-o", "o.mp4", "--interpolate", "2"], "cannot read"),
        (["missing.mp4", "-o", "o.mp4", "--interpolate", "2"], "not found"),
        (["in.mp4", "-o", "o.mp4", "--target-fps", "24"], "below the input"),
        (["in.mp4", "-o", "o.avi", "--interpolate", "2"], "not an output format"),
        (["in.mp4", "-o", "in.mp4", "--interpolate", "2"], "is the input"),
        (["in.mp4", "-o", "o.mp4", "--interpolate", "2", "--interpolator", "rife"],
         "img2vid models download rife"),
        (["in.mp4", "-o", "o.mp4", "--interpolate", "5"], "invalid choice"),
        (["in.mp4", "-o", "o.mp4"], "one of the arguments"),
    ]
    for args, message in cases:
        done = run_cli("interpolate", *args, cwd=tmp_path,
                       env={"IMG2VID_MODEL_CACHE": str(tmp_path / "empty-cache")})
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and done.stderr.count("\n") == 1, (args, done.stderr)
        assert not (tmp_path / "o.mp4").exists()


def test_interpolate_file_refuses_without_a_rate(tmp_path, settings):
    write(tmp_path / "in.mp4", scene(3, (64, 64)), 30, OutputFormat.MP4)
    with pytest.raises(InputError, match="one of them"):
        interpolate_file(tmp_path / "in.mp4", tmp_path / "o.mp4", settings)


def test_cli_rife_with_real_weights(tmp_path, rife_weights):
    write(tmp_path / "in.mp4", scene(3, (128, 96)), 10, OutputFormat.MP4)
    done = run_cli("interpolate", "in.mp4", "-o", "out.mkv", "--interpolate", "2",
                   "--interpolator", "rife", "--rife-weights", str(rife_weights), "--json",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    meta = json.loads(done.stdout)
    assert meta["interpolation"]["interpolator"] == "rife"
    assert len(decode(tmp_path / "out.mkv")[0]) == 6


def test_pipeline_runs_the_stages_and_records_them(tmp_path, settings, photo):
    from img2vid.core.request import build_request
    from img2vid.execution.pipeline import generate
    from tests.fakes import FakeEngine

    request = build_request(images=(str(photo),), num_frames=5, fps=8, width=96, height=64,
                            interpolate=2, loop="pingpong", format="mkv")
    result = generate(request, settings, engine=FakeEngine())
    frames, rate = decode(result.output)
    assert rate == 16 and len(frames) == 10  # 5 frames at 8 fps last 0.625 s, loop included
    info = result.metadata["engine_info"]
    # 3 frames rendered, 6 after interpolation, there and back: 2 * 6 - 2
    assert info["interpolation"]["output_frames"] == 6 and info["loop"] == "pingpong"


def test_missing_rife_weights_fail_before_the_engine_runs(tmp_path, photo):
    from img2vid.core.config import ModelSettings, Settings
    from img2vid.core.errors import ModelNotAvailableError
    from img2vid.core.request import build_request
    from img2vid.execution.pipeline import generate
    from tests.fakes import FakeEngine

    settings = Settings(models=ModelSettings(cache_dir=tmp_path / "empty-cache"))
    request = build_request(images=(str(photo),), num_frames=4, fps=8, width=96, height=64,
                            interpolate=2, interpolator="rife")
    engine = FakeEngine()
    with pytest.raises(ModelNotAvailableError, match="img2vid models download rife"):
        generate(request, settings, output=tmp_path / "o.mp4", engine=engine)
    assert engine.calls == [] and not (tmp_path / "o.mp4").exists()
