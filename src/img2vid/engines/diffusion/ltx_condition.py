"""LTX-Video 0.9.7/0.9.8 (LTXConditionPipeline): conditions on images or clips at any frame.

The photo is a condition at frame 0, an end frame (--last-image) one at the last index, and a
chained window of a longer video starts from the previous window's last frames as a video
condition at frame 0. Settings from diffusers' LTX-Video docs for 0.9.7/0.9.8 (one pass, without
the optional latent upsampler): decode_timestep 0.05, decode_noise_scale 0.025,
image_cond_noise_scale 0.0, guidance_rescale 0.7.
"""

from __future__ import annotations

from typing import Any

from img2vid.engines.diffusion.call import DiffusionCall
from img2vid.engines.diffusion.family import ConfigReader
from img2vid.engines.diffusion.ltx import LTXVideo

# the distilled models' first-pass schedule (diffusers' LTX-Video docs, 0.9.7/0.9.8 distilled)
DISTILLED_TIMESTEPS = (1000, 993, 987, 981, 975, 909, 725, 0.03)


class LTXCondition(LTXVideo):
    name = "ltx-condition"
    pipeline_class = "LTXConditionPipeline"
    index_classes = ("LTXConditionPipeline",)
    default_heads = (32, 128)  # the 13B (0.9.7/0.9.8)
    extra_latent_frames = 1  # an end frame's keyframe tokens

    def last_image_mode(self, index: dict[str, Any], config: ConfigReader) -> str | None:
        return "optional"  # a condition at the last frame index

    def lead_frames(self, window: int) -> int:
        # a quarter of the window as whole latent frames (8k+1), so motion carries on
        return max(1, (window // 4 - 1) // 8 * 8 + 1)

    def arguments(self, pipe: Any, call: DiffusionCall, base: dict[str, Any]) -> dict[str, Any]:
        from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

        first = (LTXVideoCondition(video=list(call.lead_frames), frame_index=0)
                 if len(call.lead_frames) > 1 else LTXVideoCondition(image=call.image))
        conditions = [first]
        if call.last_image is not None:
            conditions.append(LTXVideoCondition(image=call.last_image,
                                                frame_index=call.num_frames - 1))
        arguments = {key: value for key, value in base.items() if key != "image"}
        return {**arguments, "conditions": conditions, "frame_rate": call.fps,
                "decode_timestep": 0.05, "decode_noise_scale": 0.025,
                "image_cond_noise_scale": 0.0, "guidance_rescale": 0.7,
                **self.schedule(call)}

    def schedule(self, call: DiffusionCall) -> dict[str, Any]:
        return {}


class LTXConditionDistilled(LTXCondition):
    """The timestep- and guidance-distilled 0.9.7/0.9.8 models: their own 8-step schedule."""

    name = "ltx-condition-distilled"

    def accepts(self, index: dict[str, Any]) -> bool:
        return False  # a folder cannot tell it is distilled: it loads as ltx-condition

    def schedule(self, call: DiffusionCall) -> dict[str, Any]:
        if call.num_inference_steps != len(DISTILLED_TIMESTEPS):
            return {}  # other step counts use the pipeline's own schedule
        return {"timesteps": list(DISTILLED_TIMESTEPS)}
