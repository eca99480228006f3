"""Request fields of the diffusion engine through every interface: a prompt per window as a
list (REST API, JSONL manifest), `guidance_scale_2` on two-expert models (refused with one
line elsewhere), each reaching the pipeline and the sidecar."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from img2vid.core.config import LogSettings, ModelSettings, OutputSettings, Settings
from img2vid.core.errors import InputError
from img2vid.core.request import build_request
from tests.diffusion.replicas_new import wan22_i2v_a14b

WINDOWED = {"width": 64, "height": 64, "num_frames": 13, "window_frames": 9,
            "num_inference_steps": 2, "seed": 3}


@pytest.fixture(scope="module")
def a14b(tiny_dir: Path) -> Path:
    return wan22_i2v_a14b(tiny_dir / "a14b-fields")


def test_a_prompt_list_is_one_prompt_per_window():
    request = build_request(images=("p.jpg",), model="x", prompt=["a cat ", "a dog"])
    assert request.prompt == "a cat | a dog"
    for bad in ([], ["a | b"], ["ok", ""], ["ok", 3]):
        with pytest.raises(InputError) as caught:
            build_request(images=("p.jpg",), model="x", prompt=bad)
        assert "\n" not in str(caught.value) and "prompt" in str(caught.value)


def test_guidance_scale_2_reaches_the_low_noise_expert(engine, a14b, wan_dir, small_photo,
                                                       loaded_photo):
    from img2vid.core.progress import CancelToken
    from tests.diffusion.conftest import frames_of

    def run(model: Path, **fields):
        request = build_request(images=(str(small_photo),), model=str(model), width=64,
                                height=64, num_frames=5, num_inference_steps=2, seed=3,
                                prompt="a cat runs", **fields)  # else guidance changes nothing
        return engine.generate(request, [loaded_photo], lambda _: None, CancelToken())

    own = run(a14b)
    low = run(a14b, guidance_scale_2=1.0)
    # 2 steps across boundary 0.9: the second runs on transformer_2 with guidance_scale_2
    assert own.info["guidance_scale_2"] == own.info["guidance_scale"]  # the model's own
    assert low.info["guidance_scale_2"] == 1.0
    assert (frames_of(own) != frames_of(low)).any()
    with pytest.raises(InputError) as caught:
        run(wan_dir, guidance_scale_2=2.0)
    message = str(caught.value)
    assert "\n" not in message and "one denoiser" in message
    assert "wan2.2-i2v-a14b" in message


def test_cli_refuses_guidance_scale_2_on_one_expert(wan_dir, small_photo, tmp_path, capsys):
    from img2vid.interfaces.cli.app import main

    out = tmp_path / "x.mp4"
    code = main(["generate", str(small_photo), "--model", str(wan_dir),
                 "--guidance-scale-2", "2", "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--guidance-scale-2" in err[0], err
    assert not out.exists()


def test_rest_api_takes_a_prompt_list_and_guidance_scale_2(a14b, wan_dir, small_photo,
                                                           tmp_path):
    from tests.live_server import TERMINAL, live_server, wait_for

    settings = Settings(output=OutputSettings(directory=tmp_path / "outputs"),
                        logs=LogSettings(directory=tmp_path / "logs"),
                        models=ModelSettings(cache_dir=tmp_path / "empty-hf-cache",
                                             local_dirs={"tiny-a14b": a14b,
                                                         "tiny-wan": wan_dir}))
    photo = base64.b64encode(small_photo.read_bytes()).decode()
    body = {"images": [photo], "model": "tiny-a14b", **WINDOWED,
            "prompt": ["a cat runs", "a dog jumps"], "guidance_scale_2": 2.5}
    with live_server(settings, None) as server, server.client() as client:
        r = client.post("/api/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        job = wait_for(client, r.json()["id"], TERMINAL, timeout=180)
        assert job["status"] == "succeeded", job["error"]
        info = job["sidecar"]["engine_info"]
        assert [w["prompt"] for w in info["windows"]] == ["a cat runs", "a dog jumps"]
        assert info["guidance_scale_2"] == 2.5
        assert job["request"]["prompt"] == "a cat runs | a dog jumps"
        # a list with more prompts than windows: the job fails with one line saying so
        r = client.post("/api/v1/jobs", json={**body, "prompt": ["a", "b", "c"]})
        assert r.status_code == 202, r.text
        job = wait_for(client, r.json()["id"], TERMINAL, timeout=120)
        assert job["status"] == "failed"
        assert "3 window prompts for 2 windows" in job["error"]
        # a bad list and guidance_scale_2 on a one-expert model: refused before queueing
        r = client.post("/api/v1/jobs", json={**body, "prompt": ["a | b"]})
        assert r.status_code in (400, 422) and "prompt" in r.text
        r = client.post("/api/v1/jobs?dry_run=true",
                        json={**body, "model": "tiny-wan", "prompt": "x"})
        assert r.status_code in (400, 422) and "one denoiser" in r.text
        # multipart: the prompt field repeated, one per window
        fields = {"model": "tiny-a14b", **{k: str(v) for k, v in WINDOWED.items()},
                  "prompt": ["a cat", "a dog"], "dry_run": "true"}
        r = client.post("/api/v1/jobs", data=fields,
                        files=[("images", ("p.jpg", small_photo.read_bytes()))])
        assert r.status_code in (200, 202), r.text


def test_jsonl_manifest_rows_take_prompt_lists_and_guidance_scale_2(a14b, small_photo,
                                                                    tmp_path):
    from img2vid.execution.batch import DONE, run_batch

    manifest = tmp_path / "rows.jsonl"
    manifest.write_text(json.dumps({"image": str(small_photo), "prompt": ["a cat", "a dog"],
                                    "guidance_scale_2": 1.5}) + "\n")
    result = run_batch(str(manifest), {"model": str(a14b), **WINDOWED}, Settings(),
                       output_dir=tmp_path / "out")
    assert result.counts[DONE] == 1, result.rows
    info = json.loads((tmp_path / "out" / "photo.mp4.json").read_text())["engine_info"]
    assert [w["prompt"] for w in info["windows"]] == ["a cat", "a dog"]
    assert info["guidance_scale_2"] == 1.5
