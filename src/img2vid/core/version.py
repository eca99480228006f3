"""The package version, importable by every layer (the package root is the public facade)."""

__version__ = "0.1.0"
