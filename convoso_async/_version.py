"""The package's version: the one source (hatch reads it for the wheel's metadata)."""

__version__ = "0.1.0"
