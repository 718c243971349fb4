"""Every exception agon raises, under one root.

``retriable`` tells a retry loop whether trying again can help (aiokafka's
``KafkaError.retriable``). Each package raises its own subclass; callers that
only report errors catch :class:`AgonError`.
"""

from __future__ import annotations

__all__ = [
    "AgonError",
    "BrokerError",
    "CodecError",
    "ConfigError",
    "LLMError",
    "MissingTopic",
    "RegistryError",
]


class AgonError(Exception):
    """Root exception. ``retriable`` is a class default, overridable per instance."""

    retriable: bool = False

    def __init__(self, message: str = "", *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class ConfigError(AgonError):
    """A setting, a name or a request is invalid: fix the input, do not retry."""


class BrokerError(AgonError):
    """Kafka cannot be fetched, started or reached, or refused an operation."""


class MissingTopic(BrokerError):
    """An event asks to write to a topic that does not exist (a deleted or forged debate)."""


class CodecError(AgonError):
    """Bytes that are not a valid agon event (unknown fingerprint, bad Avro, wrong magic)."""


class LLMError(AgonError):
    """A model call failed: unreachable, timed out, rejected, or unreadable."""


class RegistryError(AgonError):
    """The schema registry cannot be fetched, started or reached, or refused a schema."""
