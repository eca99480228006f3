"""--last-image: the video ends on a given frame where the model was trained for it (Wan 2.2
I2V A14B here); other models refuse with one line naming those that can. Engine, CLI, REST
API and batch manifest."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from img2vid.core.config import LogSettings, ModelSettings, OutputSettings, Settings
from img2vid.core.errors import InputError
from img2vid.media.images import file_sha256
from tests.diffusion.conftest import frames_of, run_model
from tests.diffusion.replicas_new import wan22_i2v_a14b

SMALL = {"width": 64, "height": 64, "num_frames": 5, "num_inference_steps": 2, "seed": 3}


@pytest.fixture(scope="session")
def a14b_dir(tiny_dir: Path) -> Path:
    return wan22_i2v_a14b(tiny_dir / "a14b")


run = partial(run_model, small=SMALL)


def test_wan22_a14b_ends_on_the_last_image_and_records_it(engine, a14b_dir, small_photo,
                                                          loaded_photo, end_photo):
    plain = run(engine, a14b_dir, small_photo, loaded_photo)
    ended = run(engine, a14b_dir, small_photo, loaded_photo, last_image=str(end_photo))
    a, b = frames_of(plain), frames_of(ended)
    assert a.shape == b.shape == (5, 64, 64, 3)
    # the end frame conditions the whole clip through the latent mask and the VAE condition
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 0.1  # random tiny weights: small
    recorded = ended.info["last_image"]
    assert recorded["sha256"] == file_sha256(end_photo)
    assert recorded["path"] == str(end_photo)
    assert "last_image" not in plain.info


def test_a_model_without_end_frames_refuses_naming_those_that_can(engine, wan_dir, small_photo,
                                                                  loaded_photo, end_photo):
    with pytest.raises(InputError) as caught:
        run(engine, wan_dir, small_photo, loaded_photo, last_image=str(end_photo))
    message = str(caught.value)
    assert "\n" not in message and "wan-tiny" in message
    assert "wan2.2-i2v-a14b" in message and "wan2.1-flf2v-14b-720p" in message


def test_cli_refuses_with_exit_2_and_one_line(wan_dir, small_photo, end_photo, tmp_path, capsys):
    from img2vid.interfaces.cli.app import main

    out = tmp_path / "x.mp4"
    code = main(["generate", str(small_photo), "--model", str(wan_dir), "--last-image",
                 str(end_photo), "--num-inference-steps", "1", "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "models that can" in err[0]
    assert not out.exists()


def test_rest_api_takes_the_end_frame_as_an_upload(a14b_dir, small_photo, end_photo, tmp_path):
    from tests.live_server import TERMINAL, live_server, wait_for

    settings = Settings(output=OutputSettings(directory=tmp_path / "outputs"),
                        logs=LogSettings(directory=tmp_path / "logs"),
                        models=ModelSettings(cache_dir=tmp_path / "empty-hf-cache",
                                             local_dirs={"tiny-a14b": a14b_dir}))
    fields = {"model": "tiny-a14b", "width": "64", "height": "64", "num_frames": "5",
              "num_inference_steps": "2", "seed": "3"}
    with live_server(settings, None) as server, server.client() as client:
        with small_photo.open("rb") as photo, end_photo.open("rb") as end:
            r = client.post("/api/v1/jobs", data=fields, files=[
                ("images", ("start.jpg", photo, "image/jpeg")),
                ("last_image", ("my end.png", end, "image/png"))])
        assert r.status_code == 202, r.text
        job = wait_for(client, r.json()["id"], TERMINAL, timeout=120)
        assert job["status"] == "succeeded", job["error"]
        recorded = job["sidecar"]["engine_info"]["last_image"]
        assert recorded["sha256"] == file_sha256(end_photo)
        assert recorded["path"] == "my_end.png"  # no server path reaches the client
        assert job["request"]["last_image"] == "my_end.png"
        # a path instead of an upload is refused, as for images
        r = client.post("/api/v1/jobs", data={**fields, "last_image": str(end_photo)},
                        files=[("images", ("start.jpg", small_photo.read_bytes()))])
        assert r.status_code == 400 and "uploaded" in r.json()["detail"]


def test_manifest_column_relative_to_the_manifest(a14b_dir, small_photo, end_photo, tmp_path):
    from img2vid.execution.batch import DONE, run_batch

    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "end.png").write_bytes(end_photo.read_bytes())
    manifest = folder / "rows.csv"
    manifest.write_text(f"image,last_image,seed\n{small_photo},end.png,3\n")
    options = {"model": str(a14b_dir), "width": 64, "height": 64, "num_frames": 5,
               "num_inference_steps": 2}
    result = run_batch(str(manifest), options, Settings(), output_dir=tmp_path / "out")
    assert result.counts[DONE] == 1, result.rows
    sidecar = json.loads((tmp_path / "out" / "photo.mp4.json").read_text())
    assert sidecar["engine_info"]["last_image"]["sha256"] == file_sha256(end_photo)
    assert sidecar["request"]["last_image"] == str(folder / "end.png")
