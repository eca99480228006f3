"""Seeds: a request without one gets a fresh random seed, recorded so the video can be remade."""

from __future__ import annotations

import secrets

SEED_BITS = 32  # short enough to read and retype; torch accepts up to 64 bits


def resolve_seed(seed: int | None) -> int:
    """The request's seed, or a new random one when it has none."""
    return seed if seed is not None else secrets.randbits(SEED_BITS)
