"""Live previews: every few denoising steps the latents become a small image (a projection
fitted from the model's own VAE), streamed to the CLI (--preview) and the REST API."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from img2vid.core.config import LogSettings, ModelSettings, OutputSettings, Settings
from img2vid.core.progress import CancelToken
from img2vid.core.request import build_request

SMALL = {"width": 64, "height": 64, "num_frames": 9, "seed": 2}


def test_the_engine_sends_previews_every_few_steps(engine, wan_dir, small_photo, loaded_photo):
    events = []
    request = build_request(images=(str(small_photo),), model=str(wan_dir),
                            num_inference_steps=16, **SMALL)
    engine.generate(request, [loaded_photo], events.append, CancelToken())
    previews = [e for e in events if e.preview is not None]
    assert [e.done for e in previews] == [2, 4, 6, 8, 10, 12, 14, 16]  # about 8 per job
    image = previews[-1].preview
    # first, middle and last latent frames side by side, upscaled from the 8x8 latent grid
    assert image.dtype == np.uint8 and image.shape[0] >= 96 and image.shape[2] == 3
    assert image.shape[1] == 3 * image.shape[0]
    assert image.std() > 1  # an image, not a flat fill


def test_projection_inverts_a_linear_latent_space():
    """The fit is least squares from encoded colour patches: for a VAE whose latents are a
    linear function of the colours (real VAEs are close to it, which is why previews work),
    a flat colour's latents render back as that colour."""
    import torch

    from img2vid.engines.diffusion.preview import fit_projection, render

    gen = torch.Generator().manual_seed(1)
    mix, offset = torch.randn(16, 3, generator=gen), torch.randn(16, generator=gen)

    class LinearLatents:  # the two family hooks the fit uses
        def preview_cell(self, pipe):
            return 8

        def preview_encode(self, pipe, pixels):
            cells = torch.nn.functional.avg_pool2d(pixels, 8)[0]  # 3 x h x w
            return torch.einsum("ck,khw->chw", mix, cells) + offset[:, None, None]

    family = LinearLatents()
    projection = fit_projection(None, family, 16)
    colour = torch.tensor([0.6, -0.2, -0.5])
    latents = family.preview_encode(None, colour.view(1, 3, 1, 1).expand(1, 3, 32, 32))
    image = render(latents[None], projection)
    np.testing.assert_allclose(image.reshape(-1, 3).mean(0), ((colour + 1) * 127.5).numpy(),
                               atol=1.0)


# family fixture, size, frames, latent frames shown side by side (first, middle, last)
FAMILIES = [("i2vgen_dir", (96, 64), 4, 3), ("svd_dir", (96, 64), 4, 3),
            ("wan_dir", (64, 64), 9, 3), ("ltx_dir", (96, 64), 9, 2),
            ("cogvideox_dir", (64, 64), 9, 3)]


@pytest.mark.parametrize(("model", "size", "frames", "shown"), FAMILIES,
                         ids=[f[0].removesuffix("_dir") for f in FAMILIES])
def test_cli_writes_the_preview_file_for_every_family(request, model, size, frames, shown,
                                                     small_photo, tmp_path, capsys):
    """Each family's step latents (B x C x F x h x w, B x F x C x h x w, I2VGen-XL's frames in
    the batch, LTX's packed tokens) reach the preview as frames: the strip has the video's
    aspect ratio per frame, which a wrong unpacking (frames for rows, tokens misfolded) breaks."""
    from img2vid.interfaces.cli.app import main

    preview, video = tmp_path / "live.png", tmp_path / "x.mp4"
    code = main(["generate", str(small_photo), "--model", str(request.getfixturevalue(model)),
                 "--width", str(size[0]), "--height", str(size[1]), "--num-frames", str(frames),
                 "--num-inference-steps", "2", "--preview", str(preview), "-o", str(video),
                 "--quiet"])
    assert code == 0, capsys.readouterr().err
    with Image.open(preview) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.height >= 96
        assert im.width * size[1] == shown * im.height * size[0]
        assert np.asarray(im).std() > 1
    # written while denoising, before the video was encoded and moved into place
    assert preview.stat().st_mtime_ns <= video.stat().st_mtime_ns


def test_cli_refuses_a_preview_path_in_a_missing_folder(wan_dir, small_photo, tmp_path, capsys):
    from img2vid.interfaces.cli.app import main

    code = main(["generate", str(small_photo), "--model", str(wan_dir), "--preview",
                 str(tmp_path / "missing" / "p.png")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_published_tables_are_chosen_by_channel_count():
    """A latent format's published factors apply when the model's latents have its channel
    count (Wan 2.1 vs Wan 2.2 5B); other checkpoints get a projection fitted from their VAE."""
    from img2vid.engines.diffusion.ltx import LTXVideo
    from img2vid.engines.diffusion.preview import projection_for, published
    from img2vid.engines.diffusion.wan import Wan

    for channels, name in ((16, "wan2.1"), (48, "wan2.2")):
        table, source = projection_for(None, Wan(), Wan.preview, channels)
        assert source == f"published {name}" and table.shape == (channels + 1, 3)
    assert projection_for(None, LTXVideo(), LTXVideo.preview, 128)[1] == "published ltxv"
    # the tables map normalised latents to RGB in [-1, 1]: rows of small weights
    assert float(published("ltxv").abs().max()) < 1 and published("sd15").shape == (5, 3)


def test_every_registered_family_has_previews():
    """A new family plugs in with one line (`preview = LatentPreview(...)`); the families
    checked end to end here and in test_hunyuan/test_skyreels run through the same path."""
    from img2vid.engines.diffusion.registry import FAMILIES

    missing = [name for name, family in FAMILIES.items() if family.preview is None]
    assert not missing, f"families without live previews: {missing}"


def test_packed_ltx_tokens_unpack_to_frames():
    """LTX denoises B x tokens x C; the preview restores frames x C x h x w from the job's
    size through the pipeline's own inverse of its packing."""
    import torch
    from diffusers import LTXImageToVideoPipeline

    from img2vid.engines.diffusion.call import DiffusionCall
    from img2vid.engines.diffusion.preview import packed_tokens

    pipe = SimpleNamespace(vae_spatial_compression_ratio=32, vae_temporal_compression_ratio=8,
                           transformer_spatial_patch_size=1, transformer_temporal_patch_size=1,
                           _unpack_latents=LTXImageToVideoPipeline._unpack_latents)
    call = DiffusionCall(image=None, prompt="", negative_prompt="", width=96, height=64,
                         num_frames=17, num_inference_steps=2, guidance_scale=1.0, fps=8,
                         decode_chunk=1, options={})
    video = torch.randn(1, 128, 3, 2, 3)  # B x C x F x h x w for 17 frames of 96x64
    packed = LTXImageToVideoPipeline._pack_latents(video)
    assert packed.shape == (1, 18, 128)
    torch.testing.assert_close(packed_tokens(pipe, call, packed), video[0].transpose(0, 1))


def test_a_failing_preview_never_fails_the_job(caplog):
    """A family whose latents do not look as declared loses its previews, with one warning,
    and the step goes on; a family without a LatentPreview has none at all."""
    import torch

    from img2vid.engines.diffusion.family import Family
    from img2vid.engines.diffusion.preview import LatentPreview, Previewer

    class Broken(Family):
        name = "broken"
        preview = LatentPreview(lambda pipe, job, latents: latents[0].view(-1, 7))

    previewer = Previewer(Broken())
    assert previewer(None, None, torch.zeros(1, 4, 2, 3, 3)) is None
    assert previewer.failed and "live preview failed" in caplog.text
    assert Previewer(Family()).failed  # the base class has no preview


# Wan (latents B x C x F x h x w) and LTX-Video (packed tokens, a projection fitted from its
# VAE): enough steps that the job runs a few seconds and previews are polled while it does
API_RUNS = [("wan_dir", {"width": "64", "height": "64", "num_frames": "17",
                         "num_inference_steps": "40"}),
            ("ltx_dir", {"width": "96", "height": "64", "num_frames": "17",
                         "num_inference_steps": "60"})]


@pytest.mark.parametrize(("model", "fields"), API_RUNS, ids=["wan", "ltx"])
def test_previews_arrive_during_a_run_through_the_queue_and_api(request, model: str,
                                                               fields: dict[str, str],
                                                               small_photo: Path,
                                                               tmp_path: Path) -> None:
    from tests.live_server import TERMINAL, live_server, submit, wait_for

    settings = Settings(output=OutputSettings(directory=tmp_path / "outputs"),
                        logs=LogSettings(directory=tmp_path / "logs"),
                        models=ModelSettings(cache_dir=tmp_path / "empty-hf-cache",
                                             local_dirs={"tiny": request.getfixturevalue(model)}))
    with live_server(settings, None) as server, server.client() as client:
        r = submit(client, photo=small_photo, model="tiny", resolution="", fps="8", **fields)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        first = client.get(f"/api/v1/jobs/{job_id}/preview")
        assert first.status_code == 404 and "no preview yet" in first.json()["detail"]
        during = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = client.get(f"/api/v1/jobs/{job_id}").json()["status"]
            if status in TERMINAL:
                break
            got = client.get(f"/api/v1/jobs/{job_id}/preview")
            if got.status_code == 200:
                during.append(got.content)
            time.sleep(0.05)
        job = wait_for(client, job_id, TERMINAL, timeout=120)
        assert job["status"] == "succeeded", job["error"]
        assert during, "no preview was served while the job ran"
        assert all(c.startswith(b"\x89PNG") for c in during)
        assert len(set(during)) >= 2  # it updates as denoising goes on
        assert client.get("/api/v1/jobs/" + "0" * 32 + "/preview").status_code == 404
