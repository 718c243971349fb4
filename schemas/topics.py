"""Topic names and partitions: the contract of docs/design.md ("Topics").

Every name starts with the namespace (``agon`` by default), so that tests and
tenants can run side by side on one cluster without sharing a topic or group.
A debate lives on one partition number of every keyed topic, the one the Java
client's partitioner (murmur2 of the debate id) picks: :func:`partition_for`.
"""

from __future__ import annotations

import re

from aiokafka.partitioner import murmur2

__all__ = ["MAX_DEBATE_ID", "MAX_TOPIC_NAME", "Topics", "debate_id_problem", "partition_for"]

MAX_DEBATE_ID = 100
MAX_TOPIC_NAME = 249  # Kafka's limit
# no '_': Kafka takes '.' and '_' in topic names for the same character (metric names), so
# `x.y` and `x_y` would collide; with '.' allowed and '_' refused no two ids can
_DEBATE_ID = re.compile(r"[A-Za-z0-9.-]+")


class Topics:
    def __init__(self, namespace: str = "agon") -> None:
        self.namespace = namespace
        self.requests = f"{namespace}.debate-requests"
        self.dead_letters = f"{namespace}.dead-letters"
        self._debate_prefix = f"{namespace}.debate."

    def inbox(self, agent: str) -> str:
        return f"{self.namespace}.inbox.{agent}"

    def debate(self, debate_id: str) -> str:
        return self._debate_prefix + debate_id

    def is_debate(self, topic: str) -> bool:
        return topic.startswith(self._debate_prefix)

    def app_id(self, agent: str) -> str:
        """The faust app id, hence consumer group and changelog prefix, of an agent."""
        return f"{self.namespace}-{agent}"

    def debate_id_problem(self, debate_id: object) -> str | None:
        """Why ``debate_id`` cannot name a debate here, or None when it can."""
        problem = debate_id_problem(debate_id)
        if problem is None and len(self.debate(str(debate_id))) > MAX_TOPIC_NAME:
            problem = f"the debate id makes its topic name longer than Kafka's {MAX_TOPIC_NAME} characters"
        return problem


def debate_id_problem(debate_id: object) -> str | None:
    """Why ``debate_id`` cannot name a debate in any namespace, or None when it can."""
    if not isinstance(debate_id, str) or not debate_id:
        return "the debate id is empty"
    if len(debate_id) > MAX_DEBATE_ID:
        return f"the debate id has {len(debate_id)} characters; at most {MAX_DEBATE_ID}"
    if not _DEBATE_ID.fullmatch(debate_id):
        return (
            "the debate id may hold only letters, digits, '.' and '-' "
            "(no '_': Kafka takes '.' and '_' in topic names for the same character)"
        )
    return None


def partition_for(key: bytes, partitions: int) -> int:
    """The partition the Java client's default partitioner (and aiokafka's) gives ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
