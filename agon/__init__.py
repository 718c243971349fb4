"""agon: Multi-Agent-as-a-Service on Apache Kafka.

The ground floor of the package: settings and errors, which every layer above
imports. The layers, bottom to top: ``agon.schemas`` (the event contract),
``agon.streams`` (a worker's Kafka runtime and the local fleet),
``agon.agents`` (the debate's domain), ``agon.connectors`` (CLI, LLM backends).
"""

from agon.errors import AgonError, BrokerError, CodecError, ConfigError, LLMError, MissingTopic
from agon.settings import Settings

__all__ = ["AgonError", "BrokerError", "CodecError", "ConfigError", "LLMError", "MissingTopic", "Settings"]
__version__ = "0.1.0"
