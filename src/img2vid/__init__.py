"""img2vid: turn a still photo into a short video, locally.

    import img2vid
    result = img2vid.generate("photo.jpg", motion="zoom-in", duration=3)
    print(result.path, result.frames, result.seconds)

Importing the package loads nothing else: each name below is imported on first use, so
`import img2vid` stays instant (no torch, no OpenCV) until a video is made.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from img2vid.core.version import __version__

# public name -> module that defines it
_EXPORTS = {
    "generate": "img2vid.interfaces.library",
    "Result": "img2vid.interfaces.library",
    "GenerationRequest": "img2vid.core.request",
    "Sidecar": "img2vid.core.sidecar",
    "Settings": "img2vid.core.config",
    "Img2VidError": "img2vid.core.errors",
    "InputError": "img2vid.core.errors",
    "ModelNotAvailableError": "img2vid.core.errors",
    "OutOfMemoryError": "img2vid.core.errors",
    "CancelledError": "img2vid.core.errors",
}
__all__ = [
    "CancelledError",
    "GenerationRequest",
    "Img2VidError",
    "InputError",
    "ModelNotAvailableError",
    "OutOfMemoryError",
    "Result",
    "Settings",
    "Sidecar",
    "__version__",
    "generate",
]

if TYPE_CHECKING:
    from img2vid.core.config import Settings
    from img2vid.core.errors import (
        CancelledError,
        Img2VidError,
        InputError,
        ModelNotAvailableError,
        OutOfMemoryError,
    )
    from img2vid.core.request import GenerationRequest
    from img2vid.core.sidecar import Sidecar
    from img2vid.interfaces.library import Result, generate


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'img2vid' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
