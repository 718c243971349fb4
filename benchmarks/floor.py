"""The raw floor: one record's produce → consume round trip through the same broker, with
confluent-kafka at its default settings, (a) plain and (b) one transaction per record.

One record at a time: the producer thread notes the time, produces (plain: ``produce`` and
``flush``, which sends at once instead of after ``linger.ms``; transactional: ``begin``,
``produce``, ``commit``) and waits until a consumer thread (read_committed, librdkafka's
default) has polled that record. Latency = the consumer's poll time − the producer's time
before producing, both ``time.perf_counter`` of this one process: a client-side round trip,
not a broker timestamp. A few records first warm the connections up and are not counted.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from agon.streams.admin import delete_topics, ensure_topics

from .common import percentiles

WARM_UP = 5


def round_trips(bootstrap: str, n: int, transactional: bool) -> list[float]:
    """``n`` round trips in milliseconds."""
    topic = f"bench-floor-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, {topic: 1})
    received: dict[int, float] = {}
    arrived = threading.Condition()
    stop = threading.Event()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-floor-{uuid.uuid4().hex}"})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])

    def consume() -> None:
        while not stop.is_set():
            msg = consumer.poll(0.1)
            if msg is not None and not msg.error():
                at = time.perf_counter()
                with arrived:
                    received[int(msg.value())] = at
                    arrived.notify_all()

    reader = threading.Thread(target=consume, name="floor-consumer", daemon=True)
    reader.start()
    config: dict[str, Any] = {"bootstrap.servers": bootstrap}
    if transactional:
        config["transactional.id"] = f"bench-floor-{uuid.uuid4().hex}"
    producer = Producer(config)
    if transactional:
        producer.init_transactions(30)
    samples = []
    try:
        for i in range(WARM_UP + n):
            sent = time.perf_counter()
            if transactional:
                producer.begin_transaction()
                producer.produce(topic, value=str(i).encode())
                producer.commit_transaction(30)
            else:
                producer.produce(topic, value=str(i).encode())
                producer.flush(30)
            with arrived:
                if not arrived.wait_for(lambda i=i: i in received, timeout=30):
                    raise TimeoutError(f"record {i} of {topic} not consumed within 30 s")
            if i >= WARM_UP:
                samples.append((received[i] - sent) * 1000)
    finally:
        stop.set()
        reader.join(timeout=5)
        consumer.close()
        delete_topics(bootstrap, [topic])
    return samples


def measure(bootstrap: str, n: int) -> dict[str, Any]:
    plain = round_trips(bootstrap, n, transactional=False)
    txn = round_trips(bootstrap, n, transactional=True)
    return {
        "method": "client-side: consumer poll time - time before produce, one record at a time",
        "plain_ms": percentiles(plain, 3),
        "transactional_ms": percentiles(txn, 3),
    }
