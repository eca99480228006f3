"""The one map from an exception to what the user is told: one line, and whose fault it is.

Every interface reports failures through it: the CLI's exit code and stderr line, the job
queue's `error`, the batch report's `error` column, the REST API's status code.
"""

from __future__ import annotations

from dataclasses import dataclass

from img2vid.core.errors import CancelledError, Img2VidError, InputError


@dataclass(frozen=True)
class Failure:
    """Why a request failed, as the user sees it."""

    message: str  # one line, no traceback
    user_fault: bool  # bad input or a missing model: exit code 2, HTTP 4xx
    exit_code: int
    expected: bool  # a known cause; False: a bug, whose traceback goes to the log

    @property
    def cancelled(self) -> bool:
        return self.exit_code == CancelledError.exit_code


def describe_failure(exc: BaseException, engine: str | None = None) -> Failure:
    """The Failure for `exc`, raised while running a request on the engine named `engine`."""
    if isinstance(exc, InputError):  # bad input, unknown or missing model...
        return Failure(str(exc), True, exc.exit_code, True)
    if isinstance(exc, Img2VidError):  # OutOfMemoryError, CancelledError...
        return Failure(str(exc) or type(exc).__name__, False, exc.exit_code, True)
    if isinstance(exc, MemoryError):
        return Failure("out of memory (RAM); try a smaller resolution, fewer frames or fewer "
                       "workers", False, 1, True)
    if isinstance(exc, ImportError):  # an optional extra that is not installed
        return Failure(f"the {engine or 'requested'} engine cannot be loaded ({exc}); run "
                       "`img2vid doctor` to see what is missing", False, 1, True)
    return Failure(f"internal error: {type(exc).__name__}: {exc}", False, 1, False)
