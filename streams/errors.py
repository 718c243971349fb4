"""The root of agon's exceptions.

Every error agon raises derives from :class:`AgonError`; ``retriable`` tells a
retry loop whether trying again can help (aiokafka's ``KafkaError.retriable``).
"""

from __future__ import annotations


class AgonError(Exception):
    """Root exception. ``retriable`` is a class default, overridable per instance."""

    retriable: bool = False

    def __init__(self, message: str = "", *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class ConfigError(AgonError):
    """A setting or request is invalid; fix the input, do not retry."""


class BrokerError(AgonError):
    """The local Kafka broker cannot be fetched, started or reached."""


class CodecError(AgonError):
    """Bytes that are not a valid agon event (unknown fingerprint, bad Avro, wrong magic)."""
