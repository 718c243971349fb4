"""Requests from clients agon did not write: any partitioner, a key or none, any partition.

The producer here is confluent-kafka with its default settings (librdkafka's
``consistent_random`` partitioner: CRC32 of the key, random when unkeyed), which
puts most requests on another partition than the Java client's murmur2 would.
"""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer
from helpers import restarts, running_fleet, session_codec

from agon.connectors.transcript import follow, new_request
from agon.schemas import Topics, partition_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PARTITIONS = 4


@pytest.fixture(scope="module")
def fleet(kafka_bootstrap, tmp_path_factory):
    with running_fleet(kafka_bootstrap, tmp_path_factory.mktemp("fleet")) as settings:
        yield settings


def test_requests_from_a_default_confluent_producer_all_end_by_rounds(fleet):
    topic = Topics(fleet.namespace).requests
    codec = session_codec()
    producer = Producer({"bootstrap.servers": fleet.kafka.bootstrap})  # defaults, as a user's
    placed: dict[str, int] = {}
    errors: list[str] = []

    def delivered(err, msg):
        if err:
            errors.append(str(err))
        else:
            placed[codec.decode("debate_request", msg.value())[1]["debate_id"]] = msg.partition()

    ids = [f"any-{i}-{uuid.uuid4().hex[:6]}" for i in range(20)]
    for i, debate_id in enumerate(ids):
        value = codec.encode("debate_request", "DebateRequested", new_request("Cats beat dogs", 2, debate_id))
        if i < 8:
            producer.produce(topic, key=debate_id.encode(), value=value, on_delivery=delivered)
        elif i < 16:
            producer.produce(topic, value=value, on_delivery=delivered)  # unkeyed
        else:  # an explicit partition, the one murmur2 would not pick
            wrong = (partition_for(debate_id.encode(), PARTITIONS) + 1) % PARTITIONS
            producer.produce(
                topic, key=debate_id.encode(), value=value, partition=wrong, on_delivery=delivered
            )
    assert producer.flush(15) == 0 and not errors
    moved = [d for d in ids if placed[d] != partition_for(d.encode(), PARTITIONS)]
    assert len(moved) >= 8, "most requests land off their debate's partition"

    reasons = {}
    for debate_id in ids:
        events = list(follow(fleet, debate_id, wait_s=60, idle_timeout_s=60))
        reasons[debate_id] = events[-1][1]["reason"]
        assert [k for k, _ in events].count("TurnTaken") == 4
    assert set(reasons.values()) == {"ROUNDS"}, reasons
    assert not any(restarts(fleet).values())
