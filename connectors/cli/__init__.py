"""The ``agon`` command line (``python -m agon.connectors.cli`` runs it too)."""

from agon.connectors.cli.main import main

__all__ = ["main"]
