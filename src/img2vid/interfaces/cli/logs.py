"""Logging: a timestamped file per run with everything, the terminal only warnings."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from img2vid.core.config import LogSettings
from img2vid.media.outputs import timestamp


def _ours(record: logging.LogRecord) -> bool:
    return record.name == "img2vid" or record.name.startswith("img2vid.")


def setup_logging(settings: LogSettings, name: str = "app") -> Path | None:
    """Log to `<logs>/<name>_<YYYYmmdd_HHMMSS>.log`; returns its path (None if unwritable)."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)
    # failures logged with their traceback go to the file only; the CLI prints their one line
    console.addFilter(lambda record: record.exc_info is None)
    # libraries' chatter (tokenizer fallbacks, deprecation banners, Python warnings) goes to the
    # file: the terminal gets img2vid's own notes, and one line naming the cause on failure
    console.addFilter(_ours)
    logging.captureWarnings(True)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root.addHandler(console)
    try:
        settings.directory.mkdir(parents=True, exist_ok=True)
        stamp = timestamp(datetime.now())
        path = settings.directory / f"{name}_{stamp}.log"
        n = 0
        while path.exists():
            n += 1
            path = settings.directory / f"{name}_{stamp}_{n}.log"
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        logging.getLogger(__name__).warning("cannot write logs to %s (%s)", settings.directory,
                                            exc.strerror or exc)
        return None
    handler.setLevel(getattr(logging, settings.level))
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
    root.addHandler(handler)
    for noisy in ("PIL", "urllib3", "httpx", "httpcore", "matplotlib", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path
