"""Core types every layer shares: the request, settings, errors, progress and the Clip."""
