"""Creating agon's topics on the broker (their names are the contract: :mod:`agon.schemas.topics`)."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from agon.errors import BrokerError
from agon.schemas.topics import Topics
from agon.settings import Settings

__all__ = ["delete_topics", "ensure_agon_topics", "ensure_topics", "topic_names"]


def ensure_topics(
    bootstrap: str, names: dict[str, int], timeout_s: float = 30.0, config: dict[str, str] | None = None
) -> list[str]:
    """Create the topics that do not exist yet (name -> partitions); return the created ones."""
    existing = topic_names(bootstrap, timeout_s=timeout_s)
    missing = [NewTopic(n, p, 1, config=config or {}) for n, p in names.items() if n not in existing]
    if not missing:
        return []
    admin = AdminClient({"bootstrap.servers": bootstrap})  # alive until its futures are settled
    return _settle(
        admin.create_topics(missing, request_timeout=timeout_s), "create", KafkaError.TOPIC_ALREADY_EXISTS
    )


def ensure_agon_topics(settings: Settings) -> list[str]:
    """The shared topics of the contract: requests, one inbox per agent, dead letters."""
    topics = Topics(settings.namespace)
    n = settings.kafka.partitions
    names = {topics.requests: n, topics.dead_letters: 1}
    names.update({topics.inbox(a.name): n for a in settings.agents})
    return ensure_topics(settings.kafka.bootstrap, names)


def topic_names(bootstrap: str, prefix: str = "", timeout_s: float = 30.0) -> set[str]:
    """The topics on the cluster whose names start with ``prefix``."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        return {t for t in admin.list_topics(timeout=timeout_s).topics if t.startswith(prefix)}
    except KafkaException as exc:
        raise BrokerError(f"no Kafka broker answers on {bootstrap}: {exc}", retriable=True) from exc


def delete_topics(bootstrap: str, names: list[str], timeout_s: float = 30.0) -> list[str]:
    """Delete ``names``; return those deleted now (one already gone is no error)."""
    if not names:
        return []
    admin = AdminClient({"bootstrap.servers": bootstrap})  # alive until its futures are settled
    return _settle(
        admin.delete_topics(names, request_timeout=timeout_s), "delete", KafkaError.UNKNOWN_TOPIC_OR_PART
    )


def _settle(futures: dict, verb: str, fine: int) -> list[str]:
    """The topics whose admin operation succeeded; an error ``fine`` means it was done already."""
    done = []
    for name, future in futures.items():
        try:
            future.result()
            done.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != fine:
                raise BrokerError(
                    f"cannot {verb} topic {name}: {exc}", retriable=exc.args[0].retriable()
                ) from exc
    return done
