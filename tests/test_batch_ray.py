"""Batch runs on a local Ray cluster (loopback only): same outputs, resume and failures as local."""

from __future__ import annotations

import filecmp
import json
import os
from pathlib import Path

import numpy as np
import pytest

from img2vid.core.config import Settings
from img2vid.execution.batch import DONE, FAILED, PENDING, SKIPPED, run_batch
from tests.batchkit import (
    FAST,
    bad_files,
    crashing_factory,
    decode,
    dying_factory,
    fake_factory,
    make_photo,
)

pytestmark = pytest.mark.slow  # starts a Ray cluster: a minute or more

# Ray on Linux advertises the host's network address unless told otherwise; it reads this
# when first imported, so it is set before the import below.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")  # the optional extra: pip install 'img2vid[ray]'

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    """One 2-CPU cluster for the module, reachable on 127.0.0.1 only."""
    from ray._private import ray_constants

    with pytest.MonkeyPatch.context() as patch:
        # In case another test module imported Ray before the variable was set.
        patch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False,
                 # Workers import img2vid from this checkout, like an installed package.
                 runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(
                     [str(ROOT / "src"), str(ROOT)])}})
        assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
        yield
        ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for i in range(8):
        make_photo(folder / f"img{i:02d}.png", i, (160, 120) if i % 2 else (120, 160))
    bad = bad_files(folder)
    bad["truncated"].unlink()
    bad["empty"].unlink()
    return folder  # 8 good photos, broken.jpg and tiny.png


def test_ray_batch_matches_the_local_batch_and_resumes(cluster, photos, tmp_path):
    # The real camera engine, as `img2vid batch` and `img2vid batch --ray` run it.
    local = run_batch(str(photos), FAST, Settings(), output_dir=tmp_path / "local")
    on_ray = run_batch(str(photos), FAST, Settings(), output_dir=tmp_path / "ray",
                       ray_address="")

    assert on_ray.counts == local.counts == {DONE: 8, SKIPPED: 0, FAILED: 2, PENDING: 0}
    assert json.loads((tmp_path / "ray" / "batch_report.json").read_text())["runner"] == "ray"
    for here, there in zip(local.rows, on_ray.rows, strict=True):
        assert (here["item"], here["status"], here["error"]) == (
            there["item"], there["status"], there["error"])
        if here["status"] != DONE:
            continue
        a, b = Path(here["output"]), Path(there["output"])
        assert b.parent == tmp_path / "ray" and b.name == a.name
        frames_a, w_a, h_a, pixels_a = decode(a)
        frames_b, w_b, h_b, pixels_b = decode(b)
        assert (frames_b, w_b, h_b) == (frames_a, w_a, h_a) and frames_a == 8
        # libx264 is deterministic for the same input, settings and thread count.
        assert filecmp.cmp(a, b, shallow=False)
        assert all(np.array_equal(x, y) for x, y in zip(pixels_a, pixels_b))
        assert json.loads(b.with_suffix(".json").read_text())["request"] == json.loads(
            a.with_suffix(".json").read_text())["request"]

    # Resume: a crash lost one video and another's sidecar; only those two are made again.
    out = tmp_path / "ray"
    (out / "img03.mp4").unlink()
    (out / "img05.json").unlink()
    kept = (out / "img00.mp4").stat().st_mtime_ns
    again = run_batch(str(photos), FAST, Settings(), output_dir=out, ray_address="")
    assert again.counts == {DONE: 2, SKIPPED: 6, FAILED: 2, PENDING: 0}
    assert {Path(r["item"]).name for r in again.rows if r["status"] == DONE} == {
        "img03.png", "img05.png"}
    assert (out / "img00.mp4").stat().st_mtime_ns == kept
    assert filecmp.cmp(out / "img03.mp4", tmp_path / "local" / "img03.mp4", shallow=False)


def test_camera_and_diffusion_pools_and_an_item_that_kills_its_worker(cluster, tmp_path):
    rows = [{"image": str(make_photo(tmp_path / f"{name}.png", i))}
            for i, name in enumerate(("c0", "crash", "c1"))]
    rows += [{"image": str(make_photo(tmp_path / f"d{i}.png", 10 + i)), "engine": "diffusion",
              "model": "tiny", "num_frames": 4} for i in range(2)]
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))

    result = run_batch(str(manifest), {"resolution": 256, "fps": 8, "duration": 1,
                                       "encode_speed": "ultrafast"}, Settings(),
                       output_dir=tmp_path / "out", ray_address="", factory=crashing_factory)

    assert result.counts == {DONE: 4, SKIPPED: 0, FAILED: 1, PENDING: 0}
    assert [decode(tmp_path / "out" / f"{n}.mp4")[0] for n in ("c0", "c1", "d0", "d1")
            ] == [8, 8, 4, 4]
    (crashed,) = [r for r in result.rows if r["status"] == FAILED]
    assert crashed["input"] == str(tmp_path / "crash.png")
    assert "worker making this video died 2 times" in crashed["error"]
    assert not (tmp_path / "out" / "crash.mp4").exists()


def test_an_engine_that_kills_its_worker_on_load_ends_the_job_with_a_report(cluster,
                                                                             tmp_path):
    for i in range(3):
        make_photo(tmp_path / "in" / f"p{i}.png", i)
    out = tmp_path / "out"
    run_batch(str(tmp_path / "in"), FAST, Settings(), output_dir=out, factory=fake_factory)
    (out / "p1.mp4").unlink()

    result = run_batch(str(tmp_path / "in"), FAST, Settings(), output_dir=out,
                       ray_address="", factory=dying_factory)

    assert result.counts == {DONE: 0, SKIPPED: 2, FAILED: 1, PENDING: 0}
    (failed,) = [r for r in result.rows if r["status"] == FAILED]
    assert Path(failed["item"]).name == "p1.png"
    assert failed["error"].startswith("the Ray job failed: ")
    assert sorted(p.name for p in out.glob("*.mp4")) == ["p0.mp4", "p2.mp4"]
