"""The one generation path every interface uses: load, generate, post-process, encode, save."""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from img2vid import postprocess
from img2vid.core import extras
from img2vid.core.clip import Clip
from img2vid.core.config import Settings
from img2vid.core.errors import InputError
from img2vid.core.progress import CancelToken, Progress, ProgressCallback, no_progress
from img2vid.core.request import (
    MAX_DURATION,
    MAX_FRAMES,
    RESOLUTIONS,
    GenerationRequest,
    OutputFormat,
    Quantize,
    VideoCodec,
)
from img2vid.core.request import EngineKind as EngineName
from img2vid.core.sidecar import InputImage, OutputInfo, Sidecar
from img2vid.core.version import __version__
from img2vid.engines.base import Engine, create_engine
from img2vid.engines.memory import peak_rss_bytes
from img2vid.media import outputs
from img2vid.media.encode import EncodedInfo, EncodeOptions, open_writer
from img2vid.media.images import LazyImages
from img2vid.postprocess import style

if TYPE_CHECKING:
    from img2vid.media.remux import StreamCopy
    from img2vid.postprocess.audio import Soundtrack

log = logging.getLogger(__name__)

# Request fields that name files: the video's own tags keep only their names.
PATH_FIELDS = ("audio", "style", "style_weights", "rife_weights", "upscale_model")


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
             engine: Engine | None = None, overwrite: bool = False,
             input_names: Sequence[str] | None = None) -> GenerationResult:
    """Make the video `request` describes and save it with its sidecar.

    `output` is what -o says (see outputs.resolve_output): a file whose extension picks the
    container, a PNG frame folder, or a folder for a timestamped name; an existing output is
    replaced only with `overwrite`. Nothing is left behind on failure or cancellation:
    frames go to a hidden temporary file that is renamed into place only when the encoder
    has finished. `input_names` are the photos' names as the client knows them (the server's
    uploads); the file's own tags carry names, never server paths.
    """
    progress = progress or no_progress
    cancel = cancel or CancelToken()
    started = datetime.now()
    t0 = time.perf_counter()

    target = outputs.resolve_output(output, request.format, settings.output.format,
                                    settings.output.directory, overwrite=overwrite)
    fmt = target.format
    require_extras(request)
    upscaler = postprocess.preflight(request, settings)  # missing weights fail before any work
    # The sidecar keeps the request as asked (a batch re-run compares it); fit_to_audio's
    # timing shows in the output's frames and duration.
    asked = request
    request, soundtrack = _soundtrack(request, fmt)  # a bad sound file fails before any work
    styliser = style.prepare(request, settings)  # the painting and weights, checked now
    outputs.ensure_writable(target.directory)
    # Headers checked now; each photo is decoded (and stylised, once for all its frames)
    # when the engine asks for it, so memory does not grow with the number of photos.
    images = LazyImages(request.images, settings.images,
                        transform=styliser.apply_one if styliser is not None else None)
    cancel.raise_if_cancelled()
    t_loaded = time.perf_counter()

    engine = engine or create_engine(request.engine.value, settings)
    clip = engine.generate(postprocess.render_request(request), images, progress, cancel)
    clip = postprocess.apply(clip, request, progress, cancel, settings=settings,
                             upscaler=upscaler)

    options = EncodeOptions(format=fmt, crf=request.crf if request.crf is not None else 18,
                            speed=request.encode_speed or "medium",
                            comment=json.dumps(_comment(request, images, clip, input_names),
                                               separators=(",", ":")),
                            codec=request.codec or VideoCodec.H264,
                            encoder=request.encoder or settings.output.encoder,
                            gif_max_side=settings.output.gif_max_side)
    final, encoded = save_clip(clip, options, target, prefix=settings.output.prefix,
                               started=started, progress=progress, cancel=cancel,
                               soundtrack=soundtrack)
    t_encoded = time.perf_counter()

    info = Sidecar(
        img2vid=__version__,
        created=started.isoformat(timespec="seconds"),
        output=OutputInfo(path=str(final), **encoded.as_dict()),
        engine=request.engine.value,
        seed=clip.info.get("seed", request.seed),
        request=asked,
        engine_info=clip.info,
        inputs=[InputImage(**entry) for entry in images.describe()],
        settings={"output": settings.output.model_dump(mode="json"),
                  "images": settings.images.model_dump(mode="json")},
        versions=library_versions(),
        timings={"load_s": round(t_loaded - t0, 3),
                 "generate_and_encode_s": round(t_encoded - t_loaded, 3),
                 "total_s": round(time.perf_counter() - t0, 3)},
        peak_rss_mb=round(peak_rss_bytes() / 1024**2, 1),
        audio=encoded.audio or None,
        style=styliser.describe() if styliser is not None else None,
        notes=[*_upscale_notes(request, images, clip),
               *_gif_notes(encoded, clip, settings.output.gif_max_side)] or None,
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


def require_extras(request: GenerationRequest) -> None:
    """The optional extras `request` needs, named with their install command if missing."""
    if request.engine is EngineName.DIFFUSION:
        extras.require("diffusion", f"--model {request.model}" if request.model
                       else "--engine diffusion")
        if request.quantize is Quantize.INT8:
            extras.require("quantize", "--quantize int8")


def save_clip(clip: Clip, options: EncodeOptions, target: outputs.OutputTarget, *,
              prefix: str, started: datetime, progress: ProgressCallback,
              cancel: CancelToken, soundtrack: Soundtrack | StreamCopy | None = None,
              ) -> tuple[Path, EncodedInfo]:
    """Encode `clip` to a hidden temporary file, then move it to the target's path or a new
    timestamped name in its folder.

    A soundtrack (a sound file, or a source video's own audio copied as is) is muxed in a
    second pass that copies the video packets, so the picture is exactly the silent
    encode's. Nothing is left behind on failure, cancellation or a full disk.
    """
    directory = target.directory
    try:
        staged = outputs.staging_path(directory, options.format.extension)
    except OSError as exc:
        raise InputError(outputs.not_writable(directory, exc)) from None
    silent: Path | None = None
    try:
        encoded = _encode(clip, staged, options, progress, cancel)
        if soundtrack is not None:
            silent, staged = staged, outputs.staging_path(directory, options.format.extension)
            cancel.raise_if_cancelled()
            info = soundtrack.mux(silent, staged, options.format, encoded.duration)
            outputs.discard(silent)
            encoded = encoded.model_copy(update={"audio": info, "bytes": staged.stat().st_size})
        final = (outputs.commit_to(staged, target.path, overwrite=target.overwrite)
                 if target.path else
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


UPSCALE_NOTE_ABOVE = 2.0  # photos enlarged more than this look soft: say so once


def _upscale_notes(request: GenerationRequest, images: LazyImages, clip: Clip) -> list[str]:
    """One note when the camera engine enlarges a photo more than 2x, with a resolution
    that keeps it at most 2x (from the photos' headers: nothing is decoded again)."""
    if request.engine is not EngineName.CAMERA or not len(images):
        return []
    # the crop fills the frame: the photo is scaled to cover it (before any --upscale)
    width, height = clip.width / (request.upscale or 1), clip.height / (request.upscale or 1)
    scales = [max(width / w, height / h) for w, h in images.sizes]
    worst = max(range(len(scales)), key=scales.__getitem__)
    scale = scales[worst]
    if scale <= UPSCALE_NOTE_ABOVE:
        return []
    (w, h), path = images.sizes[worst], images.paths[worst]
    short = min(clip.width, clip.height)
    fitting = [r for r in RESOLUTIONS if r * scale / short <= UPSCALE_NOTE_ABOVE]
    suggestion = (f"--resolution {max(fitting)} keeps it sharper" if fitting else
                  "a larger photo keeps it sharper")
    return [f"{path.name} ({w}x{h}) is enlarged {scale:.1f}x "
            f"to {clip.width}x{clip.height} and will look soft; {suggestion}"]


def _gif_notes(encoded: EncodedInfo, clip: Clip, cap: int) -> list[str]:
    if encoded.format != "gif" or (encoded.width, encoded.height) == (clip.width, clip.height):
        return []
    return [f"the GIF is scaled to {encoded.width}x{encoded.height} (output.gif_max_side is "
            f"{cap}; set it to 0 to keep {clip.width}x{clip.height})"]


def _comment(request: GenerationRequest, images: LazyImages, clip: Clip,
             input_names: Sequence[str] | None) -> dict[str, Any]:
    """The summary stored in the file's own metadata (the sidecar has everything). The file
    travels: file names only, no folders."""
    summary = {k: v for k, v in request.summary().items() if v not in (None, "")}
    summary["images"] = list(input_names or (Path(p).name for p in request.images))
    for name in PATH_FIELDS:
        if summary.get(name):
            summary[name] = Path(summary[name]).name
    return {"img2vid": __version__, "engine": request.engine.value,
            "seed": clip.info.get("seed", request.seed),
            "inputs": [entry["sha256"] for entry in images.describe()], "request": summary}


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

