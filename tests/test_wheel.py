"""The built wheel works on its own: installed into a fresh venv, run outside the checkout."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import av
import pytest

from img2vid import __version__ as VERSION
from tests.conftest import EXAMPLES, ROOT

# Extras for the full install: everything a user of the server or of diffusion gets (ray and
# dev are left out: ray's wheel alone is bigger than the rest together).
FULL = "server,diffusion"


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build`: an sdist, then a wheel built from that sdist (as PyPI users get it)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                   check=True, capture_output=True, text=True, env=_clean_env())
    return out


@pytest.fixture(scope="session")
def wheel(dist: Path) -> Path:
    (path,) = dist.glob("img2vid-*-py3-none-any.whl")
    return path


def _clean_env() -> dict[str, str]:
    """This environment minus anything that would point Python at the checkout or the dev venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("IMG2VID_")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _fresh_venv(where: Path, requirement: str, *constraints: str) -> Path:
    """A new venv (no system site-packages) with `requirement` installed by pip; its bin/."""
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    bin_dir = where / ("Scripts" if os.name == "nt" else "bin")
    # --no-compile: byte-compiling torch and gradio would be most of the install time.
    cmd = [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-compile", requirement]
    for constraint in constraints:
        cmd += ["-c", constraint]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env(), cwd=where)
    assert done.returncode == 0, done.stderr[-3000:]
    return bin_dir


def _run(bin_dir: Path, *args: str, cwd: Path, expect: int = 0) -> subprocess.CompletedProcess:
    env = {**_clean_env(), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([str(bin_dir / "img2vid"), *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)
    assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def _frames(path: Path) -> int:
    with av.open(str(path)) as box:
        assert box.streams.video[0].codec_context.name == "h264"
        return sum(1 for _ in box.decode(video=0))


def _generate_and_doctor(bin_dir: Path, work: Path) -> str:
    """What a user does first with a new install, from a folder that is not the checkout."""
    python = bin_dir / "python"
    where = subprocess.run([str(python), "-c", "import img2vid; print(img2vid.__file__)"],
                           capture_output=True, text=True, check=True, cwd=work,
                           env=_clean_env()).stdout.strip()
    assert Path(where).is_relative_to(bin_dir.parent), f"img2vid imported from {where}"

    assert _run(bin_dir, "--version", cwd=work).stdout.split() == ["img2vid", VERSION]
    photo = shutil.copy(EXAMPLES / "astronaut.png", work / "portrait.png")
    # Ken Burns toward the face: the Haar cascade has to come with the installed packages.
    _run(bin_dir, "generate", str(photo), "--preset", "preview", "--duration", "1",
         "--motion", "ken-burns", "-o", "clip.mp4", cwd=work)
    assert _frames(work / "clip.mp4") == 24
    assert (work / "clip.mp4.json").is_file() and any((work / "logs").glob("app_*.log"))

    doctor = _run(bin_dir, "doctor", cwd=work).stdout
    assert "Haar cascade bundled" in doctor and "encoder libx264        available" in doctor
    return doctor


def test_build_makes_an_sdist_and_a_wheel_with_complete_metadata(dist: Path, wheel: Path):
    (sdist,) = dist.glob("img2vid-*.tar.gz")
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        meta = Parser().parsestr(whl.read(f"img2vid-{VERSION}.dist-info/METADATA").decode())
    assert f"img2vid-{VERSION}.dist-info/licenses/LICENSE" in names
    assert "img2vid/engines/diffusion/models.yaml" in names  # the model registry is data
    assert all(n.startswith(("img2vid/", f"img2vid-{VERSION}.dist-info/")) for n in names), names
    assert meta["License-Expression"] == "Apache-2.0" and meta["Requires-Python"] == ">=3.10"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "## Docker" in meta.get_payload()  # the README is the long description
    classifiers = meta.get_all("Classifier")
    assert "Topic :: Multimedia :: Video" in classifiers
    assert "Programming Language :: Python :: 3 :: Only" in classifiers
    assert {"server", "diffusion", "quantize", "ray"} <= set(meta.get_all("Provides-Extra"))
    assert meta["Project-URL"] is None or "://" in meta["Project-URL"]
    # The sdist carries what its tests and benchmarks read: photos and model configs.
    with tarfile.open(sdist) as tar:
        members = {m.split("/", 1)[1] for m in tar.getnames() if "/" in m}
    assert {"LICENSE", "README.md", "examples/coffee.png", "constraints-cpu.txt",
            "benchmarks/model-configs/i2vgen-xl/model_index.json"} <= members


@pytest.mark.slow
def test_core_wheel_in_a_fresh_venv_generates_and_runs_doctor(wheel: Path, tmp_path: Path):
    bin_dir = _fresh_venv(tmp_path / "venv", str(wheel))
    work = tmp_path / "work"
    work.mkdir()
    doctor = _generate_and_doctor(bin_dir, work)
    assert "torch" in doctor and "not installed: camera engine only" in doctor
    # Without the server extra, serve says what to install instead of failing on an import.
    serve = _run(bin_dir, "serve", "--port", "1", cwd=work, expect=2)
    assert "pip install 'img2vid[server]'" in serve.stderr and "Traceback" not in serve.stderr


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("IMG2VID_WHEEL_EXTRAS"),
                    reason="the extras install takes minutes: make wheel-test runs it")
def test_wheel_with_extras_runs_diffusion_doctor_and_serves(wheel: Path, tmp_path: Path):
    bin_dir = _fresh_venv(tmp_path / "venv", f"{wheel}[{FULL}]",
                          str(ROOT / "constraints-cpu.txt"))
    work = tmp_path / "work"
    work.mkdir()
    doctor = _generate_and_doctor(bin_dir, work)
    assert "torch                  2.13.0" in doctor and "diffusers" in doctor
    assert "gradio" in doctor and "not installed (pip install 'img2vid[server]')" not in doctor

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**_clean_env(), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    server = subprocess.Popen([str(bin_dir / "img2vid"), "serve", "--port", str(port)], cwd=work,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    assert r.status == 200
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "no /healthz after 180 s"
                time.sleep(1)
        # The WebUI's page and its static files come from gradio's wheel, not the checkout.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as r:
            assert r.status == 200 and b"gradio" in r.read().lower()
    finally:
        server.terminate()
        server.wait(timeout=60)
