"""AdaIN style transfer through the real loading path, with weights made in code: random
ones (shapes, strictness) and hand-set ones that pass colour through (statistics)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from img2vid.core.errors import ModelNotAvailableError
from img2vid.core.request import build_request
from img2vid.execution.pipeline import generate
from img2vid.postprocess.style import (
    DECODER_FILE,
    VGG_FILE,
    StyleTransfer,
    StyleWeightsError,
    build_decoder,
    build_vgg,
    find_weights,
)
from tests.conftest import run_cli
from tests.media import video_frames


def random_weights(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(build_vgg().state_dict(), folder / VGG_FILE)
    torch.save(build_decoder().state_dict(), folder / DECODER_FILE)
    return folder


def colour_weights(folder: Path) -> Path:
    """Every conv passes RGB through on channels 0-2 (the rest stay zero): the encoder's
    relu4_1 is the photo at 1/8 size and the decoder brings it back, so AdaIN becomes a
    colour-statistics transfer whose effect is visible in the output image."""
    folder.mkdir(parents=True, exist_ok=True)
    for module, name in ((build_vgg(), VGG_FILE), (build_decoder(), DECODER_FILE)):
        with torch.no_grad():
            for layer in module:
                if isinstance(layer, torch.nn.Conv2d):
                    layer.weight.zero_()
                    layer.bias.zero_()
                    centre = layer.kernel_size[0] // 2
                    for c in range(3):
                        layer.weight[c, c, centre, centre] = 1.0
        torch.save(module.state_dict(), folder / name)
    return folder


def _photo(seed=0, shape=(64, 96)):
    rng = np.random.default_rng(seed)
    return rng.integers(60, 200, (*shape, 3), dtype=np.uint8)


def test_shapes_and_strength_zero(tmp_path):
    transfer = StyleTransfer(random_weights(tmp_path / "w"))
    photo, style = _photo(0, (70, 101)), _photo(1, (40, 40))
    out = transfer(photo, style, 1.0)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert transfer(photo, style, 0.0) is photo


def test_statistics_move_towards_the_style(tmp_path):
    transfer = StyleTransfer(colour_weights(tmp_path / "w"))
    photo = _photo(0)
    style = np.zeros((64, 64, 3), np.uint8)
    style[..., 0], style[..., 2] = 220, 30  # a red painting
    style[::2, ::2, 1] = 120
    before = photo.reshape(-1, 3).mean(0)
    target = style.reshape(-1, 3).mean(0)
    half = transfer(photo, style, 0.5).reshape(-1, 3).mean(0)
    full = transfer(photo, style, 1.0).reshape(-1, 3).mean(0)
    assert np.all(np.abs(full - target) < np.abs(before - target))
    assert np.all(np.abs(full - target) <= np.abs(half - target) + 1)  # strength is graded


def test_weights_are_checked_strictly(tmp_path):
    folder = random_weights(tmp_path / "w")
    state = torch.load(folder / DECODER_FILE)
    state.pop("28.bias")
    torch.save(state, folder / DECODER_FILE)
    with pytest.raises(StyleWeightsError, match="does not match the AdaIN decoder"):
        StyleTransfer(folder)
    (folder / VGG_FILE).write_bytes(b"garbage")
    with pytest.raises(StyleWeightsError, match="not a readable weights file"):
        StyleTransfer(folder)


def test_missing_weights_say_where_to_put_them(tmp_path, settings):
    with pytest.raises(ModelNotAvailableError, match="vgg_normalised.pth and decoder.pth"):
        find_weights(None, settings.model_copy(update={"models": settings.models.model_copy(
            update={"cache_dir": tmp_path / "cache"})}))


def test_generate_with_style_is_stylised_once(settings, photo, tmp_path):
    weights = colour_weights(tmp_path / "w")
    painting = tmp_path / "painting.png"
    Image.fromarray(np.full((80, 80, 3), (200, 40, 40), np.uint8)).save(painting)
    small = tmp_path / "small.png"
    Image.open(photo).convert("RGB").resize((120, 80)).save(small)
    request = build_request(images=[str(small)], width=96, height=64, fps=8, num_frames=4,
                            motion="static", style=str(painting), style_weights=str(weights),
                            encode_speed="ultrafast", crf=10)
    result = generate(request, settings)
    frames = video_frames(result.output)
    plain = video_frames(generate(request.model_copy(update={"style": None}), settings).output)
    assert len(frames) == 4
    red = [f[..., 0].mean() - f[..., 2].mean() for f in (frames[0], plain[0])]
    assert red[0] > red[1] + 20  # redder, like the painting
    assert max(np.abs(a.astype(int) - b.astype(int)).mean()
               for a, b in zip(frames, frames[1:])) < 1.0  # one stylisation for all frames
    side = json.loads(result.sidecar.read_text())
    assert side["style"]["image"] == "painting.png" and side["style"]["strength"] == 1.0


def test_cli_style_without_weights_is_one_line(tmp_path, photo):
    done = run_cli("generate", photo, "--style", photo, "--duration", "1", cwd=tmp_path,
                   env={"IMG2VID_MODEL_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 2
    assert "vgg_normalised.pth and decoder.pth" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
