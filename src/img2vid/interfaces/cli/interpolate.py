"""`img2vid interpolate`: raise the frame rate of an existing video or frame folder."""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from img2vid import __version__
from img2vid.core.config import Settings
from img2vid.core.errors import InputError
from img2vid.core.progress import CancelToken, ProgressCallback
from img2vid.core.request import ENCODE_SPEEDS, Interpolator, OutputFormat
from img2vid.interfaces.cli.bars import ProgressBars

if TYPE_CHECKING:
    from img2vid.core.clip import Clip
    from img2vid.media.encode import EncodedInfo

log = logging.getLogger(__name__)

_SUFFIX_FORMATS = {".mp4": OutputFormat.MP4, ".webm": OutputFormat.WEBM,
                   ".mkv": OutputFormat.MKV, ".gif": OutputFormat.GIF}
MAX_TARGET_FPS = 240.0


def add_interpolate_parser(sub: argparse._SubParsersAction) -> None:
    """Register `interpolate` on the CLI's subcommands."""
    p = sub.add_parser(
        "interpolate", help="raise the frame rate of an existing video or frame folder",
        description="Interpolate new frames into any video PyAV decodes, or a folder of "
        "numbered frames, keeping its size and duration. Output format follows -o: "
        ".mp4, .webm, .mkv (lossless FFV1), .gif, or a name without extension for a "
        "folder of PNG frames (lossless).")
    add_input_output(p)
    rate = p.add_mutually_exclusive_group(required=True)
    rate.add_argument("--interpolate", type=int, choices=(2, 3, 4), metavar="N",
                      help="multiply the frame rate by 2, 3 or 4")
    rate.add_argument("--target-fps", type=float, metavar="FPS",
                      help="interpolate up to this frame rate (any value up to 240)")
    p.add_argument("--interpolator", choices=[i.value for i in Interpolator],
                   default=Interpolator.FLOW.value, help="flow (weightless, default) or rife "
                   "(learned; `img2vid models download rife` first)")
    p.add_argument("--rife-weights", metavar="PATH", help="a RIFE 4.25/4.26 flownet.pkl "
                   "(default: the downloaded one)")
    add_encode_arguments(p)
    p.set_defaults(handler=run_interpolate)


def add_input_output(p: argparse.ArgumentParser) -> None:
    """INPUT and -o, shared by the commands that rework an existing clip."""
    p.add_argument("input", type=Path, metavar="INPUT", help="video file or frame folder")
    p.add_argument("-o", "--output", type=Path, required=True, help="output path")


def add_encode_arguments(p: argparse.ArgumentParser) -> None:
    """Input rate, output format, quality and what to print, for those commands."""
    p.add_argument("--fps", type=float, metavar="FPS", help="frame rate of a frame-folder "
                   "input (default 24); for a video, overrides the rate it declares")
    p.add_argument("--format", choices=[f.value for f in OutputFormat],
                   help="output format (default: from the -o extension)")
    p.add_argument("--crf", type=int, default=18, help="encoder quality, 0-51, lower is "
                   "better (default 18)")
    p.add_argument("--encode-speed", choices=ENCODE_SPEEDS, default="medium",
                   help="encoder speed preset (default medium)")
    p.add_argument("--json", action="store_true", help="print the sidecar JSON instead of "
                   "the output path")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def output_format(output: Path, explicit: str | None) -> OutputFormat:
    """The format asked for, else the one -o's extension names (none: PNG frames)."""
    if explicit:
        return OutputFormat(explicit)
    suffix = output.suffix.lower()
    if not suffix:
        return OutputFormat.PNG
    if suffix not in _SUFFIX_FORMATS:
        raise InputError(f"cannot tell the output format from {output.name!r}: use "
                         f"{', '.join(_SUFFIX_FORMATS)}, no extension for PNG frames, "
                         "or --format")
    return _SUFFIX_FORMATS[suffix]


def run_interpolate(args: argparse.Namespace, settings: Settings) -> int:
    """The `interpolate` command; returns the exit code."""
    with ProgressBars(enabled=not args.quiet) as bars:
        metadata = interpolate_file(
            args.input, args.output, settings, factor=args.interpolate,
            target_fps=args.target_fps, interpolator=Interpolator(args.interpolator),
            rife_weights=args.rife_weights, fps=args.fps, fmt=args.format, crf=args.crf,
            speed=args.encode_speed, progress=bars)
    print(json.dumps(metadata, indent=2) if args.json else metadata["output"]["path"])
    return 0


def interpolate_file(source: Path, output: Path, settings: Settings, *,
                     factor: int | None = None, target_fps: float | None = None,
                     interpolator: Interpolator = Interpolator.FLOW,
                     rife_weights: str | None = None, fps: float | None = None,
                     fmt: str | None = None, crf: int = 18, speed: str = "medium",
                     progress: ProgressCallback | None = None,
                     cancel: CancelToken | None = None) -> dict[str, Any]:
    """Interpolate `source` into `output` (written atomically, with a JSON sidecar).

    Returns the sidecar's content. Bad input raises InputError before anything is written.
    """
    from img2vid.execution.pipeline import save_clip, write_sidecar
    from img2vid.media.encode import EncodeOptions
    from img2vid.media.video_input import open_clip
    from img2vid.postprocess import make_interpolator
    from img2vid.postprocess.interpolate import interpolate_clip, output_timing

    progress = progress or (lambda _: None)
    cancel = cancel or CancelToken()
    started = datetime.now()
    t0 = time.perf_counter()
    if (factor is None) == (target_fps is None):
        raise InputError("give --interpolate N or --target-fps FPS (one of them)")
    if target_fps is not None and not 0 < target_fps <= MAX_TARGET_FPS:
        raise InputError(f"--target-fps {target_fps:g}: allowed range is 1 to "
                         f"{MAX_TARGET_FPS:g}")
    if fps is not None and not 0 < fps <= MAX_TARGET_FPS:
        raise InputError(f"--fps {fps:g}: allowed range is 1 to {MAX_TARGET_FPS:g}")
    if not 0 <= crf <= 51:
        raise InputError(f"--crf {crf}: allowed range is 0 to 51")
    fmt_ = output_format(output, fmt)
    if output.exists() and output.resolve() == source.resolve():
        raise InputError(f"-o {output} is the input; choose another output path")
    if fmt_ is OutputFormat.PNG and output.exists():
        raise InputError(f"{output} already exists; choose another -o path for a frame folder")

    clip = open_clip(source, fps, settings.images)
    if fmt_ in (OutputFormat.MP4, OutputFormat.WEBM) and (clip.width % 2 or clip.height % 2):
        raise InputError(f"{fmt_.value} needs even dimensions and {source.name} is "
                         f"{clip.width}x{clip.height}: write .mkv or a PNG frame folder to "
                         "keep its size")
    output_timing(clip.num_frames, clip.fps, factor=factor, target_fps=target_fps)  # checks
    engine = make_interpolator(interpolator, rife_weights, settings)
    result = interpolate_clip(clip, engine, factor=factor, target_fps=target_fps,
                              progress=progress, cancel=cancel)

    options = EncodeOptions(format=fmt_, crf=crf, speed=speed,
                            comment=json.dumps({"img2vid": __version__,
                                                "interpolated_from": source.name}))
    final, encoded = save_clip(result, options, output=output, directory=output.parent,
                               prefix="", started=started, progress=progress, cancel=cancel)
    metadata = rework_sidecar("interpolate", source, clip, final, encoded, started, t0)
    metadata["interpolation"] = result.info["interpolation"]
    metadata["source_info"] = {k: v for k, v in result.info.items() if k != "interpolation"}
    write_sidecar(final, metadata)
    log.info("interpolated %s -> %s (%d frames at %g fps)", source, final, encoded.frames,
             encoded.fps)
    return metadata


def rework_sidecar(command: str, source: Path, clip: Clip, final: Path, encoded: EncodedInfo,
                   started: datetime, t0: float) -> dict[str, Any]:
    """The sidecar entries every command that reworks an existing clip writes."""
    from img2vid.execution.pipeline import library_versions

    return {
        "img2vid": __version__,
        "created": started.isoformat(timespec="seconds"),
        "command": command,
        "output": {"path": str(final), **encoded.as_dict()},
        "input": {"path": str(source), "width": clip.width, "height": clip.height,
                  "fps": clip.fps, "frames": clip.num_frames},
        "versions": library_versions(),
        "timings": {"total_s": round(time.perf_counter() - t0, 3)},
    }
