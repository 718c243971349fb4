"""Debates proceed concurrently within one worker per agent, on a model with 1 s latency."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from helpers import running_fleet, wait_for

from agon.connectors.transcript import follow, new_request, send_request
from agon.schemas.topics import Topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

LATENCY_S = 1.0
ROUNDS = 2  # 4 turns: one debate takes about 4 × LATENCY_S


@pytest.fixture(scope="module")
def slow_fleet(kafka_bootstrap, tmp_path_factory):
    with running_fleet(
        kafka_bootstrap, tmp_path_factory.mktemp("slow"), AGON_LLM_OFFLINE_LATENCY_S=str(LATENCY_S)
    ) as settings:
        yield settings


def start(settings, n=1, motion="Remote work is better for society"):
    reqs = [new_request(motion, rounds=ROUNDS, debate_id=f"c-{uuid.uuid4().hex[:8]}") for _ in range(n)]
    send_request(settings, *reqs)
    return [r["debate_id"] for r in reqs]


def transcript(settings, debate_id):
    return list(follow(settings, debate_id, wait_s=60, idle_timeout_s=60))


def assert_complete_and_ordered(debate_id, events):
    assert events[0][0] == "DebateStarted" and events[-1][1]["reason"] == "ROUNDS"
    ids = [b["event_id"] for k, b in events if k == "TurnTaken"]
    assert ids == [f"{debate_id}:{r}:{s}" for r in range(1, ROUNDS + 1) for s in ("team-a", "team-b")]


def test_twenty_debates_take_about_as_long_as_one(slow_fleet):
    t0 = time.monotonic()
    (alone,) = start(slow_fleet)
    assert_complete_and_ordered(alone, transcript(slow_fleet, alone))
    one = time.monotonic() - t0

    t0 = time.monotonic()
    ids = start(slow_fleet, 20)
    results: dict[str, list] = {}
    threads = [
        threading.Thread(target=lambda d=d: results.__setitem__(d, transcript(slow_fleet, d))) for d in ids
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    twenty = time.monotonic() - t0

    for debate_id in ids:
        assert_complete_and_ordered(debate_id, results[debate_id])
    print(f"one debate {one:.1f} s, twenty concurrent {twenty:.1f} s ({twenty / one:.2f}x)")
    # serial would be 20x; each debate's own turns are strictly sequential (>= 4 x 1 s)
    assert twenty < 2 * one, f"20 debates took {twenty:.1f} s, one took {one:.1f} s"


def test_a_tail_started_mid_debate_sees_the_whole_debate(slow_fleet):
    (debate_id,) = start(slow_fleet)
    topic = Topics(slow_fleet.namespace).debate(debate_id)
    from confluent_kafka import Consumer, TopicPartition

    probe = Consumer({"bootstrap.servers": slow_fleet.kafka.bootstrap, "group.id": "probe"})
    try:

        def two_events_in():  # DebateStarted and the first turn are committed
            if topic not in probe.list_topics(timeout=5).topics:
                return False
            _, high = probe.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)
            return high >= 2

        wait_for(two_events_in, 60, "the debate to be under way")
    finally:
        probe.close()
    events = transcript(slow_fleet, debate_id)
    assert_complete_and_ordered(debate_id, events)
