"""The service for the server tests: in process over httpx (no socket), or a real uvicorn
server on a free loopback port in a thread, for the tests that need one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from img2vid.core.config import LogSettings, OutputSettings, ServerSettings, Settings
from img2vid.engines.base import Engine, EngineFactory
from img2vid.execution.jobqueue import JobQueue
from img2vid.execution.jobstore import JobStatus
from img2vid.interfaces.server.app import create_app
from img2vid.interfaces.server.run import bind, make_server

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PHOTO = EXAMPLES / "coffee.png"  # 600 x 400
# Small and quick: 8 frames of 256p.
TINY = {"resolution": "256", "num_frames": "8", "fps": "8", "encode_speed": "ultrafast"}


def make_settings(root: Path, **server: Any) -> Settings:
    return Settings(output=OutputSettings(directory=root / "outputs"),
                    logs=LogSettings(directory=root / "logs"),
                    server=ServerSettings(**server))


class LiveServer:
    def __init__(self, base_url: str, queue: JobQueue, settings: Settings,
                 app: Any = None) -> None:
        self.base_url = base_url
        self.queue = queue
        self.settings = settings
        self.app = app  # set when requests go to the ASGI app in process
        self.state: Any = getattr(app, "state", None)  # the app's state (parking...)

    def client(self, **kwargs: Any) -> httpx.Client:
        if self.app is not None:
            return _app_client(self.app, base_url=self.base_url, **kwargs)
        return httpx.Client(base_url=self.base_url, timeout=30, **kwargs)


def _app_client(app: Any, **kwargs: Any) -> httpx.Client:
    """An httpx.Client whose requests go to `app` in process (Starlette's TestClient). Its
    `with` block only closes it: the app's lifespan is run once, by app_server."""
    from fastapi.testclient import TestClient

    class AppClient(TestClient):
        def __enter__(self) -> AppClient:
            return self

        def __exit__(self, *_: object) -> None:
            self.close()

    return AppClient(app, **kwargs)


@contextmanager
def app_server(settings: Settings, engine_factory: EngineFactory | None, *, ui: bool = False,
               cpu_workers: int | None = None, grace: float = 0.0) -> Iterator[LiveServer]:
    """The whole service in process: clients call the ASGI app through httpx, no socket.
    The app's lifespan starts the queue's workers and stops them after."""
    from fastapi.testclient import TestClient

    queue = JobQueue(settings, engine_factory=engine_factory, cpu_workers=cpu_workers)
    app = create_app(settings, queue, ui=ui, shutdown_grace=grace)
    with TestClient(app):  # runs the lifespan
        # a loopback name: the server answers only to its own names (DNS-rebinding guard)
        yield LiveServer("http://127.0.0.1", queue, settings, app)


@contextmanager
def live_server(settings: Settings, engine_factory: EngineFactory | None, *, ui: bool = False,
                cpu_workers: int | None = None, grace: float = 0.0,
                **http: Any) -> Iterator[LiveServer]:
    """Start the whole service (queue, API, optionally the UI) and stop it cleanly after."""
    sock = bind("127.0.0.1", 0)
    queue = JobQueue(settings, engine_factory=engine_factory, cpu_workers=cpu_workers)
    app = create_app(settings, queue, ui=ui, shutdown_grace=grace)
    server = make_server(app, queue, **http)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = sock.getsockname()[1]
    try:
        live = LiveServer(f"http://127.0.0.1:{port}", queue, settings)
        live.state = app.state
        yield live
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@contextmanager
def fake_server(root: Path, engine: Engine, *, in_process: bool = False, ui: bool = True,
                cpu_workers: int = 1, **server: Any) -> Iterator[LiveServer]:
    """The whole service running every job on `engine` (a fake), its files under `root` and
    `server` as its server settings: a real server on a loopback port, or with `in_process`
    the ASGI app over httpx."""
    start = app_server if in_process else live_server
    with start(make_settings(root, **server), lambda name, *_: engine, ui=ui,
               cpu_workers=cpu_workers) as live:
        yield live


def wait_for(client: httpx.Client, job_id: str, statuses: set[str],
             timeout: float = 30) -> dict[str, Any]:
    """Poll a job until it reaches one of `statuses`."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")
        time.sleep(0.05)


def submit(client: httpx.Client, photo: Path = PHOTO, **fields: Any) -> httpx.Response:
    data = {**TINY, **{k: str(v) for k, v in fields.items()}}
    with photo.open("rb") as f:
        return client.post("/api/v1/jobs", data=data,
                           files=[("images", (photo.name, f, "image/png"))])


TERMINAL = {s.value for s in JobStatus if s.terminal}
