"""`img2vid serve` as a user runs it: start-up checks, printed URLs, clean stop on signals."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_port_in_use_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = start_cli("serve", "--port", port, cwd=tmp_path)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err == (f"img2vid: error: port {port} on 127.0.0.1 is already in use; stop the "
                   "other server or choose another port with --port\n")
    assert out == ""


@pytest.mark.parametrize(("args", "message"), [
    (["--workers", "0"], "--workers: allowed range is 1 to 64"),
    (["--devices", "gpu1"], "--devices: 'gpu1' is not a device; use cuda:N, mps or cpu"),
    (["--devices", "cuda,cuda:0"], "--devices: names a device twice; one worker per device"),
])
def test_bad_options_are_one_line_and_exit_code_2(tmp_path: Path, args: list[str],
                                                  message: str) -> None:
    proc = start_cli("serve", *args, cwd=tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip() == f"img2vid: error: {message}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_starts_prints_urls_and_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    port = free_port()
    args = ["serve", "--port", str(port), "--workers", "2"]
    if sig is signal.SIGTERM:
        args += ["--host", "0.0.0.0"]  # beyond loopback without a token: a warning
    else:
        args += ["--devices", "cpu"]
    proc = start_cli(*args, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)
        assert health.json()["status"] == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"WebUI:     http://127.0.0.1:{port}/" in out
    assert f"REST API:  http://127.0.0.1:{port}/api/v1" in out
    assert f"API docs:  http://127.0.0.1:{port}/docs" in out
    logs = list((tmp_path / "logs").glob("app_*.log"))
    assert len(logs) == 1 and f"log:       {logs[0].resolve()}" in out
    assert (tmp_path / "outputs" / ".img2vid-queue" / "jobs.sqlite3").is_file()
    log = logs[0].read_text()
    assert "job queue stopped" in log
    devices = "cpu" if sig is signal.SIGINT else "every CUDA GPU (counted at the first"
    assert f"2 camera worker(s), diffusion on {devices}" in log
    warning = "warning: listening on 0.0.0.0 without a token"
    assert (warning in err) == (sig is signal.SIGTERM)
    assert "Traceback" not in err


def test_serve_without_the_server_extra_says_how_to_get_it(workdir: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    import sys

    from img2vid.interfaces.cli import app as cli

    monkeypatch.delitem(sys.modules, "img2vid.interfaces.server.run", raising=False)
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # what an install without it gives
    assert cli.main(["serve", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err == ("img2vid: error: img2vid serve needs the server extra (uvicorn is not "
                   "installed): pip install 'img2vid[server]'\n")
