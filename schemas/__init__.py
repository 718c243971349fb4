"""The event contract: Avro schemas (``<kind>.avsc``, older versions under ``v<n>/``), the
codec that reads and writes them, and the names of agon's topics."""

from agon.schemas.codec import SCHEMA_DIR, Codec, now_ms
from agon.schemas.topics import Topics, debate_id_problem, partition_for

__all__ = ["SCHEMA_DIR", "Codec", "Topics", "debate_id_problem", "now_ms", "partition_for"]
