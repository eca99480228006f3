"""Batch generation: items from a folder, glob or manifest, resumable runs, a report per batch."""

from __future__ import annotations

import csv
import glob
import io
import json
import logging
import os
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from img2vid.core.config import Settings
from img2vid.core.errors import InputError
from img2vid.core.lora import LoraSpec
from img2vid.core.progress import CancelToken, Progress, ProgressCallback, no_progress
from img2vid.core.request import PATH_FIELDS, GenerationRequest, OutputFormat, build_request
from img2vid.core.sidecar import Sidecar
from img2vid.engines.base import EngineFactory, create_engine
from img2vid.execution.items import DONE, FAILED, PENDING, SKIPPED, BatchItem, ItemResult
from img2vid.execution.lanes import GpuCounter, count_cuda_gpus
from img2vid.execution.local import run_local
from img2vid.execution.report import REPORT_STEM, Report
from img2vid.media import outputs
from img2vid.media.images import file_sha256, readable_formats, readable_suffixes

log = logging.getLogger(__name__)

MANIFEST_SUFFIXES = (".csv", ".jsonl")
# Temporary outputs older than this are left over from a crash, not being written.
STALE_PARTIAL_S = 3600.0
_REQUEST_FIELDS = frozenset(GenerationRequest.model_fields) - {"images"}


@dataclass
class BatchResult:
    report_json: Path
    report_csv: Path
    rows: list[dict[str, Any]]
    counts: dict[str, int]
    ran: int  # items generated or attempted in this run (not skipped)
    elapsed_s: float
    ignored: list[str] = field(default_factory=list)


# --- items ----------------------------------------------------------------------------------

def collect_items(source: str, options: dict[str, Any]) -> tuple[list[BatchItem], list[str]]:
    """The items `source` names (folder, glob, single photo or manifest) and ignored files.

    A folder or glob gives one item per photo (by extension; other files are returned as
    ignored, not failed). `options` are request fields from the command line; a manifest
    row's own values override them for that row. Raises InputError when there is nothing
    to run.
    """
    unknown = sorted(set(options) - _REQUEST_FIELDS)
    if unknown:
        raise ValueError(f"not request fields: {', '.join(unknown)}")
    build_request(images=("check.png",), **options)  # bad options fail once, before any item

    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        items = read_manifest(path, options)
        if not items:
            raise InputError(f"manifest {source} has no rows")
        return items, []
    if path.is_dir():
        files = [str(p) for p in path.iterdir() if not p.name.startswith(".")]
        where = f"in {source}"
    elif path.is_file() and path.suffix.lower() in readable_suffixes():
        files, where = [str(path)], ""
    elif path.is_file():
        raise InputError(f"{source} is not a folder, an image or a manifest; a manifest must "
                         "end in .csv or .jsonl")
    elif glob.has_magic(source):
        files = glob.glob(os.path.expanduser(source), recursive=True)
        where = f"matching {source}"
    else:
        raise InputError(f"{source} not found; give a folder, a glob in quotes such as "
                         "'photos/*.jpg', or a .csv/.jsonl manifest")
    # Sorted, so items (and the names their outputs get) come in the same order every run.
    files = sorted(f for f in files if os.path.isfile(f))
    # Only formats this installation decodes (HEIC needs pillow-heif): other files are
    # ignored, not failed one by one.
    readable = readable_suffixes()
    images = [f for f in files if Path(f).suffix.lower() in readable]
    ignored = [f for f in files if Path(f).suffix.lower() not in readable]
    if not images:
        raise InputError(f"no photos {where} (formats read: {readable_formats()})")
    return [_item(f, (f,), options) for f in images], ignored


def _item(name: str, images: Sequence[str], fields: dict[str, Any]) -> BatchItem:
    images = tuple(os.path.abspath(p) for p in images)
    fields = _absolute_paths(fields, Path.cwd())
    try:
        return BatchItem(name, images, build_request(images=images, **fields))
    except InputError as exc:
        return BatchItem(name, images, error=str(exc))


def merge_options(options: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """Command-line options with a row's overrides on top.

    num_frames and duration are two ways to give the length: a row that sets one replaces
    the other from the command line rather than contradicting it.
    """
    merged = dict(options)
    for a, b in (("num_frames", "duration"), ("duration", "num_frames")):
        if a in row:
            merged.pop(b, None)
    merged.update(row)
    return merged


def read_manifest(path: Path, options: dict[str, Any]) -> list[BatchItem]:
    """Rows of a CSV (header row) or JSONL manifest. Image paths are relative to its folder.

    A row gives `image` (one path) or `images` (a JSON list, or `;`-separated in CSV) and
    any request field (prompt, seed, motion, duration...). A bad row becomes a failed item;
    a file that cannot be read as a manifest at all is an InputError.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"manifest {path} is not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"cannot read manifest {path}: {exc.strerror or exc}") from None
    rows = _csv_rows(path, text) if path.suffix.lower() == ".csv" else _jsonl_rows(path, text)
    items = []
    for line, row in rows:
        name = f"{path.name}:{line}"
        if isinstance(row, str):  # the reason this row could not be read
            items.append(BatchItem(name, (), error=row))
            continue
        images = row.pop("images", None)
        single = row.pop("image", None)
        if single is not None and images is not None:
            items.append(BatchItem(name, (), error="give image or images, not both"))
            continue
        if isinstance(images, str):
            images = [p for p in (s.strip() for s in images.split(";")) if p]
        paths = [single] if single is not None else images
        if not paths or not all(isinstance(p, str) and p for p in paths):
            items.append(BatchItem(name, (), error="no image given: set the row's image "
                                   "(or images) to a path"))
            continue
        resolved = [str(path.parent / Path(p).expanduser()) for p in paths]
        row = _absolute_paths(row, path.parent)
        if row.get("lora"):
            row["lora"] = _manifest_loras(path.parent, row["lora"])
        items.append(_item(name, resolved, merge_options(options, row)))
    return items


def _manifest_loras(folder: Path, value: Any) -> Any:
    """LoRA files named relative to the manifest (hub ids and absolute paths stay)."""
    items = value.split(";") if isinstance(value, str) else value
    if not isinstance(items, list):
        return value  # the request reports the wrong type
    resolved = []
    for item in (str(i).strip() for i in items if str(i).strip()):
        spec = LoraSpec.parse(item)
        local = folder / Path(spec.source).expanduser()
        resolved.append(f"{os.path.abspath(local)}:{spec.scale:g}" if local.exists() else item)
    return resolved


def _absolute_paths(fields: dict[str, Any], base: Path) -> dict[str, Any]:
    """Files a row names (audio, style...) found from `base`, as absolute paths any worker
    can open; a value that is not a file there (a hub id) is left as it is."""
    fields = dict(fields)
    for name in PATH_FIELDS:
        value = fields.get(name)
        if isinstance(value, str) and value:
            candidate = base / Path(value).expanduser()
            if candidate.exists():
                fields[name] = os.path.abspath(candidate)
    return fields


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any] | str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames or []
        columns = [_key(c or "") for c in header]
        unknown = [h for h, c in zip(header, columns) if c not in _REQUEST_FIELDS | {"image",
                                                                                     "images"}]
        if unknown:
            raise InputError(f"manifest {path}: unknown column(s) {', '.join(map(repr, unknown))}"
                             "; use image or images plus request fields such as prompt, seed, "
                             "motion, duration (see img2vid generate --help)")
        if "image" not in columns and "images" not in columns:
            raise InputError(f"manifest {path} needs an 'image' (or 'images') column")
        rows: list[tuple[int, dict[str, Any] | str]] = []
        for raw in reader:
            if None in raw:
                rows.append((reader.line_num, f"more values than the {len(header)} columns"))
                continue
            row = {_key(k): v.strip() for k, v in raw.items() if v is not None and v.strip()}
            if row:  # blank lines and rows of empty cells are not items
                rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise InputError(f"manifest {path} is not valid CSV (line {reader.line_num}: {exc})"
                         ) from None
    return rows


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any] | str]]:
    rows: list[tuple[int, dict[str, Any] | str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append((number, f"not valid JSON ({exc.msg} at column {exc.colno})"))
            continue
        if not isinstance(value, dict):
            rows.append((number, "each line must be a JSON object such as "
                                 + '{"image": "a.jpg", "prompt": "..."}'))
            continue
        rows.append((number, {_key(k): v for k, v in value.items() if v is not None}))
    return rows


# --- output names and resume ------------------------------------------------------------------

def assign_outputs(items: Sequence[BatchItem], directory: Path,
                   default_format: OutputFormat) -> list[BatchItem]:
    """Give each item `<stem><ext>` in `directory`, the same names on every run.

    Items are in a fixed order (sorted files, manifest rows), so the first item with a stem
    keeps it and later ones get `_2`, `_3`... skipping stems any other item owns outright.
    Stems are compared case-insensitively (macOS and Windows file systems) and compared, not
    full names, because a sidecar `<stem>.json` must be unique whatever the format.
    """
    stems = [Path(item.images[0]).stem if item.images else "" for item in items]
    taken = {REPORT_STEM}
    inputs = {os.path.normcase(p).casefold() for item in items for p in item.images}
    natural_owner: dict[str, int] = {}
    for index, stem in enumerate(stems):
        if stem:
            natural_owner.setdefault(stem.casefold(), index)
    placed = []
    for index, (item, stem) in enumerate(zip(items, stems)):
        if not stem:
            placed.append(item)
            continue
        fmt = (item.request.format if item.request else None) or default_format
        candidate, n = stem, 1
        while True:
            key = candidate.casefold()
            owner = natural_owner.get(key)
            path = directory / f"{candidate}{fmt.extension}"
            if (key not in taken and owner in (None, index)
                    and os.path.normcase(str(path)).casefold() not in inputs):
                break
            n += 1
            candidate = f"{stem}_{n}"
        taken.add(key)
        placed.append(replace(item, output=path) if item.request else item)
    return placed


def is_done(item: BatchItem) -> bool:
    """Whether `item` already has its video and a sidecar for the same request and photos."""
    if item.request is None or item.output is None:
        return False
    sidecar = outputs.sidecar_path(item.output)
    if not (item.output.exists() and sidecar.is_file()):
        return False
    try:
        info = Sidecar.read(sidecar)
    except (OSError, ValueError):
        return False
    if info.request is None or info.inputs is None:
        return False  # another command's output under this name
    old, new = info.request.summary(), item.request.summary()
    hashes = [entry.sha256 for entry in info.inputs]
    if item.request.seed is None:
        # An unseeded diffusion request is done whatever seed the engine picked.
        old.pop("seed", None)
        new.pop("seed", None)
    if old != new:
        return False
    try:
        if item.request.audio and (info.audio or {}).get("sha256") != file_sha256(
                Path(item.request.audio)):
            return False  # the same path now holds another track
        return hashes == [file_sha256(Path(p)) for p in item.images]
    except OSError:
        return False


def remove_stale_partials(directory: Path, older_than_s: float = STALE_PARTIAL_S) -> int:
    """Delete temporary outputs a killed run left behind (ones still being written are young)."""
    removed = 0
    now = time.time()
    for path in directory.glob(f"{outputs.STAGING_PREFIX}*"):
        try:
            if now - path.stat().st_mtime > older_than_s:
                outputs.discard(path)
                removed += 1
        except OSError:
            continue
    if removed:
        log.info("removed %d partial file(s) left by an interrupted run in %s", removed,
                 directory)
    return removed


def run_batch(source: str, options: dict[str, Any], settings: Settings, *,
              output_dir: Path | None = None, workers: int | None = None,
              ray_address: str | None = None, progress: ProgressCallback | None = None,
              cancel: CancelToken | None = None, factory: EngineFactory = create_engine,
              count_gpus: GpuCounter = count_cuda_gpus,
              ray_timeout: float = 30.0) -> BatchResult:
    """Make every item's video in `output_dir`, skipping ones already done; write the report.

    `ray_address` None runs locally; "" or an address runs on Ray (see img2vid.execution.cluster).
    A failed item is recorded and the batch goes on. On KeyboardInterrupt the report is
    written with unfinished items as pending, then the interrupt propagates.
    """
    progress = progress or no_progress
    cancel = cancel or CancelToken()
    t0 = time.perf_counter()
    items, ignored = collect_items(source, options)
    for name in ignored:
        log.info("ignoring %s (not a photo format)", name)
    directory = Path(os.path.abspath(output_dir or settings.output.directory))
    items = assign_outputs(items, directory, settings.output.format)
    outputs.ensure_writable(directory)
    remove_stale_partials(directory)

    report = Report(directory, source, "local" if ray_address is None else "ray", items)
    pending: list[tuple[int, BatchItem]] = []
    for index, item in enumerate(items):
        if item.request is None:
            report.record(index, ItemResult(FAILED, error=item.error))
        elif is_done(item):
            report.record(index, ItemResult(SKIPPED, output=str(item.output), seconds=0.0))
        else:
            pending.append((index, item))
    report.write(force=True)
    log.info("batch %s: %d items, %d to run, output in %s", source, len(items), len(pending),
             directory)

    finished = 0

    def tell() -> None:
        counts = report.counts()
        progress(Progress("batch", finished, len(pending),
                          message=f"{counts[DONE]} done, {counts[FAILED]} failed, "
                                  f"{counts[SKIPPED]} skipped"))

    tell()
    if ray_address is None:
        results = run_local(pending, settings, workers=workers or os.cpu_count() or 1,
                            cancel=cancel, factory=factory, count_gpus=count_gpus)
    else:
        from img2vid.execution.cluster import run_on_ray

        results = run_on_ray(pending, settings, address=ray_address, workers=workers,
                             cancel=cancel, factory=factory, connect_timeout=ray_timeout)
    try:
        with closing(results):
            for index, result in results:
                report.record(index, result)
                finished += result.status != PENDING
                report.write()
                tell()
    finally:
        # After an interruption, an item may have finished while we were leaving: the
        # files on disk are the truth, so the report says what the next run will skip.
        for index, item in pending:
            if report.results[index].status == PENDING and is_done(item):
                report.record(index, ItemResult(DONE, output=str(item.output)))
        report.write(force=True)
    return BatchResult(report.json_path, report.csv_path, report.rows(), report.counts(),
                       len(pending), time.perf_counter() - t0, ignored)
