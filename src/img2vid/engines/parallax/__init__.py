"""Parallax engine: 2.5D camera moves through a photo split by depth (3D Ken Burns), on the CPU.

The engine class lives in `engine` and is imported lazily through the engine registry.
"""
