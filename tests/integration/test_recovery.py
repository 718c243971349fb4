"""A debater killed in the middle of a turn: its successor finishes the turn, once.

Two cases, each deterministic: the model call dies with the worker (the successor
calls the model again, once), and the call had finished and its draft was kept
(the successor publishes the kept draft and calls no model).
"""

from __future__ import annotations

import os
import re
import signal
import uuid

import pytest
from helpers import running_fleet, session_codec, wait_for

from agon.connectors.transcript import follow, new_request, producer_config, send_request
from agon.schemas.codec import now_ms
from agon.schemas.topics import Topics
from agon.streams.local.fleet import Fleet

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def fleet(kafka_bootstrap, tmp_path_factory):
    # a slow model, so that a kill lands inside the call
    with running_fleet(
        kafka_bootstrap, tmp_path_factory.mktemp("recovery"), AGON_LLM_OFFLINE_LATENCY_S="4"
    ) as settings:
        yield settings


def llm_calls(log_text: str, turn: str) -> int:
    return len(re.findall(rf"turn={re.escape(turn)} llm call", log_text))


def worker(settings, agent="team-a"):
    (w,) = Fleet(settings).workers([agent])
    return w


def start_debate(settings):
    req = new_request("Remote work is better for society", rounds=1, debate_id=f"r-{uuid.uuid4().hex[:8]}")
    send_request(settings, req)
    return req["debate_id"], f"{req['debate_id']}:1:team-a"


def wait_for_call(settings, turn):
    w = worker(settings)
    wait_for(lambda: llm_calls(w.log.read_text(), turn) >= 1, 60, f"team-a to call its model for {turn}")
    return w


def restarted(settings, old_pid):
    w = wait_for(
        lambda: (lambda w: w.pid not in (None, old_pid) and w)(worker(settings)),
        60,
        "the supervisor to restart team-a",
    )
    return w


def request_committed(settings) -> bool:
    """team-a's group has committed past everything in its inbox (a transaction's commit
    marker may follow the last record: a fully consumed partition can show a lag of 1)."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    topics = Topics(settings.namespace)
    inbox = topics.inbox("team-a")
    tps = [TopicPartition(inbox, p) for p in range(settings.kafka.partitions)]
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap})
    group = ConsumerGroupTopicPartitions(topics.app_id("team-a"), tps)
    committed = admin.list_consumer_group_offsets([group])[group.group_id].result().topic_partitions
    from confluent_kafka import Consumer

    probe = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": "probe"})
    try:
        return all(
            c.offset >= probe.get_watermark_offsets(TopicPartition(inbox, c.partition), timeout=5)[1] - 1
            for c in committed
        )
    finally:
        probe.close()


def turns(events):
    return [(b["event_id"], b["text"]) for k, b in events if k == "TurnTaken"]


def test_a_call_that_dies_with_its_worker_is_made_again_once(fleet):
    debate_id, turn = start_debate(fleet)
    killed = wait_for_call(fleet, turn)
    wait_for(lambda: request_committed(fleet), 30, "team-a to commit its request's offset")
    os.kill(killed.pid, signal.SIGKILL)
    restarted(fleet, killed.pid)

    events = list(follow(fleet, debate_id, wait_s=60, idle_timeout_s=90))
    assert events[-1][1]["reason"] == "ROUNDS"
    assert [t for t, _ in turns(events)] == [turn, f"{debate_id}:1:team-b"]
    log = worker(fleet).log.read_text()
    assert llm_calls(log, turn) == 2, "one call died with the worker, its successor made one"
    assert f"turn={turn} resumed after takeover" in log


def test_a_kept_draft_is_published_without_a_new_call(fleet):
    debate_id, turn = start_debate(fleet)
    victim = wait_for_call(fleet, turn)
    wait_for(lambda: request_committed(fleet), 30, "team-a to commit its request's offset")
    # freeze the worker inside its model call, then write the draft it was about to
    # keep, exactly as it would have (its own inbox, outside any transaction), and kill it
    os.kill(victim.pid, signal.SIGSTOP)
    draft = {
        "debate_id": debate_id,
        "event_id": turn,
        "ts": now_ms(),
        "round": 1,
        "speaker": "team-a",
        "attempt": 1,
        "text": "A draft kept before the crash: remote work widens the pool of jobs.",
        "model": "offline",
        "prompt_tokens": 10,
        "completion_tokens": 12,
        "latency_ms": 4000,
    }
    from confluent_kafka import Producer

    producer = Producer(producer_config(fleet))
    producer.produce(
        Topics(fleet.namespace).inbox("team-a"),
        key=debate_id.encode(),
        value=session_codec().encode("inbox", "TurnDrafted", draft),
    )
    assert producer.flush(10) == 0
    os.kill(victim.pid, signal.SIGKILL)
    successor = restarted(fleet, victim.pid)

    events = list(follow(fleet, debate_id, wait_s=60, idle_timeout_s=90))
    assert events[-1][1]["reason"] == "ROUNDS"
    assert turns(events)[0] == (turn, draft["text"]), "the kept draft is the published turn"
    assert successor.pid != victim.pid
    assert llm_calls(worker(fleet).log.read_text(), turn) == 1, "no second call for the kept draft"
