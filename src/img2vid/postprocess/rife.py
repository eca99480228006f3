"""RIFE frame interpolation: Practical-RIFE's IFNet (v4.25/v4.26 layout) in PyTorch, with a
strict weights loader. torch is imported only when a RIFE interpolator is built."""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from img2vid.core.errors import InputError
from img2vid.postprocess.interpolate import FlowInterpolator

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Keys in published checkpoints that only training uses: the teacher block (distillation)
# and the timestep-calibration head.
TRAINING_ONLY_PREFIXES = ("teacher.", "caltime.")
PAD_MULTIPLE = 64  # block0 works at 1/16 size and halves twice more
CUT_CHECK_SIDE = 160  # thumbnail size for scene-cut detection


class RifeWeightsError(InputError):
    """A weights file that is not a usable RIFE 4.25/4.26 IFNet state dict."""


def build_ifnet() -> torch.nn.Module:
    """A randomly initialised IFNet (v4.25 layout: 5 blocks, 158 tensors)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def conv(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=True),
                             nn.LeakyReLU(0.2, True))

    class ResConv(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, 1, 1)
            self.beta = nn.Parameter(torch.ones((1, c, 1, 1)))
            self.relu = nn.LeakyReLU(0.2, True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.conv(x) * self.beta + x)

    class Head(nn.Module):
        """Per-frame features (4 channels at full size) fed to every block."""

        def __init__(self) -> None:
            super().__init__()
            self.cnn0 = nn.Conv2d(3, 16, 3, 2, 1)
            self.cnn1 = nn.Conv2d(16, 16, 3, 1, 1)
            self.cnn2 = nn.Conv2d(16, 16, 3, 1, 1)
            self.cnn3 = nn.ConvTranspose2d(16, 4, 4, 2, 1)
            self.relu = nn.LeakyReLU(0.2, True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.relu(self.cnn0(x))
            x = self.relu(self.cnn1(x))
            x = self.relu(self.cnn2(x))
            return self.cnn3(x)

    class IFBlock(nn.Module):
        """Estimates (a residual of) both flows, the blend mask and 8 feature channels at
        1/scale of the input size."""

        def __init__(self, in_planes: int, c: int) -> None:
            super().__init__()
            self.conv0 = nn.Sequential(conv(in_planes, c // 2, 2), conv(c // 2, c, 2))
            self.convblock = nn.Sequential(*(ResConv(c) for _ in range(8)))
            self.lastconv = nn.Sequential(nn.ConvTranspose2d(c, 4 * 13, 4, 2, 1),
                                          nn.PixelShuffle(2))

        def forward(self, x: torch.Tensor, flow: torch.Tensor | None,
                    scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
            if flow is not None:
                flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear",
                                     align_corners=False) / scale
                x = torch.cat((x, flow), 1)
            feat = self.convblock(self.conv0(x))
            tmp = self.lastconv(feat)
            tmp = F.interpolate(tmp, scale_factor=scale, mode="bilinear", align_corners=False)
            return tmp[:, :4] * scale, tmp[:, 4:5], tmp[:, 5:]

    class IFNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block0 = IFBlock(7 + 8, c=192)
            self.block1 = IFBlock(8 + 4 + 8 + 8, c=128)
            self.block2 = IFBlock(8 + 4 + 8 + 8, c=96)
            self.block3 = IFBlock(8 + 4 + 8 + 8, c=64)
            self.block4 = IFBlock(8 + 4 + 8 + 8, c=32)
            self.encode = Head()

        def forward(self, img0: torch.Tensor, img1: torch.Tensor, timestep: float,
                    scale_list: tuple[float, ...], f0: torch.Tensor | None = None,
                    f1: torch.Tensor | None = None) -> torch.Tensor:
            """The frame at `timestep` between img0 and img1 (N x 3 x H x W in 0..1)."""
            t = torch.full_like(img0[:, :1], timestep)
            f0 = self.encode(img0) if f0 is None else f0
            f1 = self.encode(img1) if f1 is None else f1
            blocks = (self.block0, self.block1, self.block2, self.block3, self.block4)
            flow = mask = feat = None
            warped0, warped1 = img0, img1
            for block, scale in zip(blocks, scale_list):
                if flow is None:
                    flow, mask, feat = block(torch.cat((img0, img1, f0, f1, t), 1), None, scale)
                else:
                    wf0 = warp(f0, flow[:, :2])
                    wf1 = warp(f1, flow[:, 2:4])
                    delta, mask, feat = block(
                        torch.cat((warped0, warped1, wf0, wf1, t, mask, feat), 1), flow, scale)
                    flow = flow + delta
                warped0 = warp(img0, flow[:, :2])
                warped1 = warp(img1, flow[:, 2:4])
            weight = torch.sigmoid(mask)
            return warped0 * weight + warped1 * (1 - weight)

    def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """Backward warp by a pixel flow. Coordinates are built in float32 whatever the
        model's dtype: in fp16 a normalised 1080p grid would be off by up to half a pixel."""
        n, _, h, w = flow.shape
        xs = torch.linspace(-1.0, 1.0, w, device=flow.device).view(1, 1, w).expand(n, h, w)
        ys = torch.linspace(-1.0, 1.0, h, device=flow.device).view(1, h, 1).expand(n, h, w)
        flow = flow.float()
        grid = torch.stack((xs + flow[:, 0] * (2.0 / (w - 1.0)),
                            ys + flow[:, 1] * (2.0 / (h - 1.0))), dim=3)
        out = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border",
                            align_corners=True)
        return out.to(image.dtype)

    return IFNet()


def clean_state_dict(state: Any, source: str = "weights") -> dict[str, Any]:
    """The IFNet tensors of a loaded checkpoint: `module.` prefixes (DataParallel) removed,
    training-only keys dropped. Anything that is not a flat dict of tensors is refused."""
    import torch

    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"],
                                                                        dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise RifeWeightsError(f"{source} is not a RIFE state dict (got {type(state).__name__})")
    out: dict[str, Any] = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise RifeWeightsError(f"{source} is not a RIFE state dict (entry {key!r} is "
                                   f"{type(value).__name__}, not a tensor)")
        key = key.removeprefix("module.")
        if key.startswith(TRAINING_ONLY_PREFIXES):
            continue
        out[key] = value
    return out


def _count(keys: list[str]) -> str:
    return f"{len(keys)} key" + ("s" if len(keys) != 1 else "")


def _names(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_ifnet(path: str | Path, device: str = "cpu",
               dtype: torch.dtype | None = None) -> torch.nn.Module:
    """IFNet with the weights at `path`, loaded strictly, in eval mode on `device`.

    Every tensor the network has must be in the file with the right shape, and the file
    may hold nothing else (besides the training-only keys): a loader that silently keeps
    a fraction of the keys would run a random network.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise RifeWeightsError(f"RIFE weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError,
            zipfile.BadZipFile) as exc:  # all mean "not a readable weights file"
        raise RifeWeightsError(f"cannot read RIFE weights {path}: {exc}".splitlines()[0]) from None
    state = clean_state_dict(state, str(path))
    model = build_ifnet()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{_count(missing)} missing ({_names(missing)})")
        if unexpected:
            parts.append(f"{_count(unexpected)} unexpected ({_names(unexpected)})")
        raise RifeWeightsError(f"{path} is not a RIFE 4.25/4.26 IFNet checkpoint: "
                               + "; ".join(parts))
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if state[k].shape != v.shape]
    if wrong:
        raise RifeWeightsError(f"{path} is not a RIFE 4.25/4.26 IFNet checkpoint: wrong "
                               f"shapes for {_names(wrong, 3)}")
    model.load_state_dict(state, strict=True)
    log.info("loaded RIFE IFNet from %s (%d tensors)", path, len(expected))
    return model.to(device=device, dtype=dtype).eval()


class RifeInterpolator:
    """RIFE 4.25/4.26 on CUDA in fp16 when available, else on CPU in fp32 (`half` forces
    either precision).

    `scale` is Practical-RIFE's setting: 1.0 for footage up to about 2K, 0.5 for 4K (flow
    estimated at half size, faster and better for large motion). Each in-between time is
    one network pass (RIFE takes the time as an input); the per-frame features are shared.
    """

    name = "rife"

    def __init__(self, weights: str | Path, device: str | None = None,
                 scale: float = 1.0, half: bool | None = None) -> None:
        import torch

        if scale not in (0.25, 0.5, 1.0, 2.0):
            raise ValueError(f"scale must be 0.25, 0.5, 1.0 or 2.0, got {scale}")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if half is None:  # fp16 where it is fast; CPUs run fp16 convolutions slowly
            half = self.device.type == "cuda"
        self.dtype = torch.float16 if half else torch.float32
        self.scale = scale
        self.model = load_ifnet(weights, str(self.device), self.dtype)
        self.weights = Path(weights)
        self._cut_check = FlowInterpolator(max_side=CUT_CHECK_SIDE)
        self._last: tuple[np.ndarray, Any, Any] | None = None

    @property
    def scale_list(self) -> tuple[float, ...]:
        return tuple(s / self.scale for s in (16, 8, 4, 2, 1))

    def _tensor(self, frame: np.ndarray) -> tuple[Any, Any]:
        """Padded N x 3 x H x W tensor of a frame and its Head features (cached for reuse:
        in a stream each frame is the second of one pair and the first of the next)."""
        import torch
        from torch.nn import functional as F

        if self._last is not None and self._last[0] is frame:
            return self._last[1], self._last[2]
        h, w = frame.shape[:2]
        multiple = max(PAD_MULTIPLE, int(PAD_MULTIPLE / self.scale))
        ph, pw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device)
            x = x.permute(2, 0, 1).unsqueeze(0).to(self.dtype) / 255.0
            x = F.pad(x, (0, pw - w, 0, ph - h))
            feat = self.model.encode(x)
        self._last = (frame, x, feat)
        return x, feat

    def prepare(self, a: np.ndarray, b: np.ndarray) -> RifePair:
        if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"frames must be H x W x 3 and the same size, got {a.shape} "
                             f"and {b.shape}")
        x0, f0 = self._tensor(a)
        x1, f1 = self._tensor(b)
        return RifePair(self, a, b, x0, x1, f0, f1, self._same_shot(a, b))

    def _same_shot(self, a: np.ndarray, b: np.ndarray) -> bool:
        """The flow interpolator's scene-cut test on thumbnails (about 1 ms a pair)."""
        step = max(1, max(a.shape[:2]) // CUT_CHECK_SIDE)
        small_a = np.ascontiguousarray(a[::step, ::step])
        small_b = np.ascontiguousarray(b[::step, ::step])
        return self._cut_check.prepare(small_a, small_b).confident


class RifePair:
    """Two frames on the device, ready for RIFE at any time between them."""

    def __init__(self, owner: RifeInterpolator, a: np.ndarray, b: np.ndarray, x0: Any,
                 x1: Any, f0: Any, f1: Any, confident: bool) -> None:
        self.owner = owner
        self.a, self.b = a, b
        self.x0, self.x1, self.f0, self.f1 = x0, x1, f0, f1
        self.height, self.width = a.shape[:2]
        self.confident = confident

    def render(self, t: float) -> np.ndarray:
        import torch

        if not self.confident:
            return self.a if t < 0.5 else self.b  # a scene cut: repeat, do not smear
        with torch.inference_mode():
            out = self.owner.model(self.x0, self.x1, float(t), self.owner.scale_list,
                                   self.f0, self.f1)
            out = out[0, :, :self.height, :self.width].clamp_(0, 1).mul_(255).round_()
            return out.to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
