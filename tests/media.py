"""Test media made in code: sound files written with PyAV, and decoding helpers."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def write_tone(path: Path, seconds: float, *, rate: int = 44100, channels: int = 2,
               codec: str = "pcm_s16le", silence_first: float = 0.0,
               frequency: float = 440.0) -> Path:
    """A sine tone (after `silence_first` seconds of silence), encoded with `codec`."""
    t = np.arange(int(round(seconds * rate))) / rate
    wave = (0.4 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    wave[: int(round(silence_first * rate))] = 0.0
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        ctx = stream.codec_context
        sample_format = (ctx.codec.audio_formats or [av.AudioFormat("s16")])[0].name
        stream.format = sample_format
        ctx.open()
        size = ctx.frame_size or 4096
        for start in range(0, len(wave), size):
            chunk = np.tile(wave[start:start + size], (channels, 1))
            data = chunk if sample_format.endswith("p") else chunk.T.reshape(1, -1)
            if sample_format.startswith("s16"):
                data = (data * 32767).astype(np.int16)
            elif sample_format.startswith("s32"):
                data = (data * 2147483647).astype(np.int32)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data),
                                               format=sample_format, layout=layout)
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def streams(path: Path) -> dict[str, str]:
    """{'video': codec, 'audio': codec} of a media file."""
    with av.open(str(path)) as container:
        return {s.type: s.codec_context.name for s in container.streams}


def video_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def audio_samples(path: Path) -> tuple[np.ndarray, int]:
    """(mono float samples, rate) of the first audio stream."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = [out.to_ndarray().reshape(-1) for frame in container.decode(stream)
                  for out in resampler.resample(frame)]
        chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(chunks), rate
