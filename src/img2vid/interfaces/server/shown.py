"""What a client is shown of a job, in the REST API and the WebUI alike: status lines, the
sidecar and parameters with names instead of the server's paths, errors as one line."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from img2vid.execution.jobstore import Job, JobStatus
from img2vid.interfaces.server import intake


def client_sidecar(job: Job) -> dict[str, Any] | None:
    """The job's sidecar as a client sees it: its own file names instead of the server's
    paths (uploads, outputs), and without the server's settings."""
    if not job.sidecar:
        return None
    sidecar = {k: v for k, v in job.sidecar.items() if k != "settings"}
    sidecar["request"] = client_request(job, sidecar.get("request", {}))
    sidecar["inputs"] = [{**entry, "path": name}
                         for entry, name in zip(sidecar.get("inputs", []), job.input_names)]
    if isinstance(sidecar.get("output"), dict):
        sidecar["output"] = {**sidecar["output"],
                             "path": Path(sidecar["output"].get("path", "")).name}
    return names_only(sidecar)


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


def client_request(job: Job, request: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request with the client's file names in place of the server's upload paths."""
    request = dict(job.request if request is None else request)
    request["images"] = list(job.input_names)
    for name in intake.FILE_FIELDS:
        if request.get(name):
            request[name] = Path(request[name]).name
    return request


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


def parameters_used(sidecar: dict[str, Any] | None) -> dict[str, Any] | None:
    """The parameters actually used, from the sidecar (request as resolved, engine details)."""
    if not sidecar:
        return None
    output = dict(sidecar.get("output", {}))
    # Gradio takes any dict with a "path" for a file to serve; this one is only information.
    output["file"] = output.pop("path", None)
    return names_only({
        "seed": sidecar.get("seed"), "engine": sidecar.get("engine"),
        "request": {k: v for k, v in sidecar.get("request", {}).items() if k != "images"},
        "engine_info": sidecar.get("engine_info"), "output": output,
        "timings": sidecar.get("timings")})


def describe_validation(errors: Sequence[Any]) -> str:
    """FastAPI's parameter errors as one line: `limit=0: Input should be >= 1; ...`."""
    parts = []
    for err in errors:
        where = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body")]
        given = f"={err['input']}" if "input" in err and not isinstance(
            err["input"], (dict, list)) else ""
        parts.append(f"{'.'.join(where) or 'request'}{given}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)[:1000]
