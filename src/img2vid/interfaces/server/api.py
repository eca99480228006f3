"""REST API under /api/v1: submit, inspect, list, cancel and download jobs; models and presets."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

from img2vid.core.errors import InputError
from img2vid.core.request import PRESET_DESCRIPTIONS, PRESETS, EngineKind
from img2vid.core.sidecar import Sidecar
from img2vid.core.version import __version__
from img2vid.execution.jobqueue import JobQueue
from img2vid.execution.jobstore import Job, JobStatus, QueueFullError, ShuttingDownError
from img2vid.interfaces.server import bodies, intake, shown
from img2vid.interfaces.server.catalog import ModelInfo, list_models
from img2vid.interfaces.server.schema import SUBMIT_BODY

JOB_ID = re.compile(r"[0-9a-f]{32}")
MEDIA_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".mkv": "video/x-matroska",
               ".gif": "image/gif"}


# --- response schemas -----------------------------------------------------------------------

class ErrorOut(BaseModel):
    detail: str


class ProgressOut(BaseModel):
    stage: str = Field(description="what is being counted: render, denoise, encode...")
    step: int
    total: int | None
    fraction: float | None = Field(description="step / total of this stage, 0..1")
    eta_s: float | None = Field(description="estimated seconds left in this stage")


class JobOut(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    engine: str | None
    created: str
    started: str | None
    finished: str | None
    attempts: int = Field(description="times a worker has started this job")
    queue_position: int | None = Field(description="1 = next to run in its lane; "
                                       "null unless queued")
    progress: ProgressOut | None
    cancel_requested: bool
    error: str | None
    result_url: str | None = Field(description="GET this for the video once succeeded")
    output: str | None = Field(description="file name of the result in the output folder")
    request: dict[str, Any] = Field(description="the request as resolved (presets applied)")
    sidecar: Sidecar | None = Field(description="the result's JSON sidecar")


class JobListOut(BaseModel):
    jobs: list[JobOut]
    total: int
    limit: int
    offset: int


class PresetOut(BaseModel):
    name: str
    description: str
    camera: dict[str, Any]
    diffusion: dict[str, Any]


def job_out(job: Job) -> JobOut:
    request = _client_request(job)
    done = job.status is JobStatus.SUCCEEDED and job.output
    return JobOut(
        id=job.id, status=job.status.value, engine=job.request.get("engine"),
        created=_iso(job.created), started=_iso(job.started), finished=_iso(job.finished),
        attempts=job.attempts, queue_position=job.position,
        progress=ProgressOut(**job.progress.as_dict()) if job.progress else None,
        cancel_requested=job.cancel_requested, error=job.error,
        result_url=f"/api/v1/jobs/{job.id}/video" if done else None,
        output=Path(job.output).name if job.output else None,
        request=request, sidecar=client_sidecar(job))


def client_sidecar(job: Job) -> Sidecar | None:
    """The job's sidecar as a client sees it: its own file names instead of the server's
    paths (uploads, outputs), and without the server's settings."""
    if not job.sidecar:
        return None
    info = Sidecar.model_validate(job.sidecar)
    names = list(job.input_names)
    request = None
    if info.request is not None:
        client = _client_request(job, info.request.summary())
        request = info.request.model_copy(update={
            "images": tuple(client["images"]),
            **{name: client[name] for name in intake.FILE_FIELDS if name in client}})
    return info.model_copy(update={
        "settings": None,
        "request": request,
        "engine_info": shown.names_only(info.engine_info),  # model folders, weights
        "inputs": [entry.model_copy(update={"path": name})
                   for entry, name in zip(info.inputs or [], names)],
        "output": info.output.model_copy(update={"path": Path(info.output.path).name}),
    })


def _client_request(job: Job, request: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request with the client's file names in place of the server's upload paths."""
    request = dict(job.request if request is None else request)
    request["images"] = list(job.input_names)
    for name in intake.FILE_FIELDS:
        if request.get(name):
            request[name] = Path(request[name]).name
    return request


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat()


# --- routes ---------------------------------------------------------------------------------

router = APIRouter()
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503,
                                           507)}


def _queue(request: Request) -> JobQueue:
    queue: JobQueue = request.app.state.queue
    return queue


@router.post("/jobs", status_code=202, response_model=JobOut, openapi_extra=SUBMIT_BODY,
             responses=_ERRORS, summary="Submit a job")
async def create_job(request: Request) -> Any:
    """Queue a video: multipart (image files + fields) or JSON (images as base64).

    Fields are those of `img2vid generate` (snake_case). Refused before queueing with the
    CLI's messages: 400 bad images, 413 too large, 422 invalid fields, 429 queue full.
    With `dry_run` (a field, or `?dry_run=true`) nothing is queued: 200 with the plan the
    run would follow (model, revision, values asked and used, dtypes, memory level).
    """
    queue = _queue(request)
    dry_run = intake.pop_dry_run(dict(request.query_params))
    try:
        # A full queue is refused before the upload is read (off the event loop: the check
        # may wait for the database lock).
        if not dry_run:
            await run_in_threadpool(queue.check_room)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            fields, uploads = await bodies.read_multipart(request)
        elif content_type == "application/json":
            fields, uploads = await bodies.read_json(request)
        else:
            raise HTTPException(415, "send multipart/form-data (image files + fields) or "
                                     "application/json (images as base64)")
        files = {name: fields.pop(name) for name in list(fields)
                 if isinstance(fields[name], intake.Upload)}
        dry_run = intake.pop_dry_run(fields) or dry_run
        job = await run_in_threadpool(intake.submit, queue, fields, uploads, files, dry_run)
    except intake.StorageError as exc:
        raise HTTPException(exc.status, str(exc),
                            headers={"Retry-After": "60"} if exc.status == 503 else None
                            ) from None
    except intake.UploadTooLargeError as exc:
        raise HTTPException(413, str(exc)) from None
    except intake.InvalidImageError as exc:
        raise HTTPException(400, str(exc)) from None
    except QueueFullError as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
    except ShuttingDownError as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "30"}) from None
    except InputError as exc:
        raise HTTPException(422, str(exc)) from None
    if dry_run:
        return JSONResponse(job, status_code=200)
    return job_out(job)


@router.get("/jobs", response_model=JobListOut, responses=_ERRORS, summary="List jobs")
def list_jobs(request: Request, limit: Annotated[int, Query(ge=1, le=100)] = 20,
              offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
              status: JobStatus | None = None) -> JobListOut:
    """Jobs, newest first, `limit` at a time."""
    jobs, total = _queue(request).list(limit=limit, offset=offset, status=status)
    return JobListOut(jobs=[job_out(j) for j in jobs], total=total, limit=limit, offset=offset)


@router.get("/jobs/{job_id}", response_model=JobOut, responses=_ERRORS, summary="Get a job")
def get_job(request: Request, job_id: str) -> JobOut:
    """Status, progress, queue position, error, result URL and sidecar."""
    return job_out(_find(request, job_id))


@router.delete("/jobs/{job_id}", response_model=JobOut, responses={
    **_ERRORS, 202: {"model": JobOut, "description": "still stopping"}}, summary="Cancel")
def cancel_job(request: Request, job_id: str, response: Response) -> JobOut:
    """A queued job never runs; a running one stops at its next step, leaving no file.

    200 once it has stopped; 202 if it is still on its way to the next step; 409 if it had
    already ended.
    """
    queue = _queue(request)
    job = _find(request, job_id)
    if job.status.terminal:
        raise HTTPException(409, f"job {job_id} has already {job.status.value}")
    job = queue.cancel(job_id) or job
    if job.status is JobStatus.RUNNING:
        job = queue.wait(job_id, timeout=5.0) or job
    if not job.status.terminal:
        response.status_code = 202
    return job_out(job)


@router.head("/jobs/{job_id}/video", include_in_schema=False)
@router.get("/jobs/{job_id}/video", response_class=FileResponse,
                  responses={**_ERRORS, 200: {"content": {t: {} for t in MEDIA_TYPES.values()},
                                              "description": "the video (Range supported)"},
                             206: {"description": "part of the video (Range request)"}},
                  summary="Download the video")
def get_video(request: Request, job_id: str) -> FileResponse:
    """The result file, with HTTP Range support. Served only by job id."""
    job = _find(request, job_id)
    if job.status is not JobStatus.SUCCEEDED or not job.output:
        raise HTTPException(409, f"job {job_id} is {job.status.value}; there is no video yet"
                            if not job.status.terminal else
                            f"job {job_id} {job.status.value}; it has no video")
    root = _queue(request).settings.output.directory.resolve()
    path = Path(job.output).resolve()
    # The path comes from our own database, but check it anyway: only files in the output
    # folder are ever served.
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(404, f"the video of job {job_id} is no longer in the output folder"
                            if not path.is_dir() else
                            f"job {job_id} made a folder of PNG frames, not a single file")
    media_type = MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return FileResponse(path, media_type=media_type, filename=path.name,
                        content_disposition_type="inline")


@router.get("/jobs/{job_id}/preview", response_class=Response,
            responses={**_ERRORS, 200: {"content": {"image/png": {}},
                                        "description": "the latest live preview"}},
            summary="The latest live preview")
def get_preview(request: Request, job_id: str) -> Response:
    """A small PNG of the video so far (first, middle and last frames), updated every few
    denoising steps of a diffusion job; 404 until the first one."""
    _find(request, job_id)
    try:
        # read whole: the worker replaces the file while a FileResponse would stream it
        data = _queue(request).previews.path(job_id).read_bytes()
    except FileNotFoundError:
        raise HTTPException(404, f"job {job_id} has no preview yet (diffusion jobs make one "
                                 "every few denoising steps)") from None
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})


def _find(request: Request, job_id: str) -> Job:
    job = _queue(request).get(job_id) if JOB_ID.fullmatch(job_id) else None
    if job is None:
        raise HTTPException(404, f"no job with id {job_id[:64]!r}")
    return job


@router.get("/models", response_model=list[ModelInfo], responses=_ERRORS, summary="Models")
def get_models(request: Request) -> list[ModelInfo]:
    """Engines and diffusion models; unavailable ones say how to get them."""
    return list_models(_queue(request).settings)


@router.get("/presets", response_model=list[PresetOut], responses=_ERRORS, summary="Presets")
def get_presets() -> list[PresetOut]:
    """What each preset fills in, per engine (diffusion: per model, a tier relative to it)."""
    from img2vid.engines.diffusion.registry import preset_table

    return [PresetOut(name=name.value, description=PRESET_DESCRIPTIONS[name],
                      camera=PRESETS[EngineKind.CAMERA][name],
                      diffusion={**PRESETS[EngineKind.DIFFUSION][name],
                                 "models": preset_table(name.value)})
            for name in PRESET_DESCRIPTIONS]


def health(queue: JobQueue) -> JSONResponse:
    """Liveness, queue counts and workers (no details about jobs). 503 while stopping or
    degraded (a worker down, job ends the database would not take), saying why."""
    counts = queue.counts()
    problems = queue.problems()
    status = "stopping" if queue.closing else "degraded" if problems else "ok"
    return JSONResponse({"status": status, "problems": problems,
                         "version": __version__, "queued": counts["queued"],
                         "running": counts["running"], "workers": queue.workers()},
                        status_code=200 if status == "ok" else 503)
