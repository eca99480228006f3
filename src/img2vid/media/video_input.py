"""Read an existing video (anything PyAV decodes) or a folder of numbered frames as a Clip
of RGB frames, converting YUV with the input's own colour matrix and range."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.reformatter import ColorRange, Colorspace

from img2vid.core.clip import Clip
from img2vid.core.config import ImageSettings
from img2vid.core.errors import InputError

log = logging.getLogger(__name__)

FRAME_EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
DEFAULT_FOLDER_FPS = 24.0


def open_clip(path: str | Path, fps: float | None = None,
              image_settings: ImageSettings | None = None) -> Clip:
    """A Clip of the video file or frame folder at `path`.

    `fps` is the frame rate of a frame folder (default 24); for a video it overrides the
    rate the file declares (a variable-rate file is read as constant-rate at its average).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        return _open_folder(path, fps or DEFAULT_FOLDER_FPS, image_settings or ImageSettings())
    return _open_video(path, fps)


# --- frame folders ----------------------------------------------------------------------------

def _frame_number(path: Path) -> tuple[int, str]:
    digits = re.findall(r"\d+", path.stem)
    return (int(digits[-1]) if digits else -1, path.name)


def _open_folder(folder: Path, fps: float, settings: ImageSettings) -> Clip:
    from img2vid.media.images import load_image

    files = sorted((p for p in folder.iterdir()
                    if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS
                    and not p.name.startswith(".")), key=_frame_number)
    if not files:
        raise InputError(f"{folder} holds no frames (expected numbered "
                         f"{', '.join(sorted(FRAME_EXTENSIONS))} files)")
    first = load_image(files[0], settings).pixels
    height, width = first.shape[:2]

    def frames() -> Iterator[np.ndarray]:
        yield first
        for file in files[1:]:
            pixels = load_image(file, settings).pixels
            if pixels.shape[:2] != (height, width):
                raise InputError(f"frame {file.name} is {pixels.shape[1]}x{pixels.shape[0]}; "
                                 f"the first frame is {width}x{height}: all frames must match")
            yield pixels

    return Clip(frames(), float(fps), width, height, len(files),
                {"source": str(folder), "source_kind": "frames"})


# --- video files ------------------------------------------------------------------------------

def _open_video(path: Path, fps: float | None) -> Clip:
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"cannot read {path} as a video: {exc}") from None
    try:
        if not container.streams.video:
            raise InputError(f"{path} has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if fps is None and not rate:
            raise InputError(f"{path} does not declare a frame rate; give one with --fps")
        count = stream.frames or _count_frames(path)
        width, height = stream.codec_context.width, stream.codec_context.height
        info = {"source": str(path), "source_kind": "video", "source_codec": stream.codec.name,
                "source_pix_fmt": stream.codec_context.pix_fmt,
                "source_fps": float(rate) if rate else None}
    except BaseException:
        container.close()
        raise
    if count <= 0 or not width or not height:
        container.close()
        raise InputError(f"{path} has no decodable video frames")
    clip_fps = float(fps) if fps else float(Fraction(rate))
    return Clip(_decode(container, path), clip_fps, width, height, count, info)


def _count_frames(path: Path) -> int:
    """Frames in the first video stream, by reading packets (no decoding): some containers
    (WebM, MKV) do not store the count."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size)


def _decode(container: InputContainer, path: Path) -> Iterator[np.ndarray]:
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                yield to_rgb(frame)
        except av.error.FFmpegError as exc:
            raise InputError(f"cannot decode {path}: {exc}") from None
    finally:
        container.close()


# AVColorSpace (the frame's tag) -> swscale's matrix constant.
_MATRICES = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "SMPTE170M", 7: "SMPTE240M", 9: "BT2020",
             10: "BT2020"}
_RGB_FORMATS = ("rgb", "bgr", "gbr", "argb", "abgr", "rgba", "bgra", "gray", "pal8", "ya")


def to_rgb(frame: VideoFrame) -> np.ndarray:
    """H x W x 3 uint8 RGB of a decoded frame, honouring its colour matrix and range.

    Untagged YUV is read as BT.709 from 720 lines up and BT.601 below (what players do),
    limited range unless the pixel format is a full-range `yuvj` one.
    """
    fmt = frame.format.name
    if fmt.startswith(_RGB_FORMATS):
        return frame.to_ndarray(format="rgb24")
    matrix = _MATRICES.get(frame.colorspace) or ("ITU709" if frame.height >= 720 else "ITU601")
    tagged_range = frame.color_range
    if tagged_range == ColorRange.JPEG or (tagged_range != ColorRange.MPEG
                                           and fmt.startswith("yuvj")):
        src_range = ColorRange.JPEG
    else:
        src_range = ColorRange.MPEG
    return frame.to_ndarray(
        format="rgb24", src_colorspace=Colorspace[matrix], dst_colorspace=Colorspace[matrix],
        src_color_range=src_range, dst_color_range=ColorRange.JPEG)
