"""Media on disk: safe image loading, video input, PyAV encoding and atomic output naming."""
