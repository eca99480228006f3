"""Safe image loading: modes, EXIF, alpha, animation, and a corpus of bad files."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2vid.core.config import ImageSettings
from img2vid.core.errors import InputError
from img2vid.media.images import load_image


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    body = zlib.compress(b"\x00" * 16)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body)
                     + chunk(b"IEND", b""))
    return path


def bad_inputs(root: Path) -> dict[str, tuple[Path, str]]:
    """Every bad input of the issue, built here: name -> (path, expected words)."""
    root.mkdir(parents=True, exist_ok=True)
    good = root / "good.jpg"
    Image.new("RGB", (300, 200), (10, 120, 200)).save(good, quality=90)
    data = good.read_bytes()
    cases = {}
    (root / "empty.jpg").write_bytes(b"")
    cases["zero-byte"] = (root / "empty.jpg", "empty (0 bytes)")
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    cases["truncated"] = (root / "truncated.jpg", "truncated or corrupt")
    corrupt = bytearray(data)
    corrupt[200:400] = b"\xff" * 200
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    cases["corrupt"] = (root / "corrupt.png", "")
    (root / "notes.jpg").write_text("this is not an image\n")
    cases["not-an-image"] = (root / "notes.jpg", "not an image file")
    cases["missing"] = (root / "nope.png", "image not found")
    (root / "folder.png").mkdir(exist_ok=True)
    cases["directory"] = (root / "folder.png", "is a directory")
    cases["bomb"] = (_png_claiming(root / "bomb.png", 100_000, 100_000), "MP limit")
    Image.new("RGB", (40, 300)).save(root / "tiny.png")
    cases["too-small"] = (root / "tiny.png", "too small")
    return cases


@pytest.mark.parametrize("case", ["zero-byte", "truncated", "corrupt", "not-an-image", "missing",
                                  "directory", "bomb", "too-small"])
def test_bad_inputs_raise_one_clear_input_error(tmp_path, case):
    path, words = bad_inputs(tmp_path)[case]
    with pytest.raises(InputError) as err:
        load_image(path)
    assert words in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    path = _png_claiming(tmp_path / "b.png", 20_000, 20_000)

    def no_decode(self):  # decoding 400 MP would take seconds and gigabytes
        raise AssertionError("decoded a bomb")

    monkeypatch.setattr(Image.Image, "load", no_decode)
    with pytest.raises(InputError, match="over the 120 MP limit"):
        load_image(path)


def test_pixel_limit_is_configurable(tmp_path):
    Image.new("RGB", (300, 300)).save(tmp_path / "a.png")
    with pytest.raises(InputError, match="raise images.max_pixels"):
        load_image(tmp_path / "a.png", ImageSettings(max_pixels=50_000))
    assert load_image(tmp_path / "a.png", ImageSettings(max_pixels=90_000)).width == 300


def test_a_limit_above_pillows_own_is_honoured(tmp_path, monkeypatch):
    from img2vid.media.images import probe_image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # put back after
    path = _png_claiming(tmp_path / "big.png", 15_000, 14_000)  # 210 MP, past Pillow's 179
    assert probe_image(path, ImageSettings(max_pixels=300_000_000))[1:] == (15_000, 14_000)
    with pytest.raises(InputError, match="210 MP\\), over the 200 MP limit"):
        probe_image(path, ImageSettings(max_pixels=200_000_000))


def test_real_photo_loads_as_rgb8(photo):
    img = load_image(photo)
    assert img.pixels.shape == (400, 600, 3) and img.pixels.dtype == np.uint8
    assert img.pixels.flags.c_contiguous
    assert len(img.sha256) == 64 and img.source_format == "PNG"


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (200, 100), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 100, 100))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    im.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    px = load_image(tmp_path / "rot.jpg").pixels
    assert px.shape[:2] == (200, 100)  # portrait after rotation
    assert px[10, 50, 2] > 200 and px[190, 50, 0] > 200  # blue on top, red below


@pytest.mark.parametrize("mode, colour, expected", [
    ("RGBA", (255, 0, 0, 0), (255, 255, 255)),       # transparent -> background
    ("RGBA", (255, 0, 0, 255), (255, 0, 0)),
    ("LA", (0, 0), (255, 255, 255)),
    ("L", 128, (128, 128, 128)),
    ("1", 1, (255, 255, 255)),
    ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
    ("I;16", 65535, (255, 255, 255)),
    ("I;16", 32896, (128, 128, 128)),
])
def test_modes_become_8bit_rgb(tmp_path, mode, colour, expected):
    path = tmp_path / ("x.tif" if mode in {"CMYK", "I;16"} else "x.png")
    Image.new(mode, (80, 80), colour).save(path)
    px = load_image(path).pixels
    assert px.dtype == np.uint8 and px.shape == (80, 80, 3)
    assert tuple(int(v) for v in px[40, 40]) == expected


def test_background_colour_is_configurable(tmp_path):
    Image.new("RGBA", (80, 80), (0, 0, 0, 0)).save(tmp_path / "a.png")
    px = load_image(tmp_path / "a.png", ImageSettings(background="#102030")).pixels
    assert tuple(int(v) for v in px[0, 0]) == (0x10, 0x20, 0x30)


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (80, 80), 0)
    im.putpalette([0, 255, 0] * 256)
    im.info["transparency"] = 0
    im.save(tmp_path / "p.png", transparency=0)
    assert tuple(load_image(tmp_path / "p.png").pixels[5, 5]) == (255, 255, 255)


def test_animated_gif_uses_first_frame_and_says_so(tmp_path, caplog):
    frames = [Image.new("RGB", (80, 80), c) for c in [(255, 0, 0), (0, 0, 255)]]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=100)
    img = load_image(tmp_path / "a.gif")
    assert img.pixels[40, 40, 0] > 200 and img.pixels[40, 40, 2] < 50
    assert any("first frame" in n for n in img.notes)
    assert "animated (2 frames)" in caplog.text
