"""Avro schemas of agon's events: one ``<kind>.avsc`` per topic kind, older versions under ``v<n>/``."""

from pathlib import Path

SCHEMA_DIR = Path(__file__).parent
