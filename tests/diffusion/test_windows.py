"""Longer than one window: windows chained on the end of the previous one, a prompt per
window, seams colour matched and scored in the sidecar; `img2vid extend` on a clip."""

from __future__ import annotations

from img2vid.core.progress import CancelToken
from img2vid.core.request import build_request
from img2vid.engines.diffusion.family import FrameRule
from img2vid.engines.diffusion.windows import window_counts, window_prompts
from img2vid.media.outputs import sidecar_path
from tests.diffusion.conftest import frames_of


def test_window_plan_covers_the_clip_with_valid_counts():
    rule = FrameRule(step=4, offset=1, minimum=5)
    counts = window_counts(17, 9, 1, rule)
    assert counts == [9, 9, 5]
    assert all(rule.snap(c) == c for c in counts)
    assert 9 + sum(c - 2 for c in counts[1:]) >= 17
    assert window_prompts("a cat | a dog", 3) == ["a cat", "a dog", "a dog"]
    assert window_prompts("one prompt", 2) == ["one prompt", "one prompt"]


def test_a_clip_longer_than_a_window_chains_windows(engine, wan_dir, small_photo,
                                                    loaded_photo):
    request = build_request(images=(str(small_photo),), model=str(wan_dir), width=64,
                            height=64, num_frames=17, window_frames=9, num_inference_steps=2,
                            seed=4, prompt="a cat | a dog")
    clip = engine.generate(request, [loaded_photo], lambda _: None, CancelToken())
    frames = frames_of(clip)
    assert frames.shape == (17, 64, 64, 3) and clip.num_frames == 17
    info = clip.info
    assert [w["prompt"] for w in info["windows"]] == ["a cat", "a dog", "a dog"]
    assert [w["seed"] for w in info["windows"]] == [4, 5, 6]
    assert len(info["seams"]) == 2
    for seam in info["seams"]:
        assert {"frame", "colour_difference", "psnr", "colour_difference_unmatched"} <= set(seam)


def test_extend_continues_a_clip_with_a_matched_seam(wan_dir, tmp_path, capsys):
    import json

    import av
    import numpy as np

    from img2vid.core.request import OutputFormat
    from img2vid.interfaces.cli.app import main
    from img2vid.media.encode import EncodeOptions, open_writer
    from img2vid.media.images import file_sha256

    clip = tmp_path / "clip.mp4"
    gradient = np.linspace(30, 220, 64, dtype=np.uint8)
    with open_writer(clip, 64, 64, 8.0, EncodeOptions(format=OutputFormat.MP4)) as writer:
        for i in range(9):
            frame = np.stack([np.roll(np.tile(gradient, (64, 1)), i, 1)] * 3, axis=-1)
            writer.write(np.ascontiguousarray(frame))
        writer.close()
    out = tmp_path / "longer.mp4"
    code = main(["extend", str(clip), "--model", str(wan_dir), "--prompt", "waves",
                 "--duration", "1", "--num-inference-steps", "2", "--seed", "1",
                 "-o", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    with av.open(str(out)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 9 + 8 and decoded[0].shape == (64, 64, 3)  # 8 new frames at 8 fps
    sidecar = json.loads(sidecar_path(out).read_text())
    info = sidecar["engine_info"]
    assert info["extended_from"]["sha256"] == file_sha256(clip)
    assert info["extended_from"]["num_frames"] == 9
    (seam,) = info["seams"]
    assert seam["frame"] == 9 and seam["colour_difference"] <= seam[
        "colour_difference_unmatched"] + 0.5

    import pytest

    with pytest.raises(SystemExit) as refused:  # the clip's size is kept: no --width
        main(["extend", str(clip), "--model", str(wan_dir), "--duration", "1", "--width", "96"])
    assert refused.value.code == 2 and "--width" in capsys.readouterr().err
