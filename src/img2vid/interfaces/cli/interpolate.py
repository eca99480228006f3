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

if TYPE_CHECKING:
    from img2vid.core.clip import Clip
    from img2vid.media.encode import EncodedInfo
    from img2vid.media.outputs import OutputTarget

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
    add_input_output(p)
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
    add_encode_arguments(p)
    p.set_defaults(handler=run_interpolate)


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


def rework_target(source: Path, output: Path | str, fmt: str | None, settings: Settings,
                  overwrite: bool) -> OutputTarget:
    """Where a command that reworks `source` writes: -o's rules (outputs.resolve_output),
    never over its own input, in a folder that can be written."""
    from img2vid.media import outputs

    if Path(output).exists() and Path(output).resolve() == Path(source).resolve():
        raise InputError(f"-o {output} is the input; choose another output path")
    target = outputs.resolve_output(output, fmt, settings.output.format,
                                    settings.output.directory, overwrite=overwrite)
    outputs.ensure_writable(target.directory)
    return target


def kept_audio(source: Path, fmt: OutputFormat) -> tuple[Any, dict[str, Any]]:
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


def print_result(metadata: dict[str, Any], as_json: bool) -> None:
    """A note about dropped audio on stderr, then the path (or the sidecar) on stdout."""
    note = metadata.get("audio_source", {}).get("note")
    if note:
        print(f"img2vid: note: {note}", file=sys.stderr)
    print(json.dumps(metadata, indent=2) if as_json else metadata["output"]["path"])


def run_interpolate(args: argparse.Namespace, settings: Settings) -> int:
    """The `interpolate` command; returns the exit code."""
    with ProgressBars(enabled=not args.quiet) as bars:
        metadata = interpolate_file(
            args.input, args.output, settings, factor=args.interpolate,
            target_fps=args.target_fps, interpolator=Interpolator(args.interpolator),
            rife_weights=args.rife_weights, fps=args.fps, fmt=args.format, crf=args.crf,
            speed=args.encode_speed, progress=bars, overwrite=args.overwrite)
    print_result(metadata, args.json)
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
    source = Path(source)
    target = rework_target(source, output, fmt, settings, overwrite)
    fmt_ = target.format

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
    audio, audio_record = kept_audio(source, fmt_)
    final, encoded = save_clip(result, options, target, prefix=settings.output.prefix,
                               started=started, progress=progress, cancel=cancel,
                               soundtrack=audio)
    metadata = rework_sidecar("interpolate", source, clip, final, encoded, started, t0)
    metadata["audio_source"] = audio_record
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
