"""LTX-2 (LTX2ImageToVideoPipeline): video and its sound in one pass; frames 8k+1, 32 px cells.

The pipeline returns the frames and a waveform from its vocoder; the waveform travels with the
clip and is muxed into the output as AAC (postprocess.audio), the frames untouched. Settings:
the pipeline's documented example (768x512, 121 frames at 24 fps, 30 steps, guidance 3); its
other guidance terms (STG, modality isolation, audio guidance) keep their defaults.
"""

from __future__ import annotations

from typing import Any

from img2vid.core.clip import GeneratedAudio
from img2vid.engines.diffusion.call import DiffusionCall
from img2vid.engines.diffusion.family import ConfigReader, FrameRule, ShapeRules
from img2vid.engines.diffusion.ltx import LTXVideo
from img2vid.engines.diffusion.preview import LatentPreview, packed_tokens, standardised


class LTX2(LTXVideo):
    name = "ltx2"
    pipeline_class = "LTX2ImageToVideoPipeline"
    index_classes = ("LTX2ImageToVideoPipeline", "LTX2Pipeline")  # the hub repo: LTX2Pipeline
    rules = ShapeRules(side_multiple=32, frames=FrameRule(step=8, offset=1, minimum=9))
    # Gemma 3's decoder layers sit two levels down (model.language_model.layers): group offload
    # recurses through both, so its blocks stream one at a time
    block_modules = {"text_encoder": ["model", "language_model"]}
    # the 19B video stream (32 x 128); its audio stream's tokens are a few per second
    default_heads = (32, 128)
    # a new VAE: LTX-Video's published colour table does not apply, the projection is fitted
    preview = LatentPreview(packed_tokens, (), standardised)

    def shape_rules(self, config: ConfigReader) -> ShapeRules:
        # the VAE's compression (32x spatial, 8x temporal on the real model) times the
        # transformer's patch
        vae, transformer = config("vae"), config("transformer")
        scaling = sum(bool(s) for s in vae.get("spatio_temporal_scaling", [True] * 4))
        spatial = vae.get("spatial_compression_ratio") or int(
            vae.get("patch_size", 4)) * 2 ** scaling
        temporal = vae.get("temporal_compression_ratio") or int(
            vae.get("patch_size_t", 1)) * 2 ** scaling
        side = int(spatial) * int(transformer.get("patch_size", 1))
        step = int(temporal) * int(transformer.get("patch_size_t", 1))
        return ShapeRules(side, FrameRule(step=step, offset=1, minimum=step + 1))

    def arguments(self, pipe: Any, call: DiffusionCall, base: dict[str, Any]) -> dict[str, Any]:
        return {**base, "frame_rate": float(call.fps)}

    def run(self, pipe: Any, call: DiffusionCall, generator: Any, steps: Any) -> Any:
        from img2vid.engines.diffusion.family import shared_arguments

        return pipe(**self.arguments(pipe, call, shared_arguments(call, generator, steps)))

    def split_audio(self, pipe: Any, output: Any) -> tuple[Any, GeneratedAudio | None]:
        waveform = output.audio[0].float().cpu().numpy()  # channels x samples
        rate = int(pipe.vocoder.config.output_sampling_rate)
        return output.frames, GeneratedAudio(waveform, rate)
