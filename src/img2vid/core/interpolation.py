"""InterpolationRequest: what `img2vid interpolate` is asked to do, validated like a request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from img2vid.core.errors import InputError
from img2vid.core.request import ENCODE_SPEEDS, InterpolatorKind, OutputFormat
from img2vid.core.validation import one_line

MAX_TARGET_FPS = 240.0
SUFFIX_FORMATS = {".mp4": OutputFormat.MP4, ".webm": OutputFormat.WEBM,
                  ".mkv": OutputFormat.MKV, ".gif": OutputFormat.GIF}


class InterpolationRequest(BaseModel):
    """Raise the frame rate of `source` (a video or a frame folder) into `output`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Path = Field(description="video file or folder of numbered frames")
    output: Path = Field(description="output file, or a name without extension for PNG frames")
    factor: int | None = Field(None, ge=2, le=4, description="multiply the frame rate by this")
    target_fps: float | None = Field(None, gt=0, le=MAX_TARGET_FPS,
                                     description="interpolate up to this frame rate")
    interpolator: InterpolatorKind = InterpolatorKind.FLOW
    rife_weights: str | None = Field(None, description="a RIFE flownet.pkl (default: the "
                                     "downloaded one)")
    fps: float | None = Field(None, gt=0, le=MAX_TARGET_FPS, description="frame rate of a "
                              "frame-folder input; for a video, overrides the declared rate")
    format: OutputFormat | None = Field(None, description="default: from the output's suffix")
    crf: int = Field(18, ge=0, le=51, description="encoder quality, lower is better")
    encode_speed: str = "medium"

    @field_validator("encode_speed")
    @classmethod
    def _known_speed(cls, value: str) -> str:
        if value not in ENCODE_SPEEDS:
            raise ValueError("must be one of " + ", ".join(ENCODE_SPEEDS))
        return value

    @model_validator(mode="after")
    def _one_rate(self) -> InterpolationRequest:
        if (self.factor is None) == (self.target_fps is None):
            raise ValueError("give --interpolate N or --target-fps FPS (one of them)")
        return self

    def output_format(self) -> OutputFormat:
        """The format asked for, else the one the output's extension names (none: PNG)."""
        return output_format(self.output, self.format)


def output_format(output: Path, explicit: str | OutputFormat | None) -> OutputFormat:
    """The format asked for, else the one `output`'s extension names (none: PNG frames)."""
    if explicit:
        return OutputFormat(explicit)
    suffix = output.suffix.lower()
    if not suffix:
        return OutputFormat.PNG
    if suffix not in SUFFIX_FORMATS:
        raise InputError(f"cannot tell the output format from {output.name!r}: use "
                         f"{', '.join(SUFFIX_FORMATS)}, no extension for PNG frames, "
                         "or --format")
    return SUFFIX_FORMATS[suffix]


def build_interpolation(**fields: Any) -> InterpolationRequest:
    """An InterpolationRequest, or InputError with one line naming each bad option."""
    try:
        return InterpolationRequest(**fields)
    except ValidationError as exc:
        raise InputError(one_line(exc, InterpolationRequest, subject="invalid options")
                         ) from None
