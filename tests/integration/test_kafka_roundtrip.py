"""Records go through the real broker intact, with both clients agon uses; aborted
transactions stay invisible to read_committed readers."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, KafkaError, Producer

from agon.streams.admin import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PARTITIONS = 3


def records(n: int) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """Keys that spread over partitions, values with non-UTF-8 bytes, repeated header keys."""
    return [
        (
            f"key-{i % 5}".encode(),
            b"\x00\xff value " + str(i).encode(),
            [("debate-id", f"d-{i}".encode()), ("turn", str(i).encode()), ("turn", b"\x01")],
        )
        for i in range(n)
    ]


def consume_all(bootstrap: str, topic: str, n: int, timeout_s: float = 30.0, **config: str) -> list:
    """Read ``topic`` from the beginning with a fresh group until ``n`` records or the deadline."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **config,
        }
    )
    consumer.subscribe([topic])
    got = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise AssertionError(f"consumer error: {msg.error()}")
            got.append(msg)
    finally:
        consumer.close()
    return got


def test_confluent_round_trip_keeps_keys_values_headers(kafka_bootstrap: str, namespace: str) -> None:
    topic = f"{namespace}.roundtrip"
    ensure_topics(kafka_bootstrap, {topic: PARTITIONS})
    sent = records(20)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random"})
    for key, value, headers in sent:
        producer.produce(topic, key=key, value=value, headers=headers)
    assert producer.flush(30) == 0

    got = consume_all(kafka_bootstrap, topic, len(sent))

    assert len(got) == len(sent)
    assert sorted((m.key(), m.value(), m.headers()) for m in got) == sorted(sent)
    assert {m.partition() for m in got} != {got[0].partition()}, "keys should spread over partitions"
    # one key, one partition, produce order kept
    for key in {k for k, _, _ in sent}:
        mine = [m for m in got if m.key() == key]
        assert len({m.partition() for m in mine}) == 1
        assert [m.value() for m in mine] == [v for k, v, _ in sent if k == key]


async def test_aiokafka_round_trip_keeps_keys_values_headers(kafka_bootstrap: str, namespace: str) -> None:
    topic = f"{namespace}.roundtrip-aio"
    ensure_topics(kafka_bootstrap, {topic: PARTITIONS})
    sent = records(20)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, headers in sent:
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"g-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got = []

    async def read() -> None:
        while len(got) < len(sent):
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(batch)

    try:
        await asyncio.wait_for(read(), 30)
    finally:
        await consumer.stop()

    assert len(got) == len(sent)
    assert sorted((m.key, m.value, list(m.headers)) for m in got) == sorted(sent)
    for key in {k for k, _, _ in sent}:
        mine = [m for m in got if m.key == key]
        assert len({m.partition for m in mine}) == 1
        assert [m.value for m in mine] == [v for k, v, _ in sent if k == key]


def test_aborted_transaction_is_invisible_to_read_committed(kafka_bootstrap: str, namespace: str) -> None:
    topic = f"{namespace}.txn"
    ensure_topics(kafka_bootstrap, {topic: 1})  # one partition: the log order is the send order
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"{namespace}-txn"})
    producer.init_transactions(30)

    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, key=b"k", value=f"aborted-{i}".encode())
    producer.flush(30)  # on the broker, inside the open transaction
    producer.abort_transaction(30)

    producer.begin_transaction()
    for i in range(3):
        producer.produce(topic, key=b"k", value=f"committed-{i}".encode())
    producer.commit_transaction(30)

    # the aborted records sit before the committed ones in the log: had the reader
    # returned any of them, they would come first
    committed = consume_all(kafka_bootstrap, topic, 3, **{"isolation.level": "read_committed"})
    assert [m.value() for m in committed] == [f"committed-{i}".encode() for i in range(3)]

    # read_uncommitted proves the aborted records were really written
    everything = consume_all(kafka_bootstrap, topic, 8, **{"isolation.level": "read_uncommitted"})
    assert [m.value() for m in everything] == (
        [f"aborted-{i}".encode() for i in range(5)] + [f"committed-{i}".encode() for i in range(3)]
    )
