"""`extend`: continue an existing clip with a diffusion model, seamlessly.

The clip's last frame starts the new frames (in windows when they are longer than one); they
are colour matched to the clip across the seam (postprocess.seams) and appended, and the
whole goes through the usual post-processing, encoding and sidecar.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from img2vid.core.clip import Clip
from img2vid.core.config import Settings
from img2vid.core.errors import InputError
from img2vid.core.progress import CancelToken, ProgressCallback
from img2vid.core.request import GenerationRequest, build_request
from img2vid.engines.base import Engine, create_engine
from img2vid.execution.pipeline import GenerationResult, generate
from img2vid.media.images import LoadedImage, file_sha256
from img2vid.media.video_input import open_clip
from img2vid.postprocess.seams import join_windows

# request fields the clip decides: its size and frame rate (new frames must match them)
FROM_CLIP = ("width", "height", "resolution", "fps")


class _Continuing:
    """An engine that makes new frames from the clip's end and appends them to it."""

    name = "diffusion"

    def __init__(self, inner: Engine, frames: list[np.ndarray], fps: float,
                 source: dict[str, Any]) -> None:
        self.inner, self.frames, self.fps, self.source = inner, frames, fps, source

    def generate(self, request: GenerationRequest, images: Sequence[LoadedImage],
                 progress: ProgressCallback, cancel: CancelToken) -> Clip:
        # the clip's frames go along: a model that takes a video condition starts from its
        # last few (as a chained window does), the others from the last one
        new = self.inner.generate(request, images, progress, cancel, lead=self.frames)
        height, width = self.frames[0].shape[:2]
        fresh = [f if f.shape[:2] == (height, width) else
                 cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA)
                 for f in new.frames]
        # the first new frames are the model's copies of the clip's last ones
        skip = new.info.get("lead_frames", 1)
        video, seams = join_windows([self.frames, fresh[skip:]], overlap=0, match=True)
        info = {**new.info, "extended_from": self.source,
                "seams": [s.as_dict() for s in seams] + new.info.get("seams", [])}
        return Clip(iter(video), self.fps, width, height, len(video), info)


def extend_clip(path: Path, fields: dict[str, Any], settings: Settings, *,
                output: Path | None = None, progress: ProgressCallback | None = None,
                cancel: CancelToken | None = None, engine: Engine | None = None,
                ) -> GenerationResult:
    """Continue the clip at `path` for `fields["duration"]` seconds (or num_frames)."""
    if not (fields.get("duration") or fields.get("num_frames")):
        raise InputError("extend needs --duration SECONDS (or --num-frames) for the new part")
    given = sorted(k for k in FROM_CLIP if fields.get(k) is not None)
    if given:
        raise InputError(f"extend keeps the clip's size and frame rate; drop "
                         f"{', '.join('--' + k.replace('_', '-') for k in given)}")
    clip = open_clip(path, image_settings=settings.images)
    frames = list(clip.frames)
    if not frames:
        raise InputError(f"{path} has no frames to continue")
    source = {"path": str(path), "sha256": file_sha256(path) if path.is_file() else None,
              "num_frames": len(frames), "fps": clip.fps}
    with tempfile.TemporaryDirectory(prefix="img2vid-extend-") as folder:
        still = Path(folder) / "last-frame.png"
        Image.fromarray(frames[-1]).save(still)
        request = build_request(images=(str(still),), engine="diffusion", width=clip.width,
                                height=clip.height, fps=max(1, round(clip.fps)), **fields)
        inner = engine or create_engine("diffusion", settings)
        return generate(request, settings, output=output, progress=progress, cancel=cancel,
                        engine=_Continuing(inner, frames, clip.fps, source))
