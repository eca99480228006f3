"""A batch item (one video to make) and its result, shared by the batch runners and Ray."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from img2vid.core.request import GenerationRequest

DONE, SKIPPED, FAILED, PENDING = "done", "skipped", "failed", "pending"


@dataclass(frozen=True)
class BatchItem:
    """One video to make: its request, or why its row or file cannot become one."""

    name: str  # what the report calls it: the image path, or "<manifest>:<line>"
    images: tuple[str, ...]  # absolute paths, so any worker (or node) finds them
    request: GenerationRequest | None = None
    error: str = ""
    output: Path | None = None

    @property
    def engine(self) -> str:
        return self.request.engine.value if self.request else ""


@dataclass(frozen=True)
class ItemResult:
    status: str
    output: str = ""
    seconds: float | None = None
    error: str = ""
