"""AdaIN style transfer through the real loading path, with weights made in code: random
ones (shapes, strictness) and hand-set ones that pass colour through (statistics)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from img2vid.core.errors import ModelNotAvailableError
from img2vid.core.request import build_request
from img2vid.execution.pipeline import generate
from img2vid.media import models_cache
from img2vid.media.models_cache import (
    ADAIN_RELEASE,
    ADAIN_SHA256,
    DownloadError,
    adain_weights_dir,
    download_adain,
)
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


# --- the download (a fake opener: no network in tests) ----------------------------------------

class FakeRelease:
    """Serves bytes by file name, like the release's URLs; counts what was fetched."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.fetched = files, []

    def __call__(self, url: str):  # type: ignore[no-untyped-def]
        import io

        assert url.startswith(ADAIN_RELEASE + "/")
        name = url.rsplit("/", 1)[1]
        self.fetched.append(name)
        if name not in self.files:
            raise OSError("HTTP Error 404: Not Found")
        return io.BytesIO(self.files[name])


def test_download_checks_each_hash_and_loads(tmp_path, monkeypatch):
    """Weights of the real architecture, served by a fake release whose hashes are pinned
    for the test: stored in the cache's adain/ folder, found there by --style, loaded
    strictly; a second download fetches nothing."""
    made = random_weights(tmp_path / "made")
    files = {name: (made / name).read_bytes() for name in (VGG_FILE, DECODER_FILE)}
    monkeypatch.setattr(models_cache, "ADAIN_SHA256",
                        {n: hashlib.sha256(b).hexdigest() for n, b in files.items()})
    release = FakeRelease(files)
    cache = tmp_path / "cache"
    folder = download_adain(cache, opener=release)
    assert folder == adain_weights_dir(cache) and sorted(release.fetched) == sorted(files)
    assert find_weights(None, _with_cache(cache)) == folder
    StyleTransfer(folder)  # strict loading of what was stored
    assert download_adain(cache, opener=release) == folder
    assert len(release.fetched) == 2  # both kept: nothing fetched again


def test_download_with_a_wrong_hash_stores_nothing(tmp_path):
    release = FakeRelease({VGG_FILE: b"<html>captive portal</html>", DECODER_FILE: b"x"})
    with pytest.raises(DownloadError, match=f"SHA-256 .* expected {ADAIN_SHA256[VGG_FILE]}"):
        download_adain(tmp_path / "cache", opener=release)
    assert list(adain_weights_dir(tmp_path / "cache").iterdir()) == []  # no partial file


def test_download_failure_is_one_line_saying_where_to_put_the_files(tmp_path):
    with pytest.raises(DownloadError) as caught:
        download_adain(tmp_path / "cache", opener=FakeRelease({}))
    message = str(caught.value)
    assert "\n" not in message and "404" in message
    assert f"{ADAIN_RELEASE}/{VGG_FILE}" in message
    assert str(adain_weights_dir(tmp_path / "cache")) in message and "--style-weights" in message


def test_models_download_adain_command(tmp_path, monkeypatch, capsys):
    """`img2vid models download adain` goes to the same download (opener faked)."""
    import argparse

    from img2vid.interfaces.cli import models as models_cmd

    made = random_weights(tmp_path / "made")
    files = {name: (made / name).read_bytes() for name in (VGG_FILE, DECODER_FILE)}
    monkeypatch.setattr(models_cache, "ADAIN_SHA256",
                        {n: hashlib.sha256(b).hexdigest() for n, b in files.items()})
    monkeypatch.setattr(models_cache, "open_url", FakeRelease(files))
    cache = tmp_path / "cache"
    assert models_cmd.download_model(argparse.Namespace(name="adain"), _with_cache(cache)) == 0
    assert capsys.readouterr().out.strip() == str(adain_weights_dir(cache))


def _with_cache(cache: Path):  # type: ignore[no-untyped-def]
    from img2vid.core.config import Settings

    settings = Settings()
    return settings.model_copy(update={"models": settings.models.model_copy(
        update={"cache_dir": cache})})


def test_cli_style_from_the_cache_with_codec_and_upscale(tmp_path, photo):
    """The CLI end to end: weights where `img2vid models download adain` puts them, a
    painting, HEVC and a 2x Lanczos upscale; the file decodes with PyAV."""
    import av

    cache = tmp_path / "cache"
    colour_weights(adain_weights_dir(cache))
    painting = tmp_path / "painting.png"
    Image.fromarray(np.full((80, 80, 3), (200, 40, 40), np.uint8)).save(painting)
    out = tmp_path / "styled.mp4"
    done = run_cli("generate", photo, "--style", painting, "--style-strength", "0.8",
                   "--codec", "hevc", "--upscale", "2", "--upscaler", "lanczos",
                   "--width", "96", "--height", "64", "--fps", "8", "--num-frames", "6",
                   "--encode-speed", "ultrafast", "-o", out, cwd=tmp_path,
                   env={"IMG2VID_MODEL_CACHE": str(cache)})
    assert done.returncode == 0, done.stderr
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_tag) == ("hevc", "hvc1")
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(frames) == 6 and frames[0].shape == (128, 192, 3)
    assert frames[0][..., 0].mean() > frames[0][..., 2].mean() + 20  # the painting's red
    side = json.loads(Path(f"{out}.json").read_text())
    assert side["style"]["weights"] == str(adain_weights_dir(cache))
