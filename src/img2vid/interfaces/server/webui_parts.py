"""The WebUI's small pieces: job status lines, the parameters shown, history thumbnails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from img2vid.core.sidecar import Sidecar
from img2vid.execution.jobstore import Job, JobStatus
from img2vid.interfaces.server import intake


def mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed since the listing; it is skipped when read
        return 0.0


def first_frame(output: Path, short_side: int = 160) -> np.ndarray:
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


def describe(job: Job) -> str:
    """One status line: queue position, stage with step and ETA, or the outcome."""
    if job.status is JobStatus.QUEUED:
        return f"Queued: position {job.position} in line."
    if job.status is JobStatus.RUNNING:
        p = job.progress
        if p is None:
            return "Starting..."
        text = f"{p.stage}: step {p.step}" + (f" of {p.total}" if p.total else "")
        if p.fraction is not None:
            text += f" ({p.fraction:.0%})"
        if p.eta_s is not None:
            text += f", about {p.eta_s:.0f} s left"
        return text + (" (cancelling)" if job.cancel_requested else "")
    if job.status is JobStatus.SUCCEEDED:
        took = (job.finished or 0) - (job.started or 0)
        return f"Done in {took:.1f} s: {Path(job.output or '').name}"
    return f"{job.status.value.capitalize()}: {job.error or ''}"


def used(sidecar: Sidecar | dict[str, Any] | None) -> dict[str, Any] | None:
    """The parameters actually used, from the sidecar (request as resolved, engine details)."""
    if not sidecar:
        return None
    info = Sidecar.model_validate(sidecar)
    output = info.output.model_dump(mode="json")
    # Gradio takes any dict with a "path" for a file to serve; this one is only information.
    output["file"] = output.pop("path", None)
    request = info.request.summary() if info.request else {}
    return {"seed": info.seed, "engine": info.engine,
            "request": {k: Path(v).name if k in intake.FILE_FIELDS and v else v
                        for k, v in request.items() if k != "images"},
            "engine_info": info.engine_info, "output": output, "timings": info.timings}


def shown(value: object) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _text(value: object) -> str | None:
    return None if value is None else str(value).strip()
