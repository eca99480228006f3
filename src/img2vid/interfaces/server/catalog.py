"""What the server can run: the camera engine and the diffusion models, with how to get the
missing ones (from the diffusion registry and the Hugging Face cache, as `img2vid models`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from img2vid.core.config import Settings
from img2vid.core.errors import InputError
from img2vid.core.extras import missing_module

log = logging.getLogger(__name__)


class ModelInfo(BaseModel):
    """One engine or model, as GET /api/v1/models lists it (also the UI's model choices)."""

    model_config = ConfigDict(frozen=True)

    name: str
    engine: str
    available: bool
    description: str
    how_to_get: str | None = Field(description="how to make it available (when it is not)")


CAMERA = ModelInfo(name="camera", engine="camera", available=True, how_to_get=None,
                   description="weightless camera moves on the CPU: zoom, pan, Ken Burns, "
                   "rotate (no model download)")
PARALLAX_HINT = ("upload the photo's depth map as 'depth', or run `img2vid models download "
                 "{name}` on the server")


def _install_hint() -> str:
    from img2vid.core.extras import install_command

    return f"install the diffusion extra on the server: {install_command('diffusion')}"


def list_models(settings: Settings) -> list[ModelInfo]:
    """The camera engine, each registry model (available once cached or configured as a
    local folder), then any other names configured in models.local_dirs."""
    from img2vid.engines.diffusion.registry import MODELS

    installed = missing_module("diffusion") is None
    rows: dict[str, dict[str, Any]] = {}
    if installed:
        from img2vid.engines.diffusion.installed import model_rows

        # asked on every diffusion submission: the cache state only, no walk of its sizes
        rows = {row["name"]: row for row in model_rows(settings, sizes=False)}
    models = [CAMERA, *_depth_models(settings, rows, installed)]
    for spec in MODELS.values():
        cached = bool(rows.get(spec.name, {}).get("cached"))
        hint = (_install_hint() if not installed else
                f"run `img2vid models download {spec.name}` on the server "
                f"(about {spec.download_gb:g} GB)")
        models.append(ModelInfo(name=spec.name, engine="diffusion",
                                available=installed and cached, description=spec.description,
                                how_to_get=None if installed and cached else hint))
    for name, folder in sorted(settings.models.local_dirs.items()):
        if name in MODELS:
            continue
        present = folder.expanduser().is_dir()
        hint = (_install_hint() if not installed else
                None if present else f"the folder {folder} does not exist; fix "
                "models.local_dirs in the server's config")
        models.append(ModelInfo(name=name, engine="diffusion", available=installed and present,
                                description=f"local folder {folder}", how_to_get=hint))
    return models


def _depth_models(settings: Settings, rows: dict[str, dict[str, Any]],
                  installed: bool) -> list[ModelInfo]:
    """The parallax engine's depth models: available once cached or configured (a job with an
    uploaded depth map needs none)."""
    from img2vid.engines.parallax.depth import DEPTH_MODELS

    found = []
    for spec in DEPTH_MODELS.values():
        ready = installed and bool(rows.get(spec.name, {}).get("cached"))
        hint = (_install_hint() if not installed else PARALLAX_HINT.format(name=spec.name))
        found.append(ModelInfo(name=spec.name, engine="parallax", available=ready,
                               description=spec.description, how_to_get=None if ready else hint))
    return found


def check_depth(settings: Settings, fields: Mapping[str, Any], has_map: bool) -> str | None:
    """Refuse a parallax job this server cannot give depth to, before it is queued; else
    return the depth model's name as the server spells it (None: the default, or none used).

    Over the network a depth model is a name from GET /api/v1/models, never a server folder.
    """
    from img2vid.core.request import EngineKind, default_engine
    from img2vid.engines.parallax.depth import DEFAULT_DEPTH_MODEL

    if has_map and fields.get("engine") not in (None, "", "parallax"):
        raise InputError(f"a depth map is for the parallax engine, not {fields['engine']}")
    name = str(fields.get("depth_model") or "").strip()
    try:
        engine = EngineKind(fields.get("engine") or default_engine({**fields, "depth": has_map}))
    except ValueError:
        return None  # the request's own validation names the bad engine
    if engine is not EngineKind.PARALLAX or (has_map and not name):
        return None
    known = {m.name.lower(): m for m in list_models(settings) if m.engine == "parallax"}
    info = known.get((name or DEFAULT_DEPTH_MODEL).lower())
    if info is None:
        raise InputError(f"depth_model={name}: unknown depth model; known here: "
                         f"{', '.join(known)} (see GET /api/v1/models)")
    if not info.available:
        raise InputError(f"no depth for this job: the depth model {info.name} is not "
                         f"available on this server; {info.how_to_get}")
    return info.name if name else None


def check_model(settings: Settings, engine: str | None, model: str | None,
                missing_ok: bool = False) -> str | None:
    """Refuse a diffusion job this server cannot run, before it is queued; else return the
    model's name as the server spells it (names are matched without regard to case).

    Over the network a model is a name from GET /api/v1/models, never a folder path on the
    server; no model means the diffusion engine's default.
    """
    if not model and engine != "diffusion":
        return None
    name = (model or settings.models.default).strip()
    known = {m.name.lower(): m for m in list_models(settings) if m.engine == "diffusion"}
    info = known.get(name.lower())
    if info is None:
        raise InputError(f"model={name}: unknown model; known here: {', '.join(known)} "
                         "(see GET /api/v1/models)")
    if not info.available and not missing_ok:  # a dry run plans a model not downloaded yet
        raise InputError(f"model {info.name} is not available on this server: "
                         f"{info.how_to_get}")
    return info.name
