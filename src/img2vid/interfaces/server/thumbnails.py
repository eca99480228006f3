"""History thumbnails for the WebUI: an output's first frame, small."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def first_frame(output: Path, short_side: int = 160) -> np.ndarray:
    """The first frame of an output (a video, or a PNG frame folder), `short_side` px high."""
    import cv2

    if output.is_dir():  # a PNG frame folder
        first = min(output.glob("*.png"))
        frame = cv2.cvtColor(cv2.imread(str(first)), cv2.COLOR_BGR2RGB)
    else:
        import av

        with av.open(str(output)) as container:
            frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    height, width = frame.shape[:2]
    scale = short_side / min(height, width)
    return cv2.resize(frame, (max(1, round(width * scale)), max(1, round(height * scale))),
                      interpolation=cv2.INTER_AREA)
