"""Loops and reverse on a Clip: ping-pong, a seamless loop that blends the end into the
start, and backwards playback. Frames that must be held go to a bounded FrameStore."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator

import numpy as np

from img2vid.core.clip import Clip
from img2vid.core.request import TransitionStyle

log = logging.getLogger(__name__)

# Frames kept in RAM by one FrameStore before it spills to a temporary file: ~85 frames
# of 1080p. Reverse and ping-pong must hold the whole clip; this keeps memory bounded.
DEFAULT_RAM_BUDGET = 512 * 1024 * 1024


class FrameStore:
    """Append-only store of equally sized frames: in memory up to `ram_budget` bytes,
    the rest in an anonymous temporary file (deleted on close)."""

    def __init__(self, ram_budget: int = DEFAULT_RAM_BUDGET) -> None:
        self.ram_budget = ram_budget
        self._ram: list[np.ndarray] = []
        self._file: tempfile._TemporaryFileWrapper[bytes] | None = None
        self._spilled = 0
        self._shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self._ram) + self._spilled

    @property
    def spilled(self) -> int:
        """How many frames went to disk."""
        return self._spilled

    def append(self, frame: np.ndarray) -> None:
        if self._shape is None:
            self._shape = frame.shape
        elif frame.shape != self._shape:
            raise ValueError(f"frame {len(self)} is {frame.shape}, the clip is {self._shape}")
        if self._file is None and (len(self._ram) + 1) * frame.nbytes <= self.ram_budget:
            self._ram.append(frame)
            return
        if self._file is None:
            # Closed in close(): it lives as long as the store, not a with-block.
            self._file = tempfile.TemporaryFile(prefix="img2vid-frames-")  # noqa: SIM115
            log.info("frame store over %d MiB: spilling frames to a temporary file",
                     self.ram_budget >> 20)
        self._file.seek(0, 2)
        self._file.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
        self._spilled += 1

    def __getitem__(self, index: int) -> np.ndarray:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        if index < len(self._ram):
            return self._ram[index]
        out = np.empty(self._ram[0].shape if self._ram else self._shape, dtype=np.uint8)
        spill = self._file
        if spill is None:
            raise RuntimeError("frame store was closed")
        spill.seek((index - len(self._ram)) * out.nbytes)
        spill.readinto(memoryview(out).cast("B"))
        return out

    def close(self) -> None:
        self._ram.clear()
        if self._file is not None:
            self._file.close()
            self._file = None
        self._spilled = 0


def reverse(clip: Clip, ram_budget: int = DEFAULT_RAM_BUDGET) -> Clip:
    """The clip played backwards (the whole clip is held: in RAM up to the budget)."""

    def frames() -> Iterator[np.ndarray]:
        store = FrameStore(ram_budget)
        try:
            for frame in clip.frames:
                store.append(frame)
            for index in range(len(store) - 1, -1, -1):
                yield store[index]
        finally:
            store.close()

    return Clip(frames(), clip.fps, clip.width, clip.height, clip.num_frames,
                {**clip.info, "reversed": True})


def pingpong(clip: Clip, ram_budget: int = DEFAULT_RAM_BUDGET) -> Clip:
    """Forwards then backwards (a boomerang) that loops without a repeated frame:
    0..n-1 then n-2..1, so 2n-2 frames. Frames stream out while they are stored."""
    n = clip.num_frames
    total = 2 * n - 2 if n >= 2 else n

    def frames() -> Iterator[np.ndarray]:
        store = FrameStore(ram_budget)
        try:
            for frame in clip.frames:
                store.append(frame)
                yield frame
            for index in range(len(store) - 2, 0, -1):
                yield store[index]
        finally:
            store.close()

    return Clip(frames(), clip.fps, clip.width, clip.height, total,
                {**clip.info, "loop": "pingpong"})


def seam_length(num_frames: int, fps: float, seconds: float) -> int:
    """Frames in a seamless loop's seam: `seconds` long, at most a third of the clip."""
    return max(1, min(round(seconds * fps), num_frames // 3))


def seamless(clip: Clip, seconds: float = 1.0,
             style: TransitionStyle = TransitionStyle.CROSSFADE,
             ram_budget: int = DEFAULT_RAM_BUDGET) -> Clip:
    """A loop whose last frames blend into its first ones, so playback wraps invisibly.

    With a seam of k frames the output is n - k frames: input frames k .. n-k-1 as they
    are, then the last k input frames each blended towards the matching one of the first
    k (weights 1/(k+1) .. k/(k+1)); after the final frame comes input frame k, which
    follows input frame k-1 naturally. Only the first k frames are held. `style` morph
    uses the flow interpolator instead of a plain crossfade.
    """
    n = clip.num_frames
    if n < 3:
        log.warning("a seamless loop needs at least 3 frames; the clip has %d: left as is", n)
        return clip
    k = seam_length(n, clip.fps, seconds)
    # cv2 and the flow code load only when a seamless loop is made
    from img2vid.postprocess.blend import Blend, crossfade, morph
    from img2vid.postprocess.interpolate import FlowInterpolator

    blend: Blend = crossfade
    if style is TransitionStyle.MORPH:
        flow = FlowInterpolator()

        def blend(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
            return morph(a, b, t, flow)

    def frames() -> Iterator[np.ndarray]:
        head = FrameStore(ram_budget)
        try:
            for index, frame in enumerate(clip.frames):
                if index < k:
                    head.append(frame)
                elif index < n - k:
                    yield frame
                elif index < n:
                    i = index - (n - k)
                    yield blend(frame, head[i], (i + 1) / (k + 1))
        finally:
            head.close()

    return Clip(frames(), clip.fps, clip.width, clip.height, n - k,
                {**clip.info, "loop": "seamless", "loop_seam_frames": k,
                 "loop_seam_style": style.value})
