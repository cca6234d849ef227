"""Command-line interfaces: ``polos-server`` and ``polos``."""
