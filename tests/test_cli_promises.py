"""What --help and the README promise, checked through the CLI: framing that keeps the face,
a note when a photo is enlarged, loops that last the asked duration, ranges in --help,
environment variables named in errors, one seed field, GIF's size cap."""

from __future__ import annotations

import json
import re
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from img2vid.core.request import GenerationRequest, field_range
from tests.batchkit import make_photo
from tests.conftest import EXAMPLES, run_cli


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def green_blobs(frame: np.ndarray) -> int:
    green = ((frame[..., 1] > 170) & (frame[..., 0] < 90) & (frame[..., 2] < 90)).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(green)
    return sum(1 for area in stats[1:, cv2.CC_STAT_AREA] if area >= 6)


@pytest.mark.parametrize("motion", ["ken-burns", "zoom-in", "static"])
def test_a_wide_crop_of_a_portrait_keeps_the_face_in_every_frame(tmp_path, motion):
    # The square NASA portrait at 16:9: a crop centred on the photo cuts the face at the eyes.
    # Green marks at the corners of the face region (the detector's box with its margin)
    # must all be in every frame.
    from img2vid.engines.focus import FACE_MARGIN, FaceFinder

    photo = cv2.cvtColor(cv2.imread(str(EXAMPLES / "astronaut.png")), cv2.COLOR_BGR2RGB)
    x, y, w, h = FaceFinder().find(photo)
    cx, cy, hw, hh = x + w / 2, y + h / 2, w * FACE_MARGIN / 2 - 6, h * FACE_MARGIN / 2 - 6
    for mx, my in ((cx - hw, cy - hh), (cx + hw, cy - hh), (cx - hw, cy + hh), (cx + hw, cy + hh)):
        photo[int(my) - 3:int(my) + 3, int(mx) - 3:int(mx) + 3] = (0, 255, 0)
    cv2.imwrite(str(tmp_path / "portrait.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    proc = run_cli("generate", "portrait.png", "-o", "wide.mp4", "--width", "480", "--height",
                   "270", "--fps", "6", "--duration", "1.5", "--motion", motion, "--zoom",
                   "1.3", "--crf", "10", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "wide.mp4.json").read_text())["engine_info"][
        "focus_source"] == "face"
    frames = frames_of(tmp_path / "wide.mp4")
    assert len(frames) == 9 and [green_blobs(f) for f in frames] == [4] * 9


def test_a_given_focus_point_stays_in_every_frame(tmp_path):
    photo = np.full((400, 400, 3), 90, np.uint8)
    photo[14:26, 194:206] = (255, 0, 0)  # a red dot at (0.5, 0.05)
    cv2.imwrite(str(tmp_path / "dot.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    proc = run_cli("generate", "dot.png", "-o", "dot.mp4", "--width", "320", "--height", "180",
                   "--fps", "6", "--duration", "1.5", "--focus", "0.5,0.05", "--zoom", "1.5",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for frame in frames_of(tmp_path / "dot.mp4"):
        red = (frame[..., 0] > 180) & (frame[..., 1] < 80) & (frame[..., 2] < 80)
        assert red.sum() >= 20


def test_enlarging_a_small_photo_prints_one_note_with_a_resolution(tmp_path):
    make_photo(tmp_path / "small.png", 0, (200, 150))
    proc = run_cli("generate", "small.png", "-o", "big.mp4", "--resolution", "1080", "--fps",
                   "5", "--duration", "0.2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ("img2vid: note: small.png (200x150) is enlarged 7.2x to 1440x1080 and "
                           "will look soft; --resolution 256 keeps it sharper\n")
    side = json.loads((tmp_path / "big.mp4.json").read_text())
    assert side["notes"] == [proc.stderr[len("img2vid: note: "):].strip()]
    quiet = run_cli("generate", "small.png", "-o", "ok.mp4", "--resolution", "256", "--fps",
                    "5", "--duration", "0.2", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == ""


@pytest.mark.parametrize("args, frames", [
    (["--loop", "pingpong"], 16), (["--loop", "seamless", "--transition", "0.5"], 16),
    (["--loop", "pingpong", "--duration", "1.875"], 15),
    (["--loop", "seamless", "--interpolate", "2"], 32), (["--loop", "none"], 16)])
def test_duration_is_the_final_length_whatever_the_loop(tmp_path, args, frames):
    make_photo(tmp_path / "p.png", 0, (96, 64))
    proc = run_cli("generate", "p.png", "-o", "loop.mp4", "--width", "96", "--height", "64",
                   "--fps", "8", "--duration", "2", "--motion", "zoom-in", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    side = json.loads((tmp_path / "loop.mp4.json").read_text())
    assert side["output"]["frames"] == len(frames_of(tmp_path / "loop.mp4")) == frames
    assert side["output"]["duration"] == pytest.approx(frames / side["output"]["fps"])


def _help(command: str, tmp_path: Path) -> str:
    return " ".join(run_cli(command, "--help", cwd=tmp_path).stdout.split())


def test_help_shows_every_numeric_range_and_what_duration_means(tmp_path):
    text = _help("generate", tmp_path)
    numeric = [n for n in GenerationRequest.model_fields if field_range(n)]
    assert len(numeric) >= 15
    for name in numeric:
        flag = "--" + name.replace("_", "-")
        entry = re.search(re.escape(flag) + r" [A-Z_]+ (.*?)(?= --[a-z-]+ (?:[A-Z_]+|\{)"
                          r"| --[a-z-]+, --no-|$)", text)
        assert entry and f"(range: {field_range(name)})" in entry.group(1), flag
    assert "length of the final clip in seconds, whatever --loop" in text
    assert "the clip lasts --duration either way" in text
    assert "--crf CRF encoder quality, 0 to 51" in _help("interpolate", tmp_path)
    assert "port, 1 to 65535" in _help("serve", tmp_path)


@pytest.mark.parametrize("variable, value, words", [
    ("IMG2VID_OUTPUT__FORMAT", "avi", "Input should be 'mp4', 'webm', 'gif', 'png' or 'mkv'"),
    ("IMG2VID_SERVER__PORT", "0", "Input should be greater than or equal to 1"),
    ("img2vid_images__min_side", "x", "Input should be a valid integer")])
def test_a_bad_environment_variable_is_named(tmp_path, variable, value, words):
    (tmp_path / "config.yaml").write_text("output:\n  prefix: clip_\n")  # a good file
    proc = run_cli("generate", "x.png", cwd=tmp_path, env={variable: value})
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"img2vid: error: invalid environment variable "
                                  f"{variable}={value}: {words}"), proc.stderr
    assert "config.yaml" not in proc.stderr


def test_camera_jobs_record_the_seed_field_as_null(tmp_path):
    make_photo(tmp_path / "p.png", 0, (96, 64))
    for extra in ([], ["--seed", "7"]):
        assert run_cli("generate", "p.png", "-o", "c.mp4", "--overwrite", "--fps", "4",
                       "--duration", "0.5", *extra, cwd=tmp_path).returncode == 0
        side = json.loads((tmp_path / "c.mp4.json").read_text())
        assert side.get("seed") == side["request"]["seed"] == (7 if extra else None)


def test_the_gif_size_cap_is_an_option(tmp_path):
    make_photo(tmp_path / "p.png", 0, (96, 64))
    args = ("generate", "p.png", "--width", "640", "--height", "360", "--fps", "4",
            "--duration", "0.5", "--motion", "static")
    proc = run_cli(*args, "-o", "capped.gif", cwd=tmp_path)
    assert proc.returncode == 0
    assert "img2vid: note: the GIF is scaled to 480x270 (output.gif_max_side is 480; set it " \
           "to 0 to keep 640x360)" in proc.stderr
    proc = run_cli(*args, "-o", "full.gif", cwd=tmp_path, env={"IMG2VID_OUTPUT__GIF_MAX_SIDE": "0"})
    assert proc.returncode == 0 and "GIF is scaled" not in proc.stderr
    assert frames_of(tmp_path / "full.gif")[0].shape == (360, 640, 3)
    assert frames_of(tmp_path / "capped.gif")[0].shape == (270, 480, 3)
