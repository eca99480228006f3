"""Turning a submission (fields + uploaded images) into a queued job, shared by the API and UI."""

from __future__ import annotations

import errno
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from img2vid.core.errors import Img2VidError, InputError
from img2vid.core.lora import LoraSpec, is_hub_id
from img2vid.core.request import GenerationRequest, build_request
from img2vid.execution.jobqueue import JobQueue
from img2vid.interfaces.server.catalog import check_depth, check_model
from img2vid.media.images import check_total_pixels, probe_image

MAX_IMAGES: int = next(m.max_length for m in GenerationRequest.model_fields["images"].metadata
                       if getattr(m, "max_length", None))
# Fields a client may not set: `images` arrive as uploads, and these name server paths.
SERVER_ONLY_FIELDS = {"rife_weights": "it names a file on the server; set the RIFE weights "
                                      "in the server's config instead",
                      "upscale_model": "it names a file or model on the server; set "
                                       "models.upscale_model in the server's config instead",
                      "style_weights": "it names a folder on the server; set "
                                       "models.style_weights in the server's config instead"}
# Request fields that name a file: a client uploads the file itself, one of each at most.
FILE_FIELDS = {"audio": "the soundtrack", "style": "the style painting",
               "depth": "the parallax depth map (brighter = nearer)",
               "last_image": "the end frame (models trained for one; others refuse, naming them)"}
REQUEST_FIELDS = frozenset(GenerationRequest.model_fields) - {"images"}


class InvalidImageError(InputError):
    """An uploaded file is missing, empty, not an image, or over the pixel limits (HTTP 400)."""


class UploadTooLargeError(InputError):
    """The uploaded images add up to more than server.max_upload_mb (HTTP 413)."""


class StorageError(Img2VidError):
    """The server cannot keep the upload: its disk is full (HTTP 507) or it may not write
    there (read-only, permissions: HTTP 503). Not the client's fault; it says what to do."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def storage_error(exc: OSError) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError("the server's disk is full: no room for the upload; free some "
                            "space on it (or move output.directory), then send it again", 507)
    return StorageError(f"the server cannot write its upload folder ({exc.strerror}); its "
                        "output.directory must be writable: fix that on the server, then "
                        "send it again", 503)


@dataclass(frozen=True)
class Upload:
    """One uploaded image: the client's file name and its bytes (a file object, bytes or path)."""

    name: str
    source: IO[bytes] | bytes | Path


def submit(queue: JobQueue, fields: Mapping[str, Any], uploads: Sequence[Upload],
           files: Mapping[str, Upload] | None = None, dry_run: bool = False) -> Any:
    """Validate, store the images (and `files`: audio, style, last_image) with the job, queue
    it; with `dry_run`, return the plan a run would follow (model, values, dtypes, memory)
    and queue nothing.

    Raises InvalidImageError, UploadTooLargeError, InputError (bad fields), QueueFullError
    or ShuttingDownError; nothing is left behind when it raises.
    """
    settings = queue.settings
    if "images" in fields:
        raise InvalidImageError("images must be uploaded as files (multipart) or base64 "
                                "strings (JSON), not given as paths")
    for name, why in SERVER_ONLY_FIELDS.items():
        if fields.get(name) not in (None, ""):
            raise InputError(f"{name} cannot be set through the server: {why}")
    files = dict(files or {})
    for name, what in FILE_FIELDS.items():
        if fields.get(name) not in (None, ""):
            raise InvalidImageError(f"{name} ({what}) must be uploaded as a file, not given as "
                                    "a path")
    unknown = set(files) - set(FILE_FIELDS)
    if unknown:
        raise InvalidImageError(f"unexpected file field {sorted(unknown)[0]!r}")
    _check_loras(fields.get("lora"))
    if not uploads:
        raise InvalidImageError("no image: upload at least one photo")
    if len(uploads) > MAX_IMAGES:
        raise InvalidImageError(f"{len(uploads)} images: at most {MAX_IMAGES} per job")
    for name in ("engine", "model"):  # read before the request checks the rest
        if not isinstance(fields.get(name), (str, type(None))):
            raise InputError(f"{name}={fields[name]!r}: must be a name (a string)")
    model = check_model(settings, fields.get("engine"), fields.get("model"), missing_ok=dry_run)
    if fields.get("model"):  # the job runs the model that was checked, spelled as configured
        fields = {**fields, "model": model}
    depth_model = check_depth(settings, fields, "depth" in files)
    if depth_model:  # likewise the depth model
        fields = {**fields, "depth_model": depth_model}

    limit = int(settings.server.max_upload_mb * 1024 * 1024)
    job_id = queue.new_job_id()
    try:
        paths, total = [], 0
        stored: dict[str, Path] = {}
        try:
            folder = queue.upload_dir(job_id)
            for index, upload in enumerate(uploads):
                dest = folder / f"{index:03d}{_safe_suffix(upload.name)}"
                total += _store(upload.source, dest, limit - total,
                                settings.server.max_upload_mb)
                paths.append(dest)
            for name, upload in files.items():
                # kept under the client's own (cleaned) name: the sidecar shows that name
                dest = folder / name / _safe_name(upload.name, name)
                dest.parent.mkdir(exist_ok=True)
                total += _store(upload.source, dest, limit - total,
                                settings.server.max_upload_mb)
                stored[name] = dest
        except OSError as exc:
            raise storage_error(exc) from None
        request = build_request(images=tuple(str(p) for p in paths),
                                **{**dict(fields), **{k: str(v) for k, v in stored.items()}})
        sizes = []
        for path, upload in zip(paths, uploads):
            try:
                sizes.append(probe_image(path, settings.images)[1:])
            except InputError as exc:
                raise InvalidImageError(str(exc).replace(str(path), upload.name)) from None
        try:  # from the headers: nothing has been decoded yet
            check_total_pixels(sizes, settings.images)
        except InputError as exc:
            raise InvalidImageError(str(exc)) from None
        _probe_files(stored, settings)
        if request.audio:  # the server's default format may be one without sound
            from img2vid.postprocess.audio import refuse_for_format

            refuse_for_format(request.format or settings.output.format)
        if dry_run:
            from img2vid.execution.plan import plan_request

            plan = plan_request(request, settings)
            queue.discard_uploads(job_id)
            return plan
        return queue.submit(request, job_id=job_id, input_names=[u.name for u in uploads])
    except BaseException:
        queue.discard_uploads(job_id)
        raise


def _check_loras(value: Any) -> None:
    """A client names LoRAs by hub id: a path would reach (and hash) a file on the server."""
    items = value.split(";") if isinstance(value, str) else value or []
    for item in items:
        if not is_hub_id(LoraSpec.parse(str(item)).source):
            raise InputError(f"lora {item}: the server takes LoRAs by hub id "
                             "(org/name[/file.safetensors][:scale]), not by path")


def _store(source: IO[bytes] | bytes | Path, dest: Path, budget: int, limit_mb: float) -> int:
    """Copy one upload to `dest`, refusing it as soon as it passes `budget` bytes."""
    too_large = UploadTooLargeError(f"the uploaded images add up to more than {limit_mb:g} MB, "
                                    "the server's limit (server.max_upload_mb); send smaller "
                                    "files")
    if isinstance(source, bytes):
        if len(source) > budget:
            raise too_large
        dest.write_bytes(source)
        return len(source)
    if isinstance(source, Path):
        size = source.stat().st_size
        if size > budget:
            raise too_large
        shutil.copyfile(source, dest)
        return size
    written = 0
    with dest.open("wb") as out:
        while chunk := source.read(1 << 20):
            written += len(chunk)
            if written > budget:
                raise too_large
            out.write(chunk)
    return written


def _probe_files(stored: Mapping[str, Path], settings: Any) -> None:
    """A bad soundtrack, style image, depth map or end frame is refused now (400), not when the job
    runs."""
    if "audio" in stored:
        from img2vid.postprocess.audio import probe_audio

        try:
            probe_audio(stored["audio"])
        except InputError as exc:
            raise InvalidImageError(str(exc)) from None
    for name in ("style", "depth", "last_image"):
        if name in stored:
            try:
                probe_image(stored[name], settings.images)
            except InputError as exc:
                raise InvalidImageError(str(exc).replace(str(stored[name]),
                                                         stored[name].name)) from None


def _safe_name(name: str, fallback: str) -> str:
    """A client's file name made safe to store: no folders, plain characters only."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name.replace("\\", "/")).name)[-100:]
    return cleaned.lstrip(".") or fallback


def _safe_suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""


def pop_dry_run(fields: dict[str, Any]) -> bool:
    """The `dry_run` field (a form's "true"/"1" or a JSON boolean), removed from the fields."""
    value = fields.pop("dry_run", False)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def clean_fields(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Form values as the request expects them: empty means unset."""
    return {k: v for k, v in raw.items() if v is not None and v != ""}
