"""A synthetic scene with known depth for the parallax tests and benchmark: a textured near
card over a textured far plane, and a tiny random Depth Anything model saved in code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from img2vid.engines.parallax.paths import View3D
from img2vid.engines.parallax.render import sample
from img2vid.media.images import LoadedImage

FAR, NEAR = 0.25, 0.75  # disparities: the card is 3x nearer than the plane


@dataclass(frozen=True)
class Scene:
    photo: LoadedImage
    far_plane: np.ndarray  # the plane's texture everywhere, as if the card were not there
    rect: tuple[int, int, int, int]  # the card: x0, y0, x1, y1 (photo pixels)
    depth_path: Path


def texture(height: int, width: int, cell: int, seed: int, lo: int, hi: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(lo, hi, (height // cell + 2, width // cell + 2, 3)).astype(np.uint8)
    big = cv2.resize(small, (width + 2 * cell, height + 2 * cell), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(np.clip(big[cell:cell + height, cell:cell + width], lo, hi))


def make_scene(folder: Path, width: int = 640, height: int = 360) -> Scene:
    far = texture(height, width, 6, 1, 40, 215)
    card = texture(height, width, 5, 2, 0, 90)
    card[..., 0] += 160  # a red card: a stretched card edge looks nothing like the plane
    x0, y0, x1, y1 = width * 2 // 5, height // 3, width * 3 // 5, height * 2 // 3
    pixels = far.copy()
    pixels[y0:y1, x0:x1] = card[y0:y1, x0:x1]
    depth = np.full((height, width), FAR, np.float64)
    depth[y0:y1, x0:x1] = NEAR
    depth_path = folder / "depth.png"
    cv2.imwrite(str(depth_path), np.round(depth * 65535).astype(np.uint16))  # 16-bit, exact
    photo_path = folder / "scene.png"
    cv2.imwrite(str(photo_path), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    photo = LoadedImage(pixels=pixels, path=str(photo_path), sha256="", source_format="PNG")
    return Scene(photo, far, (x0, y0, x1, y1), depth_path)


def save_tiny_depth_model(folder: Path) -> Path:
    """A random Depth Anything V2 laid out like depth-anything/Depth-Anything-V2-Small-hf
    (config.json, model.safetensors, preprocessor_config.json), a few hundred kB."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=32, num_attention_heads=2, num_hidden_layers=4,
                            intermediate_size=64, image_size=518, patch_size=14,
                            out_features=["stage1", "stage2", "stage3", "stage4"],
                            out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, fusion_hidden_size=16,
                                 head_hidden_size=8, reassemble_hidden_size=32,
                                 neck_hidden_sizes=[8, 16, 32, 32], patch_size=14)
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    # the hub repo's preprocessor_config.json, verbatim values (DPTImageProcessor, 518x518,
    # keep_aspect_ratio, ensure_multiple_of 14, bicubic, ImageNet mean/std, no padding):
    # huggingface.co/depth-anything/Depth-Anything-V2-Small-hf/blob/32d0394/preprocessor_config.json
    DPTImageProcessorPil(do_resize=True, size={"height": 518, "width": 518},
                         keep_aspect_ratio=True, ensure_multiple_of=14, resample=3,
                         do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                         image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                         do_pad=False).save_pretrained(folder)
    return folder


def stretched_reveal(photo: np.ndarray, px: np.ndarray, qx: np.ndarray, py: np.ndarray,
                     qy: np.ndarray, rect: tuple[int, int, int, int], region: np.ndarray,
                     ) -> np.ndarray:
    """What a height-field renderer without a background layer shows in `region` (DepthFlow's
    shader): each ray meets the card's side at its outline and takes the colour there, so
    the card's edge is stretched across the reveal. (H x W x 3, only `region` is set.)"""
    x0, y0, x1, y1 = rect
    ys, xs = np.nonzero(region)
    out = np.zeros((*region.shape, 3), np.uint8)
    entry = np.full(ys.size, NEAR, np.float64)
    for w in np.linspace(NEAR, FAR, 401)[::-1]:  # from far to near: first w on the card
        x = px[xs] + qx[xs] * w + 0.5
        y = py[ys] + qy[ys] * w + 0.5
        on = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
        entry = np.where(on & (entry == NEAR), w, entry)
    x = np.clip(px[xs] + qx[xs] * entry, x0, x1 - 1).astype(np.float32)
    y = np.clip(py[ys] + qy[ys] * entry, y0, y1 - 1).astype(np.float32)
    out[ys, xs] = sample(photo, x, y)
    return out


def revealed_region(view: View3D, rect: tuple[int, int, int, int], out_w: int, out_h: int,
                    ) -> np.ndarray:
    """Output pixels that show the far plane where the photo shows the card (uncovered)."""
    px, qx, py, qy = view.rays(out_w, out_h)
    x0, y0, x1, y1 = rect

    def on_card(w: float) -> np.ndarray:
        x, y = px[None, :] + qx[None, :] * w + 0.5, py[:, None] + qy[:, None] * w + 0.5
        return (x > x0 + 1) & (x < x1 - 1) & (y > y0 + 1) & (y < y1 - 1)

    covered = cv2.dilate(on_card(NEAR).astype(np.uint8), np.ones((5, 5), np.uint8))
    return on_card(FAR) & ~covered.astype(bool)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-9)))


@dataclass(frozen=True)
class Reveal:
    """The end of a sideways truck past the card: how the uncovered plane is drawn."""

    slide: Any
    region: np.ndarray
    frame: np.ndarray
    disparity: np.ndarray
    ours_db: float  # PSNR of the reveal against the true plane
    stretched_db: float  # the same for the stretched-foreground baseline


def reveal_quality(engine: Any, scene: Scene, out_w: int, out_h: int) -> Reveal:
    from img2vid.core.request import build_request
    from img2vid.engines.parallax.engine import ParallaxPlanner
    from img2vid.engines.parallax.render import render
    from img2vid.engines.slideshow import Timeline

    request = build_request(images=(scene.photo.path,), engine="parallax", motion="truck-right",
                            depth=str(scene.depth_path), width=out_w, height=out_h,
                            num_frames=10, fps=10)
    slide = engine.prepare(request, scene.photo, out_w, out_h)
    built = ParallaxPlanner([slide], Timeline.plan(10, 1, 0), loop=False).build(0)
    view = slide.move.at(1.0)
    scale = slide.photo.shape[1] / scene.photo.pixels.shape[1]
    rect = (round(scene.rect[0] * scale), round(scene.rect[1] * scale),
            round(scene.rect[2] * scale), round(scene.rect[3] * scale))
    region = revealed_region(view, rect, out_w, out_h)
    px, qx, py, qy = view.rays(out_w, out_h)
    # the plane's texture where each pixel's ray meets it (sized to the rendered photo)
    plane = cv2.resize(scene.far_plane, (slide.photo.shape[1], slide.photo.shape[0]),
                       interpolation=cv2.INTER_AREA)
    truth = cv2.remap(plane, np.broadcast_to(px[None, :] + qx[None, :] * FAR,
                                             region.shape).astype(np.float32),
                      np.broadcast_to(py[:, None] + qy[:, None] * FAR,
                                      region.shape).astype(np.float32), cv2.INTER_LINEAR)
    frame, disparity = render(built, view, out_w, out_h)
    baseline = stretched_reveal(slide.photo, px, qx, py, qy, rect, region)
    return Reveal(slide, region, frame, disparity, psnr(frame[region], truth[region]),
                  psnr(baseline[region], truth[region]))
