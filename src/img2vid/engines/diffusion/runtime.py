"""Torch-side helpers: device and dtype, applying a memory plan, speed options, seeding, cleanup.

Everything here imports torch/diffusers inside functions: it runs only for diffusion jobs.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from types import ModuleType
from typing import Any

from img2vid.core.errors import InputError
from img2vid.core.request import GenerationRequest, Quantize, StepCache
from img2vid.engines.diffusion.family import Family
from img2vid.engines.diffusion.registry import ModelSpec
from img2vid.engines.memory import MemoryPlan, peak_rss_bytes

log = logging.getLogger(__name__)

# logger -> message fragment of library warnings that say nothing to an img2vid user:
# I2VGen-XL's deprecation banner on every load, the CLIP processor's optional torchvision backend,
# and what importing torchao (the quantize extra; diffusers imports it when installed) says on
# machines without its optional CUDA kernels or Triton (int8 weight-only needs neither).
_NOISE = {"diffusers.pipelines.pipeline_utils": "has been deprecated and will not receive",
          "transformers.utils.import_utils": "requires torchvision (not installed)",
          "torchao": "Failed to load",
          "torchao.kernel.intmm": "Detected no triton",
          "torch.utils._pytree": "is an Enum subclass and is now natively supported",
          "diffusers.quantizers.torchao.torchao_quantizer":
              "Unable to import `torchao` Tensor objects"}


class _DropMessage(logging.Filter):
    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def import_libraries() -> None:
    """Import transformers/diffusers with their logs routed into ours (no stray stderr output)."""
    for name, fragment in _NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) for f in logger.filters):
            logger.addFilter(_DropMessage(fragment))
    import transformers

    _route(transformers.utils.logging)
    import diffusers

    _route(diffusers.utils.logging)
    from huggingface_hub.utils import enable_progress_bars

    # transformers' switch also silences the hub's bars, which downloads should keep
    enable_progress_bars()


def _route(lib: ModuleType) -> None:
    lib.disable_default_handler()
    lib.enable_propagation()
    lib.disable_progress_bar()  # weight-loading bars; huggingface_hub's download bars stay on


def on_device(device: str | None) -> Any:
    """Make `device` the calling thread's current CUDA device for a job. Code that asks for
    "the GPU" (diffusers' group offload creates its CUDA streams there, RIFE on plain "cuda")
    then uses the job's GPU, not cuda:0, when a server runs a worker thread per GPU."""
    if device is None or not device.startswith("cuda:"):
        return nullcontext()
    import torch

    return torch.cuda.device(torch.device(device))


def pick_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def bf16_supported(device: str) -> bool:
    """bf16 needs Ampere or newer; asked of this job's GPU, not the thread's current one."""
    import torch

    if not device.startswith("cuda"):
        return True
    return torch.cuda.get_device_capability(torch.device(device)) >= (8, 0)


def torch_dtypes(dtypes: dict[str, str]) -> dict[str, Any]:
    """A family's dtype names as the dict diffusers' from_pretrained takes per component."""
    import torch

    return {name: getattr(torch, value) for name, value in dtypes.items()}


def dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def check_options(spec: ModelSpec, request: GenerationRequest) -> None:
    """Refuse speed options this model cannot use, before anything loads."""
    transformer = spec.family.denoiser == "transformer"
    if request.attention is not None:
        if not transformer:
            raise InputError(
                f"--attention {request.attention}: {spec.name}'s UNet uses diffusers' classic "
                "attention processors, which always run PyTorch SDPA; attention backends apply to "
                "wan, ltx-video and cogvideox")
        _check_attention_backend(request.attention)
    if request.step_cache is not StepCache.NONE and not transformer:
        raise InputError(f"--step-cache {request.step_cache.value} works on transformer "
                         f"models (wan, ltx-video, cogvideox), not {spec.name}'s UNet")
    if request.quantize is Quantize.INT8:
        from img2vid.core.extras import require

        require("quantize", "--quantize int8")


def check_plan(request: GenerationRequest, plan: MemoryPlan, device: str) -> None:
    if request.compile and plan.offload == "leaf":
        raise InputError(
            "--compile cannot trace through leaf-level offload (memory level minimum"
            + ("" if plan.forced else ", chosen because nothing heavier fits")
            + "): drop --compile, or lower the resolution/frames so a heavier level fits")
    if request.quantize is Quantize.FP8 and device.startswith("mps"):
        raise InputError("--quantize fp8: Apple MPS has no float8 storage; use --quantize none")


def _check_attention_backend(name: str) -> None:
    from diffusers.models.attention_dispatch import (
        AttentionBackendName,
        _check_attention_backend_requirements,
    )

    known = sorted(b.value for b in AttentionBackendName)
    if name not in known:
        raise InputError(f"--attention {name}: unknown backend; known: {', '.join(known)}")
    try:
        _check_attention_backend_requirements(AttentionBackendName(name))
    except (RuntimeError, ImportError) as exc:
        raise InputError(f"--attention {name}: {exc}") from None


def attention_scope(name: str | None) -> Any:
    """Run the pipeline under an attention backend, restoring the previous one afterwards."""
    if name is None:
        return nullcontext()
    from diffusers.models.attention_dispatch import attention_backend

    return attention_backend(name)


def weight_bytes(module: Any) -> int:
    return sum(_storage_bytes(p) for p in module.parameters())


def _storage_bytes(tensor: Any) -> int:
    """Bytes a tensor really stores. A quantized tensor subclass (torchao's int8 weights)
    reports its logical dtype's element size, so its inner tensors are counted instead."""
    if not hasattr(tensor, "__tensor_flatten__"):
        return tensor.numel() * tensor.element_size()
    names, _ = tensor.__tensor_flatten__()
    return sum(_storage_bytes(getattr(tensor, name)) for name in names)


def quantize(pipe: Any, family: Family, mode: Quantize, dtype: Any) -> dict[str, Any]:
    """Shrink the denoiser's stored weights; returns sizes before/after for the sidecar."""
    if mode is Quantize.NONE:
        return {}
    import torch

    denoiser = getattr(pipe, family.denoiser)
    before = weight_bytes(denoiser)
    if mode is Quantize.FP8:
        # float8 storage, upcast layer by layer to the run dtype for compute (diffusers'
        # layerwise casting skips norms and embeddings, which are precision-critical)
        denoiser.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    else:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        quantize_(denoiser, Int8WeightOnlyConfig())
    after = weight_bytes(denoiser)
    saved = before - after
    log.info("quantize %s: %s weights %.2f GB -> %.2f GB (saved %.2f GB)", mode.value,
             family.denoiser, before / 1024**3, after / 1024**3, saved / 1024**3)
    return {"mode": mode.value, "component": family.denoiser, "bytes_before": before,
            "bytes_after": after, "bytes_saved": saved}


def apply_offload(pipe: Any, family: Family, plan: MemoryPlan, device: str) -> None:
    import torch

    if plan.offload == "none":
        pipe.to(device)
        return
    if plan.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
        return
    # Block-level groups stream the next block in on a side CUDA stream while the current
    # one computes; leaf level does the same per layer (lowest memory, slowest).
    from diffusers.hooks import apply_group_offloading

    options = {"onload_device": torch.device(device), "offload_device": torch.device("cpu"),
               "use_stream": device.startswith("cuda")}
    for name, component in pipe.components.items():
        if not isinstance(component, torch.nn.Module):
            continue
        by_blocks = plan.offload == "group" or name in family.no_leaf_offload
        # a T5 encoder has no top-level block list: recurse into `encoder` so its blocks
        # stream one at a time instead of the whole encoder landing on the GPU
        apply_group_offloading(
            component, **options, offload_type="block_level" if by_blocks else "leaf_level",
            num_blocks_per_group=1 if by_blocks else None,
            block_modules=family.block_modules.get(name) if by_blocks else None)


def apply_decode(pipe: Any, plan: MemoryPlan) -> None:
    """VAE tiling per job: a flag on the VAE, so a cached pipeline follows each job's plan."""
    vae = getattr(pipe, "vae", None)
    if vae is None or not hasattr(vae, "use_tiling"):
        return
    if plan.vae_tiling:
        vae.enable_tiling()
    else:
        vae.disable_tiling()


def compile_denoiser(pipe: Any, family: Family) -> None:
    # In place (nn.Module.compile) so offload hooks and the pipeline keep the same object.
    getattr(pipe, family.denoiser).compile()


@contextmanager
def seeded(seed: int, device: str) -> Iterator[Any]:
    """A generator seeded with `seed`, with torch's global RNG seeded too for the duration.

    I2VGen-XL samples its image latents (`latent_dist.sample()`) from the global RNG rather than
    the generator, so the generator alone does not reproduce a video. Seeding the global RNG
    inside fork_rng makes it reproducible and puts the previous global state back afterwards,
    so other code's random streams in this process are not shifted by our jobs. The generator
    lives on the CPU: the same seed then gives the same noise whatever the device or offload.
    """
    import torch

    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield torch.Generator("cpu").manual_seed(seed)


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, (torch.OutOfMemoryError, MemoryError))


def free_memory(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()
    elif device.startswith("mps"):
        torch.mps.empty_cache()


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):  # this job's GPU, which need not be the thread's current one
        torch.cuda.reset_peak_memory_stats(torch.device(device))


def peak_memory(device: str) -> dict[str, Any]:
    import torch

    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated(torch.device(device))
        return {"peak_vram_gb": round(peak / 1024**3, 3)}
    # the process's peak, not this job's alone
    return {"process_peak_rss_gb": round(peak_rss_bytes() / 1024**3, 3)}
