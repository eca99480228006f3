"""End to end with the real camera engine through `img2vid serve`, including a hard crash:
the server is SIGKILLed mid-job, started again, and the job still completes."""

from __future__ import annotations

import io
import signal
import time
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from tests.conftest import start_cli
from tests.live_server import PHOTO, TERMINAL
from tests.test_server_cli import free_port


def start(tmp_path: Path, port: int):  # type: ignore[no-untyped-def]
    proc = start_cli("serve", "--port", port, "--workers", "1", cwd=tmp_path)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.get("/healthz")
            return proc, client
        except httpx.TransportError:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)


@pytest.mark.slow
def test_camera_jobs_survive_a_killed_server(tmp_path: Path) -> None:
    port = free_port()
    proc, client = start(tmp_path, port)
    try:
        with PHOTO.open("rb") as f:
            long = client.post("/api/v1/jobs", files=[("images", (PHOTO.name, f, "image/png"))],
                               data={"resolution": "720", "duration": "6", "fps": "24",
                                     "motion": "zoom-in", "encode_speed": "ultrafast"}).json()
        with PHOTO.open("rb") as f:
            short = client.post("/api/v1/jobs", files=[("images", (PHOTO.name, f, "image/png"))],
                                data={"resolution": "256", "num_frames": "12", "fps": "12",
                                      "motion": "pan-left"}).json()
        assert short["queue_position"] == 1
        deadline = time.monotonic() + 60
        while True:  # kill it once the long job is visibly under way
            job = client.get(f"/api/v1/jobs/{long['id']}").json()
            if job["status"] == "running" and (job["progress"] or {}).get("step", 0) >= 5:
                break
            assert job["status"] in ("queued", "running") and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        client.close()
        outputs = tmp_path / "outputs"
        # Nothing finished; a hard kill can only leave the hidden staging file behind.
        assert [p.name.startswith(".img2vid-partial-") for p in outputs.iterdir()
                if p.suffix == ".mp4"] in ([], [True])

        proc, client = start(tmp_path, port)
        done = {}
        deadline = time.monotonic() + 120
        while len(done) < 2:
            for job_id in (long["id"], short["id"]):
                job = client.get(f"/api/v1/jobs/{job_id}").json()
                if job["status"] in TERMINAL:
                    done[job_id] = job
            assert time.monotonic() < deadline, "the jobs did not finish after the restart"
            time.sleep(0.1)
        first, second = done[long["id"]], done[short["id"]]
        assert first["status"] == "succeeded", first["error"]
        assert first["attempts"] == 2  # re-queued once after the crash
        assert second["status"] == "succeeded" and second["attempts"] == 1
        assert first["sidecar"]["engine"] == "camera"
        assert first["sidecar"]["request"]["motion"] == "zoom-in"

        video = client.get(first["result_url"]).content
        with av.open(io.BytesIO(video)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == 6 * 24
        assert frames[0].shape == (720, 1080, 3)
        change = np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean()
        assert change > 5  # the camera moved
        part = client.get(first["result_url"], headers={"Range": "bytes=0-1023"})
        assert part.status_code == 206 and part.content == video[:1024]
        # Only complete files in the output folder: two videos and their sidecars.
        names = sorted(p.name for p in outputs.iterdir() if not p.name.startswith("."))
        assert sorted(Path(n).suffix for n in names) == [".json", ".json", ".mp4", ".mp4"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
