"""Progress events and cancellation tokens passed from interfaces down to engines."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from img2vid.core.errors import CancelledError


@dataclass(frozen=True)
class Progress:
    """One progress report: `done` of `total` units of `stage` (frames, denoising steps...)."""

    stage: str
    done: int
    total: int | None = None
    message: str = ""
    # a small RGB preview of the video so far (HxWx3 uint8 array), on some denoising steps
    preview: Any = field(default=None, compare=False, repr=False)

    @property
    def fraction(self) -> float | None:
        return None if not self.total else min(1.0, self.done / self.total)


ProgressCallback = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """Default callback: ignore progress."""


class CancelToken:
    """A thread-safe flag checked by long-running work at its safe points."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise CancelledError("cancelled")
