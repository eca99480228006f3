"""Find a model's weights (local folder, configured folder, Hugging Face cache or hub) and load them."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from img2vid.core.config import Settings
from img2vid.core.errors import InputError, ModelLoadError, ModelNotAvailableError
from img2vid.engines.diffusion.registry import (
    FAMILY_PIPELINES,
    FAMILY_REFERENCE,
    MODELS,
    PIPELINE_FAMILIES,
    FrameRule,
    ModelSpec,
    get_spec,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL = "i2vgen-xl"


@dataclass(frozen=True)
class ResolvedModel:
    """A model whose files are on disk, with what the sidecar records about where they came from."""

    spec: ModelSpec
    path: Path
    source: str  # "folder" or "hub"
    revision: str | None  # hub commit when known
    variant: str | None  # weight-file variant present in the folder (fp16), if any

    @property
    def model_id(self) -> str:
        return self.spec.hub_id if self.source == "hub" else str(self.path)

    def describe(self) -> dict[str, Any]:
        return {"name": self.spec.name, "id": self.model_id, "source": self.source,
                "path": str(self.path), "revision": self.revision, "variant": self.variant,
                "family": self.spec.family, "pipeline": self.spec.pipeline_class}


def allow_patterns(spec: ModelSpec) -> list[str]:
    """Files a diffusers image-to-video load needs: configs, tokenizers, one set of weights.

    Hub repos also carry original checkpoints at their root and several weight variants;
    fetching only these keeps a download to the size `img2vid models` shows.
    """
    weights = f"*/*.{spec.variant}*.safetensors" if spec.variant else "*/*.safetensors"
    return ["model_index.json", "*/*.json", "*/*.txt", "*/*.model", weights]


def resolve_model(name: str | None, settings: Settings) -> ResolvedModel:
    """Turn --model (a registry name, a configured name or a folder) into files on disk.

    Downloads through huggingface_hub when the model is missing and the hub is reachable.
    """
    name = (name or DEFAULT_MODEL).strip()
    configured = settings.models.local_dirs.get(name)
    if configured is not None:
        return resolve_folder(Path(configured).expanduser(), name=name)
    candidate = Path(name).expanduser()
    if candidate.exists():
        return resolve_folder(candidate)
    if _looks_like_path(name):
        raise InputError(f"model folder not found: {name}")
    spec = get_spec(name)
    if spec is None:
        raise InputError(f"unknown model {name!r}; known: {', '.join(MODELS)} "
                         "(or a folder with model_index.json)")
    try:  # a cached model is used as it is: no request to the hub for every job
        path = _snapshot(spec, settings, local_only=True)
    except ModelNotAvailableError:
        path = _snapshot(spec, settings, local_only=None)  # downloads unless offline
    return _from_snapshot(spec, path)


def _looks_like_path(name: str) -> bool:
    return "/" in name or "\\" in name or name.startswith((".", "~"))


def download_model(name: str, settings: Settings) -> ResolvedModel:
    """Fetch a registry model into the Hugging Face cache (huggingface_hub's progress bars)."""
    spec = get_spec(name)
    if spec is None:
        raise InputError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return _from_snapshot(spec, _snapshot(spec, settings, local_only=False))


def _snapshot(spec: ModelSpec, settings: Settings, local_only: bool | None) -> Path:
    from huggingface_hub import is_offline_mode, snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError

    offline = is_offline_mode() if local_only is None else local_only
    cache_dir = settings.models.cache_dir
    try:
        folder = snapshot_download(spec.hub_id, allow_patterns=allow_patterns(spec),
                                   cache_dir=str(cache_dir) if cache_dir else None,
                                   local_files_only=offline)
    except GatedRepoError:
        raise ModelNotAvailableError(
            f"{spec.name} ({spec.hub_id}) is gated on the Hugging Face hub: accept its licence "
            f"on its hub page, log in with `hf auth login`, then retry") from None
    except LocalEntryNotFoundError as exc:
        why = ("the Hugging Face hub is offline (HF_HUB_OFFLINE)" if offline or _is_offline_error(exc)
               else "the Hugging Face hub could not be reached")
        if local_only is False:  # an explicit download
            raise ModelNotAvailableError(
                f"cannot download {spec.name} ({spec.hub_id}): {why}; retry with internet "
                "(and HF_HUB_OFFLINE unset), or use a local copy with --model /path/to/folder"
            ) from None
        raise ModelNotAvailableError(
            f"model {spec.name} ({spec.hub_id}) is not downloaded and {why}: run "
            f"`img2vid models download {spec.name}` with internet, or pass --model /path/to/folder"
        ) from None
    except (HfHubHTTPError, OSError) as exc:
        raise ModelNotAvailableError(
            f"could not download {spec.name} ({spec.hub_id}): {_first_line(exc)}; retry with "
            f"internet, or pass --model /path/to/folder") from None
    return Path(folder)


def _is_offline_error(exc: BaseException) -> bool:
    return "outgoing traffic has been disabled" in str(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def _from_snapshot(spec: ModelSpec, folder: Path) -> ResolvedModel:
    revision = folder.name if folder.parent.name == "snapshots" else None
    return ResolvedModel(spec=spec, path=folder, source="hub", revision=revision,
                         variant=_variant_present(folder, spec.variant))


def resolve_folder(folder: Path, name: str | None = None) -> ResolvedModel:
    """A local diffusers folder: its family comes from model_index.json."""
    if not folder.is_dir():
        raise InputError(f"model folder not found: {folder}")
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise InputError(f"{folder} has no model_index.json: give a diffusers model folder "
                         f"(one saved with save_pretrained) or a model name ({', '.join(MODELS)})")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        class_name = index["_class_name"]
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{index_path} is not a valid diffusers model index") from None
    if class_name not in PIPELINE_FAMILIES:
        raise InputError(f"{folder} holds a {class_name}, which img2vid cannot run; supported: "
                         + ", ".join(sorted(k for k, v in PIPELINE_FAMILIES.items() if v)))
    family = PIPELINE_FAMILIES[class_name]
    if family is None or (class_name == "WanPipeline" and not index.get("expand_timesteps")):
        raise InputError(f"{folder} holds a text-to-video {class_name}; img2vid needs an "
                         "image-to-video model (e.g. " + ", ".join(MODELS) + ")")
    reference = MODELS[FAMILY_REFERENCE[family]]
    spec = replace(reference, name=name or folder.name, hub_id=str(folder),
                   pipeline_class=FAMILY_PIPELINES[family],
                   side_multiple=_side_multiple(folder, family, reference.side_multiple),
                   download_gb=0.0, description=f"local {class_name} folder")
    if family == "cogvideox":
        spec = _cogvideox_shape(folder, spec)
    revision = folder.name if folder.parent.name == "snapshots" else None
    return ResolvedModel(spec=spec, path=folder, source="folder", revision=revision,
                         variant=_variant_present(folder, "fp16"))


def _side_multiple(folder: Path, family: str, default: int) -> int:
    """Pixels per latent cell of this folder's VAE (x the transformer's patch), from its configs."""
    vae = read_config(folder, "vae")
    if family in ("i2vgen", "svd") and "block_out_channels" in vae:
        # the pipelines check for multiples of 8 whatever the VAE
        return max(8, 2 ** (len(vae["block_out_channels"]) - 1))
    if family == "wan":
        patch = read_config(folder, "transformer").get("patch_size", [1, 2, 2])
        return int(vae.get("scale_factor_spatial", 8)) * int(patch[-1])
    return default


def _cogvideox_shape(folder: Path, spec: ModelSpec) -> ModelSpec:
    """CogVideoX I2V's learned positional embeddings pin one size and frame count: read them
    from the transformer config (60x90 latents and 49 frames on the 5B model: 720x480)."""
    config = read_config(folder, "transformer")
    if not config.get("use_learned_positional_embeddings", True):
        return spec
    scale = 2 ** (len(read_config(folder, "vae").get("block_out_channels", [0] * 4)) - 1)
    width = int(config.get("sample_width", 90)) * scale
    height = int(config.get("sample_height", 60)) * scale
    frames = int(config.get("sample_frames", 49))
    return replace(spec, fixed_size=(width, height), frames=FrameRule(fixed=frames),
                   default_frames=frames)


def read_config(folder: Path, component: str) -> dict[str, Any]:
    """A component's config.json, or {} when absent (tokenizers, schedulers...)."""
    for name in ("config.json", "scheduler_config.json", "preprocessor_config.json"):
        path = folder / component / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
            return data if isinstance(data, dict) else {}
    return {}


def _variant_present(folder: Path, variant: str | None) -> str | None:
    if variant and any(folder.glob(f"*/*.{variant}*.safetensors")):
        return variant
    return None


def weight_elements(folder: Path, variant: str | None) -> dict[str, int]:
    """Parameter count of each component, read from safetensors headers (no weights loaded)."""
    from safetensors import safe_open

    counts: dict[str, int] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(sub.glob("*.safetensors"))
        if variant:
            chosen = [f for f in files if f".{variant}" in f.name]
            files = chosen or [f for f in files if ".fp16" not in f.name]
        else:
            files = [f for f in files if ".fp16" not in f.name] or files
        total = 0
        for f in files:
            with safe_open(str(f), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                    shape = handle.get_slice(key).get_shape()
                    n = 1
                    for d in shape:
                        n *= int(d)
                    total += n
        if not files:
            # pickled .bin checkpoints have no readable header: count 2 bytes per element,
            # which overestimates fp32 files (the planner would rather be conservative)
            total = sum(f.stat().st_size for f in sub.glob("*.bin")) // 2
        if total:
            counts[sub.name] = total
    return counts


def load_pipeline(resolved: ResolvedModel, torch_dtype: Any) -> Any:
    """Load the image-to-video pipeline from the resolved folder (never touches the network)."""
    import diffusers

    cls = getattr(diffusers, resolved.spec.pipeline_class)
    try:
        pipe = cls.from_pretrained(resolved.path, dtype=torch_dtype,
                                   variant=resolved.variant, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"cannot load {resolved.spec.name} from {resolved.path}: "
                             f"{_first_line(exc)}") from None
    pipe.set_progress_bar_config(disable=True)  # progress goes through our callback instead
    return pipe
