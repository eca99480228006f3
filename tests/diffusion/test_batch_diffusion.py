"""A batch of diffusion rows on the real engine: the model loads once, rows keep their seeds."""

from __future__ import annotations

import json

import img2vid.engines.diffusion as diffusion
from img2vid.core.config import Settings
from img2vid.execution.batch import DONE, FAILED, PENDING, SKIPPED, run_batch
from tests.batchkit import decode


def test_diffusion_rows_share_one_loaded_model_and_resume(wan_dir, small_photo, tmp_path,
                                                          monkeypatch):
    loads = []
    real_load = diffusion.load_pipeline

    def counting_load(*args, **kwargs):
        loads.append(args[0])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(diffusion, "load_pipeline", counting_load)
    rows = [{"image": str(small_photo), "prompt": "the cat", "seed": 1},
            {"image": str(small_photo), "prompt": "the cat walks", "seed": 2},
            {"image": str(small_photo), "prompt": "no seed: the engine draws one"},
            {"image": str(small_photo), "num_frames": 0}]
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    options = {"model": str(wan_dir), "width": 96, "height": 64, "num_frames": 4,
               "num_inference_steps": 2}

    result = run_batch(str(manifest), options, Settings(), output_dir=tmp_path / "out",
                       workers=2)

    assert result.counts == {DONE: 3, SKIPPED: 0, FAILED: 1, PENDING: 0}
    assert len(loads) == 1  # one engine, one pipeline load for the whole batch
    assert result.rows[3]["error"].startswith("invalid request: num_frames=0")
    out = tmp_path / "out"
    names = ["photo.mp4", "photo_2.mp4", "photo_3.mp4"]
    seeds = [json.loads((out / n).with_suffix(".json").read_text())["seed"] for n in names]
    assert seeds[:2] == [1, 2] and isinstance(seeds[2], int)
    for name in names:
        frames, width, height, _ = decode(out / name)
        assert (frames, width, height) == (5, 96, 64)  # Wan snaps 4 frames to 4k+1

    # A rerun skips all three, including the unseeded one whatever seed it drew.
    again = run_batch(str(manifest), options, Settings(), output_dir=out)
    assert again.counts == {DONE: 0, SKIPPED: 3, FAILED: 1, PENDING: 0}
    assert len(loads) == 1
