"""Safe image loading: size limits checked before decoding, EXIF, modes, alpha, clear errors."""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from img2vid.core.config import ImageSettings
from img2vid.core.errors import InputError

log = logging.getLogger(__name__)

# Photo formats people bring; each is read only if this Pillow (plus pillow-heif) opens it.
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".tif", ".tiff", ".bmp",
                  ".gif", ".avif", ".heic", ".heif", ".qoi", ".tga", ".ppm", ".pgm", ".pnm")


@functools.cache
def _register_heif() -> None:
    """HEIC/HEIF (the iPhone default) through pillow-heif, when it is installed."""
    try:
        import pillow_heif
    except ImportError:
        log.info("pillow-heif is not installed: HEIC/HEIF photos cannot be read")
        return
    pillow_heif.register_heif_opener()


@functools.cache
def readable_suffixes() -> frozenset[str]:
    """The photo extensions this installation can decode (Pillow's openers + pillow-heif)."""
    _register_heif()
    Image.init()
    known = Image.registered_extensions()
    return frozenset(s for s in PHOTO_SUFFIXES if known.get(s) in Image.OPEN)


def readable_formats() -> str:
    """For messages: the formats that are read, e.g. 'JPEG, PNG, WebP, ..., HEIC/HEIF'."""
    names = {".jpg": "JPEG", ".png": "PNG", ".webp": "WebP", ".tif": "TIFF", ".bmp": "BMP",
             ".gif": "GIF", ".avif": "AVIF", ".heic": "HEIC/HEIF", ".qoi": "QOI",
             ".tga": "TGA", ".ppm": "PPM/PGM"}
    readable = readable_suffixes()
    return ", ".join(name for suffix, name in names.items() if suffix in readable)


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
    _check_not_url(path)
    path = _existing_file(Path(path))
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


def _existing_file(path: Path) -> Path:
    if not path.exists():
        raise InputError(f"image not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not an image")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes)")
    return path


@contextmanager
def _open_checked(path: Path, settings: ImageSettings) -> Iterator[Image.Image]:
    """Open with Pillow, refuse oversized headers, and turn Pillow's errors into one line."""
    if Image.MAX_IMAGE_PIXELS is not None and settings.max_pixels > Image.MAX_IMAGE_PIXELS:
        # Pillow refuses at open() what is over twice its own limit: never below ours
        Image.MAX_IMAGE_PIXELS = settings.max_pixels
    _register_heif()
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
            raise InputError(f"{path} is not an image file that can be read (formats read: "
                             f"{readable_formats()})") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"{path} is truncated or corrupt ({exc}); "
                             "re-export or re-download it") from None


def _check_not_url(path: str | Path) -> None:
    # Path() would fold the '//' of a URL and report a mangled "image not found"
    if isinstance(path, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path):
        raise InputError(f"{path}: URLs are not read; download the file first")


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


def load_grey(path: str | Path, settings: ImageSettings | None = None) -> np.ndarray:
    """A single-channel image (a depth map) as float32 in [0, 1], 16-bit precision kept.

    Same size limits and one-line errors as `load_image`; colour images count by luminance.
    """
    settings = settings or ImageSettings()
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise InputError(f"{path} is empty or missing")
    with _open_checked(path, settings) as im:
        im.load()
        if im.mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
            values = np.asarray(im, dtype=np.float32)
            top = 65535.0 if im.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
            return np.clip(values / top, 0.0, 1.0)
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


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
    _check_not_url(path)
    path = _existing_file(Path(path))
    with _open_checked(path, settings) as im:
        fmt, (width, height) = im.format or "unknown", im.size
    _check_min_side(path, width, height, settings)
    return fmt, width, height


def check_total_pixels(sizes: Sequence[tuple[int, int]], settings: ImageSettings) -> None:
    """A job's photos together, from their headers: refused before any is decoded."""
    total = sum(width * height for width, height in sizes)
    if total > settings.max_total_pixels:
        raise InputError(f"the {len(sizes)} photos add up to {total / 1e6:.0f} MP, over the "
                         f"{settings.max_total_pixels / 1e6:.0f} MP one job may decode "
                         "(images.max_total_pixels); send fewer or smaller photos")


class LazyImages(Sequence[LoadedImage]):
    """A job's photos, decoded when an engine asks for one and forgotten soon after, so a
    slideshow holds a couple of photos however many it has. Every header is checked (size
    limits, the job's pixel budget) when it is made."""

    KEEP = 2  # the photo being shown and the next (a crossfade needs both)

    def __init__(self, paths: Sequence[str | Path], settings: ImageSettings, *,
                 transform: Callable[[LoadedImage], LoadedImage] | None = None) -> None:
        for raw in paths:
            _check_not_url(raw)  # before Path() folds a URL's '//'
        self.paths = [Path(p) for p in paths]
        self.settings = settings
        self.transform = transform  # applied to each photo as it is decoded
        self.sizes = [probe_image(path, settings)[1:] for path in self.paths]
        check_total_pixels(self.sizes, settings)
        self._recent: OrderedDict[int, LoadedImage] = OrderedDict()
        self._described: dict[int, dict[str, object]] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> LoadedImage:  # type: ignore[override]
        if not isinstance(index, int):
            raise TypeError("LazyImages takes one index at a time")
        index = range(len(self.paths))[index]
        image = self._recent.pop(index, None)
        if image is None:
            image = load_image(self.paths[index], self.settings)
            if self.transform is not None:
                image = self.transform(image)
        self._recent[index] = image
        while len(self._recent) > self.KEEP:
            self._recent.popitem(last=False)
        self._described.setdefault(index, image.describe())
        return image

    def describe(self) -> list[dict[str, object]]:
        """What the sidecar records of each photo (decoding any not yet seen)."""
        return [self._described.get(i) or self[i].describe() for i in range(len(self))]


def png_bytes(pixels: np.ndarray) -> bytes:
    """An RGB array as PNG file bytes (live previews)."""
    import io

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()
