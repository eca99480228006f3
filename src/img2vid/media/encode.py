"""Video writers on FFmpeg's libraries through PyAV: MP4/H.264, WebM/VP9, MKV/FFV1, GIF, PNG frames."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from img2vid.core.request import EncoderKind, OutputFormat, VideoCodec
from img2vid.core.sidecar import EncodedInfo
from img2vid.media import encoders

log = logging.getLogger(__name__)

# x264 speed names -> libvpx-vp9 cpu-used (0 slowest/best .. 8 fastest).
_VP9_CPU_USED = {"ultrafast": 8, "superfast": 8, "veryfast": 7, "faster": 6, "fast": 5,
                 "medium": 4, "slow": 3, "slower": 2, "veryslow": 1}
GIF_MAX_SIDE = 480  # GIFs are for sharing previews: bigger ones are huge and slow to load
# GIF delays are whole centiseconds, and browsers slow down delays under 2 cs: frames of a
# faster clip are dropped to 50 fps, keeping its duration
GIF_MIN_DELAY_CS = 2


@dataclass(frozen=True)
class EncodeOptions:
    format: OutputFormat = OutputFormat.MP4
    crf: int = 18
    speed: str = "medium"
    comment: str = ""  # stored in the container's metadata (MP4/MKV/WebM comment tag)
    codec: VideoCodec = VideoCodec.H264  # MP4 only: WebM is VP9, MKV FFV1
    encoder: EncoderKind = EncoderKind.CPU


class VideoWriter(ABC):
    """Write RGB frames one at a time; `close()` finishes the file, `abort()` drops it."""

    def __init__(self, path: Path, width: int, height: int, fps: float,
                 options: EncodeOptions) -> None:
        self.path, self.width, self.height = Path(path), width, height
        self.fps = Fraction(fps).limit_denominator(1001)
        self.options = options
        self.frames = 0

    @abstractmethod
    def write(self, frame: np.ndarray) -> None: ...

    @abstractmethod
    def close(self) -> EncodedInfo: ...

    @abstractmethod
    def abort(self) -> None: ...

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()

    def _check(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame {self.frames} is {frame.shape} {frame.dtype}; "
                             f"expected ({self.height}, {self.width}, 3) uint8")


class _PyAVWriter(VideoWriter):
    """One video stream in a container, frames timestamped 0, 1, 2... in units of 1/fps."""

    codec = ""
    container_format = ""
    pix_fmt = "yuv420p"

    def __init__(self, path: Path, width: int, height: int, fps: float,
                 options: EncodeOptions) -> None:
        super().__init__(path, width, height, fps, options)
        self.note = ""  # a fallback the sidecar should mention
        self.container = av.open(str(path), mode="w", format=self.container_format,
                                 options=self.container_options())
        if options.comment:
            self.container.metadata["comment"] = options.comment
        self.stream = self.container.add_stream(self.codec, rate=self.fps)
        self.tag_stream()
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = self.pix_fmt
        self.stream.time_base = 1 / self.fps
        self.stream.options = self.codec_options()
        self.configure(self.stream.codec_context)

    def container_options(self) -> dict[str, str]:
        return {}

    def tag_stream(self) -> None:
        pass

    def codec_options(self) -> dict[str, str]:
        return {}

    def configure(self, ctx: av.codec.context.CodecContext) -> None:
        """Tag BT.709, limited range: what players assume for HD and what we convert to."""
        ctx.colorspace = 1  # AVCOL_SPC_BT709
        ctx.color_primaries = 1  # AVCOL_PRI_BT709
        ctx.color_trc = 1  # AVCOL_TRC_BT709
        ctx.color_range = 1  # AVCOL_RANGE_MPEG (limited)

    def convert(self, frame: np.ndarray) -> av.VideoFrame:
        rgb = av.VideoFrame.from_ndarray(frame, format="rgb24")
        return rgb.reformat(format=self.pix_fmt, src_colorspace=Colorspace.ITU709,
                            dst_colorspace=Colorspace.ITU709, src_color_range=ColorRange.JPEG,
                            dst_color_range=ColorRange.MPEG)

    def write(self, frame: np.ndarray) -> None:
        self._check(frame)
        out = self.convert(frame)
        out.pts = self.frames
        self.container.mux(self.stream.encode(out))
        self.frames += 1

    def close(self) -> EncodedInfo:
        self.container.mux(self.stream.encode(None))
        self.container.close()
        return EncodedInfo(format=self.options.format.value, codec=self.codec,
                           pix_fmt=self.pix_fmt, width=self.width, height=self.height,
                           frames=self.frames, fps=float(self.fps),
                           duration=float(self.frames / self.fps),
                           bytes=self.path.stat().st_size, note=self.note)

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # the file is discarded anyway; the original error matters
            log.debug("ignoring error while closing an aborted container", exc_info=True)


class MP4Writer(_PyAVWriter):
    """H.264, HEVC or AV1 (options.codec), on the CPU or NVENC (options.encoder)."""

    container_format = "mp4"

    def __init__(self, path: Path, width: int, height: int, fps: float,
                 options: EncodeOptions) -> None:
        self.choice = encoders.choose(options.codec, options.encoder, options.crf,
                                      options.speed)
        self.codec = self.choice.name
        super().__init__(path, width, height, fps, options)
        self.note = self.choice.note

    def container_options(self) -> dict[str, str]:
        return {"movflags": "+faststart"}  # index first: playback starts before download ends

    def tag_stream(self) -> None:
        if self.choice.codec_tag:
            self.stream.codec_tag = self.choice.codec_tag  # hvc1: what Apple players accept

    def codec_options(self) -> dict[str, str]:
        return dict(self.choice.options)


class WebMWriter(_PyAVWriter):
    codec, container_format = "libvpx-vp9", "webm"

    def codec_options(self) -> dict[str, str]:
        # Constant quality mode: crf with a zero bitrate target.
        return {"crf": str(min(63, self.options.crf + 13)), "b": "0", "row-mt": "1",
                "deadline": "good", "cpu-used": str(_VP9_CPU_USED[self.options.speed])}


class MKVWriter(_PyAVWriter):
    """Lossless FFV1, for further editing: the RGB frames themselves, as 8-bit BGR0 (a YUV
    conversion would round them)."""

    codec, container_format, pix_fmt = "ffv1", "matroska", "bgr0"

    def codec_options(self) -> dict[str, str]:
        return {"level": "3", "slicecrc": "1"}

    def configure(self, ctx: av.codec.context.CodecContext) -> None:
        ctx.colorspace = 0  # AVCOL_SPC_RGB
        ctx.color_primaries = 1  # AVCOL_PRI_BT709 (sRGB's primaries)
        ctx.color_trc = 13  # AVCOL_TRC_IEC61966_2_1 (sRGB)
        ctx.color_range = 2  # AVCOL_RANGE_JPEG (full)

    def convert(self, frame: np.ndarray) -> av.VideoFrame:
        return av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format=self.pix_fmt)


class GIFWriter(VideoWriter):
    """Palette GIF: FFmpeg's palettegen + paletteuse (one palette for the whole clip)."""

    def __init__(self, path: Path, width: int, height: int, fps: float,
                 options: EncodeOptions) -> None:
        super().__init__(path, width, height, fps, options)
        scale = min(1.0, GIF_MAX_SIDE / max(width, height))
        self.out_w = max(2, int(round(width * scale / 2)) * 2)
        self.out_h = max(2, int(round(height * scale / 2)) * 2)
        self.container = av.open(str(path), mode="w", format="gif")
        self.stream = self.container.add_stream("gif", rate=self.fps)
        self.stream.width, self.stream.height = self.out_w, self.out_h
        self.stream.pix_fmt = "pal8"
        self.stream.time_base = Fraction(1, 100)  # GIF delays are in centiseconds
        self._shown_cs: list[int] = []  # when each kept frame is shown
        self.graph = av.filter.Graph()
        src = self.graph.add_buffer(width=self.out_w, height=self.out_h, format="rgb24",
                                    time_base=1 / self.fps)
        split = self.graph.add("split")
        gen = self.graph.add("palettegen", "stats_mode=full")
        use = self.graph.add("paletteuse", "dither=sierra2_4a")
        sink = self.graph.add("buffersink")
        src.link_to(split)
        split.link_to(gen, 1, 0)
        split.link_to(use, 0, 0)
        gen.link_to(use, 0, 1)
        use.link_to(sink)
        self.graph.configure()

    def write(self, frame: np.ndarray) -> None:
        self._check(frame)
        at_cs = round(self.frames * 100 / self.fps)
        self.frames += 1
        if self._shown_cs and at_cs < self._shown_cs[-1] + GIF_MIN_DELAY_CS:
            return
        self._shown_cs.append(at_cs)
        if (self.out_w, self.out_h) != (self.width, self.height):
            frame = cv2.resize(frame, (self.out_w, self.out_h), interpolation=cv2.INTER_AREA)
        vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
        vf.pts, vf.time_base = self.frames - 1, 1 / self.fps
        self.graph.push(vf)

    def close(self) -> EncodedInfo:
        self.graph.push(None)  # palettegen emits its palette only at the end of input
        index = 0
        while True:
            try:
                out = self.graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                break
            out.pts = self._shown_cs[index]
            out.time_base = Fraction(1, 100)
            self.container.mux(self.stream.encode(out))
            index += 1
        self.container.mux(self.stream.encode(None))
        self.container.close()
        duration = float(self.frames / self.fps)
        return EncodedInfo(format="gif", codec="gif", pix_fmt="pal8", width=self.out_w,
                           height=self.out_h, frames=index,
                           fps=index / duration if duration else float(self.fps),
                           duration=duration, bytes=self.path.stat().st_size)

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:
            log.debug("ignoring error while closing an aborted GIF", exc_info=True)


class PNGFramesWriter(VideoWriter):
    """A folder of frame_000001.png, frame_000002.png, ... (lossless, any editor reads it)."""

    def __init__(self, path: Path, width: int, height: int, fps: float,
                 options: EncodeOptions) -> None:
        super().__init__(path, width, height, fps, options)
        self.path.mkdir(parents=True, exist_ok=False)

    def write(self, frame: np.ndarray) -> None:
        self._check(frame)
        self.frames += 1
        target = self.path / f"frame_{self.frames:06d}.png"
        ok, data = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if not ok:
            raise OSError(f"could not encode PNG frame {self.frames}")
        target.write_bytes(data.tobytes())

    def close(self) -> EncodedInfo:
        size = sum(p.stat().st_size for p in self.path.iterdir())
        return EncodedInfo(format="png", codec="png", pix_fmt="rgb24", width=self.width,
                           height=self.height, frames=self.frames, fps=float(self.fps),
                           duration=float(self.frames / self.fps), bytes=size)

    def abort(self) -> None:
        pass  # the caller removes the temporary folder


_WRITERS: dict[OutputFormat, type[VideoWriter]] = {
    OutputFormat.MP4: MP4Writer,
    OutputFormat.WEBM: WebMWriter,
    OutputFormat.MKV: MKVWriter,
    OutputFormat.GIF: GIFWriter,
    OutputFormat.PNG: PNGFramesWriter,
}


def open_writer(path: Path, width: int, height: int, fps: float,
                options: EncodeOptions) -> VideoWriter:
    """A writer for `options.format` at `path` (which must not exist yet)."""
    if options.format in (OutputFormat.MP4, OutputFormat.WEBM) and (width % 2 or height % 2):
        raise ValueError(f"{options.format.value} needs even dimensions, got {width}x{height}")
    return _WRITERS[options.format](path, width, height, fps, options)
