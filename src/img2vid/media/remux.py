"""Carry a source video's audio into a new video by stream copy (no re-encode, same duration)."""

from __future__ import annotations

import heapq
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from img2vid.core.request import OutputFormat

log = logging.getLogger(__name__)

_CONTAINERS = {OutputFormat.MP4: "mp4", OutputFormat.WEBM: "webm", OutputFormat.MKV: "matroska"}
_NO_AUDIO = {OutputFormat.GIF: "a GIF holds no audio",
             OutputFormat.PNG: "a folder of PNG frames holds no audio"}


@dataclass(frozen=True)
class SourceAudio:
    """The first audio stream of a source video."""

    path: Path
    codec: str
    duration: float | None


def source_audio(path: Path) -> SourceAudio | None:
    """The audio a video file carries, or None (no audio, or a frame folder)."""
    if path.is_dir():
        return None
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            duration = (float(stream.duration * stream.time_base)
                        if stream.duration and stream.time_base else None)
            return SourceAudio(path, stream.codec_context.name, duration)
    except (av.error.FFmpegError, OSError):
        return None  # the video reader reports unreadable input


def why_not_kept(audio: SourceAudio, fmt: OutputFormat) -> str | None:
    """Why `fmt` cannot hold `audio` by stream copy, or None when it can."""
    if fmt in _NO_AUDIO:
        return _NO_AUDIO[fmt]
    with av.open(io.BytesIO(), "w", format=_CONTAINERS[fmt]) as probe:
        if audio.codec not in probe.supported_codecs:
            return f"{fmt.value.upper()} cannot hold {audio.codec} audio"
    return None


@dataclass(frozen=True)
class StreamCopy:
    """A source's audio laid under a new video unchanged: the soundtrack `save_clip` muxes
    for `img2vid interpolate` (packets copied, so sound and length are the source's)."""

    audio: SourceAudio

    def mux(self, video: Path, out: Path, fmt: OutputFormat, duration: float,
            ) -> dict[str, Any]:
        """Write `out`: `video`'s packets and the audio's, both copied, interleaved by time.

        Returns the sidecar's `audio` entry."""
        options = {"movflags": "+faststart"} if fmt is OutputFormat.MP4 else {}
        with av.open(str(video)) as vin, av.open(str(self.audio.path)) as ain, \
                av.open(str(out), "w", format=_CONTAINERS[fmt], options=options) as dst:
            dst.metadata.update(vin.metadata)
            v_src, a_src = vin.streams.video[0], ain.streams.audio[0]
            v_dst = dst.add_stream_from_template(v_src)
            a_dst = dst.add_stream_from_template(a_src)
            for packet in heapq.merge(_packets(vin, v_src), _packets(ain, a_src),
                                      key=lambda p: float(p.dts * p.time_base)):
                packet.stream = v_dst if packet.stream is v_src else a_dst
                dst.mux(packet)
        return {"source": self.audio.path.name, "codec": self.audio.codec,
                "copied": True, "duration": self.audio.duration}


def _packets(container: av.container.InputContainer, stream: av.stream.Stream,
             ) -> Iterator[av.Packet]:
    for packet in container.demux(stream):
        if packet.dts is not None:  # the demuxer's final flush packet carries nothing
            yield packet
