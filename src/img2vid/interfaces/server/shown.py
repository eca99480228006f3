"""What a client is shown of a job, in the REST API and the WebUI alike: status lines, the
sidecar and parameters with names instead of the server's paths, errors as one line."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from img2vid.core.sidecar import Sidecar
from img2vid.execution.jobstore import Job, JobStatus

TEXT_KEYS = frozenset({"prompt", "negative_prompt", "ignored_prompt"})


def names_only(value: Any, key: str = "") -> Any:
    """Absolute paths anywhere in `value` (model folders, weights, sound and style files)
    shown as their last part: a client never learns the server's folders. Prompts are text,
    even when they start with a slash."""
    if key in TEXT_KEYS:
        return value
    if isinstance(value, dict):
        return {k: names_only(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [names_only(v, key) for v in value]
    if isinstance(value, str) and os.path.isabs(value) and len(Path(value).parts) > 1:
        return Path(value).name
    return value


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


def parameters_used(sidecar: Sidecar | dict[str, Any] | None) -> dict[str, Any] | None:
    """The parameters actually used, from the sidecar (request as resolved, engine details),
    with names in place of the server's paths."""
    if not sidecar:
        return None
    info = Sidecar.model_validate(sidecar)
    output = info.output.model_dump(mode="json")
    # Gradio takes any dict with a "path" for a file to serve; this one is only information.
    output["file"] = output.pop("path", None)
    request = info.request.summary() if info.request else {}
    return names_only({"seed": info.seed, "engine": info.engine,
                       "request": {k: v for k, v in request.items() if k != "images"},
                       "engine_info": info.engine_info, "output": output,
                       "timings": info.timings})


def describe_validation(errors: Sequence[Any]) -> str:
    """FastAPI's parameter errors as one line: `limit=0: Input should be >= 1; ...`."""
    parts = []
    for err in errors:
        where = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body")]
        given = f"={err['input']}" if "input" in err and not isinstance(
            err["input"], (dict, list)) else ""
        parts.append(f"{'.'.join(where) or 'request'}{given}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)[:1000]
