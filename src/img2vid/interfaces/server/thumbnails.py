"""What the WebUI shows of outputs: history thumbnails, and copies of videos and live
previews in Gradio's own cache (Gradio serves nothing from the output or queue folders)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

PLAYABLE = {".mp4", ".webm"}  # what a browser's <video> plays


def playable(output: Path, shown_dir: Path) -> str | None:
    """A copy (hard link where it can) of the video in `shown_dir`, for the player; None for
    what a browser cannot play. The output folder's sidecars name the server's folders."""
    if output.suffix not in PLAYABLE or not output.is_file():
        return None
    copy = shown_dir / output.name
    if not copy.exists():
        copy.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(output, copy)
        except OSError:  # another drive, or no hard links there
            shutil.copyfile(output, copy)
    return str(copy)


def live_preview(shown_dir: Path, job_id: str, version: int, path: str | None) -> str | None:
    """A copy of a new live preview in `shown_dir`, named by version so the browser never
    shows a stale one; the previous copy goes. None when there is nothing new."""
    if path is None:
        return None
    for old in shown_dir.glob(f"preview-{job_id}-*.png"):
        old.unlink(missing_ok=True)
    copy = shown_dir / f"preview-{job_id}-{version}.png"
    copy.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(path, copy)
    except OSError:  # replaced or removed in between: the next one comes soon
        return None
    return str(copy)


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
