"""The diffusion engine behind the server: a tiny Wan model in a configured folder runs on the
gpu lane through the REST API; models that are not on disk are refused with how to get them."""

from __future__ import annotations

import io
from pathlib import Path

import av

from img2vid.core.config import LogSettings, ModelSettings, OutputSettings, Settings
from tests.live_server import TERMINAL, live_server, submit, wait_for


def test_a_diffusion_job_runs_on_the_gpu_lane(wan_dir: Path, small_photo: Path,
                                              tmp_path: Path) -> None:
    settings = Settings(output=OutputSettings(directory=tmp_path / "outputs"),
                        logs=LogSettings(directory=tmp_path / "logs"),
                        models=ModelSettings(cache_dir=tmp_path / "empty-hf-cache",
                                             local_dirs={"tiny-wan": wan_dir}))
    with live_server(settings, None) as server, server.client() as client:  # real engines
        models = {m["name"]: m for m in client.get("/api/v1/models").json()}
        assert models["tiny-wan"]["available"] and models["tiny-wan"]["engine"] == "diffusion"
        assert not models["i2vgen-xl"]["available"]
        assert "img2vid models download i2vgen-xl" in models["i2vgen-xl"]["how_to_get"]

        # Not on this server: refused before queueing, saying how to get it.
        r = submit(client, photo=small_photo, engine="diffusion")
        assert r.status_code == 422
        assert "model i2vgen-xl is not available on this server: run `img2vid models " \
               "download i2vgen-xl`" in r.json()["detail"]
        # A dry run plans it anyway (registry defaults, download size) and queues nothing.
        r = submit(client, photo=small_photo, model="svd-xt", dry_run="true", resolution="",
                   num_frames="", fps="")
        assert r.status_code == 200, r.text
        plan = r.json()
        assert (plan["model"], plan["pipeline"], plan["cached"]) == (
            "svd-xt", "StableVideoDiffusionPipeline", False)
        assert plan["download_gb"] > 0 and plan["memory"]["estimated_peak_gb"] > 0
        used = plan["used"]
        assert (used["num_frames"], used["fps"], used["num_inference_steps"]) == (25, 7, 25)
        assert client.get("/api/v1/jobs").json()["jobs"] == []
        r = submit(client, photo=small_photo, model=str(wan_dir))  # a server path: no
        assert r.status_code == 422 and "unknown model" in r.json()["detail"]

        # names match as GET /api/v1/models lists them, whatever their case
        r = submit(client, photo=small_photo, model="Tiny-Wan", prompt="steam rises",
                   resolution="", width="96", height="64", num_frames="4", fps="8",
                   num_inference_steps="2", seed="7")
        assert r.status_code == 202, r.text
        assert r.json()["engine"] == "diffusion"
        job = wait_for(client, r.json()["id"], TERMINAL, timeout=120)
        assert job["status"] == "succeeded", job["error"]
        assert job["sidecar"]["engine"] == "diffusion" and job["sidecar"]["seed"] == 7
        assert job["sidecar"]["request"]["model"] == "tiny-wan"
        assert server.queue.get(job["id"]).lane.value == "gpu"  # type: ignore[union-attr]
        video = client.get(job["result_url"])
        with av.open(io.BytesIO(video.content)) as container:
            assert sum(1 for _ in container.decode(video=0)) == 5
