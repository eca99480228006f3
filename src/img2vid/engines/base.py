"""The Engine protocol and the registry that creates engines lazily."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol

from img2vid.core.clip import Clip
from img2vid.core.config import Settings
from img2vid.core.progress import CancelToken, ProgressCallback
from img2vid.core.request import GenerationRequest
from img2vid.media.images import LoadedImage


class Engine(Protocol):
    """Turns a request and its loaded photos into a Clip. Never writes files or prints.

    `device` pins an engine that uses an accelerator to one of them ("cuda:1"); None lets it
    choose. The job queue and batch runner create one engine per GPU with it.
    """

    name: str

    def __init__(self, settings: Settings, device: str | None = None) -> None: ...

    def generate(self, request: GenerationRequest, images: Sequence[LoadedImage],
                 progress: ProgressCallback, cancel: CancelToken) -> Clip: ...


# name -> "module:Class"; imported only when first used so heavy engines cost nothing until then.
_REGISTRY = {
    "camera": "img2vid.engines.camera:CameraEngine",
    "diffusion": "img2vid.engines.diffusion:DiffusionEngine",
}


class EngineFactory(Protocol):
    """What creates engines for the job queue and batch runners (tests pass fakes)."""

    def __call__(self, name: str, settings: Settings, device: str | None = None) -> Engine: ...


def create_engine(name: str, settings: Settings, device: str | None = None) -> Engine:
    """A new engine instance by name (imports its module on first use)."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(_REGISTRY)}") from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(settings, device)
