"""Reading the topics afresh: every committed record, Kafka's partitioner, faust table rows."""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from agon.errors import AgonError

# -- Kafka's default partitioner ------------------------------------------------------------


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's and aiokafka's default partitioner), unsigned."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail, rest = length & ~3, length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_of(debate_id: str, partitions: int) -> int:
    return (murmur2(debate_id.encode()) & 0x7FFFFFFF) % partitions


# -- the committed records, read afresh -------------------------------------------------------


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    ts_ms: int
    key: bytes | None
    value: bytes | None

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def read_all(bootstrap: str, wanted: Callable[[str], bool], timeout_s: float = 90.0) -> dict[str, list[Rec]]:
    """Every committed record of the topics ``wanted`` picks, each partition to its end."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"chaos-check-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "log_level": 0,
            "error_cb": lambda err: None,
        }
    )
    out: dict[str, list[Rec]] = defaultdict(list)
    try:
        metadata = consumer.list_topics(timeout=30)
        tps = [
            TopicPartition(name, p, OFFSET_BEGINNING)
            for name, meta in metadata.topics.items()
            if wanted(name)
            for p in meta.partitions
        ]
        if not tps:
            return out
        consumer.assign(tps)
        pending = {(tp.topic, tp.partition) for tp in tps}
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise AgonError(
                    f"reading the topics afresh: {len(pending)} partition(s) not read to "
                    f"their end within {timeout_s:.0f} s, e.g. {sorted(pending)[0]}"
                )
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == -191:  # KafkaError._PARTITION_EOF
                    pending.discard((msg.topic(), msg.partition()))
                continue
            out[msg.topic()].append(
                Rec(msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1], msg.key(), msg.value())
            )
    finally:
        consumer.close()
    for recs in out.values():
        recs.sort(key=lambda r: (r.partition, r.offset))
    return out


def table_key(raw: bytes | None) -> str:
    """A faust table key as written to its changelog (JSON of the key, or the raw bytes)."""
    if raw is None:
        return ""
    try:
        key = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")
    return key if isinstance(key, str) else raw.decode(errors="replace")


def table_value(raw: bytes | None) -> Any:
    return None if raw is None else json.loads(raw)
