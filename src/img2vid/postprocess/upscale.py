"""Upscaling a clip 2x or 4x: a super-resolution model run in overlapping tiles (bounded
memory at any size, fp16 on CUDA), or Lanczos resampling without weights."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

from img2vid.core.clip import Clip
from img2vid.core.errors import InputError, ModelNotAvailableError
from img2vid.core.progress import CancelToken, Progress, ProgressCallback, no_progress
from img2vid.core.request import Upscaler as UpscalerKind

if TYPE_CHECKING:
    from img2vid.core.config import Settings

log = logging.getLogger(__name__)

MAX_OUTPUT_SIDE = 8192  # what H.264/HEVC levels and players handle
TILE = 256  # input pixels per tile side
OVERLAP = 16  # context each tile borrows from its neighbours (cropped off again)
PAD = 4  # RRDBNet x2/x1 fold 2x2/4x4 pixels into channels: sides must divide by 4
NO_MODEL = ("upscaling with a model needs a super-resolution checkpoint: give "
            "--upscale-model FILE.pth (or a hub id owner/repo/file.pth), set "
            "models.upscale_model in the config, or use --upscaler lanczos (no weights)")


class FrameUpscaler(Protocol):
    name: str
    scale: int

    def __call__(self, frame: np.ndarray) -> np.ndarray: ...

    def to(self, device: str) -> None: ...

    def describe(self) -> dict[str, Any]: ...


class LanczosUpscaler:
    """Weightless: OpenCV's Lanczos-4 resampling."""

    name = "lanczos"

    def __init__(self, scale: int) -> None:
        self.scale = scale

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        return cv2.resize(frame, (w * self.scale, h * self.scale),
                          interpolation=cv2.INTER_LANCZOS4)

    def to(self, device: str) -> None:
        pass  # runs on the CPU

    def describe(self) -> dict[str, Any]:
        return {"upscaler": self.name, "scale": self.scale}


class ModelUpscaler:
    """A super-resolution network over overlapping tiles; the same input always gives the
    same output (fixed tiling, no randomness), so a still shot stays still."""

    name = "model"

    def __init__(self, weights: Path, scale: int, device: str | None = None,
                 tile: int = TILE, overlap: int = OVERLAP) -> None:
        import torch

        from img2vid.postprocess.sr_models import UpscaleModelError, load_model

        loaded = load_model(weights)
        if loaded.scale != scale:
            raise UpscaleModelError(f"{weights.name} is a {loaded.scale}x model and {scale}x "
                                    f"was asked: give a {scale}x checkpoint, or --upscale "
                                    f"{loaded.scale}")
        self.module = loaded.module
        # fp16 where it is fast (CUDA); CPUs run fp16 convolutions slowly
        self.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.architecture, self.scale, self.weights = loaded.architecture, scale, weights
        self.tile = max(PAD, tile // PAD * PAD)
        self.overlap = max(0, overlap // PAD * PAD)

    def to(self, device: str) -> None:
        """Move to the GPU the engine used (a server runs one worker per GPU)."""
        import torch

        self.device = torch.device(device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.module = self.module.to(self.device, self.dtype)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        import torch
        from torch.nn import functional as F

        h, w = frame.shape[:2]
        s = self.scale
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device)
            x = x.permute(2, 0, 1)[None].to(self.dtype) / 255.0
            ph, pw = -(-h // PAD) * PAD, -(-w // PAD) * PAD
            mode = "reflect" if min(h, w) > PAD else "replicate"
            x = F.pad(x, (0, pw - w, 0, ph - h), mode=mode)
            out = torch.empty((1, 3, ph * s, pw * s), dtype=self.dtype, device=self.device)
            for y0 in range(0, ph, self.tile):
                for x0 in range(0, pw, self.tile):
                    y1, x1 = min(y0 + self.tile, ph), min(x0 + self.tile, pw)
                    ya, xa = max(0, y0 - self.overlap), max(0, x0 - self.overlap)
                    yb, xb = min(ph, y1 + self.overlap), min(pw, x1 + self.overlap)
                    result = self.module(x[:, :, ya:yb, xa:xb])
                    out[:, :, y0 * s:y1 * s, x0 * s:x1 * s] = result[
                        :, :, (y0 - ya) * s:(y1 - ya) * s, (x0 - xa) * s:(x1 - xa) * s]
            out = out[0, :, :h * s, :w * s].float().clamp_(0, 1).mul_(255).round_()
            return out.to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    def describe(self) -> dict[str, Any]:
        return {"upscaler": self.name, "scale": self.scale, "architecture": self.architecture,
                "weights": self.weights.name, "device": str(self.device),
                "dtype": str(self.dtype).removeprefix("torch."), "tile": self.tile,
                "overlap": self.overlap}


def find_model(ref: str | None, settings: Settings | None = None) -> Path:
    """The checkpoint a reference names: a local file, else a hub id `owner/repo/file`
    fetched once into the Hugging Face cache (models.cache_dir), like the diffusion models."""
    ref = ref or (settings.models.upscale_model if settings is not None else None)
    if not ref:
        raise ModelNotAvailableError(NO_MODEL)
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    parts = ref.split("/")
    if path.exists() or len(parts) < 3 or path.is_absolute() or ref.startswith("."):
        raise ModelNotAvailableError(f"upscale model not found: {ref} (give a .pth or "
                                     ".safetensors file, or a hub id owner/repo/file.pth)")
    from huggingface_hub import hf_hub_download

    cache = settings.models.cache_dir if settings is not None else None
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    kwargs = {"cache_dir": str(cache) if cache else None}
    try:  # the cache first: a downloaded model works offline and costs no request
        return Path(hf_hub_download(repo, filename, local_files_only=True, **kwargs))
    except Exception:  # not cached yet
        log.info("fetching %s from the hub", ref)
    try:
        return Path(hf_hub_download(repo, filename, **kwargs))
    except Exception as exc:  # offline, missing repo or file, auth: one line either way
        raise ModelNotAvailableError(f"upscale model {ref} could not be fetched from the hub "
                                     f"({type(exc).__name__}); download it and give its "
                                     "path with --upscale-model") from None


def make_upscaler(kind: UpscalerKind, scale: int, model: str | None = None,
                  settings: Settings | None = None, *,
                  device: str | None = None) -> FrameUpscaler:
    if kind is UpscalerKind.LANCZOS:
        return LanczosUpscaler(scale)
    weights = find_model(model, settings)
    try:
        import torch  # noqa: F401  (only to report a missing install clearly)
    except ImportError:
        raise ModelNotAvailableError("--upscaler model needs PyTorch: install "
                                     "img2vid[diffusion] or use --upscaler lanczos") from None
    return ModelUpscaler(weights, scale, device=device)


def upscale_clip(clip: Clip, upscaler: FrameUpscaler, *,
                 progress: ProgressCallback = no_progress,
                 cancel: CancelToken | None = None) -> Clip:
    """A new Clip `upscaler.scale` times larger, one frame at a time."""
    s = upscaler.scale
    if max(clip.width, clip.height) * s > MAX_OUTPUT_SIDE:
        raise InputError(f"upscaling {clip.width}x{clip.height} {s}x gives "
                         f"{clip.width * s}x{clip.height * s}; the limit is "
                         f"{MAX_OUTPUT_SIDE} px a side: choose a smaller size or scale")
    cancel = cancel or CancelToken()

    def frames() -> Iterator[np.ndarray]:
        source = clip.frames
        try:
            for index, frame in enumerate(source, start=1):
                cancel.raise_if_cancelled()
                yield upscaler(frame)
                progress(Progress("upscale", index, clip.num_frames))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # stops an engine's render workers if we leave early

    return Clip(frames(), clip.fps, clip.width * s, clip.height * s, clip.num_frames,
                {**clip.info, "upscale": upscaler.describe()})
