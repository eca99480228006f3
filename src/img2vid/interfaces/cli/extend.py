"""`img2vid extend CLIP --prompt ... --duration N`: continue an existing clip seamlessly."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from img2vid.core.config import Settings
from img2vid.interfaces.cli.bars import ProgressBars
from img2vid.interfaces.cli.command import add_command

# from app.py (which registers this command): the generate command's request flags
AddArguments = Callable[..., None]
Fields = Callable[[argparse.Namespace], dict[str, Any]]


def add_extend_parser(sub: argparse._SubParsersAction, add_request_arguments: AddArguments,
                      request_fields: Fields) -> None:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        """Continue an existing clip with a diffusion model.

        Continue a video (any file PyAV decodes, or a frame folder) for --duration more
        seconds: its last frame starts the new part (in windows when longer than one), colour
        matched across the seam. Size and frame rate are the clip's.
        """
        from img2vid.execution.extend import extend_clip

        with ProgressBars(enabled=not args.quiet) as bars:
            result = extend_clip(args.clip, request_fields(args), settings,
                                 output=args.output, progress=bars)
        print(json.dumps(result.metadata, indent=2) if args.json else result.output)
        return 0

    p = add_command(sub, "extend", run)
    p.add_argument("clip", type=Path, metavar="CLIP", help="the video to continue")
    p.add_argument("-o", "--output", type=Path, help="output path (default: a timestamped "
                   "name in output.directory)")
    p.add_argument("--json", action="store_true", help="print the sidecar JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    # the clip decides the size and frame rate; the model its engine
    add_request_arguments(p, skip=("images", "last_image", "engine", "width", "height",
                                   "resolution", "fps"))
