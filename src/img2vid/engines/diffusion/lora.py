"""LoRAs for one job: fetched, hashed, checked against the model's layers, loaded, then unloaded.

Strict: a LoRA whose layers do not all exist in the model with the same shapes is refused with
one line saying how many fit and what model it seems made for, never loaded half-way. After the
job every adapter is removed, so the cached pipeline runs the next job as if it never had one.
Fused (where the user allows it), the LoRA deltas are added into the weights for the job, so a
step costs what it does without LoRAs, and subtracted again (unfuse_lora) before unloading.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from img2vid.core.errors import InputError
from img2vid.core.lora import LoraSpec, is_hub_id
from img2vid.media.images import file_sha256

log = logging.getLogger(__name__)

DEFAULT_FILE = "pytorch_lora_weights.safetensors"  # diffusers' name when a repo has one file
# (block list name, hidden width) -> the models a LoRA with those layers was made for
KNOWN = {("blocks", 5120): "Wan 14B (2.1 I2V / FLF2V, 2.2 I2V A14B)",
         ("blocks", 3072): "Wan 2.2 TI2V 5B",
         ("blocks", 1536): "Wan 2.1 1.3B",
         ("transformer_blocks", 2048): "LTX-Video 2B",
         ("transformer_blocks", 4096): "LTX-Video 13B",
         ("transformer_blocks", 3072): "CogVideoX 5B",
         ("transformer_blocks", 1920): "CogVideoX 2B"}
_DOWN = (".lora_A.weight", ".lora_down.weight", ".lora.down.weight")


def fetch(spec: LoraSpec) -> Path:
    """The LoRA's local file: a path (a file, or a folder with diffusers' file name), or a hub
    id `org/name[/file.safetensors]` from the Hugging Face cache (downloaded when online)."""
    path = Path(spec.source).expanduser()
    if path.is_dir():
        path = path / DEFAULT_FILE
    if path.is_file():
        return path
    if not is_hub_id(spec.source):
        raise InputError(f"--lora {spec.source}: no such file (give a .safetensors file, a "
                         "folder with pytorch_lora_weights.safetensors, or a hub id "
                         "org/name[/file.safetensors])")
    parts = spec.source.split("/")
    repo = "/".join(parts[:2])
    filename = "/".join(parts[2:]) or DEFAULT_FILE
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename))
    except Exception as exc:  # noqa: BLE001 - the hub's many errors all mean "not available"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"--lora {spec.source}: cannot get {filename} from the hub repo "
                         f"{repo}: {first}") from None


def _layers(state: dict[str, Any], default: str) -> dict[tuple[str, str], tuple[Any, Any]]:
    """(component, module path) -> (down, up) matrices of each LoRA layer in a state dict."""
    layers = {}
    for key, down in state.items():
        suffix = next((s for s in _DOWN if key.endswith(s)), None)
        if suffix is None:
            continue
        name = key[: -len(suffix)]
        up = state.get(name + suffix.replace("A", "B").replace("down", "up"))
        component, _, module = name.partition(".")
        if not module or component not in ("transformer", "transformer_2", "unet",
                                           "text_encoder"):
            component, module = default, name
        layers[(component, module)] = (down, up)
    return layers


def _shape_of(modules: Iterable[tuple[str, int]]) -> tuple[str, int, int]:
    """(block list name, blocks, hidden width) of (module path, in_features) pairs: what a
    model has, or what a LoRA's layers were made for."""
    blocks: Counter[str] = Counter()
    widths: Counter[int] = Counter()
    for module, width in modules:
        match = re.search(r"(^|\.)(blocks|transformer_blocks|down_blocks)\.(\d+)\.", module)
        if match:
            blocks[match.group(2)] = max(blocks[match.group(2)], int(match.group(3)) + 1)
        widths[width] += 1
    kind = max(blocks, key=blocks.__getitem__, default="")
    return kind, blocks.get(kind, 0), max(widths, key=widths.__getitem__, default=0)


def describe_target(kind: str, blocks: int, width: int) -> str:
    known = KNOWN.get((kind, width))
    shape = f"{blocks} {kind}, width {width}" if blocks else f"width {width}"
    return f"{known} ({shape})" if known else f"a model with {shape}"


def check(pipe: Any, denoiser: str, model: str, label: str, state: dict[str, Any]) -> int:
    """How many LoRA layers fit the model (all must): existing modules with the same
    in/out sizes. Otherwise one line saying how many fit and what it seems made for."""
    layers = _layers(state, denoiser)
    if not layers:
        raise InputError(f"--lora {label}: the file holds no LoRA layers (lora_A/lora_B or "
                         "lora_down/lora_up weights)")
    fit = 0
    for (component, module), (down, up) in layers.items():
        target = getattr(pipe, component, None)
        try:
            layer = target.get_submodule(module) if target is not None else None
        except AttributeError:
            layer = None
        layer = getattr(layer, "base_layer", layer)
        ins, outs = getattr(layer, "in_features", None), getattr(layer, "out_features", None)
        if ins == int(down.shape[-1]) and (up is None or outs == int(up.shape[0])):
            fit += 1
    if fit < len(layers):
        ours = _shape_of((name, int(m.in_features))
                         for name, m in getattr(pipe, denoiser).named_modules()
                         if isinstance(getattr(m, "in_features", None), int))
        theirs = _shape_of((module, int(down.shape[-1]))
                           for (_, module), (down, _) in layers.items())
        raise InputError(
            f"--lora {label}: only {fit} of its {len(layers)} layers fit {model} "
            f"({describe_target(*ours)}); it seems made for {describe_target(*theirs)}")
    return fit


@contextmanager
def loras_loaded(pipe: Any, denoiser: str, model: str, specs: Sequence[LoraSpec],
                 fuse: bool = False) -> Iterator[list[dict[str, Any]]]:
    """Load the LoRAs at their scales for one job (`fuse`: into the weights); unfuse and
    unload them afterwards, whatever happens. Yields what the sidecar records about each."""
    if not specs:
        yield []
        return
    if not hasattr(pipe, "load_lora_weights"):
        raise InputError(f"--lora: {model} takes no LoRAs (diffusers has no LoRA loader for "
                         f"{type(pipe).__name__}); Wan, LTX-Video and CogVideoX do")
    _check_peft()
    records, names, components, fused = [], [], set(), False
    try:
        for index, spec in enumerate(specs):
            path = fetch(spec)
            state = pipe.lora_state_dict(str(path))
            if isinstance(state, tuple):  # some loaders return (state, alphas/metadata)
                state = state[0]
            fit = check(pipe, denoiser, model, spec.source, state)
            components |= {component for component, _ in _layers(state, denoiser)}
            name = f"img2vid_{index}"
            pipe.load_lora_weights(state, adapter_name=name)
            names.append(name)
            records.append({"source": spec.source, "file": path.name,
                            "sha256": file_sha256(path), "scale": spec.scale, "layers": fit,
                            "fused": fuse})
            log.info("LoRA %s (%s): %d layers at scale %g", spec.source, path.name, fit,
                     spec.scale)
        pipe.set_adapters(names, adapter_weights=[s.scale for s in specs])
        if fuse:  # at the adapters' weights set above
            pipe.fuse_lora(components=sorted(components), adapter_names=names)
            fused = True
        yield records
    finally:
        if fused:
            pipe.unfuse_lora(components=sorted(components))  # the base weights back first
        if names:
            pipe.unload_lora_weights()  # removes the layers, not just disables them


def _check_peft() -> None:
    try:
        import peft  # noqa: F401
    except ImportError:
        raise InputError("--lora needs the peft package: pip install 'img2vid[diffusion]' "
                         "(or pip install peft)") from None
