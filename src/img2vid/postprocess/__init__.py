"""Post-processing shared by both engines: frame interpolation, loops, reverse, fades."""

from __future__ import annotations

from img2vid.engines.base import Clip
from img2vid.postprocess.effects import fade
from img2vid.progress import CancelToken, ProgressCallback
from img2vid.request import GenerationRequest


def apply(clip: Clip, request: GenerationRequest, progress: ProgressCallback,
          cancel: CancelToken) -> Clip:
    """Run every stage the request asks for, streaming frame by frame."""
    if request.fade_in or request.fade_out:
        clip = fade(clip, request.fade_in, request.fade_out)
    return clip
