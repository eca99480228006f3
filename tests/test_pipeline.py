"""The generation path: naming, sidecars, atomic writes, failures and interruptions."""

import errno
import json
import threading
from datetime import datetime

import av
import pytest

from img2vid.core.errors import CancelledError
from img2vid.core.progress import CancelToken
from img2vid.core.request import build_request
from img2vid.execution.pipeline import generate
from img2vid.media import outputs
from img2vid.media.outputs import DiskFullError
from tests.fakes import FakeEngine, FakeFailure


def _request(photo, **fields):
    return build_request(images=[str(photo)], width=96, height=64, fps=12, num_frames=10, **fields)


def _files(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_output_is_timestamped_with_a_full_sidecar(settings, photo):
    result = generate(_request(photo, seed=5), settings, engine=FakeEngine())
    name = result.output.name
    assert name.startswith("video_") and name.endswith(".mp4")
    datetime.strptime(name[len("video_"):-4], "%Y%m%d_%H%M%S")
    assert result.sidecar == result.output.with_suffix(".json")
    side = json.loads(result.sidecar.read_text())
    assert side["request"]["width"] == 96 and side["request"]["seed"] == 5
    assert side["output"] | {"frames": 10, "width": 96, "height": 64, "codec": "libx264"} \
        == side["output"]
    assert side["inputs"][0]["sha256"] == __import__("hashlib").sha256(
        photo.read_bytes()).hexdigest()
    assert {"pyav", "libavcodec", "opencv", "img2vid"} <= set(side["versions"])
    assert side["timings"]["total_s"] > 0 and side["peak_rss_mb"] > 0
    with av.open(str(result.output)) as c:
        comment = json.loads(c.metadata["comment"])
        assert comment["request"]["num_frames"] == 10 and comment["engine"] == "camera"
        assert c.streams.video[0].frames == 10


def test_names_never_collide_even_in_parallel(settings, photo):
    results, errors = [], []

    def run():
        try:
            results.append(generate(_request(photo), settings, engine=FakeEngine()))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    names = {r.output.name for r in results}
    assert len(names) == 6
    assert len({r.sidecar.name for r in results}) == 6
    assert all(r.output.stat().st_size > 0 for r in results)


def test_existing_names_are_never_overwritten(tmp_path):
    when = datetime(2026, 1, 2, 3, 4, 5)
    (tmp_path / "video_20260102_030405.mp4").write_bytes(b"old")
    (tmp_path / "video_20260102_030405_1.json").write_text("{}")  # a stray sidecar counts too
    staged = outputs.staging_path(tmp_path, ".mp4")
    staged.write_bytes(b"new")
    final = outputs.commit_named(staged, tmp_path, "video_", ".mp4", when)
    assert final.name == "video_20260102_030405_2.mp4"
    assert (tmp_path / "video_20260102_030405.mp4").read_bytes() == b"old"


def test_names_are_claimed_without_hard_links_too(tmp_path, monkeypatch):
    import errno
    import os

    def no_links(src, dst):  # FAT/exFAT drives and some network shares
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    when = datetime(2026, 1, 2, 3, 4, 5)
    (tmp_path / "video_20260102_030405.mp4").write_bytes(b"old")
    staged = outputs.staging_path(tmp_path, ".mp4")
    staged.write_bytes(b"new")
    final = outputs.commit_named(staged, tmp_path, "video_", ".mp4", when)
    assert final.name == "video_20260102_030405_1.mp4" and final.read_bytes() == b"new"
    assert (tmp_path / "video_20260102_030405.mp4").read_bytes() == b"old"
    assert not staged.exists()


def test_explicit_output_path(settings, photo, tmp_path):
    target = tmp_path / "mine.webm"
    result = generate(_request(photo, format="webm"), settings, output=target,
                      engine=FakeEngine())
    assert result.output == target and (tmp_path / "mine.json").is_file()


def test_png_frames_folder_output(settings, photo):
    result = generate(_request(photo, format="png"), settings, engine=FakeEngine())
    assert result.output.is_dir() and len(list(result.output.iterdir())) == 10
    assert result.sidecar.name == result.output.name + ".json"


def test_failure_mid_encode_leaves_nothing(settings, photo):
    with pytest.raises(FakeFailure):
        generate(_request(photo), settings, engine=FakeEngine(fail_with=FakeFailure("boom")))
    assert _files(settings.output.directory) == []


@pytest.mark.parametrize("fmt", ["mp4", "png"])
def test_interrupt_mid_encode_leaves_no_partial_file(settings, photo, fmt):
    cancel = CancelToken()

    def progress(event):
        if event.stage == "encode" and event.done == 4:
            raise KeyboardInterrupt  # what Ctrl-C raises in the main thread

    with pytest.raises(KeyboardInterrupt):
        generate(_request(photo, format=fmt), settings, engine=FakeEngine(), progress=progress,
                 cancel=cancel)
    assert _files(settings.output.directory) == []


def test_cancel_leaves_no_partial_file(settings, photo):
    cancel = CancelToken()

    def progress(event):
        if event.done == 3:
            cancel.cancel()

    with pytest.raises(CancelledError):
        generate(_request(photo), settings, engine=FakeEngine(), progress=progress, cancel=cancel)
    assert _files(settings.output.directory) == []


def test_full_disk_is_one_clear_error_and_no_partial_file(settings, photo, monkeypatch):
    from img2vid.media import encode

    original = encode.MP4Writer.write

    def write(self, frame):
        if self.frames == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, frame)

    monkeypatch.setattr(encode.MP4Writer, "write", write)
    with pytest.raises(DiskFullError, match="no space left in .*free some space"):
        generate(_request(photo), settings, engine=FakeEngine())
    assert _files(settings.output.directory) == []


def test_fades_reach_black_at_both_ends(settings, photo):
    req = build_request(images=[str(photo)], width=96, height=64, fps=10, num_frames=20,
                        fade_in=0.5, fade_out=0.5, format="png")
    result = generate(req, settings, engine=FakeEngine())
    import numpy as np
    from PIL import Image

    frames = [np.asarray(Image.open(p)).astype(float) for p in sorted(result.output.iterdir())]
    means = [f.mean() for f in frames]
    assert means[0] == 0 and means[-1] == 0
    assert means[1] < means[3] < means[5] <= means[8]
    assert means[-2] < means[-4] < means[-6]
