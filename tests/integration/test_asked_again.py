"""A debater asked again for the turn it took last answers again, to the moderator only.

The moderator retries a turn whose answer never reached it (its deadline passed). A debater
that had taken the turn used to ignore the retry, so a `TurnTaken` lost on its way to the
moderator ended the debate with ERROR. Here the test is the moderator: only team-a runs, the
requests are produced by hand, and the answers are read back from the topics.
"""

from __future__ import annotations

import re
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from helpers import running_fleet, session_codec, wait_for

from agon.connectors.transcript import producer_config
from agon.schemas.codec import now_ms
from agon.schemas.topics import Topics
from agon.streams.admin import ensure_topics
from agon.streams.local.fleet import Fleet

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def request(debate_id: str, attempt: int) -> dict:
    return {
        "debate_id": debate_id,
        "event_id": f"{debate_id}:1:team-a",
        "ts": now_ms(),
        "motion": "Remote work is better for society",
        "round": 1,
        "speaker": "team-a",
        "stance": "FOR",
        "persona": None,
        "model": None,
        "attempt": attempt,
        "previous": None,
    }


def taken(settings, topic: str, debate_id: str, partitions: int) -> list[dict]:
    """The committed TurnTaken events of ``debate_id`` in ``topic``, read from its beginning."""
    codec, kind = session_codec(), "debate" if ".debate." in topic else "inbox"
    consumer = Consumer(
        settings.kafka.client_config(
            **{
                "group.id": f"t-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            }
        )
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    found, at_end = [], set()
    try:
        while len(at_end) < partitions:
            msg = consumer.poll(5)
            if msg is None:
                break
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                continue
            record_type, body = codec.decode(kind, msg.value())
            if record_type == "TurnTaken" and body["debate_id"] == debate_id:
                found.append(body)
    finally:
        consumer.close()
    return found


def test_a_retried_turn_is_answered_again_without_a_second_call(kafka_bootstrap, tmp_path):
    with running_fleet(kafka_bootstrap, tmp_path, agents=["team-a"]) as settings:
        topics, debate_id = Topics(settings.namespace), f"a-{uuid.uuid4().hex[:8]}"
        ensure_topics(settings.kafka.bootstrap, {topics.debate(debate_id): 1, topics.inbox("moderator"): 4})
        producer = Producer(producer_config(settings))

        def ask(attempt: int) -> None:
            value = session_codec().encode("inbox", "TurnRequested", request(debate_id, attempt))
            producer.produce(topics.inbox("team-a"), key=debate_id.encode(), value=value)
            assert producer.flush(10) == 0

        inbox = topics.inbox("moderator")
        ask(1)
        (first,) = wait_for(lambda: taken(settings, inbox, debate_id, 4), 60, "team-a's answer")
        ask(2)  # the moderator's retry: the answer above never reached it
        answers = wait_for(
            lambda: (lambda found: len(found) == 2 and found)(taken(settings, inbox, debate_id, 4)),
            60,
            "team-a's answer, sent again",
        )
        assert answers[1]["text"] == first["text"] and answers[1]["event_id"] == first["event_id"]
        assert len(taken(settings, topics.debate(debate_id), debate_id, 1)) == 1, "the transcript has it once"
        (w,) = Fleet(settings).workers(["team-a"])
        log = w.log.read_text()
        assert len(re.findall(rf"turn={debate_id}:1:team-a llm call", log)) == 1
        assert "asked again; answer sent again" in log
