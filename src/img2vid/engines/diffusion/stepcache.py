"""Step caching on transformer denoisers: First-Block cache, and MagCache with self-calibration.

MagCache skips a block stack when the residual's magnitude has barely changed, which needs
per-model magnitude ratios. None ship for the video models, so the first `--step-cache
magcache` run on a model records them (no step is skipped on that run) and later runs use them.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from img2vid.core.request import StepCache

log = logging.getLogger(__name__)

FIRST_BLOCK_CACHE_THRESHOLD = 0.05  # diffusers' default: skip when the first block moves < 5%
BLOCK_LISTS = ("blocks", "transformer_blocks")  # where Wan, LTX and CogVideoX keep theirs


def ratios_path(cache_root: Path, model_id: str, revision: str | None) -> Path:
    key = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{model_id}@{revision or 'local'}").strip("_")
    return cache_root / "magcache" / f"{key}.json"


@contextmanager
def step_cache(pipe: Any, denoiser_name: str, mode: StepCache, steps: int,
               ratios_file: Path) -> Iterator[dict[str, Any]]:
    """Enable the cache for one job; yields a dict the engine records in the sidecar."""
    report: dict[str, Any] = {"mode": mode.value}
    denoiser = getattr(pipe, denoiser_name)
    if mode is StepCache.NONE:
        yield report
        return
    if mode is StepCache.FIRST_BLOCK:
        from diffusers.hooks import FirstBlockCacheConfig

        denoiser.enable_cache(FirstBlockCacheConfig(threshold=FIRST_BLOCK_CACHE_THRESHOLD))
        report["threshold"] = FIRST_BLOCK_CACHE_THRESHOLD
        try:
            yield report
        finally:
            denoiser.disable_cache()
        return
    ratios = _load_ratios(ratios_file)
    if ratios is None:
        report["magcache"] = "calibrating: this run records the model's magnitude ratios " \
                             "and skips no step; later runs use them"
        log.warning("magcache: no ratios for this model yet; calibrating on this run "
                    "(no speed-up until the next run)")
        recorder = _ResidualRecorder(denoiser)
        try:
            yield report
        finally:
            recorder.remove()
        ratios = recorder.ratios(steps)
        if ratios is None:
            report["magcache"] = "calibration failed: transformer calls did not match the steps"
            return
        ratios_file.parent.mkdir(parents=True, exist_ok=True)
        ratios_file.write_text(json.dumps({"num_inference_steps": steps, "mag_ratios": ratios}))
        report["ratios_file"] = str(ratios_file)
        return
    from diffusers.hooks import MagCacheConfig

    # MagCacheConfig interpolates the ratios when this job has another step count
    denoiser.enable_cache(MagCacheConfig(mag_ratios=ratios, num_inference_steps=steps))
    report.update(magcache="using calibrated ratios", ratios_file=str(ratios_file))
    try:
        yield report
    finally:
        denoiser.disable_cache()


def _load_ratios(path: Path) -> list[float] | None:
    try:
        data = json.loads(path.read_text())
        ratios = [float(r) for r in data["mag_ratios"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return ratios or None


class _ResidualRecorder:
    """Per transformer call, the per-token norm of (last block output - first block input):
    the quantity MagCache's ratios compare between consecutive steps."""

    def __init__(self, denoiser: Any) -> None:
        blocks = next((getattr(denoiser, n) for n in BLOCK_LISTS if hasattr(denoiser, n)), None)
        if blocks is None or len(blocks) == 0:
            raise ValueError(f"{type(denoiser).__name__} has no transformer block list")
        self.norms: list[Any] = []
        self._input: Any = None
        self._handles = [
            blocks[0].register_forward_pre_hook(self._head, with_kwargs=True),
            blocks[-1].register_forward_hook(self._tail),
        ]

    def _head(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._input = kwargs.get("hidden_states", args[0] if args else None)

    def _tail(self, module: Any, args: tuple[Any, ...], output: Any) -> None:
        out = output[0] if isinstance(output, tuple) else output
        if self._input is None or out.shape != self._input.shape:
            return
        self.norms.append((out - self._input).float().norm(dim=-1).cpu())

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def ratios(self, steps: int) -> list[float] | None:
        """mean(|r_t| / |r_t-1|) per step; with guidance run as two calls per step (Wan),
        the conditional branch (called first) is used."""
        if not self.norms or len(self.norms) % steps:
            return None
        per_step = len(self.norms) // steps
        branch = self.norms[::per_step]
        ratios = [1.0]
        for prev, cur in itertools.pairwise(branch):
            ratios.append(float((cur / (prev + 1e-8)).mean()))
        return ratios
