"""`img2vid interpolate`: raise the frame rate of an existing video or frame folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from img2vid.core.config import Settings
from img2vid.core.request import ENCODE_SPEEDS, InterpolatorKind, OutputFormat
from img2vid.core.rework import MAX_TARGET_FPS, InterpolationRequest, ReworkRequest, build_rework
from img2vid.interfaces.cli.bars import ProgressBars
from img2vid.interfaces.cli.command import add_command


def add_interpolate_parser(sub: argparse._SubParsersAction) -> None:
    """Register `interpolate` on the CLI's subcommands."""
    p = add_command(sub, "interpolate", run_interpolate)
    add_input_output(p)
    rate = p.add_mutually_exclusive_group(required=True)
    rate.add_argument("--interpolate", type=int, choices=(2, 3, 4), metavar="N",
                      help="multiply the frame rate by 2, 3 or 4")
    rate.add_argument("--target-fps", type=float, metavar="FPS",
                      help="interpolate up to this frame rate (more than 0 and at most "
                      f"{MAX_TARGET_FPS:g})")
    p.add_argument("--interpolator", choices=[i.value for i in InterpolatorKind],
                   default=InterpolatorKind.FLOW.value, help="flow (weightless, default) or rife "
                   "(learned; `img2vid models download rife` first)")
    p.add_argument("--rife-weights", metavar="PATH", help="a RIFE 4.25/4.26 flownet.pkl "
                   "(default: the downloaded one)")
    add_encode_arguments(p)


def add_input_output(p: argparse.ArgumentParser) -> None:
    """INPUT and -o, shared by the commands that rework an existing clip."""
    p.add_argument("input", type=Path, metavar="INPUT", help="video file or frame folder")
    p.add_argument("-o", "--output", required=True, help="output path; its extension picks "
                   "the format (a folder ending in / gets a timestamped name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")


def add_encode_arguments(p: argparse.ArgumentParser) -> None:
    """Input rate, output format, quality and what to print, for those commands."""
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


def run_interpolate(args: argparse.Namespace, settings: Settings) -> int:
    """Raise the frame rate of an existing video or frame folder.

    Interpolate new frames into any video PyAV decodes, or a folder of numbered frames,
    keeping its size, duration and audio (stream copy; a GIF or PNG frames cannot hold
    audio, WebM only Opus/Vorbis: a note says so). Output format follows -o: .mp4, .webm,
    .mkv (lossless FFV1), .gif, a name without extension for a folder of PNG frames
    (lossless), or a folder ending in / for a timestamped name.
    """
    return run_rework(args, settings, InterpolationRequest,
                      factor=args.interpolate, target_fps=args.target_fps,
                      interpolator=args.interpolator, rife_weights=args.rife_weights)


def run_rework(args: argparse.Namespace, settings: Settings, kind: type[ReworkRequest],
               **fields: Any) -> int:
    """Run a rework command: its request from the shared options (add_input_output,
    add_encode_arguments) and its own `fields`, with progress bars; print the result."""
    from img2vid.execution.rework import rework_video

    request = build_rework(kind, source=args.input, output=args.output, fps=args.fps,
                           format=args.format, crf=args.crf, encode_speed=args.encode_speed,
                           overwrite=args.overwrite, **fields)
    with ProgressBars(enabled=not args.quiet) as bars:
        result = rework_video(request, settings, progress=bars)
    print_result(result.metadata, args.json)
    return 0


def print_result(metadata: dict, as_json: bool) -> None:
    """A note about dropped audio on stderr, then the path (or the sidecar) on stdout."""
    note = (metadata.get("audio_source") or {}).get("note")
    if note:
        print(f"img2vid: note: {note}", file=sys.stderr)
    print(json.dumps(metadata, indent=2) if as_json else metadata["output"]["path"])
