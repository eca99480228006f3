"""Live previews: every few denoising steps the latents become a small image (a projection
fitted from the model's own VAE), streamed to the CLI (--preview) and the REST API."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
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


def test_cli_writes_the_preview_file(wan_dir, small_photo, tmp_path, capsys):
    from img2vid.interfaces.cli.app import main

    preview = tmp_path / "live.png"
    code = main(["generate", str(small_photo), "--model", str(wan_dir), "--width", "64",
                 "--height", "64", "--num-frames", "5", "--num-inference-steps", "3",
                 "--preview", str(preview), "-o", str(tmp_path / "x.mp4"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    with Image.open(preview) as im:
        assert im.format == "PNG" and im.mode == "RGB"
    code = main(["generate", str(small_photo), "--model", str(wan_dir), "--preview",
                 str(tmp_path / "missing" / "p.png")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_previews_arrive_during_a_run_through_the_queue_and_api(wan_dir: Path,
                                                               small_photo: Path,
                                                               tmp_path: Path) -> None:
    from tests.live_server import TERMINAL, live_server, submit, wait_for

    settings = Settings(output=OutputSettings(directory=tmp_path / "outputs"),
                        logs=LogSettings(directory=tmp_path / "logs"),
                        models=ModelSettings(cache_dir=tmp_path / "empty-hf-cache",
                                             local_dirs={"tiny-wan": wan_dir}))
    with live_server(settings, None) as server, server.client() as client:
        r = submit(client, photo=small_photo, model="tiny-wan", resolution="", width="64",
                   height="64", num_frames="17", fps="8", num_inference_steps="40")
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
