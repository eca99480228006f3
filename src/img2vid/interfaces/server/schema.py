"""The job submission body, documented for OpenAPI from GenerationRequest (the fields of
`img2vid generate`, the uploads, and nothing a client may not set)."""

from __future__ import annotations

import copy
from typing import Any

from img2vid.core.request import GenerationRequest
from img2vid.interfaces.server import intake


def _submission_schema(multipart: bool) -> dict[str, Any]:
    schema = _inline_refs(GenerationRequest.model_json_schema())
    schema.pop("$defs", None)
    schema["title"] = "JobSubmission"
    props = schema["properties"]
    for name in intake.SERVER_ONLY_FIELDS:
        props.pop(name, None)
    item = ({"type": "string", "format": "binary"} if multipart else
            _json_file("base64 image bytes, or a data: URL"))
    props["images"] = {"type": "array", "items": item, "minItems": 1,
                       "maxItems": intake.MAX_IMAGES, "description": "the photo(s)"}
    for name, what in intake.FILE_FIELDS.items():
        props[name] = ({"type": "string", "format": "binary", "description": what}
                       if multipart else
                       _json_file(f"{what}: base64 bytes or a data: URL"))
    props["prompt"] = {  # the request joins a list as the CLI's "a | b | c"
        "anyOf": [{"type": "string", "maxLength": 2000},
                  {"type": "array", "items": {"type": "string"}, "minItems": 1}],
        "description": "what should happen in the video; a list gives one prompt per window "
                       "of a clip longer than the model's window (more than windows: refused; "
                       "fewer: the last repeats)" + (" (repeat the field)" if multipart else "")}
    schema["required"] = ["images"]
    schema["additionalProperties"] = False
    return schema


def _json_file(what: str) -> dict[str, Any]:
    """A file in a JSON body: its bytes as text, or with the name the job records."""
    text = {"type": "string", "description": what}
    return {"anyOf": [text, {"type": "object", "additionalProperties": False,
                             "required": ["data"],
                             "properties": {"name": {"type": "string",
                                                     "description": "the file's name, as the "
                                                     "job and its sidecar record it"},
                                            "data": text}}]}


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


SUBMIT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": _submission_schema(multipart=True)},
    "application/json": {"schema": _submission_schema(multipart=False)},
}}}
