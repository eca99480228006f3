"""Clip: the frames an engine returns and every later stage (postprocess, encode) consumes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Clip:
    """A stream of H x W x 3 uint8 RGB frames with its rate and size known up front.

    `frames` is consumed once. `info` carries what the engine actually used (sizes snapped,
    model id, memory plan...) for the sidecar.
    """

    frames: Iterator[np.ndarray]
    fps: float
    width: int
    height: int
    num_frames: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps
