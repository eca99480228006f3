"""MP4 video encoders: H.264 (x264), HEVC (x265, tagged hvc1), AV1 (SVT-AV1), and NVENC when
an NVIDIA GPU can open it; the options each needs for the same quality scale and BT.709."""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from fractions import Fraction

import av

from img2vid.core.request import EncoderKind, VideoCodec

log = logging.getLogger(__name__)

CPU_ENCODERS = {VideoCodec.H264: "libx264", VideoCodec.HEVC: "libx265",
                VideoCodec.AV1: "libsvtav1"}
GPU_ENCODERS = {VideoCodec.H264: "h264_nvenc", VideoCodec.HEVC: "hevc_nvenc",
                VideoCodec.AV1: "av1_nvenc"}
# x264 speed names -> SVT-AV1 presets (0 slowest .. 13 fastest) and NVENC presets (p1..p7).
_SVT_PRESET = {"ultrafast": 12, "superfast": 11, "veryfast": 10, "faster": 9, "fast": 8,
               "medium": 7, "slow": 6, "slower": 5, "veryslow": 4}
_NVENC_PRESET = {"ultrafast": "p1", "superfast": "p1", "veryfast": "p2", "faster": "p3",
                 "fast": "p4", "medium": "p5", "slow": "p6", "slower": "p7", "veryslow": "p7"}
# `crf` is on x264's scale everywhere; these factors give about the same picture quality
# with the other encoders (x264 23 ~ x265 28 ~ SVT-AV1 35), and keep 0 reachable.
_CRF_FACTOR = {VideoCodec.H264: 1.0, VideoCodec.HEVC: 1.2, VideoCodec.AV1: 1.5}
_BT709 = "colorprim=bt709:transfer=bt709:colormatrix=bt709"


@dataclass(frozen=True)
class EncoderChoice:
    """The FFmpeg encoder to use, its options, its MP4 tag and why it was chosen."""

    name: str
    options: dict[str, str] = field(default_factory=dict)
    codec_tag: str | None = None
    note: str = ""


def choose(codec: VideoCodec, kind: EncoderKind, crf: int, speed: str) -> EncoderChoice:
    """The encoder for `codec` on `kind` hardware; GPU falls back to the CPU with a note."""
    note = ""
    if kind is EncoderKind.GPU:
        gpu = GPU_ENCODERS[codec]
        if nvenc_works(gpu):
            cq = str(min(51, max(1, round(crf * _CRF_FACTOR[codec]))))
            return EncoderChoice(gpu, {"preset": _NVENC_PRESET[speed], "rc": "vbr", "cq": cq,
                                       "b": "0"},
                                 codec_tag="hvc1" if codec is VideoCodec.HEVC else None)
        note = (f"--encoder gpu: {gpu} cannot run here (no NVIDIA GPU or driver); "
                f"encoded on the CPU with {CPU_ENCODERS[codec]}")
        log.warning(note)
    quality = str(min(63 if codec is VideoCodec.AV1 else 51, round(crf * _CRF_FACTOR[codec])))
    if codec is VideoCodec.H264:
        return EncoderChoice("libx264", {"crf": quality, "preset": speed,
                                         "x264-params": f"{_BT709}:range=tv"}, note=note)
    if codec is VideoCodec.HEVC:
        return EncoderChoice("libx265", {"crf": quality, "preset": speed,
                                         "x265-params": f"{_BT709}:range=limited:log-level=error"},
                             codec_tag="hvc1", note=note)
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints dozens of info lines otherwise
    return EncoderChoice("libsvtav1", {"crf": quality, "preset": str(_SVT_PRESET[speed]),
                                       "svtav1-params": "color-range=0"}, note=note)


@functools.cache
def nvenc_works(name: str) -> bool:
    """Whether `name` opens here: in the FFmpeg build *and* a GPU and driver that take it."""
    if name not in av.codecs_available:
        return False
    try:
        ctx = av.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt = 256, 256, "yuv420p"
        ctx.time_base = Fraction(1, 25)
        ctx.open()
    except (av.error.FFmpegError, ValueError, OSError):
        return False
    return True


def available() -> dict[str, bool]:
    """Every encoder --codec/--encoder can pick, and whether it works on this machine."""
    names = {name: name in av.codecs_available for name in CPU_ENCODERS.values()}
    names.update({name: nvenc_works(name) for name in GPU_ENCODERS.values()})
    return names
