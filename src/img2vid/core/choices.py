"""The choices a request offers (engines, motions, formats, codecs...), as string enums."""

from __future__ import annotations

from enum import Enum


class EngineKind(str, Enum):
    CAMERA = "camera"
    DIFFUSION = "diffusion"


class Motion(str, Enum):
    STATIC = "static"
    ZOOM_IN = "zoom-in"
    ZOOM_OUT = "zoom-out"
    PAN_LEFT = "pan-left"
    PAN_RIGHT = "pan-right"
    PAN_UP = "pan-up"
    PAN_DOWN = "pan-down"
    KEN_BURNS = "ken-burns"
    ROTATE = "rotate"


class Easing(str, Enum):
    LINEAR = "linear"
    EASE_IN_OUT = "ease-in-out"
    EASE_IN = "ease-in"
    EASE_OUT = "ease-out"


class OutputFormat(str, Enum):
    MP4 = "mp4"  # H.264, plays everywhere
    WEBM = "webm"  # VP9
    GIF = "gif"
    PNG = "png"  # a folder of numbered PNG frames
    MKV = "mkv"  # FFV1, lossless

    @property
    def extension(self) -> str:
        return "" if self is OutputFormat.PNG else f".{self.value}"


class InterpolatorKind(str, Enum):
    FLOW = "flow"  # weightless optical flow (OpenCV DIS)
    RIFE = "rife"  # learned, needs weights


class LoopMode(str, Enum):
    NONE = "none"
    PINGPONG = "pingpong"  # forwards then backwards (boomerang)
    SEAMLESS = "seamless"  # the end blends back into the start


class TransitionStyle(str, Enum):
    CROSSFADE = "crossfade"
    MORPH = "morph"  # frame interpolation carries one photo into the next


class MemoryLevel(str, Enum):
    AUTO = "auto"  # the planner picks the lightest level that fits
    HIGH = "high"  # everything resident on the GPU
    BALANCED = "balanced"  # whole models move to the GPU when used (model CPU offload)
    LOW = "low"  # blocks stream to the GPU (group offload with CUDA streams)
    MINIMUM = "minimum"  # layer by layer (sequential / leaf offload)


class StepCache(str, Enum):
    NONE = "none"
    FIRST_BLOCK = "first-block"  # skip the rest of a step when the first block barely changed
    MAGCACHE = "magcache"  # skip steps by residual magnitude ratios


class Quantize(str, Enum):
    NONE = "none"
    INT8 = "int8"  # int8 weight-only (torchao)
    FP8 = "fp8"  # fp8 storage, computed in the model dtype


class VideoCodec(str, Enum):
    H264 = "h264"  # plays everywhere
    HEVC = "hevc"  # x265, tagged hvc1: about half the size, Apple players and modern browsers
    AV1 = "av1"  # SVT-AV1: smallest, newest players


class EncoderKind(str, Enum):
    CPU = "cpu"  # x264 / x265 / SVT-AV1
    GPU = "gpu"  # NVENC when an NVIDIA GPU is present, else the CPU encoder with a note


class Upscaler(str, Enum):
    MODEL = "model"  # a super-resolution checkpoint (ESRGAN, Real-ESRGAN...)
    LANCZOS = "lanczos"  # weightless resampling


class PresetName(str, Enum):
    PREVIEW = "preview"
    STANDARD = "standard"
    HIGH = "high"
    MAX = "max"
