"""REST API in process over httpx (no socket): submit, poll, download, cancel, errors,
security and persistence across restarts."""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import pytest

from img2vid.core.errors import InputError, OutOfMemoryError
from img2vid.core.request import build_request
from img2vid.execution.jobqueue import QUEUE_DIRNAME
from img2vid.execution.jobstore import JobStore
from tests.fakes import FakeEngine
from tests.live_server import (
    PHOTO,
    TERMINAL,
    TINY,
    LiveServer,
    app_server,
    fake_server,
    live_server,
    make_settings,
    submit,
    wait_for,
)


class PickyEngine(FakeEngine):
    """FakeEngine that runs out of memory when the prompt says so (a job failing late)."""

    def generate(self, request, images, progress, cancel):  # type: ignore[no-untyped-def]
        if request.prompt == "oom":
            raise OutOfMemoryError("out of GPU memory even after CPU offload; try fewer frames")
        return super().generate(request, images, progress, cancel)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The whole service, Gradio UI mounted at / as in `img2vid serve`."""
    with fake_server(tmp_path_factory.mktemp("api"), PickyEngine(), in_process=True,
                     cpu_workers=2, max_upload_mb=1) as live:
        yield live


def frames_in(data: bytes) -> tuple[int, float]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, float(stream.average_rate)


# --- the happy path ---------------------------------------------------------------------------

def test_submit_poll_download_with_range(client: httpx.Client) -> None:
    r = submit(client, prompt="steam rising")
    assert r.status_code == 202, r.text
    job = r.json()
    assert len(job["id"]) == 32 and job["status"] in {"queued", "running", "succeeded"}
    assert job["request"]["images"] == [PHOTO.name]  # the client's name, no server path
    assert job["request"]["num_frames"] == 8 and job["request"]["resolution"] == 256

    done = wait_for(client, job["id"], TERMINAL)
    assert done["status"] == "succeeded", done["error"]
    assert done["result_url"] == f"/api/v1/jobs/{job['id']}/video"
    assert done["sidecar"]["request"]["prompt"] == "steam rising"
    assert done["sidecar"].get("seed") is None  # a camera job draws no seed: as from the CLI
    assert done["progress"]["fraction"] == 1.0
    assert done["output"].endswith(".mp4")

    video = client.get(done["result_url"])
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    assert video.headers["accept-ranges"] == "bytes"
    assert frames_in(video.content) == (8, 8.0)

    part = client.get(done["result_url"], headers={"Range": "bytes=100-299"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-299/{len(video.content)}"
    assert part.content == video.content[100:300]
    tail = client.get(done["result_url"], headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == video.content[-50:]
    beyond = client.get(done["result_url"], headers={"Range": f"bytes={len(video.content)}-"})
    assert beyond.status_code == 416


def test_json_submission_with_base64_image(server: LiveServer, client: httpx.Client) -> None:
    data = base64.b64encode(PHOTO.read_bytes()).decode()
    body = {"images": [f"data:image/png;base64,{data}", data], **TINY,
            "resolution": 256, "motion": "zoom-in", "transition": 0.5}
    r = client.post("/api/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    # a data: URL's media type gives its name an extension; bare base64 has none to give
    assert r.json()["request"]["images"] == ["image0.png", "image1"]
    done = wait_for(client, r.json()["id"], TERMINAL)
    assert done["status"] == "succeeded", done["error"]
    assert done["sidecar"]["request"]["motion"] == "zoom-in"
    assert len(done["sidecar"]["inputs"]) == 2
    # the client sees its own names, never the server's folders
    assert [i["path"] for i in done["sidecar"]["inputs"]] == ["image0.png", "image1"]
    assert done["sidecar"]["output"]["path"] == done["output"]
    root = server.settings.output.directory.resolve().parent
    assert str(root) not in json.dumps(done["sidecar"]) and "settings" not in done["sidecar"]


def test_uploads_are_kept_only_until_the_job_ends(server: LiveServer,
                                                  client: httpx.Client) -> None:
    job = submit(client).json()
    wait_for(client, job["id"], TERMINAL)
    uploads = server.settings.output.directory / QUEUE_DIRNAME / "uploads"
    assert not (uploads / job["id"]).exists()


def test_list_is_newest_first_and_paged(client: httpx.Client) -> None:
    ids = [submit(client, prompt=f"p{i}").json()["id"] for i in range(3)]
    first = client.get("/api/v1/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in first["jobs"]] == ids[::-1][:2]
    assert first["total"] >= 3 and first["limit"] == 2 and first["offset"] == 0
    second = client.get("/api/v1/jobs", params={"limit": 2, "offset": 2}).json()
    assert second["jobs"][0]["id"] == ids[0]
    for job_id in ids:
        wait_for(client, job_id, TERMINAL)
    done = client.get("/api/v1/jobs", params={"status": "succeeded", "limit": 100}).json()
    assert set(ids) <= {j["id"] for j in done["jobs"]}
    assert client.get("/api/v1/jobs", params={"limit": 0}).status_code == 422


def test_a_failed_job_records_its_error_and_the_next_one_runs(client: httpx.Client) -> None:
    bad = submit(client, prompt="oom").json()
    good = submit(client, prompt="fine").json()
    failed = wait_for(client, bad["id"], TERMINAL)
    assert failed["status"] == "failed"
    assert failed["error"] == "out of GPU memory even after CPU offload; try fewer frames"
    assert failed["result_url"] is None
    assert client.get(f"/api/v1/jobs/{bad['id']}/video").status_code == 409
    assert wait_for(client, good["id"], TERMINAL)["status"] == "succeeded"


def test_health_models_presets_and_openapi(client: httpx.Client) -> None:
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["version"]
    assert health["workers"] == {"camera": 2, "diffusion": ["auto"]}
    models = client.get("/api/v1/models").json()
    assert models[0] == {"name": "camera", "engine": "camera", "available": True,
                         "description": models[0]["description"], "how_to_get": None}
    presets = {p["name"]: p for p in client.get("/api/v1/presets").json()}
    assert presets["preview"]["camera"]["resolution"] == 720
    assert presets["max"]["diffusion"]["models"]["i2vgen-xl"]["num_inference_steps"] == 100
    spec = client.get("/openapi.json").json()
    assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/video",
            "/api/v1/models", "/api/v1/presets", "/healthz"} <= set(spec["paths"])
    body = spec["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} == set(body)
    assert "rife_weights" not in body["application/json"]["schema"]["properties"]
    # the sidecar has a real schema: the typed model, not an untyped object
    schemas = spec["components"]["schemas"]
    assert {"output", "request", "inputs", "timings"} <= set(schemas["Sidecar"]["properties"])
    assert {"codec", "frames", "fps"} <= set(schemas["OutputInfo"]["properties"])
    assert client.get("/docs").status_code == 200


def png_header(width: int, height: int) -> bytes:
    """The start of a PNG declaring width x height pixels, with no pixel data to speak of."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))


# --- refusals ---------------------------------------------------------------------------------

def test_invalid_fields_get_the_cli_message(client: httpx.Client) -> None:
    r = submit(client, fps=500)
    assert r.status_code == 422
    with pytest.raises(InputError) as cli_error:
        build_request(images=("x.png",), **{**TINY, "fps": "500"})
    assert r.json()["detail"] == str(cli_error.value)
    assert "fps=500: allowed range is 1 to 120" in r.json()["detail"]

    r = submit(client, motion="sideways")
    assert r.status_code == 422 and "motion=sideways" in r.json()["detail"]
    r = submit(client, colour="red")
    assert r.status_code == 422 and "colour=red: unknown field" in r.json()["detail"]
    r = submit(client, rife_weights="/etc/passwd")
    assert r.status_code == 422 and "rife_weights cannot be set" in r.json()["detail"]
    r = submit(client, model="../../secret-folder")
    assert r.status_code == 422 and "unknown model" in r.json()["detail"]
    r = client.post("/api/v1/jobs", json={"images": [base64.b64encode(PHOTO.read_bytes())
                                                     .decode()], "num_frames": 8, "fps": 8,
                                          "duration": 3})
    assert r.status_code == 422 and "disagrees" in r.json()["detail"]


def test_bad_images_and_bodies_are_400(client: httpx.Client, tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    r = submit(client, photo=text)
    assert r.status_code == 400
    assert r.json()["detail"].startswith("notes.png is not an image file")
    tiny = tmp_path / "tiny.png"
    from PIL import Image

    Image.new("RGB", (20, 20)).save(tiny)
    r = submit(client, photo=tiny)
    assert r.status_code == 400 and "too small" in r.json()["detail"]
    bomb = tmp_path / "bomb.png"  # a header claiming 50000 x 50000 px, in 57 bytes
    bomb.write_bytes(png_header(50_000, 50_000))
    r = submit(client, photo=bomb)
    assert r.status_code == 400
    assert r.json()["detail"].startswith("bomb.png is 2500 MP, over the 120 MP limit")
    r = client.post("/api/v1/jobs", data=TINY)
    assert r.status_code == 400 and "upload at least one photo" in r.json()["detail"]
    r = client.post("/api/v1/jobs", json={"images": ["%%%not base64%%%"]})
    assert r.status_code == 400 and "not valid base64" in r.json()["detail"]
    r = client.post("/api/v1/jobs", json=[1, 2])
    assert r.status_code == 400
    r = client.post("/api/v1/jobs", content=b"{broken", headers={"content-type":
                                                                  "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]
    r = client.post("/api/v1/jobs", data={**TINY, "images": "/etc/hosts"},
                    files=[("images", ("a.png", PHOTO.read_bytes(), "image/png"))])
    assert r.status_code == 400 and "uploaded as files" in r.json()["detail"]
    r = client.post("/api/v1/jobs", content=b"hello", headers={"content-type": "text/plain"})
    assert r.status_code == 415


def test_bodies_over_the_limit_are_413(client: httpx.Client) -> None:
    big = bytes(2 * 1024 * 1024)  # the server allows 1 MB of images
    r = client.post("/api/v1/jobs", data=TINY, files=[("images", ("big.png", big, "image/png"))])
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(40):
            yield bytes(64 * 1024)

    r = client.post("/api/v1/jobs", content=chunks(), headers={"content-type":
                                                                "application/json"})
    assert r.status_code == 413
    # Under the body bound but over the image limit once decoded.
    payload = base64.b64encode(bytes(1024 * 1024 + 10)).decode()
    r = client.post("/api/v1/jobs", json={"images": [payload]})
    assert r.status_code == 413


def test_unknown_ids_and_path_traversal_are_404(server: LiveServer,
                                                client: httpx.Client) -> None:
    assert client.get("/api/v1/jobs/0123456789abcdef0123456789abcdef").status_code == 404
    assert client.delete("/api/v1/jobs/0123456789abcdef0123456789abcdef").status_code == 404
    secret = server.settings.output.directory / QUEUE_DIRNAME / "jobs.sqlite3"
    attempts = [
        "/api/v1/jobs/..%2F..%2F..%2Fetc%2Fpasswd/video",
        "/api/v1/jobs/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/api/v1/jobs/..%252F..%252Fetc%252Fpasswd/video",
        f"/api/v1/jobs/{'..%2F' * 3}{QUEUE_DIRNAME}%2Fjobs.sqlite3/video",
        "/api/v1/jobs/%00/video",
        "/api/v1/jobs/" + "a" * 5000 + "/video",
    ]
    for path in attempts:
        r = client.get(path)
        assert r.status_code == 404, (path, r.status_code)
        assert b"root:" not in r.content and b"SQLite" not in r.content
    # The UI's file route must not hand out the queue either.
    r = client.get(f"/gradio_api/file={secret}")
    assert r.status_code in (403, 404) and b"SQLite" not in r.content
    # No listings.
    for path in ("/api/v1/jobs/", "/api/v1/jobs//video", "/api/v1/"):
        r = client.get(path)
        assert r.status_code in (307, 404, 405) or b"jobs" in r.content[:2]


# --- cancelling and the queue's bound -----------------------------------------------------------

@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[tuple[LiveServer, FakeEngine]]:
    engine = FakeEngine(delay=0.2)
    settings = make_settings(tmp_path, queue_limit=2)
    with app_server(settings, lambda name, *_: engine, cpu_workers=1) as live:
        yield live, engine


def test_cancel_queued_and_running_jobs(slow_server: tuple[LiveServer, FakeEngine]) -> None:
    server, engine = slow_server
    with server.client() as client:
        running = submit(client, num_frames=40, fps=8).json()
        queued = submit(client, prompt="never").json()
        assert engine.started.wait(10)
        assert client.get(f"/api/v1/jobs/{queued['id']}").json()["queue_position"] == 1

        r = client.delete(f"/api/v1/jobs/{queued['id']}")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        assert client.delete(f"/api/v1/jobs/{queued['id']}").status_code == 409

        r = client.delete(f"/api/v1/jobs/{running['id']}")
        assert r.status_code == 200, r.text
        job = r.json()
        assert job["status"] == "cancelled" and job["result_url"] is None
        assert client.get(f"/api/v1/jobs/{running['id']}/video").status_code == 409

        # Once a later job has run, the cancelled one can be seen never to have started.
        after = submit(client).json()
        assert wait_for(client, after["id"], TERMINAL)["status"] == "succeeded"
        assert [r.prompt for r in engine.calls].count("never") == 0
        outputs = sorted(p.name for p in server.settings.output.directory.iterdir()
                         if p.name != QUEUE_DIRNAME)
        assert len(outputs) == 2  # one video and its sidecar: nothing partial
        assert all(not name.startswith(".") for name in outputs)


def test_a_full_queue_is_429_with_retry_after(
        slow_server: tuple[LiveServer, FakeEngine]) -> None:
    server, engine = slow_server
    with server.client() as client:
        first = submit(client, num_frames=40).json()
        assert engine.started.wait(10)  # running, so no longer counted as waiting
        accepted = [submit(client).status_code for _ in range(2)]
        refused = submit(client)
        assert accepted == [202, 202]
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert "queue is full" in refused.json()["detail"]
        client.delete(f"/api/v1/jobs/{first['id']}")


# --- security ---------------------------------------------------------------------------------

def test_token_is_required_everywhere_in_the_api(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, token="s3cret-token")
    engine = FakeEngine()
    with app_server(settings, lambda name, *_: engine, ui=True) as server, \
            server.client() as client, server.client() as browser:
        for method, path in [("GET", "/api/v1/jobs"), ("GET", "/api/v1/models"),
                             ("GET", "/api/v1/presets"), ("POST", "/api/v1/jobs"),
                             ("GET", "/api/v1/jobs/0123456789abcdef0123456789abcdef"),
                             ("DELETE", "/api/v1/jobs/0123456789abcdef0123456789abcdef")]:
            for headers in ({}, {"Authorization": "Bearer wrong"},
                            {"Authorization": "Basic czNjcmV0LXRva2Vu"}):
                r = client.request(method, path, headers=headers)
                assert r.status_code == 401, (method, path, headers)
                assert r.headers["www-authenticate"] == "Bearer"
        assert submit(client).status_code == 401
        good = {"Authorization": "Bearer s3cret-token"}
        assert client.get("/api/v1/models", headers=good).status_code == 200
        client.headers.update(good)
        job = submit(client).json()
        assert wait_for(client, job["id"], TERMINAL)["status"] == "succeeded"
        assert client.get(f"/api/v1/jobs/{job['id']}/video").status_code == 200
        # The UI asks for the token: its config stays closed until the login form is used.
        assert browser.get("/config").status_code == 401
        wrong = browser.post("/login", data={"username": "me", "password": "nope"})
        assert wrong.status_code == 400
        right = browser.post("/login", data={"username": "me", "password": "s3cret-token"})
        assert right.status_code == 200
        assert browser.get("/config").status_code == 200


def test_cors_is_off_unless_configured(tmp_path: Path) -> None:
    # On a real loopback socket: Gradio's CORS middleware decides by the Host header, and
    # in-process requests carry "testserver" instead of 127.0.0.1.
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    settings = make_settings(tmp_path / "default")
    with live_server(settings, lambda name, *_: FakeEngine(), ui=True) as server, \
            server.client() as client:
        r = client.get("/api/v1/presets", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        r = client.options("/api/v1/jobs", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
    settings = make_settings(tmp_path, cors_origins=["https://app.example"])
    with app_server(settings, lambda name, *_: FakeEngine()) as other, other.client() as client:
        r = client.get("/api/v1/presets", headers={"Origin": "https://app.example"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        r = client.get("/api/v1/presets", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


# --- persistence --------------------------------------------------------------------------------

def test_jobs_survive_a_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    slow = FakeEngine(delay=0.2)
    with app_server(settings, lambda name, *_: slow, cpu_workers=1) as server, \
            server.client() as client:
        ids = [submit(client, num_frames=30, prompt=f"job{i}").json()["id"] for i in range(3)]
        assert slow.started.wait(10)
        assert client.get(f"/api/v1/jobs/{ids[0]}").json()["status"] == "running"
        # Leaving the block stops the server (as Ctrl-C does): the running job is put back.
    store = JobStore(settings.output.directory / QUEUE_DIRNAME / "jobs.sqlite3")
    assert [(j.status.value, j.attempts) for j in map(store.get, ids) if j] == [
        ("queued", 0)] * 3
    store.close()
    fast = FakeEngine()
    with app_server(settings, lambda name, *_: fast, cpu_workers=1) as server, \
            server.client() as client:
        jobs = [wait_for(client, job_id, TERMINAL) for job_id in ids]
    assert [j["status"] for j in jobs] == ["succeeded"] * 3
    assert jobs[0]["attempts"] == 1  # the interrupted run was a clean stop, not a crash
    assert sorted(r.prompt for r in fast.calls) == ["job0", "job1", "job2"]
    uploads = settings.output.directory / QUEUE_DIRNAME / "uploads"
    assert list(uploads.iterdir()) == []


def test_submissions_while_stopping_are_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with app_server(settings, lambda name, *_: FakeEngine()) as server:
        server.queue.close()
        with server.client() as client:
            r = submit(client)
            assert r.status_code == 503 and "shutting down" in r.json()["detail"]
            assert client.get("/healthz").status_code == 503


def test_concurrent_submissions_lose_nothing(server: LiveServer) -> None:
    results: list[int] = []
    ids: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        with server.client() as client:
            for _ in range(4):
                r = submit(client, num_frames=2)
                with lock:
                    results.append(r.status_code)
                    if r.status_code == 202:
                        ids.append(r.json()["id"])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [202] * 32
    with server.client() as client:
        assert {wait_for(client, i, TERMINAL)["status"] for i in ids} == {"succeeded"}
