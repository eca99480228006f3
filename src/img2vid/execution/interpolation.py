"""Raise an existing video's frame rate: open, interpolate, encode, save with its sidecar."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Literal

from img2vid.core.clip import Clip
from img2vid.core.config import Settings
from img2vid.core.errors import InputError
from img2vid.core.interpolation import InterpolationRequest
from img2vid.core.progress import CancelToken, ProgressCallback, no_progress
from img2vid.core.request import OutputFormat
from img2vid.core.sidecar import EncodedInfo, OutputInfo, Sidecar, SourceVideo
from img2vid.core.version import __version__
from img2vid.execution.pipeline import GenerationResult, library_versions, save_clip, write_sidecar

log = logging.getLogger(__name__)


def interpolate_video(request: InterpolationRequest, settings: Settings, *,
                      progress: ProgressCallback | None = None,
                      cancel: CancelToken | None = None) -> GenerationResult:
    """Interpolate `request.source` into `request.output` (atomically, with a JSON sidecar).

    Bad input raises InputError before anything is written.
    """
    from img2vid.media.encode import EncodeOptions
    from img2vid.media.video_input import open_clip
    from img2vid.postprocess import make_interpolator
    from img2vid.postprocess.interpolate import interpolate_clip, output_timing

    progress = progress or no_progress
    cancel = cancel or CancelToken()
    started = datetime.now()
    t0 = time.perf_counter()
    source, output, fmt = request.source, request.output, request.output_format()
    if output.exists() and output.resolve() == source.resolve():
        raise InputError(f"-o {output} is the input; choose another output path")
    if fmt is OutputFormat.PNG and output.exists():
        raise InputError(f"{output} already exists; choose another -o path for a frame folder")

    clip = open_clip(source, request.fps, settings.images)
    if fmt in (OutputFormat.MP4, OutputFormat.WEBM) and (clip.width % 2 or clip.height % 2):
        raise InputError(f"{fmt.value} needs even dimensions and {source.name} is "
                         f"{clip.width}x{clip.height}: write .mkv or a PNG frame folder to "
                         "keep its size")
    rate = {"factor": request.factor, "target_fps": request.target_fps}
    output_timing(clip.num_frames, clip.fps, **rate)  # checks the rates before any work
    engine = make_interpolator(request.interpolator, request.rife_weights, settings)
    result = interpolate_clip(clip, engine, progress=progress, cancel=cancel, **rate)

    options = EncodeOptions(format=fmt, crf=request.crf, speed=request.encode_speed,
                            comment=json.dumps({"img2vid": __version__,
                                                "interpolated_from": source.name}))
    final, encoded = save_clip(result, options, output=output, directory=output.parent,
                               prefix="", started=started, progress=progress, cancel=cancel)
    info = rework_sidecar("interpolate", source, clip, final, encoded, started, t0).model_copy(
        update={"interpolation": result.info["interpolation"],
                "source_info": {k: v for k, v in result.info.items() if k != "interpolation"}})
    sidecar = write_sidecar(final, info)
    log.info("interpolated %s -> %s (%d frames at %g fps)", source, final, encoded.frames,
             encoded.fps)
    return GenerationResult(final, sidecar, info)


def rework_sidecar(command: Literal["interpolate", "upscale"], source: Path, clip: Clip,
                   final: Path, encoded: EncodedInfo, started: datetime, t0: float) -> Sidecar:
    """The sidecar parts every command that reworks an existing clip writes."""
    return Sidecar(
        img2vid=__version__,
        created=started.isoformat(timespec="seconds"),
        command=command,
        output=OutputInfo(path=str(final), **encoded.as_dict()),
        input=SourceVideo(path=str(source), width=clip.width, height=clip.height,
                          fps=clip.fps, frames=clip.num_frames),
        versions=library_versions(),
        timings={"total_s": round(time.perf_counter() - t0, 3)},
        audio=encoded.audio or None,
    )
