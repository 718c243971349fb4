"""Whole debates on real workers (moderator, team-a, team-b as subprocesses) and a real broker."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from confluent_kafka import Producer
from helpers import DeadLetters, restarts, running_fleet, session_codec, topic_exists

from agon.connectors.transcript import follow, new_request, producer_config, send_request
from agon.schemas import Topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROSTER = json.dumps(
    [
        {"name": "moderator", "role": "moderator"},
        {"name": "team-a", "role": "debater", "stance": "FOR"},
        {"name": "team-b", "role": "debater", "stance": "AGAINST"},
        # in the roster, but no worker ever runs for it: its turns never come
        {"name": "team-c", "role": "debater", "stance": "AGAINST"},
    ]
)


@pytest.fixture(scope="module")
def fleet(kafka_bootstrap, tmp_path_factory):
    with running_fleet(
        kafka_bootstrap,
        tmp_path_factory.mktemp("fleet"),
        AGON_AGENTS=ROSTER,
        AGON_WORKER_TURN_TIMEOUT_S="3",
        AGON_LLM_TIMEOUT_S="2",
        agents=["moderator", "team-a", "team-b"],
    ) as settings:
        yield settings


def run_debate(settings, **kwargs):
    req = new_request(
        kwargs.pop("motion", "AI's impact on the job market is positive"),
        debate_id=f"d-{uuid.uuid4().hex[:8]}",
        **kwargs,
    )
    send_request(settings, req)
    return req["debate_id"], list(follow(settings, req["debate_id"], wait_s=60, idle_timeout_s=60))


def teams(model_a=None, model_b=None, b="team-b"):
    return [
        {"agent": "team-a", "stance": "FOR", "persona": None, "model": model_a},
        {"agent": b, "stance": "AGAINST", "persona": None, "model": model_b},
    ]


def turn_ids(events):
    return [body["event_id"] for kind, body in events if kind == "TurnTaken"]


def test_a_full_debate_holds_every_round_in_order(fleet):
    debate_id, events = run_debate(fleet, rounds=8)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "DebateStarted" and kinds[-1] == "DebateEnded"
    expected = [f"{debate_id}:{r}:{s}" for r in range(1, 9) for s in ("team-a", "team-b")]
    assert turn_ids(events) == expected
    ended = events[-1][1]
    assert ended["reason"] == "ROUNDS" and ended["rounds_completed"] == 8
    assert ended["tokens_used"] > 0 and "team-a (for) opened" in ended["summary"]
    texts = [b["text"] for k, b in events if k == "TurnTaken"]
    assert len(set(texts)) == len(texts), "the offline model repeated a turn"


def test_sides_that_repeat_themselves_end_the_debate_early(fleet):
    _, events = run_debate(fleet, rounds=8, teams=teams("offline:repeat", "offline:repeat"))
    ended = events[-1][1]
    assert ended["reason"] == "UNPRODUCTIVE", ended
    assert "repeat" in ended["detail"] and ended["rounds_completed"] == 2


def test_empty_turns_end_the_debate_early(fleet):
    _, events = run_debate(fleet, rounds=8, teams=teams("offline:empty", "offline:empty"))
    assert events[-1][1]["reason"] == "UNPRODUCTIVE"
    assert "empty" in events[-1][1]["detail"] and len(turn_ids(events)) == 2


def test_a_failing_model_is_retried_then_ends_the_debate_with_error(fleet):
    debate_id, events = run_debate(fleet, rounds=3, teams=teams(None, "offline:fail"))
    ended = events[-1][1]
    assert ended["reason"] == "ERROR"
    assert f"{debate_id}:1:team-b failed after 3 attempt(s)" in ended["detail"]
    assert turn_ids(events) == [f"{debate_id}:1:team-a"]


def test_a_turn_that_never_comes_times_out_and_never_hangs(fleet):
    debate_id, events = run_debate(fleet, rounds=2, teams=teams(b="team-c"))
    ended = events[-1][1]
    assert ended["reason"] == "ERROR" and "no turn within 3 s" in ended["detail"]
    assert turn_ids(events) == [f"{debate_id}:1:team-a"]


def test_a_token_budget_ends_the_debate(fleet):
    _, events = run_debate(fleet, rounds=8, max_tokens=300)
    ended = events[-1][1]
    assert ended["reason"] == "BUDGET" and ended["tokens_used"] >= 300
    assert len(turn_ids(events)) < 16


@pytest.mark.parametrize(
    "change, words",
    [
        ({"motion": "   "}, "motion is empty"),
        ({"rounds": 0}, "rounds must be between 1 and 50"),
        ({"teams": teams(b="team-z")}, "unknown agent 'team-z'"),
        ({"debate_id": "x" * 101}, "at most 100"),
    ],
)
def test_a_bad_request_from_any_producer_is_dead_lettered_and_creates_no_topic(fleet, change, words):
    req = new_request("AI's impact on the job market is positive", debate_id=f"d-{uuid.uuid4().hex[:8]}")
    req.update(change)
    send_request(fleet, req)
    letters = DeadLetters(fleet)
    try:
        (letter,) = letters.wait(
            lambda got: [x for x in got if x.key == req["debate_id"].encode()], 60, "the dead letter"
        )
    finally:
        letters.close()
    assert words in letter.reason and letter.headers["source.topic"] == Topics(fleet.namespace).requests
    assert not topic_exists(fleet, Topics(fleet.namespace).debate(req["debate_id"]))


def test_ids_that_would_collide_as_topic_names_crash_nothing(fleet):
    base = uuid.uuid4().hex[:8]
    ok, refused = f"x.{base}", f"x_{base}"
    producer = Producer(fleet.kafka.client_config())  # an outside client: no agon checks
    codec = session_codec()
    for debate_id in (ok, refused):
        req = new_request("Cats beat dogs", rounds=1, debate_id=debate_id)
        producer.produce(
            Topics(fleet.namespace).requests,
            key=debate_id.encode(),
            value=codec.encode("debate_request", "DebateRequested", req),
        )
    assert producer.flush(10) == 0
    events = list(follow(fleet, ok, wait_s=60, idle_timeout_s=60))
    assert events[-1][1]["reason"] == "ROUNDS"
    letters = DeadLetters(fleet)
    try:
        (letter,) = letters.wait(lambda got: [x for x in got if x.key == refused.encode()], 30, "x_ refused")
    finally:
        letters.close()
    assert "no '_'" in letter.reason
    assert not any(restarts(fleet).values()), "no worker restarted"


def test_malformed_messages_go_to_dead_letters_and_nothing_is_lost(fleet):
    topics = Topics(fleet.namespace)
    producer = Producer(producer_config(fleet))
    garbage = {
        topics.requests: b'{"motion": "not avro"}',
        topics.inbox("moderator"): b"\xc3\x01junk",
        topics.inbox("team-a"): b"",
    }
    for topic, value in garbage.items():
        producer.produce(topic, key=b"bad", value=value)
    producer.flush(10)
    debate_id, events = run_debate(fleet, rounds=1)  # the workers keep going
    assert events[-1][1]["reason"] == "ROUNDS" and len(turn_ids(events)) == 2

    # The module's fleet is shared: earlier tests' letters (x_ refused) are there too.
    def all_bad(got):
        bad = [x for x in got if x.key == b"bad"]
        return bad if len(bad) == len(garbage) else None

    letters = DeadLetters(fleet)
    try:
        bad = letters.wait(all_bad, 30, "three dead letters")
    finally:
        letters.close()
    by_topic = {x.headers["source.topic"]: x for x in bad}
    for topic, value in garbage.items():
        letter = by_topic[topic]
        assert letter.value == value, "the original bytes are kept"
        assert letter.headers["source.offset"].isdigit() and letter.reason.startswith("undecodable")
    assert "bad magic" in by_topic[topics.requests].reason


def test_agon_request_reads_json_lines(fleet, monkeypatch, capsys):
    from agon.connectors.cli.main import main

    lines = [{"motion": "Cats beat dogs", "rounds": 1}, {"motion": "Tea beats coffee", "rounds": 1}]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(json.dumps(x) for x in lines)))
    assert main(["request"]) == 0
    ids = [json.loads(line)["debate_id"] for line in capsys.readouterr().out.splitlines()]
    assert len(ids) == 2
    for debate_id in ids:
        events = list(follow(fleet, debate_id, wait_s=60, idle_timeout_s=60))
        assert events[-1][1]["reason"] == "ROUNDS"
