"""Engines turn a request and its photos into a stream of frames."""

from img2vid.engines.base import Engine, create_engine

__all__ = ["Engine", "create_engine"]
