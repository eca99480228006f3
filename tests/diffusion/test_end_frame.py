"""--last-image: the video ends on a given frame where the model was trained for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2vid.core.errors import InputError
from img2vid.media.images import file_sha256
from img2vid.core.progress import CancelToken
from img2vid.core.request import build_request
from tests.diffusion.conftest import frames_of
from tests.diffusion.tiny_wan22 import build_wan22_a14b

SMALL = {"width": 64, "height": 64, "num_frames": 5, "num_inference_steps": 2, "seed": 3}


@pytest.fixture(scope="session")
def wan22_dir(tiny_dir: Path) -> Path:
    return build_wan22_a14b(tiny_dir)


@pytest.fixture(scope="module")
def end_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("end") / "end.png"
    gradient = np.linspace(0, 255, 64, dtype=np.uint8)
    pixels = np.stack([np.tile(gradient, (64, 1)), np.zeros((64, 64), np.uint8),
                       np.tile(gradient[:, None], (1, 64))], axis=-1)
    Image.fromarray(pixels).save(path)
    return path


def run(engine, model: Path, photo: Path, loaded, **fields):
    request = build_request(images=(str(photo),), model=str(model), **{**SMALL, **fields})
    return engine.generate(request, [loaded], lambda _: None, CancelToken())


def test_wan22_a14b_ends_on_the_last_image_and_records_it(engine, wan22_dir, small_photo,
                                                          loaded_photo, end_photo):
    plain = run(engine, wan22_dir, small_photo, loaded_photo)
    ended = run(engine, wan22_dir, small_photo, loaded_photo, last_image=str(end_photo))
    a, b = frames_of(plain), frames_of(ended)
    assert a.shape == b.shape == (5, 64, 64, 3)
    # the end frame conditions the whole clip through the latent mask and the VAE condition
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 0.5
    recorded = ended.info["last_image"]
    assert recorded["sha256"] == file_sha256(end_photo)
    assert recorded["path"] == str(end_photo)
    assert "last_image" not in plain.info


def test_a_model_without_end_frames_refuses_naming_those_that_can(engine, wan_dir, small_photo,
                                                                  loaded_photo, end_photo):
    with pytest.raises(InputError) as caught:
        run(engine, wan_dir, small_photo, loaded_photo, last_image=str(end_photo))
    message = str(caught.value)
    assert "\n" not in message and "wan-tiny" in message
    assert "wan2.2-i2v-a14b" in message and "wan2.1-flf2v-14b-720p" in message
