"""What the server can run: the camera engine and the diffusion models, with how to get the
missing ones (from the diffusion registry and the Hugging Face cache, as `img2vid models`)."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import asdict, dataclass
from typing import Any

from img2vid.core.config import Settings
from img2vid.core.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    engine: str
    available: bool
    description: str = ""
    how_to_get: str | None = None  # set when unavailable

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


CAMERA = ModelInfo("camera", "camera", True, "weightless camera moves on the CPU: zoom, pan, "
                   "Ken Burns, rotate (no model download)")
INSTALL_HINT = "install the diffusion extra on the server: pip install 'img2vid[diffusion]'"


def list_models(settings: Settings) -> list[ModelInfo]:
    """The camera engine, each registry model (available once cached or configured as a
    local folder), then any other names configured in models.local_dirs."""
    from img2vid.engines.diffusion.registry import MODELS

    installed = all(importlib.util.find_spec(m) for m in ("torch", "diffusers",
                                                         "huggingface_hub"))
    rows: dict[str, dict[str, Any]] = {}
    if installed:
        from img2vid.engines.diffusion.installed import model_rows

        # asked on every diffusion submission: the cache state only, no walk of its sizes
        rows = {row["name"]: row for row in model_rows(settings, sizes=False)}
    models = [CAMERA]
    for spec in MODELS.values():
        cached = bool(rows.get(spec.name, {}).get("cached"))
        hint = (INSTALL_HINT if not installed else
                f"run `img2vid models download {spec.name}` on the server "
                f"(about {spec.download_gb:g} GB)")
        models.append(ModelInfo(spec.name, "diffusion", installed and cached, spec.description,
                                None if installed and cached else hint))
    for name, folder in sorted(settings.models.local_dirs.items()):
        if name in MODELS:
            continue
        present = folder.expanduser().is_dir()
        hint = (INSTALL_HINT if not installed else
                None if present else f"the folder {folder} does not exist; fix "
                "models.local_dirs in the server's config")
        models.append(ModelInfo(name, "diffusion", installed and present,
                                f"local folder {folder}", hint))
    return models


def check_model(settings: Settings, engine: str | None, model: str | None,
                missing_ok: bool = False) -> str | None:
    """Refuse a diffusion job this server cannot run, before it is queued; else return the
    model's name as the server spells it (names are matched without regard to case).

    Over the network a model is a name from GET /api/v1/models, never a folder path on the
    server; no model means the diffusion engine's default.
    """
    if not model and engine != "diffusion":
        return None
    from img2vid.engines.diffusion.loading import DEFAULT_MODEL

    name = (model or DEFAULT_MODEL).strip()
    known = {m.name.lower(): m for m in list_models(settings) if m.engine == "diffusion"}
    info = known.get(name.lower())
    if info is None:
        raise InputError(f"model={name}: unknown model; known here: {', '.join(known)} "
                         "(see GET /api/v1/models)")
    if not info.available and not missing_ok:  # a dry run plans a model not downloaded yet
        raise InputError(f"model {info.name} is not available on this server: "
                         f"{info.how_to_get}")
    return info.name
