"""Typed requests of the commands that rework an existing clip (interpolate, upscale),
validated with the same one-line messages as a generation request."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from img2vid.core.errors import InputError
from img2vid.core.request import ENCODE_SPEEDS, InterpolatorKind, OutputFormat, Upscaler, VideoCodec
from img2vid.core.validation import one_line

MAX_TARGET_FPS = 240.0


class ReworkRequest(BaseModel):
    """What every rework reads and writes: `source` (a video or a frame folder) into `output`."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    command: ClassVar[Literal["interpolate", "upscale"]]
    source_tag: ClassVar[str]  # the output file's tag naming the source

    source: Path = Field(description="video file or folder of numbered frames")
    output: str = Field(description="output file (its extension picks the format), a name "
                        "without extension for PNG frames, or a folder ending in /")
    overwrite: bool = Field(False, description="replace an existing output")
    fps: float | None = Field(None, gt=0, le=MAX_TARGET_FPS, description="frame rate of a "
                              "frame-folder input; for a video, overrides the declared rate")
    format: OutputFormat | None = Field(None, description="default: from the output's suffix")
    crf: int = Field(18, ge=0, le=51, description="encoder quality, lower is better")
    encode_speed: str = "medium"

    @field_validator("output", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        # kept as text: a trailing / ("put it in this folder") is part of what -o means
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("encode_speed")
    @classmethod
    def _known_speed(cls, value: str) -> str:
        if value not in ENCODE_SPEEDS:
            raise ValueError("must be one of " + ", ".join(ENCODE_SPEEDS))
        return value


class InterpolationRequest(ReworkRequest):
    """Raise the frame rate of `source` into `output`."""

    command = "interpolate"
    source_tag = "interpolated_from"

    factor: int | None = Field(None, ge=2, le=4, description="multiply the frame rate by this")
    target_fps: float | None = Field(None, gt=0, le=MAX_TARGET_FPS,
                                     description="interpolate up to this frame rate")
    interpolator: InterpolatorKind = InterpolatorKind.FLOW
    rife_weights: str | None = Field(None, description="a RIFE flownet.pkl (default: the "
                                     "downloaded one)")

    @model_validator(mode="after")
    def _one_rate(self) -> InterpolationRequest:
        if (self.factor is None) == (self.target_fps is None):
            raise ValueError("give --interpolate N or --target-fps FPS (one of them)")
        return self


class UpscaleRequest(ReworkRequest):
    """Make `source` 2x or 4x larger into `output`."""

    command = "upscale"
    source_tag = "upscaled_from"

    scale: Literal[2, 4] = 2
    upscaler: Upscaler = Upscaler.MODEL
    upscale_model: str | None = Field(None, description="a super-resolution checkpoint: a "
                                      "local file or a hub id owner/repo/file.pth (default: "
                                      "models.upscale_model in the config)")
    codec: VideoCodec = Field(VideoCodec.H264, description="MP4 video codec")


Rework = TypeVar("Rework", bound=ReworkRequest)


def build_rework(kind: type[Rework], **fields: Any) -> Rework:
    """A rework request, or InputError with one line naming each bad option."""
    try:
        return kind(**fields)
    except ValidationError as exc:
        raise InputError(one_line(exc, kind, subject="invalid options")) from None
