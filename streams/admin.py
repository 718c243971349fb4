"""Creating agon's topics on the broker (their names are the contract: :mod:`agon.schemas.topics`)."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from agon.errors import BrokerError
from agon.schemas.topics import Topics
from agon.settings import Settings

__all__ = ["ensure_agon_topics", "ensure_topics"]


def ensure_topics(
    bootstrap: str, names: dict[str, int], timeout_s: float = 30.0, config: dict[str, str] | None = None
) -> list[str]:
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


def ensure_agon_topics(settings: Settings) -> list[str]:
    """The shared topics of the contract: requests, one inbox per agent, dead letters."""
    topics = Topics(settings.namespace)
    n = settings.kafka.partitions
    names = {topics.requests: n, topics.dead_letters: 1}
    names.update({topics.inbox(a.name): n for a in settings.agents})
    return ensure_topics(settings.kafka.bootstrap, names)
