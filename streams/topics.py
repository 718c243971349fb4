"""Topic names (the contract in DESIGN.md) and their creation.

Every name starts with the namespace (``agon`` by default), so that tests and
tenants can run side by side on one cluster without sharing a topic or group.
"""

from __future__ import annotations

import re

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.errors import BrokerError

_DEBATE_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class Topics:
    def __init__(self, namespace: str = "agon") -> None:
        self.namespace = namespace
        self.requests = f"{namespace}.debate-requests"
        self.dead_letters = f"{namespace}.dead-letters"

    def inbox(self, agent: str) -> str:
        return f"{self.namespace}.inbox.{agent}"

    def debate(self, debate_id: str) -> str:
        return f"{self.namespace}.debate.{debate_id}"

    def app_id(self, agent: str) -> str:
        """The faust app id, hence consumer group and changelog prefix, of an agent."""
        return f"{self.namespace}-{agent}"


def valid_debate_id(debate_id: str) -> bool:
    """A debate id must be usable inside a topic name."""
    return bool(_DEBATE_ID.match(debate_id))


def ensure_topics(bootstrap: str, names: dict[str, int], timeout_s: float = 30.0,
                  config: dict[str, str] | None = None) -> list[str]:
    """Create the topics that do not exist yet (name -> partitions); return the created ones."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise BrokerError(f"no Kafka broker answers on {bootstrap}: {exc}", retriable=True) from exc
    missing = [NewTopic(n, p, 1, config=config or {}) for n, p in names.items() if n not in existing]
    if not missing:
        return []
    created = []
    for name, future in admin.create_topics(missing, request_timeout=timeout_s).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise BrokerError(f"cannot create topic {name}: {exc}") from exc
    return created
