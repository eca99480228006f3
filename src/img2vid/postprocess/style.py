"""Arbitrary style transfer with AdaIN (Huang & Belongie 2017): VGG-19 up to relu4_1,
adaptive instance normalisation, the published decoder. Applied to a photo once, before an
engine animates it, so every frame shares one stylisation (no flicker).

The layers are those of the PyTorch conversion of the authors' models (naoto0804/pytorch-AdaIN,
net.py), so its vgg_normalised.pth and decoder.pth load strictly; `img2vid models download
adain` fetches them (media/models_cache.py). torch is imported only here, lazily.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from img2vid.core.errors import InputError, ModelNotAvailableError
from img2vid.core.request import GenerationRequest
from img2vid.media.images import LoadedImage

if TYPE_CHECKING:
    import torch

    from img2vid.core.config import Settings

log = logging.getLogger(__name__)

VGG_FILE, DECODER_FILE = "vgg_normalised.pth", "decoder.pth"
ENCODER_LAYERS = 31  # vgg_normalised up to relu4_1, as the authors' test.py slices it
# The network runs on the photo with its long side at most WORK_SIDE and on the painting at
# most STYLE_SIDE (the authors use 512 for both); the stylised photo is resized back, which
# keeps CPU time and memory bounded at any size.
WORK_SIDE = 768
STYLE_SIDE = 512
EPS = 1e-5
WEIGHTS_HELP = ("run `img2vid models download adain` (fetches both from the pytorch-AdaIN "
                "release v0.0.0, SHA-256 checked), put them in {folder} yourself, or give "
                "--style-weights DIR")


class StyleWeightsError(InputError):
    """A weights file that does not match the AdaIN layers."""


def _vgg_layers() -> list[tuple[str, int, int]]:
    """(kind, in, out) of vgg_normalised's 53 modules, in order."""
    layers: list[tuple[str, int, int]] = [("conv1", 3, 3)]
    channels = 3
    for stage, (width, convs) in enumerate(((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))):
        if stage:
            layers.append(("pool", 0, 0))
        for _ in range(convs):
            layers += [("pad", 0, 0), ("conv3", channels, width), ("relu", 0, 0)]
            channels = width
    return layers


def _decoder_layers() -> list[tuple[str, int, int]]:
    spec: list[tuple[str, int, int]] = []
    for kind, cin, cout in (("conv", 512, 256), ("up", 0, 0), ("conv", 256, 256),
                            ("conv", 256, 256), ("conv", 256, 256), ("conv", 256, 128),
                            ("up", 0, 0), ("conv", 128, 128), ("conv", 128, 64), ("up", 0, 0),
                            ("conv", 64, 64), ("conv", 64, 3)):
        spec += [("up", 0, 0)] if kind == "up" else [("pad", 0, 0), ("conv3", cin, cout),
                                                     ("relu", 0, 0)]
    return spec[:-1]  # no ReLU after the last conv


def _build(spec: list[tuple[str, int, int]]) -> torch.nn.Sequential:
    from torch import nn

    modules: list[nn.Module] = []
    for kind, cin, cout in spec:
        if kind == "conv1":
            modules.append(nn.Conv2d(cin, cout, (1, 1)))
        elif kind == "conv3":
            modules.append(nn.Conv2d(cin, cout, (3, 3)))
        elif kind == "pad":
            modules.append(nn.ReflectionPad2d((1, 1, 1, 1)))
        elif kind == "relu":
            modules.append(nn.ReLU())
        elif kind == "pool":
            modules.append(nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True))
        else:
            modules.append(nn.Upsample(scale_factor=2, mode="nearest"))
    return nn.Sequential(*modules)


def build_vgg() -> torch.nn.Sequential:
    """The whole vgg_normalised (to relu5_4), as its weights file holds it."""
    return _build(_vgg_layers())


def build_decoder() -> torch.nn.Sequential:
    return _build(_decoder_layers())


def find_weights(explicit: str | Path | None, settings: Settings | None = None) -> Path:
    """The folder holding both files: --style-weights, else models.style_weights, else the
    model cache's adain/ folder."""
    from img2vid.media.models_cache import adain_weights_dir, cache_dir

    configured = settings.models.style_weights if settings is not None else None
    folder = Path(explicit or configured or adain_weights_dir(cache_dir(settings))).expanduser()
    missing = [name for name in (VGG_FILE, DECODER_FILE) if not (folder / name).is_file()]
    if missing:
        where = "the folder given" if explicit or configured else "the model cache"
        raise ModelNotAvailableError(f"--style needs {' and '.join(missing)}, not in "
                                     f"{where} ({folder}): " + WEIGHTS_HELP.format(folder=folder))
    return folder


def _load(module: torch.nn.Module, path: Path) -> None:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle and zip errors alike
        raise StyleWeightsError(f"{path.name} is not a readable weights file "
                                f"({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise StyleWeightsError(f"{path.name} holds no state dict")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:200]
        raise StyleWeightsError(f"{path.name} does not match the AdaIN "
                                f"{'encoder' if path.name == VGG_FILE else 'decoder'} "
                                f"layers: {detail}") from None


class StyleTransfer:
    """AdaIN with weights from a folder; CPU or the best GPU."""

    def __init__(self, folder: Path, device: str | None = None) -> None:
        import torch

        vgg, decoder = build_vgg(), build_decoder()
        _load(vgg, folder / VGG_FILE)
        _load(decoder, folder / DECODER_FILE)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.encoder = torch.nn.Sequential(*list(vgg.children())[:ENCODER_LAYERS])
        self.encoder.eval().to(self.device)
        self.decoder = decoder.eval().to(self.device)
        self.folder = folder

    def _tensor(self, pixels: np.ndarray, side: int) -> torch.Tensor:
        import torch

        h, w = pixels.shape[:2]
        scale = min(1.0, side / max(h, w))
        if scale < 1.0:
            pixels = cv2.resize(pixels, (max(1, round(w * scale)), max(1, round(h * scale))),
                                interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(np.array(pixels)).to(self.device)  # a copy: inputs may be read-only
        return x.permute(2, 0, 1)[None].float() / 255.0

    def __call__(self, photo: np.ndarray, style: np.ndarray, strength: float) -> np.ndarray:
        """The photo in the style's manner; strength 0 is the photo itself."""
        import torch

        if strength <= 0:
            return photo
        with torch.inference_mode():
            content_f = self.encoder(self._tensor(photo, WORK_SIDE))
            style_f = self.encoder(self._tensor(style, STYLE_SIDE))
            feat = adain(content_f, style_f)
            feat = feat * strength + content_f * (1 - strength)
            out = self.decoder(feat)[0].clamp(0, 1).mul(255).round().byte()
        result = out.permute(1, 2, 0).cpu().numpy()
        h, w = photo.shape[:2]
        if result.shape[:2] != (h, w):
            result = cv2.resize(result, (w, h), interpolation=cv2.INTER_LANCZOS4)
        return np.ascontiguousarray(result)

    def describe(self) -> dict[str, Any]:
        return {"method": "adain", "weights": str(self.folder), "device": str(self.device),
                "work_side": WORK_SIDE, "style_side": STYLE_SIDE}


def adain(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Content features with the style features' per-channel mean and std."""
    def stats(feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, c = feat.shape[:2]
        flat = feat.reshape(n, c, -1)
        return (flat.mean(dim=2).reshape(n, c, 1, 1),
                (flat.var(dim=2) + EPS).sqrt().reshape(n, c, 1, 1))

    c_mean, c_std = stats(content)
    s_mean, s_std = stats(style)
    return (content - c_mean) / c_std * s_std + s_mean


class Styliser:
    """A request's style, ready before the engine runs: the painting loaded, weights checked."""

    def __init__(self, style: LoadedImage, strength: float, weights: Path) -> None:
        self.style, self.strength = style, strength
        self.transfer = StyleTransfer(weights) if strength > 0 else None

    def apply(self, images: list[LoadedImage]) -> list[LoadedImage]:
        if self.transfer is None:
            return images
        return [replace(image, pixels=self.transfer(image.pixels, self.style.pixels,
                                                     self.strength),
                        notes=(*image.notes, f"stylised after {Path(self.style.path).name}"))
                for image in images]

    def apply_one(self, image: LoadedImage) -> LoadedImage:
        return self.apply([image])[0]

    def describe(self) -> dict[str, Any]:
        return {"image": Path(self.style.path).name, "sha256": self.style.sha256,
                "strength": self.strength,
                **(self.transfer.describe() if self.transfer else {"method": "adain"})}


def prepare(request: GenerationRequest, settings: Settings | None = None) -> Styliser | None:
    """The request's Styliser, or None; a missing painting or weights fail here, early."""
    if not request.style:
        return None
    from img2vid.media.images import load_image

    style = load_image(request.style, settings.images if settings is not None else None)
    weights = find_weights(request.style_weights, settings) if request.style_strength else None
    try:
        import torch  # noqa: F401  (only to report a missing install clearly)
    except ImportError:
        raise ModelNotAvailableError("--style needs PyTorch: install img2vid[diffusion]") from None
    return Styliser(style, request.style_strength, weights or Path())
