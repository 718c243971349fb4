"""What an ended debate leaves behind, and how long: nothing that grows with history.

Read from outside, with Kafka's own view: the changelog topics' records, the debate topic's
configuration, and whether the topic still exists.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from helpers import running_fleet, topic_exists, wait_for

from agon.connectors.transcript import follow, new_request, send_request
from agon.schemas import Topics, partition_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

DELETE_AFTER_S = 4
TURN_TIMEOUT_S = 2
ROSTER = json.dumps(
    [
        {"name": "moderator", "role": "moderator"},
        {"name": "team-a", "role": "debater", "stance": "FOR"},
        {"name": "team-b", "role": "debater", "stance": "AGAINST"},
        {"name": "team-c", "role": "debater", "stance": "AGAINST"},  # no worker: its turns never come
    ]
)


@pytest.fixture(scope="module")
def fleet(kafka_bootstrap, tmp_path_factory):
    with running_fleet(
        kafka_bootstrap,
        tmp_path_factory.mktemp("fleet"),
        agents=["moderator", "team-a", "team-b"],
        AGON_AGENTS=ROSTER,
        AGON_HISTORY_TOPIC_DELETE_AFTER_S=str(DELETE_AFTER_S),
        AGON_HISTORY_TOPIC_RETENTION_S="3600",
        AGON_WORKER_TURN_TIMEOUT_S=str(TURN_TIMEOUT_S),
        AGON_LLM_TIMEOUT_S=str(TURN_TIMEOUT_S / 2),
    ) as settings:
        yield settings


def changelog(settings, table: str, debate_id: str) -> list:
    """Every record of ``debate_id`` in the moderator's ``table`` changelog, values decoded."""
    topic = f"{Topics(settings.namespace).app_id('moderator')}-{table}-changelog"
    consumer = Consumer(
        settings.kafka.client_config(
            **{"group.id": f"c-{uuid.uuid4().hex}", "isolation.level": "read_committed"}
        )
    )
    partition = partition_for(debate_id.encode(), settings.kafka.partitions)
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    values = []
    try:
        while True:
            msg = consumer.poll(1.0)
            if msg is None:
                break
            if not msg.error() and json.loads(msg.key()) == debate_id:
                values.append(None if msg.value() is None else json.loads(msg.value()))
            if msg.offset() >= high - 2:  # the last record may be a commit marker
                break
    finally:
        consumer.close()
    return values


def test_an_ended_debate_leaves_a_marker_a_tombstone_and_a_topic_that_goes(fleet):
    req = new_request("Cats beat dogs", 1, f"h-{uuid.uuid4().hex[:8]}")
    send_request(fleet, req)
    events = list(follow(fleet, req["debate_id"], wait_s=60, idle_timeout_s=60))
    assert events[-1][1]["reason"] == "ROUNDS"
    topic = Topics(fleet.namespace).debate(req["debate_id"])
    admin = AdminClient(fleet.kafka.client_config())
    (config,) = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
    assert config.result()["retention.ms"].value == "3600000"

    rows = changelog(fleet, "debates", req["debate_id"])
    assert rows and rows[-1] is None, "the running row is deleted at the end (a tombstone)"
    (marker,) = changelog(fleet, "ended", req["debate_id"])
    assert marker["reason"] == "ROUNDS" and marker["turns"] == 2

    send_request(fleet, req)  # a redelivered request: the marker makes it a duplicate
    time.sleep(2)
    again = list(follow(fleet, req["debate_id"], wait_s=5, idle_timeout_s=5))
    assert [k for k, _ in again].count("DebateStarted") == 1

    wait_for(lambda: not topic_exists(fleet, topic), DELETE_AFTER_S + 30, "the ended debate's topic to go")


def test_a_debate_whose_turns_never_come_ends_with_error_within_its_deadlines(fleet):
    teams = [
        {"agent": "team-a", "stance": "FOR", "persona": None, "model": None},
        {"agent": "team-c", "stance": "AGAINST", "persona": None, "model": None},
    ]
    req = new_request("Cats beat dogs", 2, f"h-{uuid.uuid4().hex[:8]}", teams)
    send_request(fleet, req)
    events = list(follow(fleet, req["debate_id"], wait_s=60, idle_timeout_s=60))
    started, ended = events[0][1], events[-1][1]
    assert ended["reason"] == "ERROR" and "team-c failed after 3 attempt(s)" in ended["detail"]
    # team-a's turn, then three attempts of team-c's, each waited for TURN_TIMEOUT_S (+ a tick)
    assert ended["ts"] - started["ts"] <= (3 * (TURN_TIMEOUT_S + 1) + 3) * 1000
