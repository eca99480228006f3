"""LTX-2 by name from its hub replica: the sound it generates is muxed into the MP4 as AAC, the
video stream exactly the one a run without the sound writes, and the sidecar records it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from img2vid.core.clip import GeneratedAudio
from img2vid.engines.diffusion.windows import join_audio

SMALL = ["--width", "64", "--height", "64", "--num-frames", "5", "--num-inference-steps", "2",
         "--seed", "3", "--prompt", "rain on the sea"]


def streams(path: Path) -> tuple[list[bytes], list[np.ndarray], dict]:
    """The video packets, the decoded frames and the audio stream's facts."""
    import av

    with av.open(str(path)) as container:
        packets = [bytes(p) for p in container.demux(video=0) if p.size]
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        video = container.streams.video[0]
        video_s = float(video.duration * video.time_base)
    with av.open(str(path)) as container:
        audio = {}
        if container.streams.audio:
            stream = container.streams.audio[0]
            samples = sum(f.samples for f in container.decode(audio=0))
            audio = {"codec": stream.codec_context.name, "rate": stream.rate,
                     "channels": stream.channels, "seconds": samples / stream.rate,
                     "video_seconds": video_s}
    return packets, frames, audio


def test_ltx2_muxes_its_sound_as_aac_beside_unchanged_frames(offline_replicas, small_photo,
                                                             tmp_path, capsys):
    from img2vid.core.config import Settings
    from img2vid.core.request import build_request
    from img2vid.engines.diffusion import DiffusionEngine
    from img2vid.execution.pipeline import generate
    from img2vid.interfaces.cli.app import main

    out = tmp_path / "sound.mp4"
    code = main(["generate", str(small_photo), "--model", "ltx-2", *SMALL, "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    packets, frames, audio = streams(out)
    assert len(frames) == 5 and frames[0].shape == (64, 64, 3)
    assert audio["codec"] == "aac" and audio["rate"] == 16000 and audio["channels"] == 2
    # the model's sound for 5 frames at 24 fps, cut to the video (AAC pads its last frame)
    assert abs(audio["seconds"] - audio["video_seconds"]) < 0.1
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    recorded = sidecar["audio"]
    assert recorded["source"] == "generated" and recorded["codec"] == "aac"
    assert recorded["sample_rate"] == 16000 and recorded["channels"] == 2
    assert 0 < recorded["duration"] <= 5 / 24 + 1e-3
    assert sidecar["engine_info"]["model"]["name"] == "ltx-2"

    class Silent:
        """The same engine with the sound taken off its clip: the no-audio path."""

        name = "diffusion"

        def __init__(self, inner):
            self.inner = inner

        def generate(self, request, images, progress, cancel):
            clip = self.inner.generate(request, images, progress, cancel)
            clip.audio = None
            return clip

    settings = Settings()
    request = build_request(images=(str(small_photo),), model="ltx-2", width=64, height=64,
                            num_frames=5, num_inference_steps=2, seed=3,
                            prompt="rain on the sea")
    engine = DiffusionEngine(settings)
    try:
        silent = generate(request, settings, output=tmp_path / "silent.mp4",
                          engine=Silent(engine))
    finally:
        engine.release()
    silent_packets, silent_frames, silent_audio = streams(silent.output)
    assert silent_audio == {} and silent.info.audio is None
    assert silent_packets == packets  # the video stream is copied, byte for byte
    assert all(np.array_equal(a, b) for a, b in zip(silent_frames, frames))


def test_a_format_without_audio_drops_the_sound(offline_replicas, small_photo, tmp_path, capsys):
    from img2vid.interfaces.cli.app import main

    out = tmp_path / "sound.gif"
    code = main(["generate", str(small_photo), "--model", "ltx-2", *SMALL, "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    assert "audio" not in json.loads(out.with_name(out.name + ".json").read_text())


def test_windows_sound_joins_from_each_windows_new_frames():
    rate, fps = 1000, 10.0
    first = GeneratedAudio(np.ones((2, 1000), np.float32), rate)  # 10 frames
    second = GeneratedAudio(np.full((2, 900), 2.0, np.float32), rate)  # 9 frames
    joined = join_audio([first, second], skip=3, fps=fps)  # 3 lead + overlap frames
    assert joined.samples.shape == (2, 1000 + 600) and joined.sample_rate == rate
    assert (joined.samples[:, :1000] == 1).all() and (joined.samples[:, 1000:] == 2).all()
    assert join_audio([first, None], skip=3, fps=fps) is None


def test_planner_counts_every_ltx2_component_and_the_19b_width():
    from img2vid.core.request import Quantize
    from img2vid.engines.diffusion.call import Shape
    from img2vid.engines.diffusion.planning import workload
    from img2vid.engines.diffusion.registry import MODELS
    from img2vid.engines.diffusion.sizing import Choices

    spec = MODELS["ltx-2"]
    shape = Shape(768, 512, 121, 768, 512, 121)
    work = workload(spec, None, Choices(shape, 24, 30, 3.0), {"default": "bfloat16"},
                    Quantize.NONE)
    assert set(work.weights) == {"transformer", "text_encoder", "connectors", "vae",
                                 "audio_vae", "vocoder"}
    assert sum(work.weights.values()) >= 33.8e9 * 2  # 33.8 B parameters in bf16
    tokens = 16 * 16 * 24  # 16 latent frames of 16 x 24 cells
    assert work.activations == 2 * tokens * (6 * 4096 + 4 * 4096) * 2
    assert spec.family.block_modules["text_encoder"] == ["model", "language_model"]
