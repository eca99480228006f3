"""The sidecar: the JSON written beside every output, as one typed model.

`generate` and `interpolate` write it; batch resume, the REST API (its schema is in the
OpenAPI document) and the WebUI read it back through `Sidecar.read`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from img2vid.core.request import GenerationRequest


class EncodedInfo(BaseModel):
    """What an encoder wrote."""

    model_config = ConfigDict(frozen=True)

    format: str
    codec: str
    pix_fmt: str
    width: int
    height: int
    frames: int
    fps: float
    duration: float = Field(description="seconds")
    bytes: int
    note: str = ""  # e.g. the GPU encoder asked for was not there
    audio: dict[str, Any] | None = None  # the muxed soundtrack, if any

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


class OutputInfo(EncodedInfo):
    """The file (or PNG frame folder) that was written."""

    path: str


class InputImage(BaseModel):
    """One input photo as it was read."""

    path: str
    sha256: str
    format: str | None = None
    width: int
    height: int
    notes: list[str] = Field(default_factory=list, description="what loading changed")


class SourceVideo(BaseModel):
    """The video `interpolate` read."""

    path: str
    width: int
    height: int
    fps: float
    frames: int


class Sidecar(BaseModel):
    """Everything needed to know how an output was made (and to make it again)."""

    model_config = ConfigDict(extra="forbid")

    img2vid: str = Field(description="img2vid version")
    created: str = Field(description="local start time, ISO 8601")
    command: Literal["interpolate", "upscale"] | None = Field(
        None, description="absent for `generate`; the command that reworked an existing video")
    output: OutputInfo
    # generate
    engine: str | None = None
    seed: int | None = Field(None, description="the seed used (drawn when not given)")
    request: GenerationRequest | None = Field(None, description="the request as resolved")
    engine_info: dict[str, Any] | None = Field(None, description="what the engine used")
    inputs: list[InputImage] | None = None
    settings: dict[str, Any] | None = Field(None, description="output and image settings")
    style: dict[str, Any] | None = Field(None, description="the style transfer applied")
    # interpolate
    input: SourceVideo | None = None
    interpolation: dict[str, Any] | None = None
    source_info: dict[str, Any] | None = None
    # upscale
    upscale: dict[str, Any] | None = None
    # all commands
    audio: dict[str, Any] | None = Field(None, description="the soundtrack muxed in")
    versions: dict[str, str] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict, description="seconds")
    peak_rss_mb: float | None = None

    @model_serializer(mode="wrap")
    def _leave_out_empty_parts(self, handler: SerializerFunctionWrapHandler):  # noqa: ANN202
        # Parts a command does not fill (interpolate has no request, a camera video no
        # seed, the API's copy no settings) are left out rather than written as null.
        # No return annotation: the JSON schema stays the model's own.
        return {k: v for k, v in handler(self).items() if v is not None}

    def as_json(self) -> dict[str, Any]:
        """The JSON object written to disk."""
        return self.model_dump(mode="json")

    @classmethod
    def read(cls, path: Path) -> Sidecar:
        """Read a sidecar file; raises OSError or ValueError (pydantic's included)."""
        return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
