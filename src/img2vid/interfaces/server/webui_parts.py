"""The WebUI's small pieces: history ordering and how a stored value shows in the form."""

from __future__ import annotations

from pathlib import Path


def mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed since the listing; it is skipped when read
        return 0.0


def field_text(value: object) -> str:
    """A stored request value as the form's text box shows it."""
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
