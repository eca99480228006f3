"""Soundtrack, codec, upscale and style through the REST API, the WebUI and batch manifests."""

from __future__ import annotations

import base64
import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from img2vid.execution.batch import run_batch
from tests.live_server import PHOTO, TERMINAL, LiveServer, live_server, make_settings, wait_for
from tests.media import audio_samples, streams, video_frames, write_tone

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture(scope="module")
def tone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tone(tmp_path_factory.mktemp("sound") / "song.mp3", 3.0, codec="libmp3lame")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path_factory.mktemp("finishing"), max_upload_mb=5)
    with live_server(settings, None, ui=True, cpu_workers=1) as live:  # the real camera engine
        yield live


TINY = {"resolution": "256", "duration": "1.5", "fps": "8", "encode_speed": "ultrafast"}


def _run_job(server: LiveServer, data: dict, files: list, tmp_path: Path,  # type: ignore[type-arg]
             suffix: str = ".mp4") -> tuple[dict, Path]:  # type: ignore[type-arg]
    """Submit a multipart job with the photo and `files`, wait, download its video."""
    with PHOTO.open("rb") as photo:
        return _run_json_job(server, None, tmp_path, suffix, data={**TINY, **data},
                             files=[("images", (PHOTO.name, photo, "image/png")), *files])


def _run_json_job(server: LiveServer, body: dict | None, tmp_path: Path,  # type: ignore[type-arg]
                  suffix: str = ".mp4", **multipart: object) -> tuple[dict, Path]:  # type: ignore[type-arg]
    """Submit a job (a JSON `body`, else the `multipart` data and files), wait, download its
    video."""
    with server.client() as client:
        job = client.post("/api/v1/jobs", **({"json": body} if body else multipart))  # type: ignore[arg-type]
        assert job.status_code == 202, job.text
        done = wait_for(client, job.json()["id"], TERMINAL, timeout=120)
        assert done["status"] == "succeeded", done["error"]
        path = tmp_path / f"result{suffix}"
        path.write_bytes(client.get(done["result_url"]).content)
    return done, path


def test_api_multipart_audio_upload(server: LiveServer, tone: Path, tmp_path: Path) -> None:
    with tone.open("rb") as sound:
        done, video = _run_job(server, {"audio_offset": "0.5", "codec": "hevc"},
                               [("audio", ("my song.mp3", sound, "audio/mpeg"))], tmp_path)
    assert streams(video) == {"video": "hevc", "audio": "aac"}
    samples, rate = audio_samples(video)
    assert len(samples) / rate == pytest.approx(1.5, abs=0.06)
    assert done["request"]["audio"] == "my_song.mp3"  # the client's name, not a server path
    assert done["sidecar"]["audio"]["offset"] == 0.5
    assert done["sidecar"]["audio"]["source"] == "my_song.mp3"


def test_api_json_audio_as_base64(server: LiveServer, tone: Path, tmp_path: Path) -> None:
    """JSON files keep the name a client gives ({"name", "data"}); bare base64 is named
    after its field."""
    sound = base64.b64encode(tone.read_bytes()).decode()
    body = {**TINY, "format": "webm",
            "images": [{"name": "coffee.png",
                        "data": base64.b64encode(PHOTO.read_bytes()).decode()}],
            "audio": {"name": "my song.mp3", "data": sound}}
    done, video = _run_json_job(server, body, tmp_path, ".webm")
    with server.client() as client:
        bare = client.post("/api/v1/jobs", json={**body, "audio": sound, "dry_run": True})
        bad = client.post("/api/v1/jobs", json={**body, "audio": {"name": 3, "data": sound}})
    assert streams(video) == {"video": "vp9", "audio": "opus"}
    assert done["request"]["audio"] == "my_song.mp3"  # the client's name, cleaned
    assert done["request"]["images"] == ["coffee.png"]
    assert done["sidecar"]["audio"]["source"] == "my_song.mp3"
    assert bare.status_code == 200, bare.text  # a dry run: nothing queued
    assert bad.status_code == 400 and '{"name": "file name"' in bad.json()["detail"]


@pytest.mark.parametrize(("files", "data", "status", "message"), [
    ([("audio", ("notes.mp3", b"not a sound at all" * 40, "audio/mpeg"))], {}, 400,
     "not a readable audio file"),
    ([], {"audio": "/etc/passwd"}, 400, "must be uploaded as a file"),
    ([], {"upscale_model": "/srv/x.pth"}, 422, "cannot be set through the server"),
    ([("audio", ("a.mp3", b"x", "audio/mpeg"))], {"format": "gif"}, 422, "has no sound track"),
])
def test_api_refuses_bad_finishing_input(server: LiveServer, files, data, status,  # type: ignore[no-untyped-def]
                                         message) -> None:
    before = server.queue.list(limit=100)[1]
    with server.client() as client, PHOTO.open("rb") as photo:
        response = client.post("/api/v1/jobs", data={**TINY, **data},
                               files=[("images", (PHOTO.name, photo, "image/png")), *files])
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert server.queue.list(limit=100)[1] == before  # nothing was queued


def test_openapi_documents_the_uploads(server: LiveServer) -> None:
    with server.client() as client:
        spec = client.get("/openapi.json").json()
    body = spec["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]
    props = body["multipart/form-data"]["schema"]["properties"]
    assert props["audio"]["format"] == "binary" and props["style"]["format"] == "binary"
    assert {"codec", "upscale", "upscaler", "style_strength", "fit_to_audio"} <= set(props)
    assert "upscale_model" not in props and "style_weights" not in props


def test_webui_client_with_a_soundtrack(server: LiveServer, tone: Path) -> None:
    from gradio_client import Client, handle_file

    client = Client(server.base_url + "/", verbose=False)
    status, video, saved, params, *_ = client.predict(
        files=[handle_file(str(PHOTO))], resolution="256", fps="8", audio=handle_file(str(tone)),
        fit_to_audio=True, api_name="/generate")
    client.close()
    assert status.startswith("Done in"), status
    saved = server.settings.output.directory / saved  # the UI shows the file's name only
    assert streams(saved) == {"video": "h264", "audio": "aac"}
    assert len(video_frames(saved)) == 24  # 3 s of track at 8 fps
    assert params["request"]["audio"] == "song.mp3" and params["request"]["fit_to_audio"]


def test_batch_manifest_audio_column(tmp_path: Path, tone: Path) -> None:
    folder = tmp_path / "shoot"
    folder.mkdir()
    (folder / "photo.png").write_bytes(PHOTO.read_bytes())
    (folder / "music").mkdir()
    (folder / "music" / "song.mp3").write_bytes(tone.read_bytes())
    manifest = folder / "jobs.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "audio", "fit_to_audio", "format"])
        writer.writerow(["photo.png", "music/song.mp3", "true", "mkv"])
    settings = make_settings(tmp_path)
    out = tmp_path / "videos"
    result = run_batch(str(manifest), {"resolution": 256, "fps": 8}, settings, output_dir=out,
                       workers=1)
    assert result.counts["done"] == 1, result.rows
    video = out / "photo.mkv"
    assert streams(video) == {"video": "ffv1", "audio": "flac"}
    assert len(video_frames(video)) == 24
    again = run_batch(str(manifest), {"resolution": 256, "fps": 8}, settings, output_dir=out,
                      workers=1)
    assert again.counts["skipped"] == 1
    side = json.loads((out / "photo.mkv.json").read_text())
    assert side["audio"]["codec"] == "flac"


@pytest.fixture(scope="module")
def styled_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose config names the AdaIN weights and an upscale model (clients cannot
    name server files)."""
    from img2vid.core.config import ModelSettings
    from tests.test_style import colour_weights
    from tests.test_upscale import save_srvgg

    root = tmp_path_factory.mktemp("styled")
    settings = make_settings(root, max_upload_mb=5)
    models = ModelSettings(style_weights=colour_weights(root / "adain"),
                           upscale_model=str(save_srvgg(root / "x2.pth", 2)))
    settings = settings.model_copy(update={"models": models})
    with live_server(settings, None, ui=True, cpu_workers=1) as live:
        yield live


def _painting(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "painting.png"
    Image.new("RGB", (80, 80), (200, 40, 40)).save(path)
    return path


def test_api_style_upload_and_model_upscale(styled_server: LiveServer, tmp_path: Path) -> None:
    painting = _painting(tmp_path)
    with painting.open("rb") as style:
        done, video = _run_job(styled_server, {"upscale": "2", "style_strength": "0.8"},
                               [("style", ("painting.png", style, "image/png"))], tmp_path)
    frames = video_frames(video)
    assert len(frames) == 12 and frames[0].shape == (512, 768, 3)
    assert done["sidecar"]["style"]["image"] == "painting.png"
    assert done["sidecar"]["engine_info"]["upscale"]["architecture"] == "SRVGGNetCompact"
    assert done["request"]["style"] == "painting.png"


def test_api_json_style_as_a_data_url(styled_server: LiveServer, tmp_path: Path) -> None:
    """A data: URL's media type gives the stored file its extension."""
    painting = base64.b64encode(_painting(tmp_path).read_bytes()).decode()
    body = {**TINY, "images": [base64.b64encode(PHOTO.read_bytes()).decode()],
            "style": f"data:image/png;base64,{painting}", "style_strength": 0.5}
    done, video = _run_json_job(styled_server, body, tmp_path)
    assert len(video_frames(video)) == 12
    assert done["request"]["style"] == "style.png" and done["request"]["images"] == ["image0"]
    assert done["sidecar"]["style"]["image"] == "style.png"


def test_api_refuses_a_bad_style_image(styled_server: LiveServer) -> None:
    with styled_server.client() as client, PHOTO.open("rb") as photo:
        response = client.post("/api/v1/jobs", data=TINY,
                               files=[("images", (PHOTO.name, photo, "image/png")),
                                      ("style", ("art.png", b"not a picture", "image/png"))])
    assert response.status_code == 400 and "art.png" in response.json()["detail"]


def test_webui_upscale_and_style(styled_server: LiveServer, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    client = Client(styled_server.base_url + "/", verbose=False)
    status, video, saved, params, *_ = client.predict(
        files=[handle_file(str(PHOTO))], resolution="256", num_frames="4", fps="4",
        upscale="2", upscaler="lanczos", style=handle_file(str(_painting(tmp_path))),
        style_strength=0.5, codec="av1", api_name="/generate")
    client.close()
    assert status.startswith("Done in"), status
    saved = styled_server.settings.output.directory / saved  # the UI shows the name only
    assert streams(saved) == {"video": "libdav1d"}
    assert video_frames(saved)[0].shape == (512, 768, 3)
    assert params["request"]["style"] == "painting.png"
    assert params["request"]["style_strength"] == 0.5


def test_batch_manifest_upscale_and_style(tmp_path: Path) -> None:
    from tests.test_style import colour_weights

    folder = tmp_path / "shoot"
    folder.mkdir()
    (folder / "photo.png").write_bytes(PHOTO.read_bytes())
    _painting(folder)
    weights = colour_weights(folder / "adain")
    manifest = folder / "jobs.jsonl"
    manifest.write_text(json.dumps({"image": "photo.png", "style": "painting.png",
                                    "style_weights": "adain", "upscale": 2,
                                    "upscaler": "lanczos", "codec": "hevc"}) + "\n")
    out = tmp_path / "videos"
    result = run_batch(str(manifest), {"resolution": 256, "num_frames": 4, "fps": 4},
                       make_settings(tmp_path), output_dir=out, workers=1)
    assert result.counts["done"] == 1, result.rows
    assert streams(out / "photo.mp4") == {"video": "hevc"}
    assert video_frames(out / "photo.mp4")[0].shape == (512, 768, 3)
    side = json.loads((out / "photo.mp4.json").read_text())
    assert side["request"]["style_weights"] == str(weights)


def test_browser_audio_upload_and_upscale(server: LiveServer, tone: Path,
                                          browser: Browser) -> None:
    page = browser.new_page()
    page.goto(server.base_url + "/")
    page.locator("#photos input[type=file]").set_input_files(str(PHOTO))
    page.get_by_text("Advanced").click()
    page.locator("#frames").get_by_role("textbox").fill("8")
    page.locator("#fps").get_by_role("textbox").fill("8")
    page.locator("#resolution input").click()
    page.get_by_role("option", name="256", exact=True).click()
    page.get_by_text("Finishing: sound, upscale, style, codec").click()
    page.locator("#audio input[type=file]").set_input_files(str(tone))
    page.wait_for_function(
        "() => document.querySelector('#audio').innerText.includes('song')")
    page.locator("#upscale input").click()
    page.get_by_role("option", name="2", exact=True).click()
    page.locator("#upscaler input").click()
    page.get_by_role("option", name="lanczos", exact=True).click()
    page.locator("#generate").click()
    page.wait_for_function(
        "() => { const v = document.querySelector('#result video');"
        " return v !== null && v.readyState >= 2; }", timeout=60_000)
    assert page.locator("#status").inner_text().startswith("Done in")
    saved = (server.settings.output.directory  # the UI shows the name only
             / page.locator("#saved").get_by_role("textbox").input_value())
    assert streams(saved) == {"video": "h264", "audio": "aac"}
    frames = video_frames(saved)
    assert len(frames) == 8 and frames[0].shape == (512, 768, 3)
    samples, rate = audio_samples(saved)
    assert len(samples) / rate == pytest.approx(1.0, abs=0.06)


def test_api_refuses_audio_when_the_servers_default_format_is_silent(tmp_path: Path,
                                                                     tone: Path) -> None:
    from img2vid.core.choices import OutputFormat

    settings = make_settings(tmp_path)
    settings = settings.model_copy(update={"output": settings.output.model_copy(
        update={"format": OutputFormat.GIF})})
    with live_server(settings, None) as live, live.client() as client, \
            PHOTO.open("rb") as photo, tone.open("rb") as sound:
        response = client.post("/api/v1/jobs", data=TINY,
                               files=[("images", (PHOTO.name, photo, "image/png")),
                                      ("audio", ("song.mp3", sound, "audio/mpeg"))])
        assert response.status_code == 422, response.text
        assert "gif output has no sound track" in response.json()["detail"]
        assert live.queue.list(limit=5)[1] == 0


def test_browser_history_restores_the_finishing_fields(styled_server: LiveServer, tone: Path,
                                                       tmp_path: Path, browser: Browser) -> None:
    """A past job's soundtrack offset, upscale, style strength and codec come back into the
    form; its files are named for uploading again (the server kept them only for the job)."""
    painting = _painting(tmp_path)
    with tone.open("rb") as sound, painting.open("rb") as style:
        _run_job(styled_server, {"audio_offset": "0.25", "fit_to_audio": "true",
                                 "upscale": "2", "upscaler": "lanczos", "style_strength": "0.6",
                                 "codec": "hevc"},
                 [("audio", ("my song.mp3", sound, "audio/mpeg")),
                  ("style", ("painting.png", style, "image/png"))], tmp_path)
    page = browser.new_page()
    page.goto(styled_server.base_url + "/")
    page.get_by_text("Finishing: sound, upscale, style, codec").click()
    page.locator("#audio input[type=file]").set_input_files(str(tone))
    page.wait_for_function(
        "() => document.querySelector('#audio').innerText.includes('song')")
    page.locator("#history button.thumbnail-item").first.click()
    page.wait_for_function(
        "() => document.querySelector('#status').innerText.startsWith('Loaded')")
    status = page.locator("#status").inner_text()
    assert "my_song.mp3" in status and "painting.png" in status, status
    assert page.locator("#audio-offset").get_by_role("textbox").input_value() == "0.25"
    assert page.locator("#fit-to-audio input").is_checked()
    assert page.locator("#upscale input").input_value() == "2"
    assert page.locator("#upscaler input").input_value() == "lanczos"
    assert page.locator("#style-strength input[type=number]").input_value() == "0.6"
    assert page.locator("#codec input").input_value() == "hevc"
    # the soundtrack picked before is cleared: it is not the one the job used
    assert "song.mp3" not in page.locator("#audio").inner_text()
