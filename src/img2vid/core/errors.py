"""Error types that carry the one-line message a user sees and the exit code it maps to."""


class Img2VidError(Exception):
    """An expected failure with a message written for the user (no traceback needed)."""

    exit_code = 1


class InputError(Img2VidError):
    """Bad usage or bad input: the user can fix it (exit code 2, HTTP 4xx)."""

    exit_code = 2


class ModelLoadError(InputError):
    """A model cannot be loaded (missing, corrupt, unsupported). Engine pools remember it and
    fail later requests for that model at once, until their retry time has passed."""


class ModelNotAvailableError(ModelLoadError):
    """A requested model is neither in a local folder nor in the hub cache."""


class OutOfMemoryError(Img2VidError):
    """The device ran out of memory even after stepping down the memory plan."""


class CancelledError(Img2VidError):
    """The job was cancelled (Ctrl-C, DELETE, Cancel button)."""

    exit_code = 130
