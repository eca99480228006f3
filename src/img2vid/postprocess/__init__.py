"""Post-processing shared by both engines: frame interpolation, loops, reverse, fades."""

from __future__ import annotations

from typing import TYPE_CHECKING

from img2vid.core.clip import Clip
from img2vid.core.progress import CancelToken, ProgressCallback
from img2vid.core.request import GenerationRequest, InterpolatorKind, LoopMode
from img2vid.postprocess.effects import fade
from img2vid.postprocess.loops import pingpong, reverse, seamless

if TYPE_CHECKING:
    from img2vid.core.config import Settings
    from img2vid.postprocess.interpolate import FrameInterpolator
    from img2vid.postprocess.upscale import FrameUpscaler


def apply(clip: Clip, request: GenerationRequest, progress: ProgressCallback,
          cancel: CancelToken, *, settings: Settings | None = None,
          upscaler: FrameUpscaler | None = None) -> Clip:
    """Run every stage the request asks for, streaming frame by frame.

    Order: upscale -> interpolate -> reverse -> loop -> fades. `settings` locates the model
    cache (RIFE weights, upscale model); without it the default cache is used. `upscaler`
    is the one preflight() built. RIFE and the upscale model run on the GPU the engine
    used, so a server with a worker per GPU keeps each job on its own.
    """
    if request.upscale:
        from img2vid.postprocess.upscale import upscale_clip

        upscaler = upscaler or make_upscaler(request, settings)
        if gpu := _engine_gpu(clip):
            upscaler.to(gpu)
        clip = upscale_clip(clip, upscaler, progress=progress, cancel=cancel)
    if request.interpolate or request.target_fps:
        from img2vid.postprocess.interpolate import interpolate_clip

        engine_device = str(clip.info.get("device") or "")
        device = engine_device if engine_device.startswith("cuda") else None
        clip = interpolate_clip(clip, make_interpolator(request.interpolator,
                                                        request.rife_weights, settings,
                                                        device=device),
                                factor=request.interpolate, target_fps=request.target_fps,
                                progress=progress, cancel=cancel)
    if request.reverse:
        clip = reverse(clip)
    if request.loop is LoopMode.PINGPONG:
        clip = pingpong(clip)
    elif request.loop is LoopMode.SEAMLESS:
        clip = seamless(clip, request.transition, request.transition_style)
    if request.fade_in or request.fade_out:
        clip = fade(clip, request.fade_in, request.fade_out)
    return clip


def preflight(request: GenerationRequest, settings: Settings | None = None,
              ) -> FrameUpscaler | None:
    """Raise now, before an engine runs, what apply() would raise later: RIFE asked for
    without its weights or without torch, an upscale model missing, unreadable or of
    another scale. Returns the upscaler, loaded once, for apply()."""
    if (request.interpolate or request.target_fps) and request.interpolator is InterpolatorKind.RIFE:
        from img2vid.media.models_cache import cache_dir, find_rife_weights

        find_rife_weights(request.rife_weights, cache_dir(settings))
        _require_torch()
    return make_upscaler(request, settings) if request.upscale else None


def make_upscaler(request: GenerationRequest, settings: Settings | None = None, *,
                  device: str | None = None) -> FrameUpscaler:
    from img2vid.postprocess.upscale import make_upscaler as make

    return make(request.upscaler, request.upscale or 2, request.upscale_model, settings,
                device=device)


def _engine_gpu(clip: Clip) -> str | None:
    device = str(clip.info.get("device") or "")
    return device if device.startswith("cuda") else None


def _require_torch() -> None:
    from img2vid.core.errors import ModelNotAvailableError

    try:
        import torch  # noqa: F401  (only to report a missing install clearly)
    except ImportError:
        raise ModelNotAvailableError("--interpolator rife needs PyTorch: install "
                                     "img2vid[diffusion] or use --interpolator flow") from None


def make_interpolator(kind: InterpolatorKind, rife_weights: str | None = None,
                      settings: Settings | None = None, *,
                      device: str | None = None) -> FrameInterpolator:
    """The frame interpolator for a request: flow (weightless) or RIFE (weights from
    `rife_weights` or the model cache, on `device` or the best one found; torch imported
    only here)."""
    if kind is InterpolatorKind.FLOW:
        from img2vid.postprocess.interpolate import FlowInterpolator

        return FlowInterpolator()
    from img2vid.media.models_cache import cache_dir, find_rife_weights

    weights = find_rife_weights(rife_weights, cache_dir(settings))
    _require_torch()
    from img2vid.postprocess.rife import RifeInterpolator

    return RifeInterpolator(weights, device=device)
