"""I2VGen-XL (I2VGenXLPipeline): prompt + negative prompt + photo, UNet, CLIP text encoder."""

from __future__ import annotations

from typing import Any

from img2vid.engines.diffusion.call import DiffusionCall, Shape
from img2vid.engines.diffusion.estimate import image_decode, unet_activations
from img2vid.engines.diffusion.family import (
    ConfigReader,
    UNetFamily,
    shared_arguments,
    vae_scale,
)
from img2vid.engines.diffusion.steps import StepReporter

# I2VGen-XL's default clip_skip: the text encoder's penultimate layer, then its final norm.
CLIP_SKIP = 1
# The frame rate the model is conditioned on: the pipeline's and the original model's default.
# The clip still plays at the registry's 8 fps (16 frames over 2 s, as the authors show it).
TARGET_FPS = 16


class I2VGenXL(UNetFamily):
    name = "i2vgen"
    pipeline_class = "I2VGenXLPipeline"
    index_classes = ("I2VGenXLPipeline",)

    def estimate(self, config: ConfigReader, shape: Shape, guidance_scale: float,
                 dtype_bytes: int) -> tuple[int, int, int]:
        base = config("unet").get("block_out_channels", [320])[0]
        batch = 2 if guidance_scale > 1 else 1
        acts = unet_activations(shape.width, shape.height, shape.num_frames, vae_scale(config),
                                base, batch, dtype_bytes)
        full, tiled = image_decode(shape.width, shape.height,
                                   config("vae").get("block_out_channels", [128])[0], dtype_bytes)
        return acts, full, tiled

    def run(self, pipe: Any, call: DiffusionCall, generator: Any, steps: StepReporter) -> Any:
        device = pipe._execution_device
        prompt_embeds = encode_prompt(pipe, call.prompt, device)
        negative_embeds = (encode_prompt(pipe, call.negative_prompt, device)
                           if call.guidance_scale > 1 else None)
        arguments = {
            **shared_arguments(call, generator, None),
            "prompt": None, "negative_prompt": None, "target_fps": TARGET_FPS,
            "decode_chunk_size": call.decode_chunk, "prompt_embeds": prompt_embeds,
            "negative_prompt_embeds": negative_embeds}
        # I2VGenXLPipeline has no step callback: the scheduler hook reports and cancels instead.
        with steps.scheduler_hook(pipe.scheduler):
            return pipe(**arguments).frames


def encode_prompt(pipe: Any, text: str, device: Any) -> Any:
    """CLIP text embeddings the way I2VGenXLPipeline computes them with clip_skip=1.

    The pipeline's own path reads `text_encoder.text_model.final_layer_norm`, an attribute
    transformers >= 5.6 removed from CLIPTextModel (the norm now sits on the model itself), so
    the embeddings are made here and handed to the pipeline as prompt_embeds.
    """
    import torch.nn.functional as F

    tokens = pipe.tokenizer(text, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                            truncation=True, return_tensors="pt")
    output = pipe.text_encoder(tokens.input_ids.to(device), output_hidden_states=True)
    hidden = output.hidden_states[-(CLIP_SKIP + 1)]
    encoder = getattr(pipe.text_encoder, "text_model", pipe.text_encoder)
    norm = encoder.final_layer_norm
    # Functional call with the weights moved to the activations: under group/leaf offload the
    # norm's weights may already be back on the CPU once the encoder's forward has returned.
    return F.layer_norm(hidden, norm.normalized_shape,
                        norm.weight.to(hidden.device, hidden.dtype),
                        norm.bias.to(hidden.device, hidden.dtype), norm.eps)
