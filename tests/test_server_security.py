"""Security of the whole service against a real server: what a client may make it read, which
Host and Origin it answers, the login cookie and rate limit. docs/security.md cites these."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from img2vid.core.choices import Upscaler, VideoCodec
from img2vid.core.request import Easing, Motion
from tests.fakes import FakeEngine
from tests.live_server import (
    PHOTO,
    TERMINAL,
    LiveServer,
    fake_server,
    live_server,
    make_settings,
    wait_for,
)

TOKEN = "s3cret-token"


@pytest.fixture(scope="module", params=["defaults", "exposed"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Once as `img2vid serve` starts by default, once as `--host 0.0.0.0 --token ...`."""
    root = tmp_path_factory.mktemp(request.param)
    server = {} if request.param == "defaults" else {"host": "0.0.0.0", "token": TOKEN}
    with fake_server(root, FakeEngine(), **server) as live:
        yield live


def auth(server: LiveServer) -> dict[str, str]:
    token = server.settings.server.token
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client(headers=auth(server)) as c:
        if server.settings.server.token:  # the UI's routes need the login cookie
            r = c.post("/login", data={"username": "me", "password": TOKEN})
            assert r.status_code == 200, r.text
        yield c


def gradio_generate(client: httpx.Client, files: list[dict[str, Any]],
                    audio: dict[str, Any] | None = None, style: dict[str, Any] | None = None,
                    depth: dict[str, Any] | None = None, end_frame: dict[str, Any] | None = None,
                    **headers: str) -> tuple[int, str]:
    """The raw Gradio API call from the issue: POST /gradio_api/call/generate, then read the
    event stream. Returns the POST's status and the stream's text."""
    data = [files, "", "", "camera", None, "standard", "256", "8", "8", "", "", "1", False,
            Motion.KEN_BURNS.value, 1.3, "auto", Easing.EASE_IN_OUT.value, "off",
            # the finishing section: soundtrack, upscale, style painting, codec
            audio, "", False, "off", Upscaler.MODEL.value, style, 1.0, VideoCodec.H264.value,
            # parallax depth map and depth of field; diffusion end frame, LoRAs, low-noise
            # guidance, LoRA fuse
            depth, 0.0, end_frame, "", "", False]
    r = client.post("/gradio_api/call/generate", json={"data": data}, headers=headers)
    if r.status_code != 200:
        return r.status_code, r.text
    event = r.json()["event_id"]
    return 200, client.get(f"/gradio_api/call/generate/{event}", timeout=60).text


def file_data(path: str) -> dict[str, Any]:
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "x.png"}


def upload(client: httpx.Client, photo: Path = PHOTO) -> str:
    """A real upload through Gradio's route; the path it answers is in its upload cache."""
    with photo.open("rb") as f:
        r = client.post("/gradio_api/upload", files=[("files", (photo.name, f, "image/png"))])
    assert r.status_code == 200, r.text
    return str(r.json()[0])


def job_count(server: LiveServer) -> int:
    return server.queue.list(limit=1)[1]


# --- 1. the Gradio endpoint reads only what the client uploaded --------------------------------

def test_gradio_call_with_a_server_path_makes_no_video(server: LiveServer, client: httpx.Client,
                                                       tmp_path: Path) -> None:
    secret = tmp_path / "private" / "secret.png"
    secret.parent.mkdir()
    shutil.copy(PHOTO, secret)
    not_an_image = tmp_path / "private" / "notes.txt"
    not_an_image.write_text("hello")
    cache = Path(upload(client)).parent
    link = cache / f"link-{os.getpid()}-{tmp_path.name}.png"
    link.symlink_to(secret)  # a link inside the cache that leads out of it
    before = job_count(server)
    attempts = [str(secret),  # an absolute path
                f"{cache}/../../../../../../..{secret}",  # ../ through the upload cache
                str(link),
                str(not_an_image), str(tmp_path / "missing.png")]
    answers = []
    for path in attempts:
        status, text = gradio_generate(client, [file_data(path)])
        assert status == 200 and "event: error" in text, (path, text)
        # Gradio's own check echoes the path sent; beyond that nothing about the server's
        # files comes back (not where a link leads, not whether a file exists)
        text = text.replace(os.path.abspath(path), "<sent>")
        assert str(tmp_path) not in text, text
        answers.append(text)
    link.unlink()
    # whether a file exists or is an image cannot be told from the answer
    assert len(set(answers)) == 1, answers
    # the soundtrack, style painting, depth map and end frame are files too: the same rule
    photo = [file_data(upload(client))]
    for extra in ({name: file_data(str(secret))}
                  for name in ("audio", "style", "depth", "end_frame")):
        status, text = gradio_generate(client, photo, **extra)
        assert status == 200 and "event: error" in text, (extra, text)
    assert job_count(server) == before
    assert not list(server.settings.output.directory.glob("*.mp4"))


def test_gradio_call_with_a_real_upload_works(server: LiveServer, client: httpx.Client) -> None:
    status, text = gradio_generate(client, [file_data(upload(client))])
    assert status == 200 and "event: complete" in text, text


def test_uploads_land_in_a_private_cache_of_this_server(client: httpx.Client) -> None:
    # not Gradio's machine-wide /tmp/gradio: there another server's clean-up of the same photo
    # (same content, same path) removed this one's parked upload, and other users could read it
    parked = Path(upload(client)).resolve()
    shared = (Path(tempfile.gettempdir()) / "gradio").resolve()
    assert not parked.is_relative_to(shared)
    cache = Path(os.environ["GRADIO_TEMP_DIR"])
    assert parked.is_relative_to(cache.resolve()) and cache.stat().st_mode & 0o077 == 0


def test_gradio_client_still_works(server: LiveServer) -> None:
    from gradio_client import Client, handle_file

    kwargs = {"auth": ("me", TOKEN)} if server.settings.server.token else {}
    client = Client(server.base_url + "/", verbose=False, **kwargs)
    status, *_ = client.predict(files=[handle_file(str(PHOTO))], resolution="256",
                                num_frames="6", fps="6", api_name="/generate")
    client.close()
    assert status.startswith("Done in")


# --- 2. DNS rebinding: only this server's own names ---------------------------------------------

@pytest.mark.parametrize("path", ["/api/v1/jobs", "/", "/healthz", "/docs",
                                  "/gradio_api/info"])
def test_a_foreign_host_header_is_refused(client: httpx.Client, path: str) -> None:
    port = client.base_url.port
    r = client.get(path, headers={"Host": f"rebind.attacker.example:{port}"})
    assert r.status_code == 400, r.text
    assert "rebind.attacker.example" in r.text and "server.allowed_hosts" in r.text
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert client.get(path, headers={"Host": host}).status_code == 200, host


# --- 2/3. cross-origin requests -----------------------------------------------------------------

def test_a_cross_origin_job_submission_is_refused(server: LiveServer,
                                                  client: httpx.Client) -> None:
    before = job_count(server)
    foreign = {"Origin": "http://127.0.0.1:1"}
    client.headers.pop("Authorization", None)  # a browser page cannot add the token
    r = client.post("/api/v1/jobs", headers=foreign, data={"prompt": "x"},
                    files=[("images", ("a.png", PHOTO.read_bytes(), "image/png"))])
    assert r.status_code == 403, r.text
    assert "http://127.0.0.1:1" in r.text and "server.cors_origins" in r.text
    status, text = gradio_generate(client, [file_data(upload(client))], **foreign)
    assert status == 403, text
    assert job_count(server) == before
    # The server's own page may submit.
    client.headers.update(auth(server))
    own = {"Origin": str(client.base_url).rstrip("/")}
    r = client.post(
        "/api/v1/jobs", headers=own, data={"resolution": "256", "num_frames": "4"},
        files=[("images", ("a.png", PHOTO.read_bytes(), "image/png"))])
    assert r.status_code == 202, r.text
    assert wait_for(client, r.json()["id"], TERMINAL)["status"] == "succeeded"


def test_gradio_answers_cors_only_for_its_own_origin(client: httpx.Client) -> None:
    for path in ("/gradio_api/info", "/config"):
        r = client.get(path, headers={"Origin": "http://localhost:9999"})
        assert "access-control-allow-origin" not in r.headers, path
        assert "access-control-allow-credentials" not in r.headers, path
    pre = client.options("/gradio_api/call/generate", headers={
        "Origin": "http://localhost:9999", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in pre.headers


def test_cors_origins_is_the_explicit_opening(tmp_path: Path) -> None:
    allowed = "http://localhost:3000"
    settings = make_settings(tmp_path, cors_origins=[allowed])
    engine = FakeEngine()
    with live_server(settings, lambda name, *_: engine) as live, live.client() as c:
        r = c.post("/api/v1/jobs", headers={"Origin": allowed}, data={"num_frames": "4"},
                   files=[("images", ("a.png", PHOTO.read_bytes(), "image/png"))])
        assert r.status_code == 202, r.text
        assert r.headers["access-control-allow-origin"] == allowed
        other = c.post("/api/v1/jobs", headers={"Origin": "http://localhost:3001"},
                       data={"num_frames": "4"},
                       files=[("images", ("a.png", PHOTO.read_bytes(), "image/png"))])
        assert other.status_code == 403


# --- the login: cookie and attempts -------------------------------------------------------------

def test_login_cookie_is_strict_and_attempts_are_rate_limited(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, token=TOKEN)
    engine = FakeEngine()
    with live_server(settings, lambda name, *_: engine, ui=True) as live, live.client() as c:
        r = c.post("/login", data={"username": "me", "password": TOKEN})
        cookies = r.headers.get_list("set-cookie")
        assert cookies and all("samesite=strict" in h.lower() for h in cookies), cookies
        codes = [c.post("/login", data={"username": "x", "password": f"guess{i}"}).status_code
                 for i in range(30)]
        assert codes[0] == 400 and codes[-1] == 429, codes
        api = [c.get("/api/v1/jobs", headers={"Authorization": f"Bearer g{i}"}).status_code
               for i in range(3)]
        assert api == [429] * 3  # the same client is slowed down on every door
        r = c.post("/login", data={"username": "x", "password": TOKEN})
        assert r.status_code == 429 and "retry-after" in r.headers
        assert "wrong tokens" in r.text


# --- slow clients and crowds ------------------------------------------------------------------

def closed_within(sock: socket.socket, seconds: float, drip: bytes = b"") -> float | None:
    """Seconds until the server closes `sock` (sending `drip` every 0.2 s meanwhile)."""
    start = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - start < seconds:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except TimeoutError:
            pass
        except ConnectionResetError:
            return time.monotonic() - start
        if drip:
            try:
                sock.sendall(drip)
            except OSError:
                return time.monotonic() - start
    return None


def test_slow_headers_and_bodies_are_cut_off(tmp_path: Path) -> None:
    engine = FakeEngine()
    with live_server(make_settings(tmp_path), lambda name, *_: engine, header_timeout=1.0,
                     body_timeout=1.0) as live:
        port = httpx.URL(live.base_url).port
        slow = []
        for _ in range(8):  # the eight slow connections, each dripping a header
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            slow.append(s)
        took = [closed_within(s, 5, drip=b"X-Slow: 1\r\n") for s in slow]
        assert all(t is not None and t < 3 for t in took), took
        body = socket.create_connection(("127.0.0.1", port))
        body.sendall(b"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"a\"")
        assert (closed_within(body, 5) or 99) < 3
        for s in [*slow, body]:
            s.close()
        with live.client() as c:  # and the server still answers everyone else
            assert c.get("/healthz").status_code == 200


def test_connections_past_the_limit_get_503(tmp_path: Path) -> None:
    engine = FakeEngine()
    with live_server(make_settings(tmp_path), lambda name, *_: engine,
                     limit_concurrency=4) as live:
        port = httpx.URL(live.base_url).port
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        time.sleep(0.2)
        with live.client() as c:
            assert c.get("/healthz").status_code == 503
        for s in held:
            s.close()
        time.sleep(0.2)
        with live.client() as c:
            assert c.get("/healthz").status_code == 200


# --- 6. no server path in anything a client receives ----------------------------------------

def test_no_server_path_in_served_files(server: LiveServer, client: httpx.Client) -> None:
    import av

    r = client.post("/api/v1/jobs", data={"resolution": "256", "num_frames": "4"},
                    files=[("images", ("holiday.png", PHOTO.read_bytes(), "image/png"))])
    job = wait_for(client, r.json()["id"], TERMINAL)
    assert job["status"] == "succeeded", job["error"]
    video = client.get(job["result_url"])
    with av.open(io.BytesIO(video.content)) as container:
        tags = json.loads(container.metadata["comment"])
    assert tags["request"]["images"] == ["holiday.png"]
    root = str(server.settings.output.directory.parent)
    assert root not in video.content.decode("latin-1")
    # Gradio serves nothing from the output folder: not the sidecar, not the video
    output = server.settings.output.directory.resolve() / job["output"]
    for path in (output.with_suffix(".json"), output):
        assert client.get(f"/gradio_api/file={path}").status_code == 403, path
