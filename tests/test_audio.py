"""Soundtracks: muxed per container, trimmed and faded, refused early, video untouched."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from img2vid.core.errors import InputError
from img2vid.core.request import build_request
from img2vid.execution.pipeline import generate
from tests.conftest import run_cli
from tests.media import audio_samples, streams, video_frames, write_tone


def _request(photo, **fields):
    return build_request(images=[str(photo)], width=96, height=64, fps=12, duration=2.0,
                         encode_speed="ultrafast", **fields)


@pytest.fixture
def tone(tmp_path):
    return write_tone(tmp_path / "tone.mp3", 3.0, codec="libmp3lame")


@pytest.mark.parametrize(("fmt", "codec"), [("mp4", "aac"), ("webm", "opus"), ("mkv", "flac")])
def test_each_container_gets_its_audio_codec_cut_to_the_video(settings, photo, tone, fmt, codec):
    result = generate(_request(photo, audio=str(tone), format=fmt), settings)
    assert streams(result.output)["audio"] == codec
    with av.open(str(result.output)) as container:
        assert len(container.streams.video) == 1 and len(container.streams.audio) == 1
        assert container.duration / 1e6 == pytest.approx(2.0, abs=0.1)
    samples, rate = audio_samples(result.output)
    assert len(samples) / rate == pytest.approx(2.0, abs=0.06)
    assert np.abs(samples[: rate // 2]).max() > 0.2  # the tone is there...
    assert np.abs(samples[-rate // 50:]).max() < 0.05  # ...and faded out at the cut
    side = json.loads(result.sidecar.read_text())
    assert side["audio"]["sha256"] == __import__("hashlib").sha256(tone.read_bytes()).hexdigest()
    assert side["audio"]["codec"] in {"aac", "libopus", "flac"} and side["audio"]["offset"] == 0


def test_mkv_keeps_pcm_as_pcm(settings, photo, tmp_path):
    wav = write_tone(tmp_path / "tone.wav", 3.0)
    result = generate(_request(photo, audio=str(wav), format="mkv"), settings)
    assert streams(result.output)["audio"] == "pcm_s16le"


def test_video_stream_is_the_silent_render(settings, photo, tone):
    silent = generate(_request(photo, seed=1), settings)
    loud = generate(_request(photo, seed=1, audio=str(tone)), settings)
    a, b = video_frames(silent.output), video_frames(loud.output)
    assert len(a) == len(b) == 24
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    with av.open(str(loud.output)) as container:
        assert container.streams.video[0].codec_context.name == "h264"


def test_offset_starts_later_in_the_track(settings, photo, tmp_path):
    track = write_tone(tmp_path / "late.wav", 4.0, silence_first=1.0)
    early = audio_samples(generate(_request(photo, audio=str(track)), settings).output)
    late = audio_samples(generate(_request(photo, audio=str(track), audio_offset=1.0),
                                  settings).output)
    assert np.abs(early[0][: early[1] // 2]).max() < 0.01  # the silent first second
    assert np.abs(late[0][: late[1] // 2]).max() > 0.2


def test_video_fade_out_is_the_audio_fade_out(settings, photo, tone):
    result = generate(_request(photo, audio=str(tone), fade_out=1.0), settings)
    samples, rate = audio_samples(result.output)
    level = [np.abs(samples[int(t * rate):int(t * rate) + rate // 10]).max()
             for t in (0.5, 1.2, 1.6, 1.85)]
    assert level[0] > 0.35 and level[0] > level[1] > level[2] > level[3]
    assert json.loads(result.sidecar.read_text())["audio"]["fade_out"] == 1.0


def test_fit_to_audio_makes_the_slideshow_as_long_as_the_track(settings, photo, face_photo,
                                                              tmp_path):
    track = write_tone(tmp_path / "song.wav", 3.5)
    request = build_request(images=[str(photo), str(face_photo)], width=96, height=64, fps=12,
                            audio=str(track), fit_to_audio=True, encode_speed="ultrafast")
    result = generate(request, settings)
    assert len(video_frames(result.output)) == 42  # 3.5 s at 12 fps
    samples, rate = audio_samples(result.output)
    assert len(samples) / rate == pytest.approx(3.5, abs=0.06)
    side = json.loads(result.sidecar.read_text())
    assert side["output"]["duration"] == pytest.approx(3.5) and side["request"]["fit_to_audio"]


def test_fit_to_audio_refuses_a_track_longer_than_a_video_can_be(settings, photo, tmp_path):
    track = write_tone(tmp_path / "long.wav", 130.0, rate=8000, channels=1)
    with pytest.raises(InputError, match="at most 120 s"):
        generate(_request(photo, audio=str(track), fit_to_audio=True), settings)
    assert not settings.output.directory.exists() or not any(settings.output.directory.iterdir())


def _not_audio(tmp_path):
    path = tmp_path / "notes.mp3"
    path.write_text("these are not sounds\n" * 50)
    return path


def _video_only(tmp_path, photo):
    from img2vid.media.encode import EncodeOptions, open_writer

    path = tmp_path / "silent.mp4"
    with open_writer(path, 64, 64, 10, EncodeOptions()) as writer:
        for _ in range(5):
            writer.write(np.zeros((64, 64, 3), np.uint8))
        writer.close()
    return path


def _empty_wav(tmp_path):
    import wave

    path = tmp_path / "empty.wav"
    with wave.open(str(path), "wb") as out:  # a valid header with no samples
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(44100)
        out.writeframes(b"")
    return path


@pytest.mark.parametrize(("make", "message"), [
    (_not_audio, "not a readable audio file"),
    (lambda tmp, photo: _video_only(tmp, photo), "has no audio stream"),
    (lambda tmp, photo: _empty_wav(tmp), "zero length"),
    (lambda tmp, photo: tmp / "missing.mp3", "not found"),
])
def test_bad_sound_files_are_refused_before_rendering(tmp_path, photo, make, message):
    bad = make(tmp_path, photo) if make is not _not_audio else _not_audio(tmp_path)
    done = run_cli("generate", photo, "--audio", bad, "--duration", "1", "--resolution", "256",
                   "-o", tmp_path / "out.mp4", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".img2vid")]


@pytest.mark.parametrize("fmt", ["gif", "png"])
def test_gif_and_png_refuse_audio_in_one_line(tmp_path, photo, tone, fmt):
    done = run_cli("generate", photo, "--audio", tone, "--format", fmt, "--duration", "1",
                   cwd=tmp_path)
    assert done.returncode == 2
    assert "has no sound track" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_cli_generate_with_audio(tmp_path, photo, tone):
    out = tmp_path / "clip.webm"
    done = run_cli("generate", photo, "--audio", tone, "--audio-offset", "0.5", "--duration",
                   "1.5", "--resolution", "256", "--fps", "12", "--format", "webm", "-o", out,
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert streams(out) == {"video": "vp9", "audio": "opus"}
    assert json.loads(out.with_suffix(".json").read_text())["audio"]["offset"] == 0.5


@pytest.mark.parametrize(("fmt", "codec"), [("mp4", "aac"), ("mkv", "flac")])
def test_sound_a_model_generates_uses_the_same_muxer(settings, photo, tmp_path, fmt, codec):
    """Models that make sound with the picture (LTX-2) hand float samples to mux_samples."""
    from img2vid.core.choices import OutputFormat
    from img2vid.postprocess.audio import mux_samples

    result = generate(_request(photo, format=fmt), settings)
    silent = result.output
    t = np.arange(24000 * 3) / 24000
    samples = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)[None]  # mono, 24 kHz, 3 s
    out = tmp_path / f"with_sound.{fmt}"
    info = mux_samples(silent, samples, 24000, out, OutputFormat(fmt),
                       duration=result.metadata["output"]["duration"])
    assert streams(out)["audio"] == codec and info["source"] == "generated"
    sound, rate = audio_samples(out)
    assert len(sound) / rate == pytest.approx(2.0, abs=0.06)  # cut to the video
    a, b = video_frames(silent), video_frames(out)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
