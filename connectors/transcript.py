"""Reading a debate's own topic: produce requests, follow transcripts, render them.

A transcript is read with a read_committed confluent-kafka consumer from the
beginning of ``agon.debate.<id>``, so a tail started mid-debate sees all of it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from agon.deadline import wait_until
from agon.errors import AgonError, BrokerError, CodecError
from agon.schemas import Codec, Topics, now_ms
from agon.settings import Settings

Event = tuple[str, dict[str, Any]]


def producer_config(settings: Settings) -> dict[str, Any]:
    # murmur2_random is the Java client's (and aiokafka's) partitioner: a debate's request,
    # inbox messages and table rows then share one partition number whoever produced them
    return settings.kafka.client_config(partitioner="murmur2_random", **{"enable.idempotence": True})


def new_request(
    motion: str,
    rounds: int = 8,
    debate_id: str | None = None,
    teams: list[dict[str, Any]] | None = None,
    max_tokens: int = 0,
    requested_by: str | None = "cli",
) -> dict[str, Any]:
    debate_id = debate_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    return {
        "debate_id": debate_id,
        "event_id": debate_id,
        "ts": now_ms(),
        "motion": motion,
        "rounds": rounds,
        "teams": teams or [],
        "max_tokens": max_tokens,
        "requested_by": requested_by,
    }


def send_request(settings: Settings, *requests: dict[str, Any], timeout_s: float = 30.0) -> None:
    """Produce DebateRequested events with one producer; wait for the broker's acknowledgements."""
    codec = Codec.default(settings.schema_registry_url)
    errors: list[str] = []
    producer = Producer(producer_config(settings))
    for request in requests:
        producer.produce(
            Topics(settings.namespace).requests,
            key=request["debate_id"].encode(),
            value=codec.encode("debate_request", "DebateRequested", request),
            on_delivery=lambda err, _msg: err and errors.append(str(err)),
        )
    if producer.flush(timeout_s) > 0:
        raise BrokerError(
            f"the request was not acknowledged by {settings.kafka.bootstrap} within {timeout_s:.0f} s",
            retriable=True,
        )
    if errors:
        raise BrokerError(f"the request was not delivered: {errors[0]}")


def follow(
    settings: Settings, debate_id: str, *, wait_s: float = 120.0, idle_timeout_s: float = 600.0
) -> Iterator[Event]:
    """Yield the debate's events from its beginning until DebateEnded.

    Waits up to ``wait_s`` for the debate's topic to appear, and gives up after
    ``idle_timeout_s`` without a new event.
    """
    topic = Topics(settings.namespace).debate(debate_id)
    consumer = Consumer(
        settings.kafka.client_config(
            **{
                "group.id": f"agon-tail-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
    )
    codec = Codec.default(settings.schema_registry_url)
    try:
        _wait_for_topic(consumer, topic, wait_s)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        last = time.monotonic()
        while True:
            msg = consumer.poll(0.5)
            if msg is None:
                if time.monotonic() - last > idle_timeout_s:
                    raise AgonError(f"no new event on {topic} for {idle_timeout_s:.0f} s")
                continue
            if msg.error():
                raise BrokerError(f"reading {topic}: {msg.error()}", retriable=True)
            last = time.monotonic()
            try:
                record_type, body = codec.decode("debate", msg.value())
            except CodecError as exc:
                yield "Undecodable", {"offset": msg.offset(), "reason": str(exc)}
                continue
            yield record_type, body
            if record_type == "DebateEnded":
                return
    finally:
        consumer.close()


def _wait_for_topic(consumer: Consumer, topic: str, wait_s: float) -> None:
    def exists() -> bool:
        try:
            return topic in consumer.list_topics(timeout=5).topics
        except KafkaException as exc:
            raise BrokerError(f"no Kafka broker answers: {exc}", retriable=True) from exc

    if not wait_until(exists, wait_s, every_s=0.25):
        raise AgonError(
            f"{topic} did not appear within {wait_s:.0f} s: is the moderator running? (agon status)",
            retriable=True,
        )


def render(console: Console, record_type: str, body: dict[str, Any]) -> None:
    """Print one transcript event for a person."""
    if record_type == "DebateStarted":
        teams = "\n".join(
            f"  {s['agent']}: {'for' if s['stance'] == 'FOR' else 'against'}" for s in body["speakers"]
        )
        console.print(
            Panel(
                f"[bold]{body['motion']}[/bold]\n{body['rounds']} rounds\n{teams}",
                title=f"debate {body['debate_id']}",
                border_style="cyan",
            )
        )
    elif record_type == "TurnTaken":
        colour = "green" if body["stance"] == "FOR" else "magenta"
        head = Text(
            f"round {body['round']} · {body['speaker']} ({body['stance'].lower()})", style=f"bold {colour}"
        )
        meta = Text(
            f"  {body['model']}, {body['completion_tokens']} tokens, {body['latency_ms']} ms", style="dim"
        )
        console.print(head + meta)
        console.print(body["text"] or Text("(no words)", style="dim italic"))
        console.print()
    elif record_type == "ModeratorNote":
        console.print(Text(f"moderator: {body['text']}", style="yellow"))
    elif record_type == "DebateEnded":
        console.print(
            Panel(
                f"{body['detail']}\n\n{body['summary']}",
                title=f"ended: {body['reason'].lower()} after {body['rounds_completed']} "
                f"round(s), {body['tokens_used']} tokens",
                border_style="cyan",
            )
        )
    else:
        console.print(Text(f"undecodable event at offset {body['offset']}: {body['reason']}", style="red"))
