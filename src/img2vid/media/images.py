"""Safe image loading: size limits checked before decoding, EXIF, modes, alpha, clear errors."""

from __future__ import annotations

import hashlib
import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from img2vid.core.config import ImageSettings
from img2vid.core.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedImage:
    """An 8-bit RGB photo ready for an engine, with what the sidecar needs to know about it."""

    pixels: np.ndarray  # H x W x 3, uint8, C-contiguous
    path: str
    sha256: str
    source_format: str
    notes: tuple[str, ...] = field(default=())

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    def describe(self) -> dict[str, object]:
        return {"path": self.path, "sha256": self.sha256, "format": self.source_format,
                "width": self.width, "height": self.height, "notes": list(self.notes)}


def load_image(path: str | Path, settings: ImageSettings | None = None) -> LoadedImage:
    """Load `path` as 8-bit RGB, or raise InputError with one line saying what is wrong."""
    settings = settings or ImageSettings()
    path = Path(path)
    if not path.exists():
        raise InputError(f"image not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not an image")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes)")
    digest = file_sha256(path)
    notes: list[str] = []
    with _open_checked(path, settings) as im:
        fmt = im.format or "unknown"
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            notes.append(f"{path.name} is animated ({frames} frames); using its first frame")
            im.seek(0)
        im.load()
        pixels = _to_rgb8(ImageOps.exif_transpose(im), settings.background)
    _check_min_side(path, pixels.shape[1], pixels.shape[0], settings)
    for note in notes:
        log.warning(note)
    return LoadedImage(pixels=pixels, path=str(path), sha256=digest, source_format=fmt,
                       notes=tuple(notes))


@contextmanager
def _open_checked(path: Path, settings: ImageSettings) -> Iterator[Image.Image]:
    """Open with Pillow, refuse oversized headers, and turn Pillow's errors into one line."""
    if Image.MAX_IMAGE_PIXELS is not None and settings.max_pixels > Image.MAX_IMAGE_PIXELS:
        # Pillow refuses at open() what is over twice its own limit: never below ours
        Image.MAX_IMAGE_PIXELS = settings.max_pixels
    with warnings.catch_warnings():
        # Our own pixel limit replaces Pillow's global warning/error thresholds.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                _check_size(path, im.size, settings)
                yield im
        except InputError:
            raise
        except Image.DecompressionBombError as exc:
            # Pillow's own guard fires at open() for headers far beyond its default limit.
            claimed = re.search(r"\((\d+) pixels\)", str(exc))
            pixels = int(claimed.group(1)) if claimed else settings.max_pixels + 1
            raise InputError(_too_many_pixels(path, f"{pixels / 1e6:.0f} MP", settings)) from None
        except UnidentifiedImageError:
            raise InputError(f"{path} is not an image file that can be read "
                             "(JPEG, PNG, WebP, TIFF, BMP, GIF...)") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"{path} is truncated or corrupt ({exc}); "
                             "re-export or re-download it") from None


def _check_min_side(path: Path, width: int, height: int, settings: ImageSettings) -> None:
    if min(width, height) < settings.min_side:
        raise InputError(f"{path} is {width}x{height} px, too small: each side must be at "
                         f"least {settings.min_side} px")


def _check_size(path: Path, size: tuple[int, int], settings: ImageSettings) -> None:
    width, height = size
    if width * height > settings.max_pixels:
        raise InputError(_too_many_pixels(
            path, f"{width}x{height} px ({width * height / 1e6:.0f} MP)", settings))


def _too_many_pixels(path: Path, claimed: str, settings: ImageSettings) -> str:
    return (f"{path} is {claimed}, over the {settings.max_pixels / 1e6:.0f} MP limit; "
            "downscale it or raise images.max_pixels in config.yaml")


def _to_rgb8(im: Image.Image, background: str) -> np.ndarray:
    """Any Pillow mode -> H x W x 3 uint8, alpha composited onto `background`."""
    if im.mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        grey = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or grey.max(initial=0) > 255 else 255.0
        grey = np.clip(grey / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in {"LA", "La", "PA", "RGBa"}:
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        base = Image.new("RGBA", im.size, background)
        im = Image.alpha_composite(base, im)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


def file_sha256(path: Path) -> str:
    """A file's SHA-256: photos as sidecars record them (batch resume compares it), weights."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def probe_image(path: str | Path, settings: ImageSettings | None = None,
                ) -> tuple[str, int, int]:
    """Format, width and height from the header alone: a cheap check before queueing a job.

    Applies the same size limits and messages as `load_image`; a file whose pixel data is
    corrupt still passes and is caught when the job loads it.
    """
    settings = settings or ImageSettings()
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise InputError(f"{path} is empty or missing")
    with _open_checked(path, settings) as im:
        fmt, (width, height) = im.format or "unknown", im.size
    _check_min_side(path, width, height, settings)
    return fmt, width, height


def png_bytes(pixels: np.ndarray) -> bytes:
    """An RGB array as PNG file bytes (live previews)."""
    import io

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()
