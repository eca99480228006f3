"""LoRA references as users write them: PATH_OR_HUB_ID[:SCALE] (the engine loads them)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAX_SCALE = 4.0
_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)")


@dataclass(frozen=True)
class LoraSpec:
    """One `--lora PATH_OR_HUB_ID[:SCALE]` value."""

    source: str
    scale: float = 1.0

    @classmethod
    def parse(cls, text: str) -> LoraSpec:
        head, sep, tail = text.strip().rpartition(":")
        if sep and head and _NUMBER.fullmatch(tail.strip()):
            return cls(head.strip(), float(tail))
        return cls(text.strip())


def is_hub_id(text: str) -> bool:
    """`org/name` or `org/name/path/in/repo` (no `..`, not absolute, not a bare file)."""
    return (re.fullmatch(r"[\w-][\w.-]*/[\w.-]+(/[\w.-]+)*", text) is not None
            and ".." not in text.split("/") and not (
                text.count("/") == 1 and text.endswith(".safetensors")))


def check_loras(value: Any) -> Any:
    """The request's `lora` field: a list, or one text with `;` between entries (a manifest
    cell, a form field); each scale within +-MAX_SCALE."""
    if isinstance(value, str):
        value = tuple(p.strip() for p in value.split(";") if p.strip())
    for item in value if isinstance(value, (list, tuple)) else ():
        spec = LoraSpec.parse(str(item))
        if abs(spec.scale) > MAX_SCALE:
            raise ValueError(f"{item}: a LoRA scale must be between -{MAX_SCALE:g} and "
                             f"{MAX_SCALE:g}")
    return value
