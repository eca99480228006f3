"""`img2vid serve` as a user runs it: start-up checks, printed URLs, clean stop on signals."""

from __future__ import annotations

import signal
import socket
import subprocess
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
    from img2vid.core.extras import install_command

    assert err == ("img2vid: error: img2vid serve needs the server extra (uvicorn is not "
                   f"installed); install it with: {install_command('server')}\n")


def wait_until_up(proc: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return
        except httpx.TransportError:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)


@pytest.mark.parametrize("source", ["token-file", "environment"])
def test_exposed_serve_takes_its_token_without_showing_it_in_ps(tmp_path: Path,
                                                               source: str) -> None:
    """`serve --host 0.0.0.0` with the token from a file or IMG2VID_SERVER__TOKEN: the token
    guards the API, is nowhere in the process's command line, and the server answers to this
    machine's own name but not to another one (DNS rebinding)."""
    secret = "tok-" + "x7" * 12
    port = free_port()
    args = ["serve", "--host", "0.0.0.0", "--port", str(port)]
    env = {}
    if source == "token-file":
        (tmp_path / "token").write_text(secret + "\n")
        args += ["--token-file", "token"]
    else:
        env["IMG2VID_SERVER__TOKEN"] = secret
    proc = start_cli(*args, cwd=tmp_path, env=env)
    try:
        wait_until_up(proc, port)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert secret.encode() not in cmdline
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/v1/jobs", timeout=10).status_code == 401
        good = {"Authorization": f"Bearer {secret}"}
        assert httpx.get(f"{base}/api/v1/jobs", headers=good, timeout=10).status_code == 200
        mine = {**good, "Host": f"{socket.gethostname()}:{port}"}
        assert httpx.get(f"{base}/api/v1/jobs", headers=mine, timeout=10).status_code == 200
        rebound = {**good, "Host": f"rebind.attacker.example:{port}"}
        assert httpx.get(f"{base}/api/v1/jobs", headers=rebound, timeout=10).status_code == 400
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "without a token" not in err and secret not in out + err


def test_an_empty_token_file_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\n")
    proc = start_cli("serve", "--port", str(free_port()), "--token-file", "token", cwd=tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err == ("img2vid: error: --token-file: token is empty; put the token on its first "
                   "line\n")
