"""What the server can run: engines and diffusion models, with how to get the missing ones."""

from __future__ import annotations

import importlib
import logging
from dataclasses import asdict, dataclass
from typing import Any

from img2vid.config import Settings
from img2vid.errors import InputError

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


def list_models(settings: Settings) -> list[ModelInfo]:
    """The camera engine, then the diffusion models the diffusion engine knows about.

    The diffusion engine reports its own table through `list_models(settings)` (names,
    whether the weights are local, how to fetch them); without it, only the folders named
    in `models.local_dirs` are listed.
    """
    models = [CAMERA]
    lister = _diffusion_lister()
    if lister is not None:
        for entry in lister(settings):
            data = entry if isinstance(entry, dict) else vars(entry)
            models.append(ModelInfo(name=str(data["name"]), engine="diffusion",
                                    available=bool(data.get("available")),
                                    description=str(data.get("description") or ""),
                                    how_to_get=data.get("how_to_get") or data.get("hint")))
        return models
    for name, folder in sorted(settings.models.local_dirs.items()):
        present = folder.is_dir()
        models.append(ModelInfo(name, "diffusion", present, f"local folder {folder}",
                                None if present else f"the folder {folder} does not exist; "
                                "fix models.local_dirs in config.yaml"))
    return models


def _diffusion_lister() -> Any:
    try:
        module = importlib.import_module("img2vid.engines.diffusion")
    except ImportError as exc:
        log.debug("diffusion engine not importable: %s", exc)
        return None
    return getattr(module, "list_models", None)


def check_model(settings: Settings, model: str | None) -> None:
    """Refuse a model this server cannot run, before it is queued (the API takes names
    from GET /api/v1/models only: never a folder path on the server)."""
    if not model:
        return
    known = {m.name: m for m in list_models(settings) if m.engine == "diffusion"}
    info = known.get(model)
    if info is None:
        names = ", ".join(known) or "none configured"
        raise InputError(f"model={model}: unknown model; available here: {names} "
                         "(see GET /api/v1/models)")
    if not info.available:
        raise InputError(f"model {model} is not available on this server: "
                         f"{info.how_to_get or 'its weights are missing'}")
