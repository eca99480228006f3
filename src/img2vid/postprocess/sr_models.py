"""Super-resolution checkpoints: spandrel when it is importable, else the two architectures
most published upscalers use (ESRGAN/Real-ESRGAN's RRDBNet and Real-ESRGAN's
SRVGGNetCompact), recognised from their state-dict keys and loaded strictly.

spandrel imports torchvision at import time (two of its architectures, LaMa and
RestoreFormer, use it), and torchvision has no CPU build for every torch; so it is optional,
and these two layouts keep upscaling available without it. torch is imported only when a
model is loaded.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from img2vid.core.errors import InputError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

ARCHITECTURES = "ESRGAN/Real-ESRGAN (RRDBNet) or Real-ESRGAN compact (SRVGGNetCompact)"


class UpscaleModelError(InputError):
    """A file that is not a super-resolution checkpoint we can run, or not at the scale asked."""


class UnknownArchitectureError(UpscaleModelError):
    """Tensors in a layout neither RRDBNet nor SRVGGNetCompact has."""


@dataclass
class LoadedModel:
    module: torch.nn.Module
    scale: int
    architecture: str


def build_rrdbnet(num_feat: int = 64, num_block: int = 23, num_grow: int = 32,
                  scale: int = 4, in_ch: int = 3, out_ch: int = 3) -> torch.nn.Module:
    """RRDBNet as BasicSR/Real-ESRGAN define it (x2 and x1 fold pixels into channels)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class RDB(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for i in range(5):
                c_out = num_feat if i == 4 else num_grow
                setattr(self, f"conv{i + 1}", nn.Conv2d(num_feat + i * num_grow, c_out, 3, 1, 1))
            self.lrelu = nn.LeakyReLU(0.2, True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            feats = [x]
            for i in range(4):
                feats.append(self.lrelu(getattr(self, f"conv{i + 1}")(torch.cat(feats, 1))))
            return self.conv5(torch.cat(feats, 1)) * 0.2 + x

    class RRDB(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rdb1, self.rdb2, self.rdb3 = RDB(), RDB(), RDB()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x

    fold = {4: 1, 2: 2, 1: 4}[scale]

    class RRDBNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv_first = nn.Conv2d(in_ch * fold * fold, num_feat, 3, 1, 1)
            self.body = nn.Sequential(*(RRDB() for _ in range(num_block)))
            self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_last = nn.Conv2d(num_feat, out_ch, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(0.2, True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            feat = F.pixel_unshuffle(x, fold) if fold > 1 else x
            feat = self.conv_first(feat)
            feat = feat + self.conv_body(self.body(feat))
            feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
            feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
            return self.conv_last(self.lrelu(self.conv_hr(feat)))

    return RRDBNet()


def build_srvgg(num_feat: int = 64, num_conv: int = 16, scale: int = 4, in_ch: int = 3,
                out_ch: int = 3) -> torch.nn.Module:
    """SRVGGNetCompact (PReLU) as Real-ESRGAN defines it: convs, pixel shuffle, plus the
    nearest-neighbour upscale of the input."""
    from torch import nn
    from torch.nn import functional as F

    class SRVGGNetCompact(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = [nn.Conv2d(in_ch, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
            for _ in range(num_conv):
                layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
            layers.append(nn.Conv2d(num_feat, out_ch * scale * scale, 3, 1, 1))
            self.body = nn.ModuleList(layers)
            self.upsampler = nn.PixelShuffle(scale)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = x
            for layer in self.body:
                out = layer(out)
            return self.upsampler(out) + F.interpolate(x, scale_factor=scale, mode="nearest")

    return SRVGGNetCompact()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .pth/.pt/.ckpt (weights only: no code runs) or .safetensors file;
    the params_ema/params/state_dict wrappers BasicSR and Lightning add are unwrapped."""
    import torch

    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            data: Any = load_file(str(path))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and safetensors each raise their own kinds
        raise UpscaleModelError(f"{path.name} is not a readable model checkpoint "
                                f"({type(exc).__name__}); give a .pth or .safetensors "
                                f"file of {ARCHITECTURES}") from None
    for key in ("params_ema", "params", "state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UpscaleModelError(f"{path.name} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in data.items()}


def identify(state: dict[str, torch.Tensor], name: str) -> LoadedModel:
    """Build the architecture these keys belong to and load them strictly."""
    if "conv_first.weight" in state and "conv_last.weight" in state:
        first = state["conv_first.weight"]
        in_ch = state["conv_last.weight"].shape[0]
        fold = round(math.sqrt(first.shape[1] / in_ch))
        scale = {1: 4, 2: 2, 4: 1}.get(fold, 0)
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.rdb1\.", k))}
        if scale and blocks:
            module = build_rrdbnet(num_feat=first.shape[0], num_block=max(blocks) + 1,
                                   num_grow=state["body.0.rdb1.conv1.weight"].shape[0],
                                   scale=scale, in_ch=in_ch, out_ch=in_ch)
            return _load(module, state, name, scale, "RRDBNet")
    convs = sorted(int(m.group(1)) for k in state
                   if (m := re.fullmatch(r"body\.(\d+)\.weight", k)) and state[k].ndim == 4)
    if convs and convs[0] == 0 and "body.1.weight" in state and state["body.1.weight"].ndim == 1:
        last = state[f"body.{convs[-1]}.weight"]
        in_ch = state["body.0.weight"].shape[1]
        scale = round(math.sqrt(last.shape[0] / in_ch))
        if scale >= 1 and scale * scale * in_ch == last.shape[0]:
            module = build_srvgg(num_feat=state["body.0.weight"].shape[0],
                                 num_conv=len(convs) - 2, scale=scale, in_ch=in_ch,
                                 out_ch=in_ch)
            return _load(module, state, name, scale, "SRVGGNetCompact")
    raise UnknownArchitectureError(f"{name} is not a checkpoint img2vid recognises: expected "
                                   f"{ARCHITECTURES}")


def spandrel_problem() -> str | None:
    """Why spandrel cannot load checkpoints here (not installed, or installed without the
    torchvision it imports), or None when it can."""
    try:
        import spandrel  # noqa: F401
    except ImportError as exc:
        if exc.name == "spandrel":
            return "spandrel is not installed (pip install spandrel torchvision)"
        return (f"spandrel is installed but cannot be imported: it needs {exc.name or exc}, "
                "which is not installed here (torchvision has no CPU build for every torch "
                "release: install the torchvision made for this torch)")
    return None


def _load(module: torch.nn.Module, state: dict[str, torch.Tensor], name: str, scale: int,
          arch: str) -> LoadedModel:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise UpscaleModelError(f"{name} looks like {arch} but its weights do not fit it "
                                f"({first[:160]})") from None
    return LoadedModel(module.eval(), scale, arch)


def load_model(path: Path) -> LoadedModel:
    """The model in `path`: RRDBNet or SRVGGNetCompact directly (the same with or without
    spandrel), any other architecture through spandrel when it is installed."""
    state = read_state_dict(path)
    try:
        return identify(state, path.name)
    except UnknownArchitectureError as unknown:
        problem = spandrel_problem()
        if problem:
            raise UnknownArchitectureError(f"{unknown}; others (SwinIR, HAT, DAT...) load "
                                           f"through spandrel, but {problem}; or use "
                                           "--upscaler lanczos (no weights)") from None
    import spandrel

    try:
        described = spandrel.ModelLoader().load_from_state_dict(state)
    except Exception as exc:  # spandrel raises many kinds for unknown layouts
        detail = f"{type(exc).__name__}: {str(exc)[:160]}".rstrip(": ")
        raise UpscaleModelError(f"{path.name} is not a checkpoint img2vid recognises: not "
                                f"{ARCHITECTURES}, and spandrel does not know it either "
                                f"({detail})") from None
    if not isinstance(described, spandrel.ImageModelDescriptor):
        raise UpscaleModelError(f"{path.name} is not an image-to-image model")
    return LoadedModel(described.model.eval(), described.scale, described.architecture.name)
