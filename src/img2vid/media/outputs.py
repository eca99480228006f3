"""Output naming, atomic placement (temp file -> final name, never overwriting) and sidecars."""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime
from itertools import count
from pathlib import Path
from typing import Any

from img2vid.core.errors import Img2VidError, InputError
from img2vid.core.request import OutputFormat

STAGING_PREFIX = ".img2vid-partial-"
# -o's extension decides the container; no extension is a folder of PNG frames.
SUFFIX_FORMATS = {".mp4": OutputFormat.MP4, ".webm": OutputFormat.WEBM,
                  ".mkv": OutputFormat.MKV, ".gif": OutputFormat.GIF}
ALLOWED_OUTPUTS = (".mp4, .webm, .mkv, .gif, no extension (a folder of PNG frames), or a "
                   "folder ending in / (a timestamped name in it)")


class DiskFullError(Img2VidError):
    """No space left while writing an output."""


def timestamp(when: datetime) -> str:
    return when.strftime("%Y%m%d_%H%M%S")


def sidecar_path(output: Path) -> Path:
    """`clip.mp4` -> `clip.mp4.json`, a PNG frame folder `clip` -> `clip.json`.

    The whole output name is kept, so `clip.mp4` and `clip.webm` never share a sidecar.
    """
    return output.with_name(output.name + ".json")


@dataclass(frozen=True)
class OutputTarget:
    """Where an output goes: an exact path (-o FILE) or a new timestamped name in `directory`."""

    directory: Path
    format: OutputFormat
    path: Path | None = None
    overwrite: bool = False


def resolve_output(output: Path | str | None, explicit: OutputFormat | str | None,
                   default: OutputFormat, directory: Path, *,
                   overwrite: bool = False) -> OutputTarget:
    """What `-o` means: a file whose extension names the container, a new PNG frame folder,
    or (a path ending in / or an existing folder) the folder for a timestamped name.

    An unknown extension, one that contradicts `explicit` (--format), or an existing output
    without `overwrite` is an InputError, raised before any work is done.
    """
    explicit = OutputFormat(explicit) if explicit else None
    if output is None or str(output) == "":
        return OutputTarget(Path(directory), explicit or default)
    text = os.fspath(output)
    path = Path(text)
    if text.endswith(("/", os.sep)) or (path.is_dir() and not _is_our_frame_folder(path)):
        return OutputTarget(path, explicit or default)
    suffix = path.suffix.lower()
    if suffix and suffix not in SUFFIX_FORMATS:
        raise InputError(f"-o {text}: {suffix} is not an output format img2vid writes; "
                         f"allowed: {ALLOWED_OUTPUTS}")
    named = SUFFIX_FORMATS.get(suffix, OutputFormat.PNG)
    if explicit is not None and explicit is not named:
        what = f"a {suffix} file" if suffix else "a folder of PNG frames"
        raise InputError(f"-o {text} names {what} but --format is {explicit.value}; drop "
                         f"--format or use {path.stem}{explicit.extension or ' (no extension)'}")
    if path.exists() and not overwrite:
        raise InputError(f"{text} already exists; add --overwrite to replace it, or choose "
                         "another -o path")
    return OutputTarget(path.parent, named, path, overwrite)


def _is_our_frame_folder(path: Path) -> bool:
    """A PNG-frames output we made earlier (its sidecar is beside it): -o names it again."""
    return sidecar_path(path).is_file()


def ensure_writable(directory: Path) -> None:
    """Create `directory` if needed and prove a file can be made there, or raise one line.

    Checked before any work, so a read-only drive, a folder without permission or a
    missing drive fails at once instead of after the render.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f"{STAGING_PREFIX}{uuid.uuid4().hex}.probe"
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        probe.unlink()
    except OSError as exc:
        raise InputError(not_writable(directory, exc)) from None


def not_writable(directory: Path, exc: OSError) -> str:
    return (f"cannot write to the output folder {directory}: "
            f"{exc.strerror or type(exc).__name__}; choose another -o or output.directory")


def staging_path(directory: Path, extension: str) -> Path:
    """A hidden temporary name in the output folder (same filesystem, so renames are atomic)."""
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{STAGING_PREFIX}{uuid.uuid4().hex}{extension}"


def remove_stale_partials(directory: Path, older_than: float) -> list[Path]:
    """Remove staged outputs last written before `older_than` (a process killed mid-encode
    leaves one); newer ones may belong to a run still writing them."""
    removed = []
    for staged in directory.glob(f"{STAGING_PREFIX}*"):
        try:
            if staged.lstat().st_mtime < older_than:
                discard(staged)
                removed.append(staged)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
    return removed


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


def commit_to(staged: Path, target: Path, *, overwrite: bool = False) -> Path:
    """Move `staged` to a path the user chose (-o): a file is replaced atomically only with
    `overwrite`; otherwise an output that appeared meanwhile is kept and this one dropped."""
    if overwrite and target.is_dir() and staged.is_dir():
        shutil.rmtree(target)
    elif overwrite and not staged.is_dir():
        os.replace(staged, target)
        return target
    try:
        _place_exclusive(staged, target)
    except FileExistsError:
        raise InputError(f"{target} already exists; add --overwrite to replace it, or "
                         "choose another -o path") from None
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
