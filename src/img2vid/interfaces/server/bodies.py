"""Reading a job submission's body: multipart (files + fields) or JSON (files as base64)."""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
from typing import Any

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile

from img2vid.interfaces.server import intake

# form fields a client may give several times (a prompt per window of a longer clip)
REPEATABLE = {"lora", "prompt"}


async def read_multipart(request: Request) -> tuple[dict[str, Any], list[intake.Upload]]:
    form = await request.form(max_files=intake.MAX_IMAGES + len(intake.FILE_FIELDS),
                              max_fields=100,
                              max_part_size=64 * 1024)
    fields: dict[str, Any] = {}
    uploads: list[intake.Upload] = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key in intake.FILE_FIELDS and key not in fields:
                if value.filename:  # an HTML form sends an unused file input as no name
                    fields[key] = intake.Upload(value.filename, value.file)
                continue
            if key != "images":
                raise HTTPException(400, f"unexpected file field {key!r}; send photos as "
                                         "'images'" + "".join(f", {k} as '{k}'"
                                                              for k in intake.FILE_FIELDS))
            uploads.append(intake.Upload(value.filename or f"image{len(uploads)}", value.file))
        elif key == "images":
            raise HTTPException(400, "images must be uploaded as files, not text")
        elif key in REPEATABLE:
            fields.setdefault(key, []).append(value)
        elif key in fields:
            raise HTTPException(422, f"{key} is given more than once")
        else:
            fields[key] = value
    uploaded = {k: v for k, v in fields.items() if isinstance(v, intake.Upload)}
    return {**intake.clean_fields(fields), **uploaded}, uploads


async def read_json(request: Request) -> tuple[dict[str, Any], list[intake.Upload]]:
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HTTPException(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the JSON body must be an object with 'images' and fields")
    images = body.pop("images", None)
    if isinstance(images, str):
        images = [images]
    if not isinstance(images, list) or not images:
        raise HTTPException(400, "'images' must be a list of base64-encoded photos")
    uploads = [_json_file(item, f"image{index}", f"images[{index}]")
               for index, item in enumerate(images)]
    fields: dict[str, Any] = {k: v for k, v in body.items() if v is not None}
    for name in intake.FILE_FIELDS:
        if isinstance(fields.get(name), (str, dict)):
            fields[name] = _json_file(fields[name], name, name)
    return fields, uploads


def _json_file(item: Any, default_name: str, what: str) -> intake.Upload:
    """A file sent in JSON: base64 text, a data: URL, or {"name": ..., "data": ...} (the
    name is what the job and its sidecar record). Without a name it is `default_name`, with
    the extension of a data: URL's media type."""
    name = None
    if isinstance(item, dict):
        unknown = set(item) - {"name", "data"}
        if unknown or not isinstance(item.get("data"), str) or not isinstance(
                item.get("name", ""), str):
            raise HTTPException(400, f"{what} must be base64 text, a data: URL or "
                                     '{"name": "file name", "data": "base64"}')
        name, item = item.get("name") or None, item["data"]
    if not isinstance(item, str):
        raise HTTPException(400, f"{what} must be a base64 string")
    if name is None:
        media_type = item[5:].partition(",")[0].partition(";")[0] if item.startswith(
            "data:") else ""
        name = default_name + (mimetypes.guess_extension(media_type.strip().lower()) or "")
    return intake.Upload(name, _decode_base64(item, what))


def _decode_base64(text: str, what: str) -> bytes:
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(400, f"{what} is not valid base64") from None
