"""Soundtracks: an audio file checked before rendering, then muxed beside the finished video
stream (packets copied, so the picture is bit for bit the silent render's), trimmed to the
video with a fade-out."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from img2vid.core.errors import InputError
from img2vid.core.request import OutputFormat
from img2vid.media.images import file_sha256

log = logging.getLogger(__name__)

# A cut in the middle of a track clicks; this short fade is used when the video has none.
DEFAULT_FADE_OUT_S = 0.5
CONTAINERS = {OutputFormat.MP4: "mp4", OutputFormat.WEBM: "webm", OutputFormat.MKV: "matroska"}
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000)
# Lossless sources stay lossless in MKV: PCM as the same PCM, anything else as FLAC.
MKV_PCM = {"pcm_s16le": "s16", "pcm_s32le": "s32", "pcm_f32le": "flt"}
FLAC_CHUNK = 4608


class AudioError(InputError):
    """An audio file that cannot be used as a soundtrack."""


@dataclass(frozen=True)
class AudioTrack:
    """A probed soundtrack: what the muxer needs (mux_audio records it in the sidecar)."""

    path: Path
    sha256: str
    codec: str
    sample_rate: int
    channels: int
    duration: float


def refuse_for_format(fmt: OutputFormat) -> None:
    """GIF and PNG frames have no sound: say so before anything is rendered."""
    if fmt not in CONTAINERS:
        raise InputError(f"--audio needs a video container (mp4, webm or mkv); {fmt.value} "
                         "output has no sound track")


def probe_audio(path: str | Path) -> AudioTrack:
    """Open and decode `path` to measure it; refuse what is not usable audio.

    Decoding it all (rather than trusting the header) catches truncated and empty files
    before a long render is wasted.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(f"{path.name} has no audio stream; give a music or sound file "
                                 "(mp3, wav, flac, m4a, ogg...)")
            stream = container.streams.audio[0]
            codec, rate = stream.codec_context.name, stream.codec_context.sample_rate
            channels = stream.codec_context.channels
            samples = sum(frame.samples for frame in container.decode(stream))
    except AudioError:
        raise
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise AudioError(f"{path.name} is not a readable audio file ({exc.__class__.__name__}); "
                         "give an mp3, wav, flac, m4a or ogg file") from None
    if samples == 0 or not rate:
        raise AudioError(f"{path.name} has an audio stream with no sound in it (zero length)")
    return AudioTrack(path=path, sha256=file_sha256(path), codec=codec, sample_rate=rate,
                      channels=channels, duration=samples / rate)


def playable_length(track: AudioTrack, offset: float) -> float:
    """Seconds of the track after `offset`; an offset past its end is an input error."""
    left = track.duration - offset
    if left <= 0:
        raise AudioError(f"audio_offset={offset:g} s is past the end of {track.path.name} "
                         f"({track.duration:.2f} s long)")
    return left


@dataclass(frozen=True)
class _Target:
    codec: str
    sample_format: str  # what the encoder takes
    rate: int
    layout: str


def _target(fmt: OutputFormat, channels: int, rate: int, source_codec: str = "") -> _Target:
    layout = "mono" if channels == 1 else "stereo"  # more channels are downmixed
    if fmt is OutputFormat.MP4:
        return _Target("aac", "fltp", rate if rate in AAC_RATES else 48000, layout)
    if fmt is OutputFormat.WEBM:
        return _Target("libopus", "flt", 48000, layout)  # Opus runs at 48 kHz
    if source_codec in MKV_PCM:
        return _Target(source_codec, MKV_PCM[source_codec], rate, layout)
    bits32 = source_codec.startswith(("pcm_s24", "pcm_s32", "pcm_f")) or source_codec == "flac"
    return _Target("flac", "s32" if bits32 else "s16", rate, layout)


def mux_audio(video: Path, track: AudioTrack, out: Path, fmt: OutputFormat, *,
              duration: float, offset: float = 0.0, fade_out: float = 0.0) -> dict[str, Any]:
    """Write `out`: `video`'s packets unchanged plus the track from `offset`, cut to
    `duration` seconds and faded out over the last `fade_out` seconds (or a short fade when
    the track is cut and the video has none). Returns the sidecar's `audio` entry."""
    refuse_for_format(fmt)
    target = _target(fmt, track.channels, track.sample_rate, track.codec)
    samples = _read(track, offset, duration, target)
    cut = track.duration - offset > duration + 1e-3
    fade = fade_out if fade_out > 0 else (DEFAULT_FADE_OUT_S if cut else 0.0)
    _fade_out(samples, min(fade, samples.shape[1] / target.rate), target.rate)
    _write(video, out, fmt, target, samples)
    return {"sha256": track.sha256, "source": track.path.name, "source_codec": track.codec,
            "offset": offset, **_describe(target, samples), "fade_out": fade}


def mux_samples(video: Path, samples: np.ndarray, rate: int, out: Path, fmt: OutputFormat,
                *, duration: float) -> dict[str, Any]:
    """Write `out`: `video`'s packets unchanged plus sound a model generated with it
    (float samples, channels x n, at `rate`), cut to `duration` seconds. The same muxer as
    --audio."""
    refuse_for_format(fmt)
    samples = np.atleast_2d(np.asarray(samples, dtype=np.float32))
    target = _target(fmt, samples.shape[0], rate)
    if target.rate != rate or samples.shape[0] > 2:
        samples = _resample(samples, rate, target)
    samples = np.ascontiguousarray(samples[:, :round(duration * target.rate)])
    _write(video, out, fmt, target, samples)
    return {"source": "generated", **_describe(target, samples)}


def _describe(target: _Target, samples: np.ndarray) -> dict[str, Any]:
    return {"codec": target.codec, "sample_rate": target.rate,
            "channels": 1 if target.layout == "mono" else 2,
            "duration": round(samples.shape[1] / target.rate, 3)}


def _resample(samples: np.ndarray, rate: int, target: _Target) -> np.ndarray:
    layout = {1: "mono", 2: "stereo"}.get(samples.shape[0], f"{samples.shape[0]}c")
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp",
                                       layout=layout)
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="fltp", layout=target.layout, rate=target.rate)
    parts = [f.to_ndarray() for f in (*resampler.resample(frame), *resampler.resample(None))]
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


def _write(video: Path, out: Path, fmt: OutputFormat, target: _Target,
           samples: np.ndarray) -> None:
    """Copy the video's packets into `out` beside the encoded samples, interleaved by time."""
    options = {"movflags": "+faststart"} if fmt is OutputFormat.MP4 else {}
    with av.open(str(video)) as src, av.open(str(out), "w", format=CONTAINERS[fmt],
                                            options=options) as dst:
        dst.metadata.update(src.metadata)
        vin = src.streams.video[0]
        vout = dst.add_stream_from_template(vin)
        if vin.codec_context.name == "hevc" and fmt is OutputFormat.MP4:
            vout.codec_tag = "hvc1"  # Apple players refuse the default hev1 tag
        aout = dst.add_stream(target.codec, rate=target.rate, layout=target.layout)
        aout.format = target.sample_format
        if target.codec == "aac":
            aout.bit_rate = 192_000 if target.layout == "stereo" else 96_000
        elif target.codec == "libopus":
            aout.bit_rate = 128_000 if target.layout == "stereo" else 64_000
        pending = iter(_encode(aout, samples, target))
        next_audio = next(pending, None)
        for packet in src.demux(vin):
            if packet.dts is None:
                continue
            at = float(packet.dts * packet.time_base)
            while next_audio is not None and _time(next_audio) <= at:
                dst.mux(next_audio)
                next_audio = next(pending, None)
            packet.stream = vout
            dst.mux(packet)
        while next_audio is not None:
            dst.mux(next_audio)
            next_audio = next(pending, None)


def _time(packet: av.Packet) -> float:
    return float((packet.dts or 0) * packet.time_base)


def _read(track: AudioTrack, offset: float, duration: float, target: _Target) -> np.ndarray:
    """Float samples (channels x n) of the track from `offset`, at most `duration` long."""
    skip = round(offset * target.rate)
    want = round(duration * target.rate)
    resampler = av.AudioResampler(format="fltp", layout=target.layout, rate=target.rate)
    chunks: list[np.ndarray] = []
    have = 0
    with av.open(str(track.path)) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            frame.pts = None  # resample by sample count; some files have gaps in timestamps
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
                have += chunks[-1].shape[1]
            if have >= skip + want:
                break
        else:
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
    channels = 1 if target.layout == "mono" else 2
    joined = (np.concatenate(chunks, axis=1) if chunks
              else np.zeros((channels, 0), np.float32))
    return np.ascontiguousarray(joined[:, skip:skip + want], dtype=np.float32)


def _fade_out(samples: np.ndarray, seconds: float, rate: int) -> None:
    n = min(samples.shape[1], round(seconds * rate))
    if n > 0:
        samples[:, -n:] *= np.linspace(1.0, 0.0, n, dtype=np.float32)


def _encode(stream: av.AudioStream, samples: np.ndarray, target: _Target) -> list[av.Packet]:
    """Every packet of the encoded track, in order (a few MB at most)."""
    ctx = stream.codec_context
    ctx.open()
    size = ctx.frame_size or FLAC_CHUNK
    packets: list[av.Packet] = []
    for start in range(0, samples.shape[1], size):
        frame = av.AudioFrame.from_ndarray(_as_format(samples[:, start:start + size],
                                                      target.sample_format),
                                           format=target.sample_format, layout=target.layout)
        frame.sample_rate, frame.pts = target.rate, start
        packets.extend(stream.encode(frame))
    packets.extend(stream.encode(None))
    return packets


def _as_format(chunk: np.ndarray, sample_format: str) -> np.ndarray:
    """Planar float -> the encoder's layout: planar (fltp) or interleaved (1 x n*ch)."""
    if sample_format == "fltp":
        return np.ascontiguousarray(chunk)
    interleaved = chunk.T.reshape(1, -1)
    if sample_format == "flt":
        return np.ascontiguousarray(interleaved, dtype=np.float32)
    scale = 32767 if sample_format == "s16" else 2147483647
    dtype = np.int16 if sample_format == "s16" else np.int32
    return np.clip(np.round(interleaved.astype(np.float64) * scale), -scale, scale).astype(dtype)


@dataclass(frozen=True)
class Soundtrack:
    """A probed track and how a request wants it laid under its video."""

    track: AudioTrack
    offset: float = 0.0
    fade_out: float = 0.0

    def mux(self, video: Path, out: Path, fmt: OutputFormat, duration: float) -> dict[str, Any]:
        return mux_audio(video, self.track, out, fmt, duration=duration, offset=self.offset,
                         fade_out=self.fade_out)


def fitted_timing(seconds: float, fps: int, fade: float, *, max_seconds: float,
                  max_frames: int) -> tuple[float, int]:
    """(duration, num_frames) of a slideshow as long as `seconds` of track (--fit-to-audio)."""
    frames = max(1, round(seconds * fps))
    if seconds > max_seconds or frames > max_frames:
        raise AudioError(f"fit_to_audio: the track plays {seconds:.1f} s after the offset and "
                         f"a video lasts at most {max_seconds:g} s ({max_frames} frames); use "
                         "a shorter track or a later audio_offset, or drop fit_to_audio (the "
                         "track is then cut at the video's end)")
    if fade > frames / fps:
        raise AudioError(f"fit_to_audio: fade_in + fade_out ({fade:g} s) is longer than the "
                         f"track ({seconds:.2f} s)")
    return frames / fps, frames
