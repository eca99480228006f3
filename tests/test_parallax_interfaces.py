"""The parallax engine end to end as users reach it: CLI, `img2vid models`, the REST API of a
real `img2vid serve`, and batch manifests, each with a depth map (no model download)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from tests.conftest import run_cli, start_cli
from tests.parallax_scene import make_scene
from tests.test_server_cli import free_port

OFFLINE = {"HF_HUB_OFFLINE": "1"}


@pytest.fixture
def scene_files(tmp_path: Path) -> tuple[Path, Path]:
    scene = make_scene(tmp_path, 320, 180)
    return Path(scene.photo.path), scene.depth_path


def offline(tmp_path: Path) -> dict[str, str]:
    return {**OFFLINE, "HF_HOME": str(tmp_path / "hf"), "IMG2VID_MODEL_CACHE": str(tmp_path / "c")}


def frames_in(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_cli_generate_with_a_depth_map(tmp_path: Path,
                                       scene_files: tuple[Path, Path]) -> None:
    photo, depth = scene_files
    proc = run_cli("generate", photo, "--engine", "parallax", "--motion", "dolly-in",
                   "--depth", depth, "--width", "256", "--height", "144", "--fps", "12",
                   "--duration", "1", "--json", "--quiet", cwd=tmp_path, env=offline(tmp_path))
    assert proc.returncode == 0, proc.stderr
    side = json.loads(proc.stdout)
    assert side["engine"] == "parallax" and side["output"]["frames"] == 12
    assert side["engine_info"]["depth"]["source"] == "map"
    assert "torch" not in side["versions"]  # a depth map needs no model: torch never loads
    frames = frames_in(tmp_path / side["output"]["path"])
    assert len(frames) == 12 and frames[0].shape == (144, 256, 3)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 3


def test_cli_motion_picks_the_parallax_engine(tmp_path: Path,
                                              scene_files: tuple[Path, Path]) -> None:
    photo, depth = scene_files
    proc = run_cli("generate", photo, "--motion", "circle", "--depth", depth, "--width", "128",
                   "--height", "72", "--num-frames", "6", "--fps", "6", "--json", "--quiet",
                   cwd=tmp_path, env=offline(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["engine"] == "parallax"


def test_cli_without_model_or_depth_is_one_line_exit_2(tmp_path: Path,
                                                       scene_files: tuple[Path, Path]) -> None:
    photo, _ = scene_files
    proc = run_cli("generate", photo, "--engine", "parallax", "--width", "128", "--height", "72",
                   "--num-frames", "4", "--fps", "4", "--quiet", cwd=tmp_path,
                   env=offline(tmp_path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "img2vid models download depth-anything-v2-small" in lines[0]
    assert "--depth depth.png" in lines[0]
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").iterdir())


def test_cli_depth_only_motion_with_the_camera_engine_is_refused(
        tmp_path: Path, scene_files: tuple[Path, Path]) -> None:
    photo, _ = scene_files
    proc = run_cli("generate", photo, "--engine", "camera", "--motion", "vertigo",
                   cwd=tmp_path, env=offline(tmp_path))
    assert proc.returncode == 2
    assert "motion vertigo needs depth: use --engine parallax" in proc.stderr


def test_models_lists_and_names_the_depth_model(tmp_path: Path) -> None:
    proc = run_cli("models", "--json", cwd=tmp_path, env=offline(tmp_path))
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    depth = rows["depth-anything-v2-small"]
    assert depth["hub_id"] == "depth-anything/Depth-Anything-V2-Small-hf"
    assert depth["cached"] is False
    down = run_cli("models", "download", "depth-anything-v2-small", cwd=tmp_path,
                   env=offline(tmp_path))
    assert down.returncode == 2 and "Traceback" not in down.stderr
    assert len(down.stderr.strip().splitlines()) == 1


def test_batch_manifest_with_depth_maps(tmp_path: Path,
                                        scene_files: tuple[Path, Path]) -> None:
    photo, depth = scene_files
    manifest = tmp_path / "shots.csv"
    manifest.write_text("image,depth,motion\n"
                        f"{photo.name},{depth.name},truck-left\n"
                        f"{photo.name},{depth.name},orbit\n")
    proc = run_cli("batch", manifest, "-o", "out", "--engine", "parallax", "--width", "128",
                   "--height", "72", "--num-frames", "6", "--fps", "6", "--quiet",
                   cwd=tmp_path, env=offline(tmp_path))
    assert proc.returncode == 0, proc.stderr
    sidecars = sorted((tmp_path / "out").glob("*.json"))
    sides = [json.loads(p.read_text()) for p in sidecars if "report" not in p.name]
    assert sorted(s["request"]["motion"] for s in sides) == ["orbit", "truck-left"]
    assert all(s["engine"] == "parallax" and s["output"]["frames"] == 6 for s in sides)
    assert all(Path(s["request"]["depth"]) == depth for s in sides)


def test_rest_api_with_an_uploaded_depth_map(tmp_path: Path,
                                             scene_files: tuple[Path, Path]) -> None:
    photo, depth = scene_files
    port = free_port()
    proc = start_cli("serve", "--port", port, "--workers", "1", cwd=tmp_path,
                     env=offline(tmp_path))
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client.get("/healthz")
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        models = {m["name"]: m for m in client.get("/api/v1/models").json()}
        assert models["depth-anything-v2-small"]["engine"] == "parallax"
        assert not models["depth-anything-v2-small"]["available"]
        fields = {"engine": "parallax", "motion": "orbit", "width": "128", "height": "72",
                  "num_frames": "6", "fps": "6"}
        # no depth map and no depth model on the server: refused before queueing
        with photo.open("rb") as f:
            refused = client.post("/api/v1/jobs", files=[("images", (photo.name, f))],
                                  data=fields)
        assert refused.status_code == 422
        assert "upload the photo's depth map as 'depth'" in refused.json()["detail"]
        # a server path as depth is refused too
        with photo.open("rb") as f:
            path = client.post("/api/v1/jobs", files=[("images", (photo.name, f))],
                               data={**fields, "depth": str(depth)})
        assert path.status_code == 400 and "must be uploaded as a file" in path.text
        with photo.open("rb") as f, depth.open("rb") as d:
            job = client.post("/api/v1/jobs", files=[("images", (photo.name, f)),
                                                     ("depth", ("my-depth.png", d))],
                              data=fields).json()
        deadline = time.monotonic() + 90
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
            job = client.get(f"/api/v1/jobs/{job['id']}").json()
        assert job["status"] == "succeeded", job["error"]
        assert job["engine"] == "parallax" and job["request"]["depth"] == "my-depth.png"
        assert job["sidecar"]["engine_info"]["depth"] | {"source": "map", "map": "my-depth.png"} \
            == job["sidecar"]["engine_info"]["depth"]  # no server path
        video = client.get(job["result_url"])
        assert video.status_code == 200
        out = tmp_path / "result.mp4"
        out.write_bytes(video.content)
        assert len(frames_in(out)) == 6
    finally:
        client.close()
        proc.terminate()
        proc.wait(30)


def test_webui_makes_a_parallax_video_from_an_uploaded_depth_map(
        tmp_path: Path, scene_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from gradio_client import Client, handle_file

    from img2vid.engines.base import create_engine
    from tests.live_server import live_server, make_settings

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    photo, depth = scene_files
    settings = make_settings(tmp_path)
    with live_server(settings, create_engine, ui=True, cpu_workers=1) as server:
        client = Client(server.base_url + "/", verbose=False)
        status, video, saved, params, *_ = client.predict(
            files=[handle_file(str(photo))], engine="parallax", motion="orbit",
            resolution="256", num_frames="6", fps="6", depth_of_field=0.3,
            depth_map=handle_file(str(depth)), api_name="/generate")
        client.close()
    assert status.startswith("Done in"), status
    assert params["engine"] == "parallax" and params["request"]["depth_of_field"] == 0.3
    assert params["engine_info"]["depth"]["source"] == "map"
    assert len(frames_in(Path(video))) == 6
