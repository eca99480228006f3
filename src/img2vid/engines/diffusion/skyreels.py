"""SkyReels-V2 (Skywork): Wan 2.1's architecture retrained, in two image-to-video pipelines.

SkyReelsV2ImageToVideoPipeline runs the I2V repos (a CLIP image encoder, one window).
SkyReelsV2DiffusionForcingImageToVideoPipeline runs the diffusion-forcing (DF) repos, whose
model_index.json names the text-to-video SkyReelsV2DiffusionForcingPipeline: each latent frame
has its own noise level, so one call makes a video longer than the model's window
(`base_num_frames`), every window conditioned on the last `overlap_history` frames' latents of
the one before, and it can end on a given frame. Shapes, dtypes, the UMT5 text encoder, the
Wan VAE, previews and the memory estimate are Wan's.
"""

from __future__ import annotations

from typing import Any

from img2vid.engines.diffusion.call import DiffusionCall
from img2vid.engines.diffusion.family import Chain, ConfigReader
from img2vid.engines.diffusion.wan import Wan

# the authors' flow shift for image-to-video (8.0 is for text-to-video); the converted repos'
# scheduler_config.json keeps UniPC's default 1.0
I2V_FLOW_SHIFT = 5.0


class SkyReelsV2(Wan):
    name = "skyreels-v2"
    pipeline_class = "SkyReelsV2ImageToVideoPipeline"
    index_classes = ("SkyReelsV2ImageToVideoPipeline",)
    text_to_video = ("SkyReelsV2Pipeline",)

    def accepts(self, index: dict[str, Any]) -> bool:
        return index.get("_class_name") in self.index_classes

    def last_image_mode(self, index: dict[str, Any], config: ConfigReader) -> str | None:
        # the FLF2V repos' transformer embeds exactly two CLIP images (pos_embed_seq_len); the
        # I2V ones were trained on the first frame only
        return "required" if config("transformer").get("pos_embed_seq_len") else None

    def prepare(self, pipe: Any) -> None:
        from diffusers import UniPCMultistepScheduler

        if pipe.scheduler.config.get("flow_shift") != I2V_FLOW_SHIFT:
            pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config,
                                                                 flow_shift=I2V_FLOW_SHIFT)


class SkyReelsV2DiffusionForcing(SkyReelsV2):
    name = "skyreels-v2-df"
    pipeline_class = "SkyReelsV2DiffusionForcingImageToVideoPipeline"
    index_classes = ("SkyReelsV2DiffusionForcingPipeline",
                     "SkyReelsV2DiffusionForcingImageToVideoPipeline")
    text_to_video = ()  # the DF repos are both: loaded with the image-to-video class
    chains_windows = True  # a longer --duration is one call (windows chained on latents)
    # noise added to the conditioning latents of each later window: the authors' value for
    # long videos ("20 is recommended"); 0 in a single window, where there are none
    ADDNOISE_CONDITION = 20.0

    def last_image_mode(self, index: dict[str, Any], config: ConfigReader) -> str | None:
        # the end frame's latents are appended and held clean (diffusers' FLF2V example)
        return "optional"

    def chain(self, total: int, window: int) -> Chain | None:
        # diffusers' loop mis-sizes a last window shorter than the others (an IndexError in
        # 0.42.1): ask for whole windows, the caller keeps the first `total` frames
        base, overlap = latent_frames(window), latent_frames(overlap_history(window))
        step = base - overlap
        more = max(0, -(-(latent_frames(total) - base) // step))  # windows after the first
        # latent j >= 1 decodes to frames 4j-3 .. 4j: where each later window's new frames begin
        starts = [(base + i * step) * 4 - 3 for i in range(more)]
        return Chain((base + more * step - 1) * 4 + 1, overlap_history(window),
                     [s for s in starts if s < total])

    def arguments(self, pipe: Any, call: DiffusionCall, base: dict[str, Any]) -> dict[str, Any]:
        window = call.window_frames or call.num_frames
        arguments = {**super().arguments(pipe, call, base), "fps": call.fps,
                     "base_num_frames": window}
        if call.num_frames > window:
            arguments.update(overlap_history=overlap_history(window),
                             addnoise_condition=self.ADDNOISE_CONDITION)
        return arguments


def latent_frames(frames: int) -> int:
    return (frames - 1) // 4 + 1  # the Wan VAE's 4x temporal compression, first frame alone


def overlap_history(window: int) -> int:
    """Frames each window re-reads from the one before: 17 on a 97-frame window (the authors'
    recommendation, 17 or 37), scaled with the window, in whole latent frames (4k+1)."""
    latent = latent_frames(window)
    overlap_latents = max(1, min(latent - 1, round(latent * 5 / 25)))
    return (overlap_latents - 1) * 4 + 1
