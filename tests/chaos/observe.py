"""Watching the topics live: a background read_committed consumer that notes what became
visible when, for fault choice, recovery and takeover times."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from environment import DEBATERS

from agon.errors import CodecError
from agon.schemas.codec import Codec
from agon.schemas.topics import Topics


@dataclass
class Seen:
    """A record as the observer saw it: when it became visible to read_committed readers."""

    mono: float
    topic: str
    ts_ms: int
    kind: str
    body: dict[str, Any]


@dataclass
class DebateView:
    speakers: list[str] = field(default_factory=list)
    started: bool = False
    turns: list[str] = field(default_factory=list)  # committed TurnTaken ids, as seen
    requested: set[str] = field(default_factory=set)  # TurnRequested ids seen in inboxes
    ended: dict[str, Any] | None = None

    def awaited(self, debate_id: str, rounds: int) -> tuple[str, str] | None:
        """(turn id, speaker) of the turn the debate waits for, or None."""
        if not self.started or self.ended is not None or not self.speakers:
            return None
        k = len(self.turns)
        if k >= rounds * len(self.speakers):
            return None
        speaker = self.speakers[k % len(self.speakers)]
        return f"{debate_id}:{k // len(self.speakers) + 1}:{speaker}", speaker


class Observer(threading.Thread):
    """Tails every debate topic and the debaters' inboxes, read_committed, from the start."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        super().__init__(name="chaos-observer", daemon=True)
        self.bootstrap = bootstrap
        self.inboxes = {topics.inbox(a) for a in DEBATERS}
        self.debate_prefix = topics.debate("")
        self.codec = Codec.default(os.environ.get("AGON_SCHEMA_REGISTRY_URL", ""))
        self.lock = threading.Lock()
        self.seen: list[Seen] = []
        self.debates: dict[str, DebateView] = defaultdict(DebateView)
        self._stopping = threading.Event()
        self.failure: BaseException | None = None

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=10)

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.failure = exc

    def _run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"chaos-observer-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "log_level": 0,
                "error_cb": lambda err: None,
            }
        )
        assigned: set[str] = set()
        next_scan = 0.0
        try:
            while not self._stopping.is_set():
                if time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + 0.5
                    self._assign_new(consumer, assigned)
                msg = consumer.poll(0.1)
                if msg is None or msg.error():
                    continue
                self._record(msg)
        finally:
            consumer.close()

    def _assign_new(self, consumer: Consumer, assigned: set[str]) -> None:
        try:
            metadata = consumer.list_topics(timeout=2)
        except KafkaException:
            return  # the broker is restarting: try again on the next scan
        new = [
            TopicPartition(name, p, OFFSET_BEGINNING)
            for name, meta in metadata.topics.items()
            if name not in assigned
            and (name.startswith(self.debate_prefix) or name in self.inboxes)
            and meta.error is None
            and meta.partitions
            for p in meta.partitions
        ]
        if new:
            consumer.incremental_assign(new)
            assigned.update(tp.topic for tp in new)

    def _record(self, msg: Any) -> None:
        topic = msg.topic()
        kind = "inbox" if topic in self.inboxes else "debate"
        try:
            record_type, body = self.codec.decode(kind, msg.value())
        except CodecError:
            return  # the final check reports undecodable records
        seen = Seen(time.monotonic(), topic, msg.timestamp()[1], record_type, body)
        with self.lock:
            self.seen.append(seen)
            view = self.debates[body.get("debate_id", "")]
            if record_type == "DebateStarted":
                view.started = True
                view.speakers = [s["agent"] for s in body["speakers"]]
            elif record_type == "TurnTaken" and kind == "debate":
                if body["event_id"] not in view.turns:
                    view.turns.append(body["event_id"])
            elif record_type == "TurnRequested":
                view.requested.add(body["event_id"])
            elif record_type == "DebateEnded" and kind == "debate":
                view.ended = body

    def snapshot(self) -> dict[str, DebateView]:
        with self.lock:
            return {
                d: DebateView(list(v.speakers), v.started, list(v.turns), set(v.requested), v.ended)
                for d, v in self.debates.items()
                if d
            }

    def first_step_after(self, debates: set[str], agent: str, after_wall: float) -> Seen | None:
        """The first record, produced after ``after_wall``, by which ``agent``'s role moved one of
        ``debates`` on: a debater's TurnTaken; the moderator's TurnRequested or DebateEnded."""
        after_ms = after_wall * 1000
        with self.lock:
            for s in self.seen:
                if s.ts_ms < after_ms or s.body.get("debate_id") not in debates:
                    continue
                if agent == "moderator":
                    if s.kind == "TurnRequested" or (
                        s.kind == "DebateEnded" and s.topic.startswith(self.debate_prefix)
                    ):
                        return s
                elif (
                    s.kind == "TurnTaken"
                    and s.topic.startswith(self.debate_prefix)
                    and s.body.get("speaker") == agent
                ):
                    return s
        return None

    def first_turn_after(self, after_wall: float) -> Seen | None:
        after_ms = after_wall * 1000
        with self.lock:
            return next(
                (
                    s
                    for s in self.seen
                    if s.kind == "TurnTaken"
                    and s.ts_ms >= after_ms
                    and s.topic.startswith(self.debate_prefix)
                ),
                None,
            )
