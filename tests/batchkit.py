"""Helpers for the batch tests: small real photos, bad files, and decoding outputs with PyAV."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
from PIL import Image

# Small and quick, but real: libx264 through the normal pipeline.
FAST = {"resolution": 256, "fps": 8, "duration": 1.0, "encode_speed": "ultrafast"}


def make_photo(path: Path, seed: int, size: tuple[int, int] = (160, 120)) -> Path:
    """A smooth random-coloured gradient with some texture, saved in the format of `path`."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0, 255, 3) + rng.uniform(-1, 1, 3) * (x[..., None] + y[..., None])
    noise = rng.normal(0, 12, (h, w, 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def bad_files(folder: Path) -> dict[str, Path]:
    """Files a folder batch picks up by extension but cannot use, by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    good = make_photo(folder / "tmp-good.png", 99)
    data = good.read_bytes()
    good.unlink()
    files = {
        "not-an-image": folder / "broken.jpg",
        "truncated": folder / "truncated.png",
        "empty": folder / "empty.webp",
        "too-small": folder / "tiny.png",
    }
    files["not-an-image"].write_bytes(b"this is a text file with a .jpg name\n")
    files["truncated"].write_bytes(data[: len(data) // 3])
    files["empty"].write_bytes(b"")
    Image.new("RGB", (20, 20), "red").save(files["too-small"])
    return files


def decode(path: Path) -> tuple[int, int, int, list[np.ndarray]]:
    """(frames, width, height, RGB frames) of a video, decoded with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return len(frames), stream.codec_context.width, stream.codec_context.height, frames


def fake_factory(name: str, settings: object, device: str | None = None) -> object:
    """An engine factory for batch runs (importable by name, so Ray workers can load it)."""
    from tests.fakes import FakeEngine

    return FakeEngine(settings)


def _in_ray_actor() -> bool:
    import ray

    return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None


def dying_factory(name: str, settings: object, device: str | None = None) -> object:
    """An engine factory whose Ray actor dies while loading it (a crash in a CUDA driver)."""
    if _in_ray_actor():
        os._exit(3)
    raise RuntimeError("dying_factory is for Ray actors only")


def crashing_factory(name: str, settings: object, device: str | None = None) -> object:
    """FakeEngines whose Ray worker process dies on photos named crash*: a segfault."""
    from tests.fakes import FakeEngine

    class Crashing(FakeEngine):
        def generate(self, request, images, progress, cancel):
            if Path(request.images[0]).stem.startswith("crash") and _in_ray_actor():
                os._exit(4)
            return super().generate(request, images, progress, cancel)

    return Crashing(settings)
