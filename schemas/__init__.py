"""The event contract: Avro schemas (``<kind>.avsc``, older versions under ``v<n>/``), the
codec that reads and writes them, and the names of agon's topics."""

from agon.schemas.codec import SCHEMA_DIR, Codec, now_ms
from agon.schemas.topics import Topics, valid_debate_id

__all__ = ["SCHEMA_DIR", "Codec", "Topics", "now_ms", "valid_debate_id"]
