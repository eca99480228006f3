"""Output size of a request: its width/height, or a resolution with the photo's aspect ratio."""

from __future__ import annotations

import math
from typing import Protocol


class Sized(Protocol):
    """The request's size fields (GenerationRequest has them)."""

    @property
    def width(self) -> int | None: ...
    @property
    def height(self) -> int | None: ...
    @property
    def resolution(self) -> int | None: ...


def output_size(request: Sized, source_width: int, source_height: int,
                multiple: int = 2) -> tuple[int, int]:
    """Output (width, height): the request's, or the resolution with the photo's aspect ratio.

    Sides are rounded to `multiple` (2 for 4:2:0 video; models ask for 8, 16 or 32).
    """
    aspect = source_width / source_height
    width, height = request.width, request.height
    if width and height:
        pass
    elif width:
        height = width / aspect
    elif height:
        width = height * aspect
    else:
        short = request.resolution or 720
        width, height = (short * aspect, short) if aspect >= 1 else (short, short / aspect)

    def snap(v: float) -> int:
        return max(multiple, int(math.floor(v / multiple + 0.5)) * multiple)

    return snap(width), snap(height)
