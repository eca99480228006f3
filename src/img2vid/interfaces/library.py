"""The Python API behind `img2vid.generate`: the CLI's generate, for scripts and notebooks."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from img2vid.core.config import Settings, load_settings
from img2vid.core.errors import CancelledError, Img2VidError, InputError
from img2vid.core.progress import CancelToken, ProgressCallback
from img2vid.core.request import build_request
from img2vid.core.sidecar import Sidecar
from img2vid.execution.pool import EnginePool
from img2vid.execution.run import run_request

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Result:
    """A finished video: where it is, its sidecar, how many frames and how long it plays."""

    path: Path
    sidecar: Sidecar
    frames: int
    seconds: float  # the video's length


def generate(images: PathLike | Sequence[PathLike], *, output: PathLike | None = None,
             settings: Settings | None = None, progress: ProgressCallback | None = None,
             cancel: CancelToken | None = None, **request_fields: Any) -> Result:
    """Make a video from one photo (or several, for a slideshow) and save it.

    `request_fields` are GenerationRequest's fields (motion="zoom-in", duration=3,
    preset="preview", model="svd-xt"...), checked like the CLI's flags. The video goes to
    `output`, or to a new name in the output folder of `settings` (default: the config file
    the CLI would read). Raises InputError for bad input (one line saying what to change),
    CancelledError, or Img2VidError for other failures; nothing partial is left behind.
    """
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    request = build_request(images=tuple(os.fspath(p) for p in images), **request_fields)
    settings = settings or load_settings(None)
    outcome = run_request(request, settings, EnginePool(settings),
                          output=Path(output) if output is not None else None,
                          progress=progress, cancel=cancel, label="img2vid.generate")
    if outcome.result is None:
        assert outcome.failure is not None
        failure = outcome.failure
        error = (CancelledError if failure.cancelled else
                 InputError if failure.user_fault else Img2VidError)
        raise error(failure.message)
    info = outcome.result.info
    return Result(outcome.result.output, info, info.output.frames, info.output.duration)
