"""Clip: the frames an engine returns and every later stage (postprocess, encode) consumes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class GeneratedAudio:
    """Sound a model made with its frames (LTX-2): float samples, channels x n."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        return self.samples.shape[-1] / self.sample_rate


@dataclass
class Clip:
    """A stream of H x W x 3 uint8 RGB frames with its rate and size known up front.

    `frames` is consumed once. `info` carries what the engine actually used (sizes snapped,
    model id, memory plan...) for the sidecar; `audio` the sound a model generated with the
    frames, muxed into the output beside them.
    """

    frames: Iterator[np.ndarray]
    fps: float
    width: int
    height: int
    num_frames: int
    info: dict[str, Any] = field(default_factory=dict)
    audio: GeneratedAudio | None = None

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps
