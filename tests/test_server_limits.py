"""What one client can make the server spend, against a real server: decoded pixels per job,
parked UI uploads, a full or read-only disk, bad field types. docs/security.md cites these."""

from __future__ import annotations

import io
import os
import resource
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from img2vid.core.config import ImageSettings, OutputSettings, Settings
from img2vid.core.request import build_request
from img2vid.execution.pipeline import generate
from img2vid.media.images import LazyImages
from tests.conftest import run_cli
from tests.fakes import FakeEngine
from tests.live_server import (
    PHOTO,
    TERMINAL,
    LiveServer,
    fake_server,
    wait_for,
)
from tests.test_server_cli import free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with fake_server(tmp_path_factory.mktemp("limits"), FakeEngine(), max_upload_mb=1) as live:
        yield live


def bomb() -> bytes:
    """A 1-bit 10950x10950 PNG: 120 MP (just under the per-image limit) in about 15 KB."""
    out = io.BytesIO()
    Image.new("1", (10950, 10950)).save(out, "PNG", optimize=True)
    return out.getvalue()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_ten_pixel_bombs_are_refused_at_intake(server: LiveServer, client: httpx.Client) -> None:
    data = bomb()
    assert len(data) < 64 * 1024
    before_jobs = server.queue.list(limit=1)[1]
    before = peak_rss_mb()
    r = client.post("/api/v1/jobs", data={"num_frames": "4"},
                    files=[("images", (f"b{i}.png", data, "image/png")) for i in range(10)])
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert "1199 MP" in detail and "600 MP" in detail and "images.max_total_pixels" in detail
    assert server.queue.list(limit=1)[1] == before_jobs
    # nothing was decoded: 10 x 120 MP would be 3.6 GB of RGB
    assert peak_rss_mb() - before < 300


def test_slideshows_decode_one_photo_at_a_time(tmp_path: Path) -> None:
    """Decoded memory does not grow with the number of photos: 9 photos peak like 3."""
    photos = []
    for i in range(9):
        path = tmp_path / f"p{i}.png"
        pixels = np.full((1200, 1600, 3), (30 * i, 100, 200 - 20 * i), dtype=np.uint8)
        Image.fromarray(pixels).save(path, compress_level=1)
        photos.append(str(path))
    settings = Settings(output=OutputSettings(directory=tmp_path / "out"))
    peaks = []
    for count in (3, 9):
        request = build_request(images=photos[:count], engine="camera", resolution=256,
                                num_frames=8 * count, fps=8, focus="0.5,0.5",
                                encode_speed="ultrafast")
        tracemalloc.start()
        generate(request, settings)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    photo = 1200 * 1600 * 3  # all nine at once would add six of these
    assert peaks[1] < peaks[0] + photo, [p / 1e6 for p in peaks]


def test_the_budget_applies_to_the_cli_too(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (1000, 1000)).save(paths[-1])
    with pytest.raises(Exception, match="add up to 3 MP, over the 2 MP"):
        LazyImages(paths, ImageSettings(max_total_pixels=2_000_000))


def test_ui_uploads_are_bounded_per_client_and_removed_after_the_job(
        server: LiveServer, client: httpx.Client) -> None:
    from gradio_client import Client, handle_file

    parking = server.state.parking
    limit = 2 * 1024 * 1024  # twice max_upload_mb
    chunk = os.urandom(900 * 1024)
    paths = []
    for i in range(10):
        r = client.post("/gradio_api/upload",
                        files=[("files", (f"big{i}.png", chunk, "image/png"))])
        assert r.status_code == 200, r.text
        paths.append(Path(r.json()[0]).resolve())
    # the oldest unused ones made room for the newest: what is parked stays bounded
    assert sum(parking.parked("127.0.0.1").values()) <= limit
    assert sum(p.exists() for p in paths) == 2 and paths[-1].exists()
    before = set(parking.parked("127.0.0.1"))

    ui = Client(server.base_url + "/", verbose=False)
    status, *_ = ui.predict(files=[handle_file(str(PHOTO))], resolution="256",
                            num_frames="4", fps="4", api_name="/generate")
    ui.close()
    assert status.startswith("Done in")
    # the photo the job used is gone from Gradio's cache once the job has ended
    after = parking.parked("127.0.0.1")
    assert set(after) <= before and not any(p.name == PHOTO.name for p in after)


def test_a_non_string_model_is_422(client: httpx.Client) -> None:
    r = client.post("/api/v1/jobs", json={"images": [""], "model": 5})
    assert r.status_code == 422, r.text
    assert r.json() == {"detail": "model=5: must be a name (a string)"}
    r = client.get("/api/v1/jobs", params={"limit": 0})
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    assert r.json()["detail"].startswith("limit=0: ")


def test_a_full_or_read_only_disk_is_507_or_503(server: LiveServer, client: httpx.Client,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Real kernel errors: writes to /dev/full fail with ENOSPC; /sys/kernel refuses new
    files (EPERM for root, EACCES for others)."""
    queue = server.queue
    monkeypatch.setattr(queue, "new_job_id", lambda: "f" * 32)
    (queue.uploads / ("f" * 32)).mkdir()
    (queue.uploads / ("f" * 32) / "000.png").symlink_to("/dev/full")
    r = client.post("/api/v1/jobs", files=[("images", ("a.png", PHOTO.read_bytes()))])
    assert r.status_code == 507, r.text
    assert r.json()["detail"].startswith("the server's disk is full")
    assert str(queue.uploads) not in r.text

    monkeypatch.setattr(queue, "new_job_id", lambda: "e" * 32)
    (queue.uploads / ("e" * 32)).symlink_to("/sys/kernel")
    r = client.post("/api/v1/jobs", files=[("images", ("a.png", PHOTO.read_bytes()))])
    assert r.status_code == 503, r.text
    assert "output.directory must be writable" in r.json()["detail"]
    assert r.headers["retry-after"] == "60"
    (queue.uploads / ("e" * 32)).unlink()
    monkeypatch.undo()
    ok = client.post("/api/v1/jobs", data={"num_frames": "4"},
                     files=[("images", ("a.png", PHOTO.read_bytes()))])
    assert wait_for(client, ok.json()["id"], TERMINAL)["status"] == "succeeded"


def test_serve_on_a_read_only_output_folder_is_exit_2(tmp_path: Path) -> None:
    result = run_cli("serve", "--port", str(free_port()), cwd=tmp_path,
                     env={"IMG2VID_OUTPUT__DIRECTORY": "/sys/kernel"}, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "img2vid: error: cannot write to the output folder /sys/kernel: "), lines
