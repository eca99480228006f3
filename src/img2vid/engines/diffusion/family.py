"""What every diffusion model family shares: shape rules, dtypes per device, the common call.

A family is one class (one file under engines/diffusion/): its diffusers pipeline class, the
dtype of each component on each kind of device, its denoiser, its shape rules, its memory
estimate, and only how its call differs from the shared one built here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from img2vid.core.request import GenerationRequest
    from img2vid.engines.diffusion.call import DiffusionCall, Shape
    from img2vid.engines.diffusion.steps import StepReporter

ConfigReader = Callable[[str], dict[str, Any]]


@dataclass(frozen=True)
class FrameRule:
    """Frame counts a model accepts: `step * k + offset` for k >= 1, or one fixed count."""

    step: int = 1
    offset: int = 0
    minimum: int = 2
    fixed: int | None = None

    def snap(self, frames: int) -> int:
        """The accepted count nearest to `frames` (ties go up)."""
        if self.fixed is not None:
            return self.fixed
        k = max(1, math.floor((frames - self.offset) / self.step + 0.5))
        return max(self.minimum, k * self.step + self.offset)

    def describe(self) -> str:
        if self.fixed is not None:
            return f"exactly {self.fixed}"
        if self.step == 1:
            return f"at least {self.minimum}"
        return f"{self.step}k+{self.offset}" if self.offset else f"multiples of {self.step}"


@dataclass(frozen=True)
class ShapeRules:
    """Sizes and frame counts a model accepts."""

    side_multiple: int
    frames: FrameRule
    fixed_size: tuple[int, int] | None = None  # (width, height) the model only runs at
    # the only (width, height) pairs it runs at (resolution buckets); the pipeline picks the
    # one whose aspect ratio is nearest the photo's (sizing.bucket_for)
    sizes: tuple[tuple[int, int], ...] | None = None


@dataclass(frozen=True)
class Chain:
    """A long video made in one call by a pipeline that chains its own windows."""

    num_frames: int  # frames to ask for (whole windows; keep the first `total`)
    overlap: int  # frames each window re-reads from the one before
    starts: list[int]  # the first new frame of each later window (the seams)


class Family:
    """Base class of the model families. Subclasses set the class attributes and override
    `estimate`, and `arguments` where their call differs from the shared one."""

    name: ClassVar[str]
    pipeline_class: ClassVar[str]  # the image-to-video class a folder is loaded with
    # model_index.json `_class_name` values this family loads (LTX-Video's names its T2V class)
    index_classes: ClassVar[tuple[str, ...]]
    text_to_video: ClassVar[tuple[str, ...]] = ()  # sibling classes that cannot take a photo
    rules: ClassVar[ShapeRules]
    denoiser: ClassVar[str] = "transformer"
    vae_tiling: ClassVar[bool] = True
    chunked_decode: ClassVar[bool] = False  # the pipeline decodes a few frames per VAE call
    uses_prompt: ClassVar[bool] = True
    cuda_dtype: ClassVar[str] = "bfloat16"  # the release precision of its weights
    float32_components: ClassVar[tuple[str, ...]] = ()  # kept in float32 on every device
    # text encoders whose children are `shared` + `encoder` (T5/UMT5): group offload at block
    # level would move the whole encoder at once, so it recurses into `encoder` instead
    block_modules: ClassVar[dict[str, list[str]]] = {}
    # components leaf-level offload cannot move (SigLIP's pooling head hands
    # torch.nn.MultiheadAttention's out_proj weight to a functional call, so no leaf hook
    # fires): offloaded by blocks even at the minimum memory level
    no_leaf_offload: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[tuple[str, ...]] = ()  # request fields only this family uses
    # its pipeline makes a video of any length itself (FramePack's sections), so a long
    # --duration is one call instead of generic window chaining (windows.py)
    long_video: ClassVar[bool] = False
    # components a registered model may take from a repo of their own (ModelSpec.components):
    # name -> (library, class) they load with; the rest come from the model's hub_id
    part_classes: ClassVar[dict[str, tuple[str, str]]] = {}
    base_components: ClassVar[tuple[str, ...]] = ()  # with parts: those the hub_id repo gives

    def last_image_mode(self, index: dict[str, Any], config: ConfigReader) -> str | None:
        """Whether a folder's model ends on a given frame (--last-image): "optional",
        "required" (it only runs with one), or None (not trained for it)."""
        return None

    def accepts(self, index: dict[str, Any]) -> bool:
        """Whether a folder's model_index.json is an image-to-video model of this family."""
        return index.get("_class_name") in self.index_classes

    def shape_rules(self, config: ConfigReader) -> ShapeRules:
        """A local folder's rules, read from its configs (the class's rules by default)."""
        return self.rules

    def dtypes(self, device_kind: str, bf16: bool = True) -> dict[str, str]:
        """dtype per component ("default" for the rest): CUDA runs the release precision
        (bf16 falls back to fp16 before Ampere), MPS fp16, the CPU fp32."""
        if device_kind == "cpu":
            return {"default": "float32"}
        default = "float16" if device_kind == "mps" or not bf16 else self.cuda_dtype
        return {"default": default, **dict.fromkeys(self.float32_components, "float32")}

    # --- live previews (preview.py): how this family's latents look and are normalised ---

    def preview_frames(self, pipe: Any, call: DiffusionCall, latents: Any) -> Any:
        """The step callback's latents as frames x channels x h x w (batch item 0)."""
        raise NotImplementedError

    def preview_encode(self, pipe: Any, pixels: Any) -> Any:
        """An RGB image (1 x 3 x H x W in [-1, 1]) as normalised latents, channels x h x w,
        in the space the pipeline denoises in."""
        raise NotImplementedError

    def preview_cell(self, pipe: Any) -> int:
        """Pixels per latent cell."""
        return int(getattr(pipe, "vae_scale_factor_spatial", 8))

    def estimate(self, config: ConfigReader, shape: Shape, guidance_scale: float,
                 dtype_bytes: int) -> tuple[int, int, int]:
        """(denoise activations, decode bytes per frame, tiled decode bytes per frame)."""
        raise NotImplementedError

    def job_options(self, request: GenerationRequest) -> dict[str, Any]:
        """Values of this family's own options for one job (recorded in the sidecar)."""
        return {}

    def denoise_steps(self, call: DiffusionCall) -> int:
        """Step callbacks one call makes (progress counts them)."""
        return call.num_inference_steps
    def chain(self, total: int, window: int) -> Chain | None:
        """How one call makes at least `total` frames where the pipeline itself chains
        windows of `window` frames, each conditioned on the previous one's latents; None where
        it cannot, and img2vid chains windows on the last frame (windows.py)."""
        return None

    def prepare(self, pipe: Any) -> None:
        """Adjust a freshly loaded pipeline (e.g. the scheduler the authors run)."""

    def arguments(self, pipe: Any, call: DiffusionCall, base: dict[str, Any]) -> dict[str, Any]:
        """The diffusers call's keyword arguments: the shared ones, edited for this family."""
        return base

    def run(self, pipe: Any, call: DiffusionCall, generator: Any, steps: StepReporter) -> Any:
        output = pipe(**self.arguments(pipe, call, shared_arguments(call, generator, steps)))
        return output.frames


def shared_arguments(call: DiffusionCall, generator: Any,
                     steps: StepReporter | None) -> dict[str, Any]:
    """The part of every diffusers image-to-video call that is the same for all families
    (`steps` None: a pipeline without a step callback)."""
    arguments = {
        "image": call.image,
        "prompt": call.prompt,
        "negative_prompt": call.negative_prompt,
        "height": call.height,
        "width": call.width,
        "num_frames": call.num_frames,
        "num_inference_steps": call.num_inference_steps,
        "guidance_scale": call.guidance_scale,
        "generator": generator,
        "output_type": "np",
    }
    if steps is not None:
        arguments["callback_on_step_end"] = steps.on_step_end
    return arguments


def vae_scale(config: ConfigReader, default_levels: int = 4) -> int:
    """Pixels per latent cell of an image VAE: 2 per down block after the first."""
    return 2 ** (len(config("vae").get("block_out_channels", [0] * default_levels)) - 1)


class UNetFamily(Family):
    """The UNet families (I2VGen-XL, SVD): fp16 releases, any frame count, decoded a few frames
    per VAE call; their pipelines check for sides multiple of 8 whatever the VAE."""

    rules = ShapeRules(side_multiple=8, frames=FrameRule(minimum=2))
    denoiser = "unet"
    chunked_decode = True
    cuda_dtype = "float16"

    def shape_rules(self, config: ConfigReader) -> ShapeRules:
        return ShapeRules(max(8, vae_scale(config)), self.rules.frames)
