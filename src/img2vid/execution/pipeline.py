"""The one generation path every interface uses: load, generate, post-process, encode, save."""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from img2vid import postprocess
from img2vid.core.clip import Clip
from img2vid.core.config import Settings
from img2vid.core.progress import CancelToken, Progress, ProgressCallback, no_progress
from img2vid.core.request import (
    MAX_DURATION,
    MAX_FRAMES,
    GenerationRequest,
    OutputFormat,
    VideoCodec,
)
from img2vid.core.sidecar import InputImage, OutputInfo, Sidecar
from img2vid.core.version import __version__
from img2vid.engines.base import Engine, create_engine
from img2vid.engines.memory import peak_rss_bytes
from img2vid.media import outputs
from img2vid.media.encode import EncodedInfo, EncodeOptions, open_writer
from img2vid.media.images import LoadedImage, load_image
from img2vid.postprocess import style

if TYPE_CHECKING:
    from img2vid.postprocess.audio import Soundtrack

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationResult:
    output: Path
    sidecar: Path  # the sidecar's path
    info: Sidecar  # and its content

    @property
    def metadata(self) -> dict[str, Any]:
        """The sidecar as written (JSON-ready)."""
        return self.info.as_json()


def generate(request: GenerationRequest, settings: Settings, *, output: Path | None = None,
             progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
             engine: Engine | None = None) -> GenerationResult:
    """Make the video `request` describes and save it with its sidecar.

    `output` is an explicit path (-o); otherwise a timestamped name in the output folder.
    Nothing is left behind on failure or cancellation: frames go to a hidden temporary
    file that is renamed into place only when the encoder has finished.
    """
    progress = progress or no_progress
    cancel = cancel or CancelToken()
    started = datetime.now()
    t0 = time.perf_counter()

    fmt = request.format or settings.output.format
    upscaler = postprocess.preflight(request, settings)  # missing weights fail before any work
    # The sidecar keeps the request as asked (a batch re-run compares it); fit_to_audio's
    # timing shows in the output's frames and duration.
    asked = request
    request, soundtrack = _soundtrack(request, fmt)  # a bad sound file fails before any work
    styliser = style.prepare(request, settings)  # the painting and weights, checked now
    images = [load_image(path, settings.images) for path in request.images]
    if styliser is not None:
        images = styliser.apply(images)  # once, before the engine: every frame shares it
    cancel.raise_if_cancelled()
    t_loaded = time.perf_counter()

    engine = engine or create_engine(request.engine.value, settings)
    clip = engine.generate(request, images, progress, cancel)
    clip = postprocess.apply(clip, request, progress, cancel, settings=settings,
                             upscaler=upscaler)

    directory = output.parent if output else settings.output.directory
    options = EncodeOptions(format=fmt, crf=request.crf if request.crf is not None else 18,
                            speed=request.encode_speed or "medium",
                            comment=json.dumps(_comment(request, images, clip), separators=(",", ":")),
                            codec=request.codec or VideoCodec.H264,
                            encoder=request.encoder or settings.output.encoder)
    final, encoded = save_clip(clip, options, output=output, directory=directory,
                               prefix=settings.output.prefix, started=started,
                               progress=progress, cancel=cancel, soundtrack=soundtrack)
    t_encoded = time.perf_counter()

    info = Sidecar(
        img2vid=__version__,
        created=started.isoformat(timespec="seconds"),
        output=OutputInfo(path=str(final), **encoded.as_dict()),
        engine=request.engine.value,
        seed=clip.info.get("seed", request.seed),
        request=asked,
        engine_info=clip.info,
        inputs=[InputImage(**image.describe()) for image in images],
        settings={"output": settings.output.model_dump(mode="json"),
                  "images": settings.images.model_dump(mode="json")},
        versions=library_versions(),
        timings={"load_s": round(t_loaded - t0, 3),
                 "generate_and_encode_s": round(t_encoded - t_loaded, 3),
                 "total_s": round(time.perf_counter() - t0, 3)},
        peak_rss_mb=round(peak_rss_bytes() / 1024**2, 1),
        audio=encoded.audio or None,
        style=styliser.describe() if styliser is not None else None,
    )
    sidecar = write_sidecar(final, info)
    log.info("wrote %s (%d frames, %.2f s) in %.2f s", final, encoded.frames, encoded.duration,
             info.timings["total_s"])
    return GenerationResult(final, sidecar, info)


def _soundtrack(request: GenerationRequest, fmt: OutputFormat,
                ) -> tuple[GenerationRequest, Soundtrack | None]:
    """The request's sound file, probed now; with fit_to_audio, the request re-timed to it."""
    if not request.audio:
        return request, None
    from img2vid.postprocess import audio

    audio.refuse_for_format(fmt)
    track = audio.probe_audio(request.audio)
    seconds = audio.playable_length(track, request.audio_offset)
    if request.fit_to_audio:
        fps = request.fps or 30
        duration, frames = audio.fitted_timing(seconds, fps, request.fade_in + request.fade_out,
                                               max_seconds=MAX_DURATION, max_frames=MAX_FRAMES)
        request = request.model_copy(update={"duration": duration, "num_frames": frames})
    return request, audio.Soundtrack(track, request.audio_offset, request.fade_out)


def save_clip(clip: Clip, options: EncodeOptions, *, output: Path | None, directory: Path,
              prefix: str, started: datetime, progress: ProgressCallback,
              cancel: CancelToken, soundtrack: Soundtrack | None = None,
              ) -> tuple[Path, EncodedInfo]:
    """Encode `clip` to a hidden temporary file, then move it to `output` or a new name.

    A soundtrack is muxed in a second pass that copies the video packets, so the picture
    is exactly the silent encode's. Nothing is left behind on failure, cancellation or a
    full disk.
    """
    staged = outputs.staging_path(directory, options.format.extension)
    silent: Path | None = None
    try:
        encoded = _encode(clip, staged, options, progress, cancel)
        if soundtrack is not None:
            silent, staged = staged, outputs.staging_path(directory, options.format.extension)
            cancel.raise_if_cancelled()
            info = soundtrack.mux(silent, staged, options.format, encoded.duration)
            outputs.discard(silent)
            encoded = encoded.model_copy(update={"audio": info, "bytes": staged.stat().st_size})
        final = (outputs.commit_to(staged, output) if output else
                 outputs.commit_named(staged, directory, prefix, options.format.extension,
                                      started))
    except OSError as exc:
        for path in (staged, silent):
            if path is not None:
                outputs.discard(path)
        outputs.raise_if_disk_full(exc, directory)
        raise
    except BaseException:
        for path in (staged, silent):
            if path is not None:
                outputs.discard(path)
        raise
    return final, encoded


def write_sidecar(output: Path, info: Sidecar) -> Path:
    """The JSON sidecar beside `output`, written atomically."""
    try:
        return outputs.write_json_atomic(outputs.sidecar_path(output), info.as_json())
    except OSError as exc:
        outputs.raise_if_disk_full(exc, output.parent)
        raise


def _encode(clip: Clip, path: Path, options: EncodeOptions, progress: ProgressCallback,
            cancel: CancelToken) -> EncodedInfo:
    with open_writer(path, clip.width, clip.height, clip.fps, options) as writer:
        frames = clip.frames
        try:
            for index, frame in enumerate(frames, start=1):
                cancel.raise_if_cancelled()
                writer.write(frame)
                progress(Progress("encode", index, clip.num_frames))
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()  # stops an engine's render workers if we leave early
        return writer.close()


def _comment(request: GenerationRequest, images: list[LoadedImage], clip: Clip) -> dict[str, Any]:
    """The summary stored in the file's own metadata (the sidecar has everything)."""
    return {"img2vid": __version__, "engine": request.engine.value,
            "seed": clip.info.get("seed", request.seed),
            "inputs": [image.sha256 for image in images],
            "request": {k: v for k, v in request.summary().items() if v not in (None, "")}}


def library_versions() -> dict[str, str]:
    """Versions of what made the video; torch and diffusers only if this process loaded them."""
    import av
    import cv2
    import numpy
    import PIL

    versions = {
        "img2vid": __version__,
        "python": platform.python_version(),
        "pyav": av.__version__,
        "libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
        "opencv": cv2.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
    }
    for name in ("torch", "diffusers", "transformers"):
        if name in sys.modules:
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                versions[name] = "unknown"
    return versions

