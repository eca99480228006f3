"""Rework an existing video (raise its frame rate, or upscale it): open, process, encode, save
with its sidecar. The CLI, server and batch call these the same way."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from img2vid.core.clip import Clip
from img2vid.core.config import Settings
from img2vid.core.errors import InputError
from img2vid.core.progress import CancelToken, ProgressCallback, no_progress
from img2vid.core.request import OutputFormat, VideoCodec
from img2vid.core.rework import InterpolationRequest, ReworkRequest, UpscaleRequest
from img2vid.core.sidecar import EncodedInfo, OutputInfo, Sidecar, SourceVideo
from img2vid.core.version import __version__
from img2vid.execution.pipeline import GenerationResult, library_versions, save_clip, write_sidecar
from img2vid.media import outputs

if TYPE_CHECKING:
    from img2vid.media.outputs import OutputTarget
    from img2vid.media.remux import StreamCopy
    from img2vid.postprocess.audio import Soundtrack

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reworked:
    """What a rework made of the opened clip: the frames to encode, the sound to keep, the
    command's own encoder options and the sidecar fields it adds."""

    frames: Clip
    soundtrack: StreamCopy | Soundtrack | None
    record: dict[str, Any]
    encode: dict[str, Any] = field(default_factory=dict)


def rework_video(request: ReworkRequest, settings: Settings, *,
                 progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None) -> GenerationResult:
    """Interpolate or upscale `request.source` into `request.output`, as the request's type
    says (atomically, with a JSON sidecar). Bad input raises InputError before anything is
    written."""
    from img2vid.media.encode import EncodeOptions
    from img2vid.media.video_input import open_clip

    progress = progress or no_progress
    cancel = cancel or CancelToken()
    started = datetime.now()
    t0 = time.perf_counter()
    source = request.source
    target = rework_target(source, request.output, request.format, settings,
                           request.overwrite)
    clip = open_clip(source, request.fps, settings.images)
    step = _interpolate if isinstance(request, InterpolationRequest) else _upscale
    made = step(request, settings, clip, target.format, progress, cancel)
    options = EncodeOptions(format=target.format, crf=request.crf,
                            speed=request.encode_speed, **made.encode,
                            comment=json.dumps({"img2vid": __version__,
                                                request.source_tag: source.name}))
    final, encoded = save_clip(made.frames, options, target, prefix=settings.output.prefix,
                               started=started, progress=progress, cancel=cancel,
                               soundtrack=made.soundtrack)
    info = rework_sidecar(request.command, source, clip, final, encoded, started,
                          t0).model_copy(update=made.record)
    sidecar = write_sidecar(final, info)
    log.info("%s: %s -> %s (%dx%d, %d frames at %g fps)", request.command, source, final,
             encoded.width, encoded.height, encoded.frames, encoded.fps)
    return GenerationResult(final, sidecar, info)


def _interpolate(request: InterpolationRequest, settings: Settings, clip: Clip, fmt: OutputFormat,
                 progress: ProgressCallback, cancel: CancelToken) -> Reworked:
    from img2vid.postprocess import make_interpolator
    from img2vid.postprocess.interpolate import interpolate_clip, output_timing

    if fmt in (OutputFormat.MP4, OutputFormat.WEBM) and (clip.width % 2 or clip.height % 2):
        raise InputError(f"{fmt.value} needs even dimensions and {request.source.name} is "
                         f"{clip.width}x{clip.height}: write .mkv or a PNG frame folder to "
                         "keep its size")
    rate = {"factor": request.factor, "target_fps": request.target_fps}
    output_timing(clip.num_frames, clip.fps, **rate)  # checks the rates before any work
    engine = make_interpolator(request.interpolator, request.rife_weights, settings)
    result = interpolate_clip(clip, engine, progress=progress, cancel=cancel, **rate)
    audio, audio_record = kept_audio(request.source, fmt)
    return Reworked(result, audio, {
        "interpolation": result.info["interpolation"], "audio_source": audio_record,
        "source_info": {k: v for k, v in result.info.items() if k != "interpolation"}})


def _upscale(request: UpscaleRequest, settings: Settings, clip: Clip, fmt: OutputFormat,
             progress: ProgressCallback, cancel: CancelToken) -> Reworked:
    from img2vid.postprocess.upscale import make_upscaler, upscale_clip

    if request.codec is not VideoCodec.H264 and fmt is not OutputFormat.MP4:
        raise InputError(f"--codec {request.codec.value} is for mp4 output")
    upscaler = make_upscaler(request.upscaler, request.scale, request.upscale_model, settings)
    frames = upscale_clip(clip, upscaler, progress=progress, cancel=cancel)
    return Reworked(frames, source_sound(request.source, fmt), {"upscale": frames.info["upscale"]},
                    encode={"codec": request.codec, "encoder": settings.output.encoder})


def rework_target(source: Path, output: Path | str, fmt: str | OutputFormat | None,
                  settings: Settings, overwrite: bool) -> OutputTarget:
    """Where a command that reworks `source` writes: -o's rules (outputs.resolve_output),
    never over its own input, in a folder that can be written."""
    if Path(output).exists() and Path(output).resolve() == Path(source).resolve():
        raise InputError(f"-o {output} is the input; choose another output path")
    target = outputs.resolve_output(output, fmt, settings.output.format,
                                    settings.output.directory, overwrite=overwrite)
    outputs.ensure_writable(target.directory)
    return target


def kept_audio(source: Path, fmt: OutputFormat) -> tuple[StreamCopy | None, dict[str, Any]]:
    """The source's audio to copy into a `fmt` output (or None) and the sidecar's record;
    when the container cannot hold it, the record's note says why."""
    from img2vid.media.remux import StreamCopy, source_audio, why_not_kept

    audio = source_audio(Path(source))
    if audio is None:
        return None, {"kept": False, "source": None}
    dropped = why_not_kept(audio, fmt)
    record: dict[str, Any] = {"kept": dropped is None, "source": audio.codec,
                              "duration": audio.duration}
    if dropped:
        log.info("audio of %s not kept: %s", source, dropped)
        record["note"] = (f"the input's {audio.codec} audio is not kept: {dropped}; write "
                          ".mkv (or .mp4) to keep it")
        return None, record
    return StreamCopy(audio), record


def source_sound(source: Path, fmt: OutputFormat) -> Soundtrack | None:
    """The input video's own sound, re-encoded into a `fmt` output that can hold it."""
    from img2vid.postprocess.audio import CONTAINERS, AudioError, Soundtrack, probe_audio

    if source.is_dir() or fmt not in CONTAINERS:
        return None
    try:
        return Soundtrack(probe_audio(source))
    except AudioError:
        return None  # a silent video


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
