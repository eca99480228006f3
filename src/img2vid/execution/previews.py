"""The latest live preview of each job, as a PNG file beside the queue (the API and the
WebUI read it while the job runs)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from img2vid.core.progress import Progress
from img2vid.media.images import png_bytes
from img2vid.media.outputs import write_bytes_atomic

log = logging.getLogger(__name__)


class PreviewStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, job_id: str) -> Path:
        return self.directory / f"{job_id}.png"

    def save(self, job_id: str, pixels: Any) -> None:
        """Replace the job's preview (atomically: a reader never sees half a PNG)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(self.path(job_id), png_bytes(pixels))
        except OSError as exc:  # a preview is never worth failing the job for
            log.warning("job %s: cannot save its preview: %s", job_id, exc)

    def recording(self, job_id: str, progress: Callable[..., None], *args: Any,
                  ) -> Callable[[Progress], None]:
        """A progress callback calling `progress(*args, event)`, saving the previews that
        events carry on the way."""
        def report(event: Progress) -> None:
            if event.preview is not None:
                self.save(job_id, event.preview)
            progress(*args, event)

        return report

    def newer(self, job_id: str, seen: int) -> tuple[int, str | None]:
        """(version, path) when the job's preview changed since version `seen`, else
        (seen, None)."""
        try:
            version = self.path(job_id).stat().st_mtime_ns
        except OSError:
            return seen, None
        return (version, str(self.path(job_id))) if version != seen else (seen, None)
