"""Upscaling: real SR architectures with random weights through the real loading path,
strict loading, tiling, temporal stability, the CLI command and the generate option."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from img2vid.core.request import build_request
from img2vid.execution.pipeline import generate
from img2vid.postprocess.sr_models import UpscaleModelError, build_rrdbnet, build_srvgg
from img2vid.postprocess.upscale import LanczosUpscaler, ModelUpscaler
from tests.conftest import run_cli
from tests.media import streams, video_frames, write_tone


def save_srvgg(path: Path, scale: int, *, wrapper: str | None = "params") -> Path:
    """A Real-ESRGAN compact checkpoint laid out as published, with random weights (the
    last conv scaled down: near the nearest-neighbour base, as trained models are)."""
    torch.manual_seed(scale)
    model = build_srvgg(num_feat=16, num_conv=4, scale=scale)
    with torch.no_grad():
        model.body[-1].weight.mul_(0.1)
    state = model.state_dict()
    torch.save({wrapper: state} if wrapper else state, path)
    return path


def save_rrdb(path: Path, scale: int) -> Path:
    """An ESRGAN/Real-ESRGAN RRDBNet checkpoint (params_ema, as Real-ESRGAN ships it)."""
    torch.manual_seed(10 + scale)
    model = build_rrdbnet(num_feat=16, num_block=1, num_grow=8, scale=scale)
    torch.save({"params_ema": model.state_dict()}, path)
    return path


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("save", [save_srvgg, save_rrdb])
def test_checkpoints_load_and_upscale(tmp_path, save, scale):
    up = ModelUpscaler(save(tmp_path / "m.pth", scale), scale)
    frame = np.random.default_rng(0).integers(0, 255, (37, 50, 3), dtype=np.uint8)
    out = up(frame)
    assert out.shape == (37 * scale, 50 * scale, 3) and out.dtype == np.uint8
    assert up.describe()["architecture"] in {"SRVGGNetCompact", "RRDBNet"}


def test_tiles_join_without_seams(tmp_path):
    """Tiled inference equals one pass over the whole frame (the overlap covers the
    network's reach), so memory is bounded without visible tile edges."""
    weights = save_srvgg(tmp_path / "m.pth", 2)
    frame = np.random.default_rng(1).integers(0, 255, (72, 96, 3), dtype=np.uint8)
    whole = ModelUpscaler(weights, 2, tile=4096)(frame)
    tiled = ModelUpscaler(weights, 2, tile=32, overlap=16)(frame)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


def test_wrong_scale_is_one_clear_line(tmp_path):
    with pytest.raises(UpscaleModelError, match="is a 4x model and 2x was asked"):
        ModelUpscaler(save_srvgg(tmp_path / "x4.pth", 4), 2)


def test_unidentifiable_files_are_refused(tmp_path):
    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(UpscaleModelError, match="not a checkpoint img2vid recognises"):
        ModelUpscaler(other, 2)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UpscaleModelError, match="not a readable model checkpoint"):
        ModelUpscaler(junk, 2)
    state = torch.load(save_srvgg(tmp_path / "ok.pth", 2, wrapper=None))
    state["body.0.weight"] = state["body.0.weight"][:8]  # the right keys, a wrong shape
    torch.save(state, tmp_path / "bent.pth")
    with pytest.raises(UpscaleModelError, match="do not fit"):
        ModelUpscaler(tmp_path / "bent.pth", 2)


def _still_clip(tmp_path, photo, name="still.mp4"):
    out = tmp_path / name
    done = run_cli("generate", photo, "--motion", "static", "--width", "96", "--height", "64",
                   "--fps", "8", "--num-frames", "12", "--encode-speed", "ultrafast", "-o", out,
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return out


def _flicker(frames):
    return max(np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames, frames[1:]))


@pytest.mark.parametrize("upscaler", ["model", "lanczos"])
def test_upscale_command_keeps_a_still_shot_still(tmp_path, photo, upscaler):
    clip = _still_clip(tmp_path, photo)
    weights = save_srvgg(tmp_path / "x2.pth", 2)
    out = tmp_path / "big.mp4"
    done = run_cli("upscale", clip, "-o", out, "--scale", "2", "--upscaler", upscaler,
                   "--upscale-model", weights, "--encode-speed", "ultrafast", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    before, after = video_frames(clip), video_frames(out)
    assert len(after) == len(before) == 12
    assert after[0].shape == (128, 192, 3)
    assert _flicker(after) <= _flicker(before) + 0.5  # no flicker added
    side = json.loads(out.with_name(out.name + ".json").read_text())
    assert side["upscale"]["upscaler"] == upscaler and side["upscale"]["scale"] == 2


def test_upscale_command_keeps_the_sound(tmp_path, photo):
    tone = write_tone(tmp_path / "t.wav", 3.0)
    clip = tmp_path / "loud.mp4"
    assert run_cli("generate", photo, "--audio", tone, "--resolution", "256", "--fps", "8",
                   "--duration", "1", "-o", clip, cwd=tmp_path).returncode == 0
    out = tmp_path / "big.mkv"
    done = run_cli("upscale", clip, "-o", out, "--upscaler", "lanczos", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert streams(out) == {"video": "ffv1", "audio": "flac"}


def test_upscale_command_errors_are_one_line(tmp_path, photo):
    clip = _still_clip(tmp_path, photo)
    for args, message in [
        ((), "needs a super-resolution checkpoint"),
        (("--upscale-model", save_srvgg(tmp_path / "x4.pth", 4)), "is a 4x model"),
        (("--upscale-model", tmp_path / "none.pth"), "upscale model not found"),
    ]:
        done = run_cli("upscale", clip, "-o", tmp_path / "o.mp4", *args, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "o.mp4").exists()


def test_generate_with_upscale(settings, photo, tmp_path):
    weights = save_rrdb(tmp_path / "x2.pth", 2)
    request = build_request(images=[str(photo)], width=96, height=64, fps=8, num_frames=6,
                            upscale=2, upscale_model=str(weights), encode_speed="ultrafast")
    result = generate(request, settings)
    with av.open(str(result.output)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (192, 128)
        assert sum(1 for _ in container.decode(stream)) == 6
    info = json.loads(result.sidecar.read_text())["engine_info"]["upscale"]
    assert info["architecture"] == "RRDBNet" and info["dtype"] == "float32"


def test_generate_refuses_a_bad_model_before_rendering(settings, photo, tmp_path):
    from img2vid.core.errors import InputError

    request = build_request(images=[str(photo)], width=96, height=64, fps=8, num_frames=6,
                            upscale=4, upscale_model=str(save_srvgg(tmp_path / "x2.pth", 2)))
    with pytest.raises(InputError, match="is a 2x model and 4x was asked"):
        generate(request, settings)
    assert not settings.output.directory.exists() or not any(settings.output.directory.iterdir())


def test_lanczos_needs_no_weights():
    frame = np.full((10, 12, 3), 77, np.uint8)
    assert np.array_equal(LanczosUpscaler(4)(frame), np.full((40, 48, 3), 77, np.uint8))


def test_a_hub_id_is_read_from_the_hugging_face_cache(tmp_path, settings, monkeypatch):
    from img2vid.core.config import ModelSettings
    from img2vid.postprocess.upscale import find_model
    from tests.diffusion.conftest import fake_hub_cache

    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    save_srvgg(snapshot / "x2.pth", 2)
    fake_hub_cache(tmp_path, "someone/sr-models", snapshot)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may go to the network
    settings = settings.model_copy(update={"models": ModelSettings(cache_dir=tmp_path / "hub")})
    path = find_model("someone/sr-models/x2.pth", settings)
    assert path.name == "x2.pth" and ModelUpscaler(path, 2).scale == 2
    from img2vid.core.errors import ModelNotAvailableError

    with pytest.raises(ModelNotAvailableError, match="could not be fetched from the hub"):
        find_model("someone/sr-models/x4.pth", settings)


# --- spandrel: other architectures, and why they cannot load here -------------------------------

def _swinir_like(path: Path) -> Path:
    """Keys of a SwinIR checkpoint (neither RRDBNet nor SRVGGNetCompact)."""
    torch.save({"params": {"conv_first.weight": torch.zeros(12, 3, 3, 3),
                           "layers.0.residual_group.blocks.0.norm1.weight": torch.zeros(12),
                           "layers.0.residual_group.blocks.0.mlp.fc1.bias": torch.zeros(24)}},
               path)
    return path


def test_other_architectures_without_spandrel_are_one_line(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "spandrel", None)  # as if not installed
    with pytest.raises(UpscaleModelError) as caught:
        ModelUpscaler(_swinir_like(tmp_path / "swinir.pth"), 2)
    message = str(caught.value)
    assert "\n" not in message and "swinir.pth is not a checkpoint img2vid recognises" in message
    assert "spandrel is not installed" in message and "--upscaler lanczos" in message


def test_spandrel_without_torchvision_says_so(tmp_path, monkeypatch):
    """spandrel's __init__ imports every architecture, and LaMa's and RestoreFormer's import
    torchvision: a package that does the same where torchvision is missing."""
    import sys

    package = tmp_path / "site" / "spandrel"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("import torchvision  # noqa: F401\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "spandrel", raising=False)
    monkeypatch.setitem(sys.modules, "torchvision", None)  # missing, as on CPU-only torch here
    with pytest.raises(UpscaleModelError) as caught:
        ModelUpscaler(_swinir_like(tmp_path / "swinir.pth"), 2)
    message = str(caught.value)
    assert "spandrel is installed but cannot be imported: it needs torchvision" in message
    assert "\n" not in message and "--upscaler lanczos" in message
    # RRDBNet and SRVGGNetCompact never need spandrel
    assert ModelUpscaler(save_srvgg(tmp_path / "x2.pth", 2), 2).architecture == "SRVGGNetCompact"


def test_spandrel_loads_an_architecture_img2vid_does_not_build(tmp_path):
    """The upscale extra: a SwinIR checkpoint with random weights, identified and run by
    spandrel through the same tiled upscaler."""
    pytest.importorskip("spandrel", reason="the upscale extra (spandrel, torchvision) is not "
                        "installed; the tests above cover its absence")
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(0)
    model = SwinIR(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4,
                   upscale=2, upsampler="pixelshuffledirect")
    torch.save({"params": model.state_dict()}, tmp_path / "swinir_x2.pth")
    upscaler = ModelUpscaler(tmp_path / "swinir_x2.pth", 2)
    assert upscaler.architecture == "SwinIR"
    frame = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    assert upscaler(frame).shape == (80, 112, 3)
    with pytest.raises(UpscaleModelError, match="is a 2x model and 4x was asked"):
        ModelUpscaler(tmp_path / "swinir_x2.pth", 4)
