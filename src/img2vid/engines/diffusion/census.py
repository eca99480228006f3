"""How big each component of a downloaded model is, read from safetensors headers (no weights loaded)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Census:
    """A component's parameter count and its largest tensor, from the safetensors headers."""

    elements: int
    largest: int
    stored: int = 0  # bytes as stored in the files
    largest_file: int = 0  # bytes of its largest file: what loading holds at once besides


_STORED_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8,
                 "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def weight_census(folder: Path, variant: str | None,
                  parts: Iterable[tuple[str, Path]] = ()) -> dict[str, Census]:
    """Per component folder of `folder`, and per (name, folder) of components that come from
    repos of their own (parts.py)."""
    counts: dict[str, Census] = {}
    folders = [(p.name, p) for p in sorted(folder.iterdir()) if p.is_dir()] + list(parts)
    for name, sub in folders:
        census = component_census(sub, variant)
        if census is not None:
            counts[name] = census
    return counts


def component_census(sub: Path, variant: str | None) -> Census | None:
    from safetensors import safe_open

    files = sorted(sub.glob("*.safetensors"))
    if variant:
        chosen = [f for f in files if f".{variant}" in f.name]
        files = chosen or [f for f in files if ".fp16" not in f.name]
    else:
        files = [f for f in files if ".fp16" not in f.name] or files
    total = largest = stored = largest_file = 0
    for f in files:
        with safe_open(str(f), framework="pt") as handle:
            in_file = 0
            for key in handle.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                piece = handle.get_slice(key)
                n = math.prod(int(d) for d in piece.get_shape())
                total += n
                largest = max(largest, n)
                in_file += n * _STORED_BYTES.get(piece.get_dtype(), 4)
        stored += in_file
        largest_file = max(largest_file, in_file)
    if not files:
        # pickled .bin checkpoints have no readable header: count 2 bytes per element,
        # which overestimates fp32 files (the planner would rather be conservative)
        bins = [f.stat().st_size for f in sub.glob("*.bin")]
        stored, largest_file = sum(bins), max(bins, default=0)
        total = largest = stored // 2
    return Census(total, largest, stored, largest_file) if total else None
