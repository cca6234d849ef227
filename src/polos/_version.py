"""The package version (kept apart so that every layer may import it)."""

__version__ = "0.1.0"
