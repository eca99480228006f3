"""Engines turn a request and its photos into a stream of frames."""

from img2vid.engines.base import Clip, Engine, create_engine

__all__ = ["Clip", "Engine", "create_engine"]
