"""Output naming, atomic placement (temp file -> final name, never overwriting) and sidecars."""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from datetime import datetime
from itertools import count
from pathlib import Path
from typing import Any

from img2vid.core.errors import Img2VidError, InputError

STAGING_PREFIX = ".img2vid-partial-"


class DiskFullError(Img2VidError):
    """No space left while writing an output."""


def timestamp(when: datetime) -> str:
    return when.strftime("%Y%m%d_%H%M%S")


def sidecar_path(output: Path) -> Path:
    """`video.mp4` -> `video.json`; a PNG frame folder `video_x` -> `video_x.json`."""
    return output.with_name(output.stem + ".json") if output.suffix else Path(f"{output}.json")


def staging_path(directory: Path, extension: str) -> Path:
    """A hidden temporary name in the output folder (same filesystem, so renames are atomic)."""
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{STAGING_PREFIX}{uuid.uuid4().hex}{extension}"


def discard(staged: Path) -> None:
    """Remove a staged (incomplete) output, file or folder, if it is there."""
    if staged.is_dir():
        shutil.rmtree(staged, ignore_errors=True)
    else:
        staged.unlink(missing_ok=True)


def commit_named(staged: Path, directory: Path, prefix: str, extension: str,
                 when: datetime) -> Path:
    """Move `staged` to `<prefix><YYYYmmdd_HHMMSS>[_n]<ext>` without ever replacing a file."""
    base = f"{prefix}{timestamp(when)}"
    for n in count():
        target = directory / f"{base}{f'_{n}' if n else ''}{extension}"
        if sidecar_path(target).exists():
            continue
        try:
            _place_exclusive(staged, target)
        except FileExistsError:
            continue
        return target
    raise AssertionError("unreachable")


def commit_to(staged: Path, target: Path) -> Path:
    """Move `staged` to a path the user chose (-o), replacing a file there atomically."""
    if staged.is_dir():
        if target.exists():
            raise InputError(f"{target} already exists; choose another -o path for a frame folder")
        os.rename(staged, target)
    else:
        os.replace(staged, target)
    return target


def _place_exclusive(staged: Path, target: Path) -> None:
    if staged.is_dir():
        if target.exists():
            raise FileExistsError(target)
        os.rename(staged, target)
        return
    # link() fails if the target exists, so two writers can never take the same name.
    try:
        os.link(staged, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # no hard links here (FAT/exFAT, some network shares): claim the name with an
        # exclusive create, then move the finished file over the empty placeholder
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        os.replace(staged, target)
        return
    staged.unlink()


def write_text_atomic(path: Path, text: str) -> Path:
    """Replace `path` with `text` all at once: readers see the old file or the new one."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Replace `path` with `data` all at once: readers see the old file or the new one."""
    tmp = path.with_name(f"{STAGING_PREFIX}{uuid.uuid4().hex}{path.suffix}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: Path, data: dict[str, Any]) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def raise_if_disk_full(exc: OSError, directory: Path) -> None:
    """Turn ENOSPC/EDQUOT into one clear line; other OS errors pass through."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise DiskFullError(f"no space left in {directory}; free some space or set "
                            "output.directory in config.yaml to another disk") from None
