"""img2vid: turn a still photo into a short video, locally."""

__version__ = "0.1.0"
