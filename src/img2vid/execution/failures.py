"""What a failed generation tells the user: one line per kind of exception."""

from __future__ import annotations

from img2vid.core.errors import Img2VidError


def expected_failure(exc: BaseException) -> bool:
    """A failure with a known cause (bad input, no memory, a missing extra): no traceback."""
    return isinstance(exc, (Img2VidError, MemoryError, ImportError))


def failure_message(exc: BaseException, engine: str | None) -> str:
    """The one line a user sees for `exc` raised while running on engine `engine`."""
    if isinstance(exc, Img2VidError):  # InputError, OutOfMemoryError, ModelNotAvailableError...
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory; try a smaller resolution or fewer frames"
    if isinstance(exc, ImportError):
        return (f"the {engine} engine cannot be loaded ({exc}); "
                "run `img2vid doctor` to see what is missing")
    return f"internal error: {type(exc).__name__}: {exc}"
