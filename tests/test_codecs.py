"""MP4 codecs: H.264, HEVC (hvc1), AV1; BT.709 tags, yuv420p, faststart; NVENC or a note."""

from __future__ import annotations

import json

import av
import pytest

from img2vid.core.request import EncoderKind, build_request
from img2vid.execution.pipeline import generate
from img2vid.media.encoders import nvenc_works
from tests.conftest import run_cli


def _request(photo, **fields):
    return build_request(images=[str(photo)], width=128, height=72, fps=12, duration=1.0,
                         encode_speed="ultrafast", **fields)


@pytest.mark.parametrize(("codec", "decoded", "tag"), [
    ("h264", "h264", "avc1"), ("hevc", "hevc", "hvc1"), ("av1", "av1", "av01")])
def test_each_codec_is_tagged_for_players(settings, photo, codec, decoded, tag):
    result = generate(_request(photo, codec=codec), settings)
    data = result.output.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # faststart: the index comes first
    with av.open(str(result.output)) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        assert (ctx.codec.id, stream.codec_tag, ctx.pix_fmt) == (
            av.Codec(decoded if decoded != "av1" else "libdav1d").id, tag, "yuv420p")
        assert (ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range) == \
            (1, 1, 1, 1)  # BT.709, limited range
        assert sum(1 for _ in container.decode(stream)) == 12
    side = json.loads(result.sidecar.read_text())
    assert side["request"]["codec"] == codec
    # x265 for HEVC, SVT-AV1 for AV1 (the encoders the issue names)
    assert side["output"]["codec"] == {"h264": "libx264", "hevc": "libx265",
                                       "av1": "libsvtav1"}[codec]


def test_gpu_encoder_is_used_or_falls_back_with_a_note(settings, photo):
    result = generate(_request(photo, codec="hevc", encoder="gpu"), settings)
    output = json.loads(result.sidecar.read_text())["output"]
    if nvenc_works("hevc_nvenc"):
        assert output["codec"] == "hevc_nvenc" and not output["note"]
    else:
        assert output["codec"] == "libx265"
        assert "hevc_nvenc cannot run here" in output["note"]
    with av.open(str(result.output)) as container:
        assert container.streams.video[0].codec_tag == "hvc1"


def test_encoder_comes_from_the_config(settings, photo):
    settings = settings.model_copy(update={"output": settings.output.model_copy(
        update={"encoder": EncoderKind.GPU})})
    result = generate(_request(photo), settings)
    output = json.loads(result.sidecar.read_text())["output"]
    assert output["codec"] == ("h264_nvenc" if nvenc_works("h264_nvenc") else "libx264")


def test_codec_for_another_container_is_one_line(tmp_path, photo):
    done = run_cli("generate", photo, "--codec", "av1", "--format", "webm", cwd=tmp_path)
    assert done.returncode == 2
    assert "codec=av1 is for mp4 output" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_doctor_lists_the_encoders(tmp_path):
    done = run_cli("doctor", cwd=tmp_path, env={"IMG2VID_MODEL_CACHE": str(tmp_path / "cache")})
    for name in ("libx265", "libsvtav1", "h264_nvenc", "hevc_nvenc", "aac", "libopus"):
        assert f"encoder {name}" in done.stdout
    assert "upscale model" in done.stdout and "style weights (AdaIN)" in done.stdout
    checkpoints = next(x for x in done.stdout.splitlines() if "upscale checkpoints" in x)
    assert "ESRGAN, Real-ESRGAN (built in)" in checkpoints
    try:  # the other architectures: spandrel's, or the plain reason they are not here
        import spandrel  # noqa: F401

        assert "SwinIR, HAT, DAT... (spandrel" in checkpoints
    except ImportError:
        assert "not SwinIR, HAT, DAT...: spandrel is" in checkpoints
    assert "img2vid models download adain" in done.stdout  # where --style's weights come from


def test_hevc_keeps_its_hvc1_tag_when_a_soundtrack_is_muxed(settings, photo, tmp_path):
    from tests.media import write_tone

    tone = write_tone(tmp_path / "t.wav", 2.0)
    result = generate(_request(photo, codec="hevc", audio=str(tone)), settings)
    data = result.output.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # still faststart after the remux
    with av.open(str(result.output)) as container:
        assert container.streams.video[0].codec_tag == "hvc1"
        assert container.streams.audio[0].codec_context.name == "aac"
