"""Memory planner: pick the lightest offload/decode mode that fits, and step down after an OOM.

The planning functions are pure (memory figures are passed in) so they are unit-tested with
made-up numbers; `probe_memory` reads the real figures and imports torch lazily.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from typing import Any

log = logging.getLogger(__name__)

GB = 1024**3

# Heaviest to lightest. Each level keeps less of the model on the accelerator at once.
LEVELS = ("high", "balanced", "low", "minimum")
OFFLOAD = {"high": "none", "balanced": "model", "low": "group", "minimum": "leaf"}
OFFLOAD_WORDS = {
    "none": "everything resident on the GPU",
    "model": "model CPU offload (one whole model on the GPU at a time)",
    "group": "group offload (blocks streamed to the GPU with CUDA streams)",
    "leaf": "leaf-level offload (layers streamed one at a time)",
}
# Share of the largest model resident on the accelerator under block / leaf offload:
# two block groups (current + prefetched) of a ~30-block model, or a few layers.
GROUP_RESIDENT = 0.12
LEAF_RESIDENT = 0.03
SAFETY = 0.9  # of free memory: allocator fragmentation and the CUDA context need the rest
RESERVE = 512 * 1024**2  # bytes kept free for kernels' workspaces


@dataclass(frozen=True)
class MemoryFigures:
    """What the machine has free now. `device_free` is None on a CPU-only run."""

    device: str  # "cuda", "mps" or "cpu"
    device_free: int | None
    device_total: int | None
    ram_free: int
    # this process's own resident memory now (the runtime and its libraries): part of the
    # peak a job reaches in RAM, and given back to the budget since it is already ours
    baseline: int = 0


@dataclass(frozen=True)
class Workload:
    """Estimated memory one job needs, in bytes, at the dtype it will run in."""

    weights: dict[str, int]  # per pipeline component
    activations: int  # peak working memory of one denoising step
    decode_per_frame: int  # VAE decoder working memory for one frame
    num_frames: int
    decode_tiled: int  # VAE decoder working memory for one frame with tiling
    tiling: bool  # the VAE supports tiled decoding
    chunked_decode: bool = True  # the pipeline decodes a few frames at a time when asked
    # per component, bytes on the GPU at once under block-level group offload, and its
    # largest tensor (leaf level); None: a share of the largest component
    pieces: dict[str, int] | None = None
    leaves: dict[str, int] | None = None
    # RAM that loading needs on top of the weights: the largest component's file as stored
    transient: int = 0

    @property
    def total_weights(self) -> int:
        return sum(self.weights.values())

    @property
    def largest(self) -> int:
        return max(self.weights.values(), default=0)


@dataclass(frozen=True)
class MemoryPlan:
    """The chosen mode and why; recorded in the log and the sidecar."""

    level: str
    offload: str
    decode_chunk: int
    vae_tiling: bool
    estimated_peak: int
    budget: int
    forced: bool
    fits: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["estimated_peak_gb"] = round(self.estimated_peak / GB, 2)
        data["budget_gb"] = round(self.budget / GB, 2)
        return data


def budget(figures: MemoryFigures) -> int:
    if figures.device == "cuda":
        free = figures.device_free or 0
    else:
        free = figures.ram_free + figures.baseline
    return max(0, int(free * SAFETY) - RESERVE)


def resident_weights(work: Workload, level: str, figures: MemoryFigures) -> int:
    """Weight bytes on the compute device during denoising at `level`."""
    if figures.device != "cuda":
        return work.total_weights  # RAM and unified memory hold everything whatever we do
    offload = OFFLOAD[level]
    if offload == "none":
        return work.total_weights
    if offload == "model":
        return work.largest
    if offload == "group":
        return max(work.pieces.values(), default=0) if work.pieces else int(
            work.largest * GROUP_RESIDENT)
    # the current leaf and the one prefetched
    return 2 * max(work.leaves.values(), default=0) if work.leaves else int(
        work.largest * LEAF_RESIDENT)


def decode_options(work: Workload, level: str) -> tuple[int, bool]:
    """Frames decoded per VAE call and tiling for a level: lighter levels decode less at once."""
    if not work.chunked_decode:
        return work.num_frames, work.tiling and level in ("low", "minimum")
    # an image VAE decodes frames independently: bigger chunks barely speed it up, so even the
    # heaviest level keeps them small
    chunk = {"high": 4, "balanced": 2, "low": 1, "minimum": 1}[level]
    return min(chunk, work.num_frames), work.tiling and level == "minimum"


def peak(work: Workload, level: str, figures: MemoryFigures, chunk: int, tiling: bool) -> int:
    weights = resident_weights(work, level, figures)
    denoise = weights + work.activations
    per_frame = work.decode_tiled if tiling else work.decode_per_frame
    if figures.device == "cuda" and OFFLOAD[level] != "none":
        vae = work.weights.get("vae", 0)
        decode_weights = vae if OFFLOAD[level] == "model" else int(vae * GROUP_RESIDENT)
    else:
        decode_weights = weights
    running = max(denoise, decode_weights + chunk * per_frame)
    if figures.device == "cuda":
        return running
    # in RAM: the runtime's own memory, and loading's peak (every weight plus one file)
    return figures.baseline + max(running, work.total_weights + work.transient)


def plan_memory(work: Workload, figures: MemoryFigures, requested: str = "auto") -> MemoryPlan:
    """Choose a level: the forced one, or the heaviest (fastest) whose estimate fits."""
    room = budget(figures)
    if requested != "auto":
        return _plan_at(work, figures, requested, room, forced=True)
    for level in LEVELS:
        plan = _plan_at(work, figures, level, room, forced=False)
        if plan.fits:
            return plan
    return _plan_at(work, figures, LEVELS[-1], room, forced=False)


def _plan_at(work: Workload, figures: MemoryFigures, level: str, room: int,
             forced: bool) -> MemoryPlan:
    if level not in LEVELS:
        raise ValueError(f"unknown memory level {level!r}")
    chunk, tiling = decode_options(work, level)
    estimate = peak(work, level, figures, chunk, tiling)
    if estimate > room and work.tiling and not tiling:
        # tiling caps the decoder's working set: use it before declaring the level too small
        tiling = True
        estimate = peak(work, level, figures, chunk, tiling)
    fits = estimate <= room
    offload = OFFLOAD[level] if figures.device == "cuda" else "none"
    where = "GPU" if figures.device == "cuda" else ("unified memory" if figures.device == "mps"
                                                    else "RAM")
    how = OFFLOAD_WORDS[offload] if figures.device == "cuda" else (
        "weights stay in " + where + " (offloading needs a CUDA GPU)")
    decode = f"decode {chunk} frame(s) at a time" + (" with VAE tiling" if tiling else "")
    numbers = f"estimated peak {estimate / GB:.2f} GB vs {room / GB:.2f} GB usable {where}"
    if forced:
        why = f"forced by --memory {level}"
    elif fits:
        why = "heaviest level that fits" if level == LEVELS[0] else (
            "heavier levels do not fit")
    else:
        why = "nothing fits the estimate; trying the lightest level"
    reason = f"{level}: {how}; {decode}; {numbers} ({why})"
    return MemoryPlan(level=level, offload=offload, decode_chunk=chunk, vae_tiling=tiling,
                      estimated_peak=estimate, budget=room, forced=forced, fits=fits,
                      reason=reason)


def step_down(plan: MemoryPlan, work: Workload, figures: MemoryFigures) -> MemoryPlan | None:
    """The next lighter level after an out-of-memory error, or None at the bottom."""
    index = LEVELS.index(plan.level)
    if index + 1 >= len(LEVELS):
        return None
    lower = _plan_at(work, figures, LEVELS[index + 1], budget(figures), forced=plan.forced)
    return replace(lower, reason=f"{lower.reason}; stepped down from {plan.level} after running "
                   "out of memory")


def oom_advice(plan: MemoryPlan) -> str:
    """What to change when even the stepped-down plan ran out of memory."""
    steps = ["a lower --resolution", "fewer --num-frames"]
    if plan.level in ("high", "balanced"):
        steps.append("--memory low")
    elif plan.level == "low":
        steps.append("--memory minimum")
    return ", ".join(steps)


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (ru_maxrss: kB on Linux, bytes on macOS)."""
    import resource
    import sys

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (
        1 if sys.platform == "darwin" else 1024)


def probe_memory(device: str, held: int = 0) -> MemoryFigures:
    """Free memory on `device` ("cuda", "cuda:1", "mps", "cpu") and in RAM, read now.

    `held`: bytes of a model this process keeps loaded in RAM (CPU) or unified memory (MPS)
    and would release for the job, so they count as free; on CUDA the allocator's reserved
    memory says that instead."""
    import psutil

    ram_free = int(psutil.virtual_memory().available)
    kind = device.split(":")[0]
    baseline = 0
    if kind != "cuda":
        # what releasing the cached model gives back is not part of the next job's baseline
        baseline = max(0, int(psutil.Process().memory_info().rss) - held)
        ram_free += held
    if kind == "cuda":
        import torch

        index = torch.device(device).index or 0
        free, total = torch.cuda.mem_get_info(index)
        # memory this process already holds (a cached pipeline) is ours to release
        free += torch.cuda.memory_reserved(index)
        return MemoryFigures("cuda", int(free), int(total), ram_free)
    if kind == "mps":
        import torch

        total = int(torch.mps.recommended_max_memory())
        free = total - int(torch.mps.driver_allocated_memory()) + held
        return MemoryFigures("mps", max(0, free), total, min(ram_free, max(0, free)), baseline)
    return MemoryFigures("cpu", None, None, ram_free, baseline)
