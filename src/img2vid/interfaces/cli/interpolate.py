"""`img2vid interpolate`: raise the frame rate of an existing video or frame folder."""

from __future__ import annotations

import argparse
import json
import logging
import sys
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
from img2vid.media import outputs

if TYPE_CHECKING:
    from img2vid.media.remux import SourceAudio

log = logging.getLogger(__name__)

MAX_TARGET_FPS = 240.0


def add_interpolate_parser(sub: argparse._SubParsersAction) -> None:
    """Register `interpolate` on the CLI's subcommands."""
    p = sub.add_parser(
        "interpolate", help="raise the frame rate of an existing video or frame folder",
        description="Interpolate new frames into any video PyAV decodes, or a folder of "
        "numbered frames, keeping its size, duration and audio (stream copy; a GIF or PNG "
        "frames cannot hold audio, WebM only Opus/Vorbis: a note says so). Output format "
        "follows -o: .mp4, .webm, .mkv (lossless FFV1), .gif, a name without extension for "
        "a folder of PNG frames (lossless), or a folder ending in / for a timestamped name.")
    p.add_argument("input", type=Path, metavar="INPUT", help="video file or frame folder")
    p.add_argument("-o", "--output", required=True, help="output path; its extension picks "
                   "the format")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    rate = p.add_mutually_exclusive_group(required=True)
    rate.add_argument("--interpolate", type=int, choices=(2, 3, 4), metavar="N",
                      help="multiply the frame rate by 2, 3 or 4")
    rate.add_argument("--target-fps", type=float, metavar="FPS",
                      help="interpolate up to this frame rate (more than 0 and at most 240)")
    p.add_argument("--interpolator", choices=[i.value for i in Interpolator],
                   default=Interpolator.FLOW.value, help="flow (weightless, default) or rife "
                   "(learned; `img2vid models download rife` first)")
    p.add_argument("--rife-weights", metavar="PATH", help="a RIFE 4.25/4.26 flownet.pkl "
                   "(default: the downloaded one)")
    p.add_argument("--fps", type=float, metavar="FPS", help="frame rate of a frame-folder "
                   "input, more than 0 and at most 240 (default 24); for a video, overrides the rate it declares")
    p.add_argument("--format", choices=[f.value for f in OutputFormat],
                   help="output format (default: from the -o extension)")
    p.add_argument("--crf", type=int, default=18, help="encoder quality, 0 to 51, lower is "
                   "better (default 18)")
    p.add_argument("--encode-speed", choices=ENCODE_SPEEDS, default="medium",
                   help="encoder speed preset (default medium)")
    p.add_argument("--json", action="store_true", help="print the sidecar JSON instead of "
                   "the output path")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_interpolate)


def run_interpolate(args: argparse.Namespace, settings: Settings) -> int:
    """The `interpolate` command; returns the exit code."""
    with ProgressBars(enabled=not args.quiet) as bars:
        metadata = interpolate_file(
            args.input, args.output, settings, factor=args.interpolate,
            target_fps=args.target_fps, interpolator=Interpolator(args.interpolator),
            rife_weights=args.rife_weights, fps=args.fps, fmt=args.format, crf=args.crf,
            speed=args.encode_speed, progress=bars, overwrite=args.overwrite)
    if metadata["audio"].get("note"):
        print(f"img2vid: note: {metadata['audio']['note']}", file=sys.stderr)
    print(json.dumps(metadata, indent=2) if args.json else metadata["output"]["path"])
    return 0


def interpolate_file(source: Path, output: Path | str, settings: Settings, *,
                     factor: int | None = None, target_fps: float | None = None,
                     interpolator: Interpolator = Interpolator.FLOW,
                     rife_weights: str | None = None, fps: float | None = None,
                     fmt: str | None = None, crf: int = 18, speed: str = "medium",
                     progress: ProgressCallback | None = None,
                     cancel: CancelToken | None = None,
                     overwrite: bool = False) -> dict[str, Any]:
    """Interpolate `source` into `output` (written atomically, with a JSON sidecar), with
    the source's audio copied in when the output's container can hold it.

    `output` follows -o's rules (outputs.resolve_output). Returns the sidecar's content.
    Bad input raises InputError before anything is written.
    """
    from img2vid.execution.pipeline import library_versions, save_clip, write_sidecar
    from img2vid.media.encode import EncodeOptions
    from img2vid.media.remux import source_audio, why_not_kept
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
    source = Path(source)
    if Path(output).exists() and Path(output).resolve() == source.resolve():
        raise InputError(f"-o {output} is the input; choose another output path")
    target = outputs.resolve_output(output, fmt, settings.output.format,
                                    settings.output.directory, overwrite=overwrite)
    fmt_ = target.format
    outputs.ensure_writable(target.directory)

    clip = open_clip(source, fps, settings.images)
    if fmt_ in (OutputFormat.MP4, OutputFormat.WEBM) and (clip.width % 2 or clip.height % 2):
        raise InputError(f"{fmt_.value} needs even dimensions and {source.name} is "
                         f"{clip.width}x{clip.height}: write .mkv or a PNG frame folder to "
                         "keep its size")
    output_timing(clip.num_frames, clip.fps, factor=factor, target_fps=target_fps)  # checks
    engine = make_interpolator(interpolator, rife_weights, settings)
    result = interpolate_clip(clip, engine, factor=factor, target_fps=target_fps,
                              progress=progress, cancel=cancel)

    audio = source_audio(source)
    dropped = why_not_kept(audio, fmt_) if audio else None
    if dropped:
        log.info("audio of %s not kept: %s", source, dropped)
    options = EncodeOptions(format=fmt_, crf=crf, speed=speed,
                            comment=json.dumps({"img2vid": __version__,
                                                "interpolated_from": source.name}))
    final, encoded = save_clip(result, options, target, prefix=settings.output.prefix,
                               started=started, progress=progress, cancel=cancel,
                               audio=None if dropped else audio)
    metadata = {
        "img2vid": __version__,
        "created": started.isoformat(timespec="seconds"),
        "command": "interpolate",
        "output": {"path": str(final), **encoded.as_dict()},
        "input": {"path": str(source), "width": clip.width, "height": clip.height,
                  "fps": clip.fps, "frames": clip.num_frames},
        "interpolation": result.info["interpolation"],
        "audio": _audio_record(audio, dropped),
        "source_info": {k: v for k, v in result.info.items() if k != "interpolation"},
        "versions": library_versions(),
        "timings": {"total_s": round(time.perf_counter() - t0, 3)},
    }
    write_sidecar(final, metadata)
    log.info("interpolated %s -> %s (%d frames at %g fps)", source, final, encoded.frames,
             encoded.fps)
    return metadata


def _audio_record(audio: SourceAudio | None, dropped: str | None) -> dict[str, Any]:
    if audio is None:
        return {"kept": False, "source": None}
    record: dict[str, Any] = {"kept": dropped is None, "source": audio.codec,
                              "duration": audio.duration}
    if dropped:
        record["note"] = (f"the input's {audio.codec} audio is not kept: {dropped}; write "
                          ".mkv (or .mp4) to keep it")
    return record
