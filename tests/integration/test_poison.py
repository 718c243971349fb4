"""No producer and no input can stop a worker: a fuzz run over every topic agon reads.

While debates run, an outside client (confluent-kafka, default settings) writes more than a
thousand malformed or hostile records into the requests topic and every agent's inbox. Each
must end in the dead-letter topic with its reason and source coordinates, no worker may
restart, and every debate must still end by its rounds.
"""

from __future__ import annotations

import os
import random
import uuid

import pytest
from confluent_kafka import Producer
from helpers import DeadLetters, restarts, running_fleet, session_codec

from agon.connectors.transcript import follow, new_request, send_request
from agon.schemas import Codec, Topics
from agon.schemas.codec import CONFLUENT_HEADER_LEN, CONFLUENT_MAGIC, HEADER_LEN, MAGIC

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

RECORDS_PER_TOPIC = 260
TS = 1_700_000_000_000


@pytest.fixture(scope="module")
def fleet(kafka_bootstrap, tmp_path_factory):
    with running_fleet(
        kafka_bootstrap, tmp_path_factory.mktemp("fleet"), AGON_LLM_OFFLINE_LATENCY_S="0.3"
    ) as settings:
        yield settings


def valid_events(debate_id: str) -> dict[str, tuple[str, str, dict]]:
    """One well-formed event per kind of topic, about ``debate_id``."""
    turn = {"debate_id": debate_id, "event_id": f"{debate_id}:1:team-a", "ts": TS, "round": 1}
    return {
        "request": ("debate_request", "DebateRequested", new_request("Cats beat dogs", 1, debate_id)),
        "turn": (
            "inbox",
            "TurnTaken",
            {
                **turn,
                "speaker": "team-a",
                "stance": "FOR",
                "text": "A point.",
                "model": "m",
                "prompt_tokens": 1,
                "completion_tokens": 1,
                "latency_ms": 1,
                "attempt": 1,
            },
        ),
        "started": (
            "debate",
            "DebateStarted",
            {
                "debate_id": debate_id,
                "event_id": f"{debate_id}:start",
                "ts": TS,
                "motion": "m",
                "rounds": 1,
                "speakers": [],
                "max_tokens": 0,
            },
        ),
    }


def hostile(rng: random.Random, codec: Codec, n: int):
    """``n`` (key, value, headers, kind) records that agon must refuse, of every kind."""
    made = []
    for i in range(n):
        kind = i % 12
        debate_id = f"fz-{uuid.UUID(int=rng.getrandbits(128)).hex[:10]}"
        events = valid_events(debate_id)
        request = codec.encode(*events["request"])
        confluent = request[:1] == CONFLUENT_MAGIC  # AGON_TEST_WIRE_FORMAT=confluent
        header = CONFLUENT_HEADER_LEN if confluent else HEADER_LEN
        key, headers = debate_id.encode(), None
        if kind == 0:
            value = None  # a tombstone
        elif kind == 1:
            value, key = b"", None
        elif kind == 2:
            value = rng.randbytes(rng.randint(1, 300))
        elif kind == 3:
            value = request[: rng.randint(header, len(request) - 1)]  # truncated
        elif kind == 4:  # an unknown fingerprint, or a schema id the registry does not have
            value = (CONFLUENT_MAGIC + rng.randbytes(4) if confluent else MAGIC + rng.randbytes(8)) + request[
                header:
            ]
        elif kind == 5:
            value = codec.encode(*events["started"])  # valid Avro, wrong type for any topic read
        elif kind == 6:
            value, key = request, b"another-debate"  # key and value disagree
        elif kind == 7:
            bad_id = rng.choice(["a_b", "x" * 101, "../etc", "sp ace", ""])
            value = codec.encode(
                "debate_request", "DebateRequested", {**events["request"][2], "debate_id": bad_id}
            )
            key = None
        elif kind == 8:
            value = rng.randbytes(rng.randint(1, 64))
            headers = [(f"h{j}", rng.randbytes(rng.randint(0, 40))) for j in range(rng.randint(1, 30))]
        elif kind == 9:
            value = request + rng.randbytes(rng.randint(1, 9))  # trailing bytes
        elif kind == 10:
            # the other framing's magic on this one's header and body
            value = (MAGIC + request[1:]) if confluent else (CONFLUENT_MAGIC + request[1:])
        else:  # a request whose motion is empty: well formed, but refused
            value = codec.encode("debate_request", "DebateRequested", {**events["request"][2], "motion": ""})
        made.append((key, value, headers, kind))
    for _ in range(3):  # oversized: close to the broker's 1 MiB default limit
        made.append((None, rng.randbytes(950_000), None, "oversized"))
    return made


def test_a_thousand_hostile_records_stop_nothing(fleet):
    seed = int(os.environ.get("AGON_FUZZ_SEED", random.randrange(1 << 30)))
    rng, codec, topics = random.Random(seed), session_codec(), Topics(fleet.namespace)
    requests = [
        new_request("AI's impact on the job market is positive", 2, f"ok-{i}-{uuid.uuid4().hex[:6]}")
        for i in range(6)
    ]
    send_request(fleet, *requests[:3])

    producer = Producer({"bootstrap.servers": fleet.kafka.bootstrap})
    sent: dict[tuple[str, int, int], object] = {}
    failed: list[str] = []

    def delivered(err, msg):
        if err:
            failed.append(str(err))
        else:
            sent[(msg.topic(), msg.partition(), msg.offset())] = msg

    targets = [topics.requests] + [topics.inbox(a.name) for a in fleet.agents]
    total = 0
    for topic in targets:
        for key, value, headers, _kind in hostile(rng, codec, RECORDS_PER_TOPIC):
            producer.produce(topic, key=key, value=value, headers=headers, on_delivery=delivered)
            producer.poll(0)
            total += 1
        if topic == targets[1]:
            send_request(fleet, *requests[3:])  # more debates start while the fuzz goes on
    assert producer.flush(30) == 0 and not failed, failed[:3]
    assert total >= 1000 and len(sent) == total

    for req in requests:
        events = list(follow(fleet, req["debate_id"], wait_s=120, idle_timeout_s=120))
        assert events[-1][1]["reason"] == "ROUNDS", (seed, events[-1])

    letters = DeadLetters(fleet)
    try:

        def all_parked(got):
            seen = {
                (
                    x.headers.get("source.topic"),
                    int(x.headers.get("source.partition", -1)),
                    int(x.headers.get("source.offset", -1)),
                )
                for x in got
            }
            missing = set(sent) - seen
            return not missing

        letters.wait(all_parked, 120, f"{total} dead letters (seed {seed})")
        got = letters.read()
    finally:
        letters.close()
    by_source = {
        (x.headers["source.topic"], int(x.headers["source.partition"]), int(x.headers["source.offset"])): x
        for x in got
        if "source.topic" in x.headers
    }
    for coords in sent:
        letter = by_source[coords]
        assert letter.reason and letter.headers["agent"], (seed, coords)
    oversized = [x for x in got if "value.truncated.from" in x.headers]
    assert len(oversized) == 3 * len(targets)
    assert not any(restarts(fleet).values()), (seed, restarts(fleet))
