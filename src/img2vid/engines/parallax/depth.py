"""Depth for the parallax engine: the user's depth map, or a transformers depth model, cached.

Depth Anything V2 Small (Apache-2.0, 25 M parameters) is the default model; any transformers
depth-estimation model name, hub id or folder works through AutoModelForDepthEstimation.
Weights come from a configured folder or the Hugging Face cache (`img2vid models download
depth-anything-v2-small`), like the diffusion models. A photo's depth is computed once: it is
kept in memory and on disk under its SHA-256 and the model's identity.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from img2vid.core.config import Settings
from img2vid.core.errors import InputError, ModelNotAvailableError
from img2vid.media.images import LoadedImage, load_grey

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DepthModelSpec:
    name: str
    hub_id: str
    download_gb: float
    description: str


DEPTH_MODELS = {spec.name: spec for spec in (
    DepthModelSpec("depth-anything-v2-small", "depth-anything/Depth-Anything-V2-Small-hf", 0.1,
                   "Depth Anything V2 Small (Apache-2.0): depth for the parallax engine"),
)}
DEFAULT_DEPTH_MODEL = "depth-anything-v2-small"
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt"]
INFERENCE_SIDE = 1024  # the photo is shrunk to this before the processor (it uses ~518)
MEMORY_ENTRIES = 16
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass(frozen=True)
class ResolvedDepthModel:
    """A depth model on disk and how the sidecar names it."""

    name: str
    path: Path
    source: str  # "folder" or "hub"
    revision: str | None

    @property
    def identity(self) -> str:
        """What the depth cache keys on: same weights, same depth."""
        return f"{self.name}@{self.revision}" if self.revision else str(self.path.resolve())

    def describe(self) -> dict[str, Any]:
        # "folder", not "path": Gradio serves any dict with a "path" as a file
        return {"name": self.name, "folder": str(self.path), "source": self.source,
                "revision": self.revision}


def resolve_depth_model(name: str | None, settings: Settings,
                        download: bool | None = None) -> ResolvedDepthModel:
    """--depth-model (a name, a hub id or a folder) as files on disk.

    download=None: the cache first, then the hub unless offline; False: the cache only;
    True: always ask the hub (`img2vid models download`).
    """
    name = (name or DEFAULT_DEPTH_MODEL).strip()
    configured = settings.models.local_dirs.get(name)
    if configured is not None:
        return _folder(Path(configured).expanduser(), name)
    candidate = Path(name).expanduser()
    if candidate.exists():
        return _folder(candidate, name)
    spec = DEPTH_MODELS.get(name.lower())
    if spec is None and (name.startswith((".", "~", "/")) or "\\" in name
                         or not HUB_ID.fullmatch(name)):
        raise InputError(f"depth model not found: {name} is neither a folder nor a known "
                         f"model ({', '.join(DEPTH_MODELS)}) nor a hub id (org/name)")
    hub_id = spec.hub_id if spec else name
    label = spec.name if spec else name
    folder = _snapshot(hub_id, label, settings, download)
    revision = folder.name if folder.parent.name == "snapshots" else None
    return ResolvedDepthModel(label, folder, "hub", revision)


def _folder(folder: Path, name: str) -> ResolvedDepthModel:
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder} is not a transformers model folder (no config.json): give "
                         "a depth-estimation model saved with save_pretrained, or a model name")
    revision = folder.name if folder.parent.name == "snapshots" else None
    return ResolvedDepthModel(name, folder, "folder", revision)


def _snapshot(hub_id: str, label: str, settings: Settings, download: bool | None) -> Path:
    from huggingface_hub import is_offline_mode, snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError

    cache_dir = str(settings.models.cache_dir) if settings.models.cache_dir else None
    ways_out = (f"run `img2vid models download {label}` with internet, or give the photo's "
                "depth map with --depth depth.png")
    if download is not True:
        try:  # a cached model is used as it is: no request to the hub for every job
            return Path(snapshot_download(hub_id, allow_patterns=ALLOW_PATTERNS,
                                          cache_dir=cache_dir, local_files_only=True))
        except (LocalEntryNotFoundError, OSError):
            if download is False or is_offline_mode():
                raise ModelNotAvailableError(
                    f"no depth: the depth model {label} is not downloaded and the Hugging Face "
                    f"hub is offline: {ways_out}") from None
    try:
        return Path(snapshot_download(hub_id, allow_patterns=ALLOW_PATTERNS,
                                      cache_dir=cache_dir))
    except GatedRepoError:
        raise ModelNotAvailableError(f"{hub_id} is gated on the Hugging Face hub: accept its "
                                     "licence there and log in with `hf auth login`") from None
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelNotAvailableError(
            f"no depth: the depth model {label} is not downloaded and could not be fetched "
            f"({detail}): {ways_out}") from None


class DepthEstimator:
    """A loaded transformers depth model (processor + model), safe to share between threads."""

    def __init__(self, model: ResolvedDepthModel) -> None:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation
        from transformers.utils import logging as hf_logging

        self.model_info = model
        self._lock = threading.Lock()
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "torchvision missing, using the PIL processor"
        try:
            self.processor = AutoImageProcessor.from_pretrained(model.path)
            self.model = AutoModelForDepthEstimation.from_pretrained(model.path).eval()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{model.path} could not be loaded as a depth-estimation model: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                             ) from None
        finally:
            hf_logging.set_verbosity(verbosity)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Relative inverse depth (brighter = nearer) at the model's own resolution."""
        import torch
        from PIL import Image

        height, width = pixels.shape[:2]
        shrink = min(1.0, INFERENCE_SIDE / max(width, height))
        if shrink < 1.0:
            pixels = cv2.resize(pixels, (round(width * shrink), round(height * shrink)),
                                interpolation=cv2.INTER_AREA)
        inputs = self.processor(images=Image.fromarray(pixels), return_tensors="pt")
        with self._lock, torch.inference_mode():
            predicted = self.model(**inputs).predicted_depth
        return predicted.reshape(predicted.shape[-2:]).float().numpy()


class DepthSource:
    """Depth for each photo: the request's map, or the model's (computed once per photo)."""

    def __init__(self, settings: Settings, disk_cache: Path | None) -> None:
        self.settings = settings
        self.disk_cache = disk_cache
        self._models: dict[str, DepthEstimator] = {}
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def from_map(self, path: str, invert: bool) -> tuple[np.ndarray, dict[str, Any]]:
        depth = load_grey(path, self.settings.images)
        return (1.0 - depth if invert else depth), {"source": "map", "map": path,
                                                    "inverted": invert}

    def from_model(self, name: str | None, image: LoadedImage,
                   ) -> tuple[np.ndarray, dict[str, Any]]:
        missing = [m for m in ("torch", "transformers", "huggingface_hub")
                   if importlib.util.find_spec(m) is None]
        if missing:
            raise ModelNotAvailableError(
                f"no depth: a depth model needs {', '.join(missing)}: pip install "
                "'img2vid[diffusion]', or give the photo's depth map with --depth depth.png")
        model = resolve_depth_model(name, self.settings)
        key = hashlib.sha256(f"{image.sha256}|{model.identity}".encode()).hexdigest()[:32]
        info: dict[str, Any] = {"source": "model", "model": model.describe()}
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key], {**info, "cached": "memory"}
        depth = self._read_disk(key) if image.sha256 else None
        cached = "disk" if depth is not None else None
        if depth is None:
            depth = self._estimator(model)(image.pixels)
            if image.sha256:
                self._write_disk(key, depth)
        with self._lock:
            self._memory[key] = depth
            while len(self._memory) > MEMORY_ENTRIES:
                self._memory.popitem(last=False)
        return depth, {**info, "cached": cached}

    def _estimator(self, model: ResolvedDepthModel) -> DepthEstimator:
        with self._lock:
            if model.identity not in self._models:
                log.info("loading depth model %s from %s", model.name, model.path)
                self._models[model.identity] = DepthEstimator(model)
            return self._models[model.identity]

    def _read_disk(self, key: str) -> np.ndarray | None:
        if self.disk_cache is None:
            return None
        path = self.disk_cache / f"{key}.npy"
        try:
            return np.load(path, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError):
            return None

    def _write_disk(self, key: str, depth: np.ndarray) -> None:
        """Best effort: a full or read-only cache only costs the next run the inference."""
        if self.disk_cache is None:
            return
        path = self.disk_cache / f"{key}.npy"
        partial = path.with_name(f".{key}.{uuid.uuid4().hex}.npy")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(partial, depth.astype(np.float32))
            partial.replace(path)
        except OSError as exc:
            log.warning("could not cache depth in %s: %s", path.parent, exc)
            partial.unlink(missing_ok=True)
