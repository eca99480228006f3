"""`img2vid upscale`: make an existing video or frame folder 2x or 4x larger."""

from __future__ import annotations

import argparse

from img2vid.core.config import Settings
from img2vid.core.request import Upscaler, VideoCodec
from img2vid.core.rework import UpscaleRequest
from img2vid.interfaces.cli.command import add_command
from img2vid.interfaces.cli.interpolate import add_encode_arguments, add_input_output, run_rework


def add_upscale_parser(sub: argparse._SubParsersAction) -> None:
    """Register `upscale` on the CLI's subcommands."""
    p = add_command(sub, "upscale", run_upscale)
    add_input_output(p)
    p.add_argument("--scale", type=int, choices=(2, 4), default=2, help="2 or 4 (default 2)")
    p.add_argument("--upscaler", choices=[u.value for u in Upscaler],
                   default=Upscaler.MODEL.value, help="model (default) or lanczos (no weights)")
    p.add_argument("--upscale-model", metavar="PATH_OR_HUB_ID", help="the checkpoint "
                   "(default: models.upscale_model in the config)")
    p.add_argument("--codec", choices=[c.value for c in VideoCodec], default="h264",
                   help="MP4 video codec (default h264)")
    add_encode_arguments(p)


def run_upscale(args: argparse.Namespace, settings: Settings) -> int:
    """Make an existing video or frame folder 2x or 4x larger.

    Upscale any video PyAV decodes, or a folder of numbered frames, with a super-resolution
    model (ESRGAN, Real-ESRGAN... a local .pth/.safetensors file or a hub id
    owner/repo/file.pth) or Lanczos resampling. Its sound, if any, is kept. Output format
    follows -o as for `img2vid interpolate`.
    """
    return run_rework(args, settings, UpscaleRequest, scale=args.scale,
                      upscaler=args.upscaler, upscale_model=args.upscale_model,
                      codec=args.codec)
