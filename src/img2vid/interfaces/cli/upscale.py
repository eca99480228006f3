"""`img2vid upscale`: make an existing video or frame folder 2x or 4x larger."""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from img2vid.core.config import Settings
from img2vid.core.errors import InputError
from img2vid.core.interpolation import output_format
from img2vid.core.progress import CancelToken, ProgressCallback
from img2vid.core.request import OutputFormat, Upscaler, VideoCodec
from img2vid.core.version import __version__
from img2vid.interfaces.cli.interpolate import add_encode_arguments, add_input_output

log = logging.getLogger(__name__)


def add_upscale_parser(sub: argparse._SubParsersAction) -> None:
    """Register `upscale` on the CLI's subcommands."""
    p = sub.add_parser(
        "upscale", help="make an existing video or frame folder 2x or 4x larger",
        description="Upscale any video PyAV decodes, or a folder of numbered frames, with a "
        "super-resolution model (ESRGAN, Real-ESRGAN... a local .pth/.safetensors file or a "
        "hub id owner/repo/file.pth) or Lanczos resampling. Its sound, if any, is kept. "
        "Output format follows -o as for `img2vid interpolate`.")
    add_input_output(p)
    p.add_argument("--scale", type=int, choices=(2, 4), default=2, help="2 or 4 (default 2)")
    p.add_argument("--upscaler", choices=[u.value for u in Upscaler],
                   default=Upscaler.MODEL.value, help="model (default) or lanczos (no weights)")
    p.add_argument("--upscale-model", metavar="PATH_OR_HUB_ID", help="the checkpoint "
                   "(default: models.upscale_model in the config)")
    p.add_argument("--codec", choices=[c.value for c in VideoCodec], default="h264",
                   help="MP4 video codec (default h264)")
    add_encode_arguments(p)
    p.set_defaults(handler=run_upscale)


def run_upscale(args: argparse.Namespace, settings: Settings) -> int:
    from img2vid.interfaces.cli.bars import ProgressBars

    with ProgressBars(enabled=not args.quiet) as bars:
        metadata = upscale_file(args.input, args.output, settings, scale=args.scale,
                                upscaler=Upscaler(args.upscaler), model=args.upscale_model,
                                fps=args.fps, fmt=args.format, codec=VideoCodec(args.codec),
                                crf=args.crf, speed=args.encode_speed, progress=bars)
    print(json.dumps(metadata, indent=2) if args.json else metadata["output"]["path"])
    return 0


def upscale_file(source: Path, output: Path, settings: Settings, *, scale: int = 2,
                 upscaler: Upscaler = Upscaler.MODEL, model: str | None = None,
                 fps: float | None = None, fmt: str | None = None,
                 codec: VideoCodec = VideoCodec.H264, crf: int = 18, speed: str = "medium",
                 progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None) -> dict[str, Any]:
    """Upscale `source` into `output` (atomically, with a JSON sidecar); the sidecar's
    content is returned. Bad input raises InputError before anything is written."""
    from img2vid.execution.interpolation import rework_sidecar
    from img2vid.execution.pipeline import save_clip, write_sidecar
    from img2vid.media.encode import EncodeOptions
    from img2vid.media.video_input import open_clip
    from img2vid.postprocess.upscale import make_upscaler, upscale_clip

    progress = progress or (lambda _: None)
    started = datetime.now()
    t0 = time.perf_counter()
    if not 0 <= crf <= 51:
        raise InputError(f"--crf {crf}: allowed range is 0 to 51")
    fmt_ = output_format(output, fmt)
    if codec is not VideoCodec.H264 and fmt_ is not OutputFormat.MP4:
        raise InputError(f"--codec {codec.value} is for mp4 output")
    if output.exists() and output.resolve() == source.resolve():
        raise InputError(f"-o {output} is the input; choose another output path")
    clip = open_clip(source, fps, settings.images)
    soundtrack = _source_sound(source, fmt_)
    frames = upscale_clip(clip, make_upscaler(upscaler, scale, model, settings),
                          progress=progress, cancel=cancel)
    options = EncodeOptions(format=fmt_, crf=crf, speed=speed, codec=codec,
                            encoder=settings.output.encoder,
                            comment=json.dumps({"img2vid": __version__,
                                                "upscaled_from": source.name}))
    final, encoded = save_clip(frames, options, output=output, directory=output.parent,
                               prefix="", started=started, progress=progress,
                               cancel=cancel or CancelToken(), soundtrack=soundtrack)
    info = rework_sidecar("upscale", source, clip, final, encoded, started, t0).model_copy(
        update={"upscale": frames.info["upscale"]})
    write_sidecar(final, info)
    log.info("upscaled %s -> %s (%dx%d)", source, final, encoded.width, encoded.height)
    return info.as_json()


def _source_sound(source: Path, fmt: OutputFormat) -> Any:
    """The input video's own sound, carried over when the output can hold it."""
    from img2vid.postprocess.audio import CONTAINERS, AudioError, Soundtrack, probe_audio

    if source.is_dir() or fmt not in CONTAINERS:
        return None
    try:
        return Soundtrack(probe_audio(source))
    except AudioError:
        return None  # a silent video
