"""LTX-Video 0.9.7/0.9.8 through LTXConditionPipeline: the end frame is a condition at the last
frame index, and a chained window starts from the previous window's last frames as a video
condition (not only its last frame)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2vid.engines.diffusion.call import DiffusionCall
from img2vid.engines.diffusion.ltx_condition import (
    DISTILLED_TIMESTEPS,
    LTXCondition,
    LTXConditionDistilled,
)
from img2vid.media.images import file_sha256
from tests.diffusion.conftest import frames_of, run_model
from tests.diffusion.replicas_ltx import ltx_condition

SMALL = {"width": 64, "height": 64, "num_inference_steps": 2, "seed": 5, "prompt": "a cat"}


@pytest.fixture(scope="session")
def condition_dir(tiny_dir: Path) -> Path:
    from img2vid.engines.diffusion import runtime

    runtime.import_libraries()
    return ltx_condition(tiny_dir / "ltx-condition")


@pytest.fixture(scope="module")
def end_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ltx-end") / "end.png"
    gradient = np.linspace(0, 255, 64, dtype=np.uint8)
    pixels = np.stack([np.tile(gradient[:, None], (1, 64)), np.tile(gradient, (64, 1)),
                       np.full((64, 64), 200, np.uint8)], axis=-1)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def calls(monkeypatch) -> list[dict]:
    """Every LTXConditionPipeline call's keyword arguments (the real call still runs)."""
    from diffusers import LTXConditionPipeline

    seen: list[dict] = []
    original = LTXConditionPipeline.__call__

    def spy(self, *args, **kwargs):
        seen.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LTXConditionPipeline, "__call__", spy)
    return seen


run = partial(run_model, small=SMALL)


def test_the_end_frame_is_a_condition_at_the_last_index(engine, condition_dir, small_photo,
                                                        loaded_photo, end_photo, calls):
    plain = run(engine, condition_dir, small_photo, loaded_photo, num_frames=17)
    ended = run(engine, condition_dir, small_photo, loaded_photo, num_frames=17,
                last_image=str(end_photo))
    without, with_end = calls
    assert [c.frame_index for c in without["conditions"]] == [0]
    first, last = with_end["conditions"]
    assert (first.frame_index, last.frame_index) == (0, 16)  # frames 0..16
    assert first.video is None and first.image.size == (64, 64)
    # the end frame reaches the pipeline fitted to the output size, pixel for pixel
    expected = np.asarray(Image.open(end_photo).convert("RGB"))
    assert np.array_equal(np.asarray(last.image), expected)
    assert "image" not in with_end and with_end["num_frames"] == 17
    a, b = frames_of(plain), frames_of(ended)
    assert a.shape == b.shape == (17, 64, 64, 3)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 0.1  # it changes the clip
    assert ended.info["last_image"]["sha256"] == file_sha256(end_photo)


def test_chained_windows_are_conditioned_on_several_previous_frames(
        engine, condition_dir, small_photo, loaded_photo, calls):
    clip = run(engine, condition_dir, small_photo, loaded_photo, num_frames=57,
               window_frames=41, prompt="a cat | a dog")
    frames = frames_of(clip)
    assert frames.shape == (57, 64, 64, 3)
    info = clip.info
    assert [w["num_frames"] for w in info["windows"]] == [41, 33]
    assert info["window_lead_frames"] == 9 and info["window_overlap"] == 5
    assert len(info["seams"]) == 1
    first, second = calls
    assert first["num_frames"] == 41 and second["num_frames"] == 33
    assert second["prompt"] == "a dog"
    (lead,) = second["conditions"]
    assert lead.frame_index == 0 and lead.image is None and len(lead.video) == 9
    # they are the first window's frames 27..35: 9 frames ending `overlap` before its end
    # (the joined video keeps the first window's frames up to its overlap as they were made)
    for offset, image in enumerate(lead.video):
        assert np.array_equal(np.asarray(image), frames[27 + offset])


def test_lead_frames_are_whole_latent_frames():
    family = LTXCondition()
    assert [family.lead_frames(w) for w in (9, 41, 121, 161)] == [1, 9, 25, 33]
    assert all((family.lead_frames(w) - 1) % 8 == 0 for w in range(9, 400, 8))


def test_distilled_models_use_their_schedule_at_eight_steps():
    def job(steps: int) -> DiffusionCall:
        image = Image.new("RGB", (64, 64))
        return DiffusionCall(image=image, prompt="", negative_prompt="", width=64, height=64,
                            num_frames=9, num_inference_steps=steps, guidance_scale=1.0,
                            fps=24, decode_chunk=0, options={})

    family = LTXConditionDistilled()
    assert family.schedule(job(8)) == {"timesteps": list(DISTILLED_TIMESTEPS)}
    assert family.schedule(job(4)) == {}  # other counts: the pipeline's own schedule
    assert LTXCondition().schedule(job(8)) == {}
    # a folder of either loads as the plain condition family
    from img2vid.engines.diffusion.registry import family_of

    assert family_of({"_class_name": "LTXConditionPipeline"}).name == "ltx-condition"


def test_cli_end_frame_on_a_registered_ltx_model_offline(offline_replicas, small_photo,
                                                         end_photo, tmp_path, capsys):
    from img2vid.interfaces.cli.app import main

    _, commits = offline_replicas
    out = tmp_path / "ends.mp4"
    code = main(["generate", str(small_photo), "--model", "ltx-video-0.9.8-distilled",
                 "--width", "96", "--height", "64", "--num-frames", "9",
                 "--num-inference-steps", "2", "--seed", "1", "--last-image", str(end_photo),
                 "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    info = sidecar["engine_info"]
    assert info["model"]["revision"] == commits["ltx-video-0.9.8-distilled"]
    assert info["last_image"]["sha256"] == file_sha256(end_photo)
    assert sidecar["request"]["last_image"] == str(end_photo)


def test_planner_counts_the_13b_width_and_the_end_frames_tokens():
    from img2vid.engines.diffusion.call import Shape
    from img2vid.engines.diffusion.ltx import LTXVideo
    from img2vid.engines.diffusion.registry import MODELS

    shape = Shape(1152, 768, 161, 1152, 768, 161)
    condition = MODELS["ltx-video-0.9.7-dev"].family
    big, _, _ = condition.estimate(lambda _: {}, shape, 5.0, 2)
    small, _, _ = LTXVideo().estimate(lambda _: {}, shape, 5.0, 2)
    # 21 latent frames + the end frame's keyframe, 24 x 36 cells, 4096 wide, CFG batched
    tokens = (21 + 1) * 24 * 36
    assert big == 2 * tokens * (6 * 4096 + 4 * 4096) * 2
    assert big > 2 * small  # the 2B's width is half the 13B's
    # the configs' width wins once the files are there
    tiny, _, _ = condition.estimate(
        lambda c: {"num_attention_heads": 2, "attention_head_dim": 8} if c == "transformer"
        else {}, shape, 5.0, 2)
    assert tiny < big / 100


def test_extend_starts_from_the_clips_last_frames_as_a_video_condition(
        engine, condition_dir, tmp_path, settings, calls):
    import av

    from img2vid.core.request import OutputFormat
    from img2vid.execution.extend import extend_clip
    from img2vid.media.encode import EncodeOptions, open_writer
    from img2vid.media.outputs import sidecar_path

    clip = tmp_path / "clip.mp4"
    gradient = np.linspace(30, 220, 64, dtype=np.uint8)
    with open_writer(clip, 64, 64, 24.0, EncodeOptions(format=OutputFormat.MP4)) as writer:
        for i in range(12):
            writer.write(np.ascontiguousarray(
                np.stack([np.roll(np.tile(gradient, (64, 1)), 3 * i, 1)] * 3, axis=-1)))
        writer.close()
    with av.open(str(clip)) as container:
        source = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    out = tmp_path / "longer.mp4"
    extend_clip(clip, {"model": str(condition_dir), "num_frames": 33,
                                "window_frames": 41, "num_inference_steps": 2, "seed": 2,
                                "prompt": "waves"}, settings, output=out, engine=engine)
    (call,) = calls
    assert call["num_frames"] == 41  # 33 new ones after the 9 it starts from
    (lead,) = call["conditions"]
    # a quarter window of whole latent frames: the clip's last 9, as they were decoded
    assert lead.frame_index == 0 and lead.image is None and len(lead.video) == 9
    for image, frame in zip(lead.video, source[-9:]):
        assert np.array_equal(np.asarray(image), frame)
    with av.open(str(out)) as container:
        # the 33 asked for (their first is the clip's last frame, as on every model), made
        # after the 9 lead frames, which are not repeated: one window of 41
        assert container.streams.video[0].frames == 12 + 41 - 9
    assert json.loads(sidecar_path(out).read_text())["engine_info"]["lead_frames"] == 9
