"""Tiny diffusion models built once per session, a small photo, and an engine that loads them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the diffusion extra is not installed")

from img2vid.core.config import Settings
from img2vid.media.images import LoadedImage, load_image
from tests.diffusion import tiny_models

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    # one thread is steadier (and not slower for models this small) on 2-core CI machines
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


def _tiny_model(build: Callable[[Path], Path]) -> Any:
    """A session fixture: the folder of the tiny model `build` saves (built on first use)."""

    @pytest.fixture(scope="session")
    def folder(tiny_dir: Path) -> Path:
        return build(tiny_dir)

    return folder


i2vgen_dir = _tiny_model(tiny_models.build_i2vgen)
svd_dir = _tiny_model(tiny_models.build_svd)
wan_dir = _tiny_model(tiny_models.build_wan)
ltx_dir = _tiny_model(tiny_models.build_ltx)
cogvideox_dir = _tiny_model(tiny_models.build_cogvideox)


@pytest.fixture(scope="session")
def small_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled coffee photo scaled down to 150x100 (3:2), saved as JPEG."""
    from PIL import Image

    path = tmp_path_factory.mktemp("photos") / "photo.jpg"
    with Image.open(ROOT / "examples" / "coffee.png") as im:
        im.convert("RGB").resize((150, 100), Image.Resampling.LANCZOS).save(path, quality=92)
    return path


@pytest.fixture(scope="session")
def end_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64x64 colour gradient, far from the photo: a frame for a video to end on."""
    from PIL import Image

    path = tmp_path_factory.mktemp("end") / "end.png"
    gradient = np.linspace(0, 255, 64, dtype=np.uint8)
    pixels = np.stack([np.tile(gradient, (64, 1)), np.zeros((64, 64), np.uint8),
                       np.tile(gradient[:, None], (1, 64))], axis=-1)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="session")
def loaded_photo(small_photo: Path) -> LoadedImage:
    return load_image(small_photo)


@pytest.fixture(scope="session")
def engine():
    """One engine for the session, as a server would keep it (pipelines stay cached)."""
    from img2vid.engines.diffusion import DiffusionEngine

    eng = DiffusionEngine(Settings())
    yield eng
    eng.release()


def frames_of(clip) -> np.ndarray:
    return np.stack(list(clip.frames))


def run_model(engine, model: Path, photo: Path, loaded, *, small: dict, **fields):
    """One engine call on a tiny model folder: a test file's small settings, then `fields`
    (test files bind `small` with functools.partial)."""
    from img2vid.core.progress import CancelToken
    from img2vid.core.request import build_request

    request = build_request(images=(str(photo),), model=str(model), **{**small, **fields})
    return engine.generate(request, [loaded], lambda _: None, CancelToken())


def fake_hub_cache(home: Path, repo_id: str, source: Path) -> str:
    """Lay `source` out as huggingface_hub's cache holds a downloaded snapshot of `repo_id`."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = home / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(source, repo / "snapshots" / commit, dirs_exist_ok=True)
    return commit


@pytest.fixture(scope="session")
def hub_replicas(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Every registered model's tiny hub-layout replica, installed in one Hugging Face cache
    (built once per session). Returns the cache folder and each model's commit."""
    from img2vid.engines.diffusion import runtime
    from img2vid.engines.diffusion.registry import MODELS
    from tests.diffusion import replicas

    runtime.import_libraries()  # the builders' save/load chatter goes to the log
    work = tmp_path_factory.mktemp("replica-repos")
    cache = tmp_path_factory.mktemp("hf") / "hub"
    commits = {}
    for name, spec in MODELS.items():
        built = replicas.BUILDERS[name](work / name)
        commits[name] = replicas.commit_of(name)
        # a model assembled from several repos (FramePack) builds each of them
        repos = built if isinstance(built, dict) else {spec.hub_id: built}
        for hub_id, repo in repos.items():
            commit = commits[name] if hub_id == spec.hub_id else replicas.commit_of(hub_id)
            replicas.install(repo, hub_id, commit, cache, replicas.patterns_for(spec, hub_id))
    return cache, commits


@pytest.fixture
def offline_replicas(hub_replicas, monkeypatch, tmp_path) -> tuple[Path, dict[str, str]]:
    """The replicas' cache as the only model source, the hub offline, cwd a fresh folder."""
    import huggingface_hub.constants

    cache, commits = hub_replicas
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("IMG2VID_MODELS__CACHE_DIR", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    return cache, commits
