"""Where a photo's move centres: the request's point, else the largest face, else the centre."""

from __future__ import annotations

import threading

import cv2
import numpy as np

from img2vid.core.request import GenerationRequest

FACE_DETECT_SIDE = 640  # long side of the grey copy the face detector sees
FACE_MARGIN = 1.3  # the detector's box runs brow to mouth: keep forehead and chin too


class FaceFinder:
    """Largest frontal face with OpenCV's bundled Haar cascade (loaded once, on first use)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cascade: cv2.CascadeClassifier | None = None

    def find(self, pixels: np.ndarray) -> tuple[float, float, float, float] | None:
        """(x, y, w, h) of the largest face in photo pixels, or None."""
        height, width = pixels.shape[:2]
        shrink = min(1.0, FACE_DETECT_SIDE / max(width, height))
        small = pixels if shrink == 1.0 else cv2.resize(
            pixels, (max(1, round(width * shrink)), max(1, round(height * shrink))),
            interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        min_side = max(24, min(grey.shape) // 12)
        with self._lock:  # one classifier shared by concurrent jobs
            if self._cascade is None:
                path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
                self._cascade = cv2.CascadeClassifier(path)
                if self._cascade.empty():
                    raise RuntimeError(f"OpenCV's face cascade is missing: {path}")
            faces = self._cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                                   minSize=(min_side, min_side))
        if len(faces) == 0:
            return None
        x, y, w, h = max(faces, key=lambda f: int(f[2]) * int(f[3]))
        return x / shrink, y / shrink, w / shrink, h / shrink


def choose_focus(request: GenerationRequest, pixels: np.ndarray, faces: FaceFinder,
                 ) -> tuple[tuple[float, float], str, tuple[float, float]]:
    """Focus as (x, y) fractions of the photo, where it came from, and the size of the
    region to keep in view (a face with some forehead and chin; nothing for a point)."""
    if request.focus != "auto":
        return (float(request.focus[0]), float(request.focus[1])), "request", (0.0, 0.0)
    face = faces.find(pixels)
    if face is None:
        return (0.5, 0.5), "centre", (0.0, 0.0)
    height, width = pixels.shape[:2]
    x, y, w, h = face
    region = (min(1.0, w * FACE_MARGIN / width), min(1.0, h * FACE_MARGIN / height))
    return (float((x + w / 2) / width), float((y + h / 2) / height)), "face", region
