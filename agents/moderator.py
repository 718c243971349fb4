"""The moderator: starts a debate, calls the speakers in turn, and ends it.

A running debate's state lives in the ``debates`` table (round, next speaker,
attempt, deadline, turns seen, tokens used). When the debate ends its row is
deleted (a tombstone, compacted away) and a compact marker takes its place in
the ``ended`` table, so that a redelivered request is ignored; markers expire
from their changelog after ``AGON_HISTORY_MARKER_RETENTION_S``, and the
debate's topic is deleted ``AGON_HISTORY_TOPIC_DELETE_AFTER_S`` after the end.

Every wait has a deadline: a timer notices overdue turns (an in-memory index of
running debates, rebuilt after each recovery) and sends ``DeadlinePassed`` to
the moderator's own inbox, again while it stays overdue, so that every state
change happens in stream order, in one place.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from typing import Any

from agon.agents.base import Agent
from agon.agents.deadlines import Deadlines, Due
from agon.agents.judging import summarize, unproductive
from agon.agents.requests import validate_request
from agon.errors import AgonError, ConfigError
from agon.schemas import now_ms, partition_for
from agon.streams import metrics
from agon.streams.admin import delete_topics, topic_names

log = logging.getLogger(__name__)


#: events about one debate that must be handled on its home partition, where its state lives
REKEYED = ("DebateRequested", "CancelRequested")
RENOTIFY_MS = 5000  # a DeadlinePassed still unanswered is sent again after this long
SWEEP_S = 10.0
MAX_DELETES = 100  # topics deleted per sweep


def turn_id(debate_id: str, round_: int, speaker: str) -> str:
    return f"{debate_id}:{round_}:{speaker}"


class Moderator(Agent):
    role = "moderator"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        history = self.settings.history
        self.debates = self.table("debates")  # running debates only
        self.ended = self.table("ended", retention_s=history.marker_retention_s)  # compact markers
        self.kinds[self.topics.requests] = "debate_request"
        timeout_ms = int(self.settings.worker.turn_timeout_s * 1000)
        self.deadlines = Deadlines(renotify_ms=min(timeout_ms, RENOTIFY_MS))
        self.doomed: list[tuple[int, str]] = []  # (when to delete, debate id): topics to delete
        self.debates.on_recover(self.index_running)
        self.ended.on_recover(self.index_ended)
        self.app.timer(1.0, name=f"{self.name}.deadlines")(self.check_deadlines)
        self.app.timer(SWEEP_S, name=f"{self.name}.sweep")(self.delete_old_topics)
        metrics.DEBATES_RUNNING.set_function(lambda: len(self.deadlines))

    async def handle(self, record_type: str, body: dict[str, Any], event: Any) -> None:
        handler = {
            "DebateRequested": self.on_requested,
            "TurnTaken": self.on_turn,
            "TurnFailed": self.on_failed,
            "DeadlinePassed": self.on_deadline,
            "CancelRequested": self.on_cancel,
        }.get(record_type)
        if handler is None:
            raise AgonError(f"the moderator does not handle {record_type}")
        if record_type in REKEYED:
            home = self.home(body["debate_id"])
            if record_type == "DebateRequested":  # validated before it is moved
                problems = validate_request(body, self.settings)
                if problems:  # to the dead letters, with the reasons; no topic is created
                    raise ConfigError("; ".join(problems))
            if event.message.partition != home:
                # another client's partitioner (or none) put it here, where this debate's state
                # does not live: re-key it onto its own partition first, in this transaction, as
                # Kafka Streams does with repartition topics
                log.info(
                    "debate=%s %s re-keyed from partition %d to %d",
                    body["debate_id"],
                    record_type,
                    event.message.partition,
                    home,
                )
                await self.send(self.topics.inbox(self.name), "inbox", record_type, body, partition=home)
                return
        await handler(body)

    def home(self, debate_id: str) -> int:
        """The partition of every keyed topic where this debate lives (murmur2 of its id)."""
        return partition_for(debate_id.encode(), self.settings.kafka.partitions)

    # -- start -------------------------------------------------------------------------
    async def on_requested(self, req: dict[str, Any]) -> None:
        debate_id = req["debate_id"]
        if self.debates.get(debate_id) is not None or self.marker(debate_id) is not None:
            log.info("debate=%s duplicate request ignored", debate_id)
            return
        speakers = req["teams"] or self.settings.default_teams()
        state = {
            "motion": req["motion"],
            "rounds": req["rounds"],
            "speakers": speakers,
            "max_tokens": req["max_tokens"],
            "round": 1,
            "turn": 0,
            "attempt": 1,
            "deadline_ms": 0,
            "tokens": 0,
            "turns": [],
        }
        topic = self.topics.debate(debate_id)
        retention = self.settings.history.topic_retention_s
        await self.app.topic(topic, partitions=1, replicas=1, retention=retention).maybe_declare()
        await self.send(
            self.topics.debate(debate_id),
            "debate",
            "DebateStarted",
            {
                "debate_id": debate_id,
                "event_id": f"{debate_id}:start",
                "ts": now_ms(),
                "motion": req["motion"],
                "rounds": req["rounds"],
                "speakers": speakers,
                "max_tokens": req["max_tokens"],
            },
        )
        log.info("debate=%s started: %r, %d rounds", debate_id, req["motion"], req["rounds"])
        metrics.DEBATES_STARTED.inc()
        await self.request_turn(debate_id, state)

    # -- turns ---------------------------------------------------------------------------
    def expected(self, debate_id: str, state: dict[str, Any]) -> str:
        return turn_id(debate_id, state["round"], state["speakers"][state["turn"]]["agent"])

    async def request_turn(self, debate_id: str, state: dict[str, Any]) -> None:
        speaker = state["speakers"][state["turn"]]
        last = state["turns"][-1] if state["turns"] else None
        state["deadline_ms"] = now_ms() + int(self.settings.worker.turn_timeout_s * 1000)
        if state["attempt"] == 1:
            state["asked_ms"] = now_ms()  # a turn's latency counts from its first request
        self.debates[debate_id] = state
        tid = self.expected(debate_id, state)
        self.deadlines.set(debate_id, tid, state["attempt"], state["deadline_ms"])
        log.info("debate=%s turn=%s attempt=%d requested", debate_id, tid, state["attempt"])
        await self.send(
            self.topics.inbox(speaker["agent"]),
            "inbox",
            "TurnRequested",
            {
                "debate_id": debate_id,
                "event_id": tid,
                "ts": now_ms(),
                "motion": state["motion"],
                "round": state["round"],
                "speaker": speaker["agent"],
                "stance": speaker["stance"],
                "persona": speaker.get("persona"),
                "model": speaker.get("model"),
                "attempt": state["attempt"],
                "previous": None
                if last is None
                else {"speaker": last["speaker"], "round": last["round"], "text": last["text"]},
            },
        )

    def current(self, body: dict[str, Any], turn_key: str = "event_id") -> dict[str, Any] | None:
        """The debate's state if ``body`` is about the turn it awaits, else None (stale/duplicate)."""
        state = self.debates.get(body["debate_id"])
        if state is None or state.get("status", "running") != "running":  # "ended": rows of old
            return None
        if body[turn_key] != self.expected(body["debate_id"], state):
            log.info("debate=%s turn=%s stale, ignored", body["debate_id"], body[turn_key])
            return None
        return state

    async def on_turn(self, turn: dict[str, Any]) -> None:
        state = self.current(turn)
        if state is None:
            return
        debate_id = turn["debate_id"]
        if "asked_ms" in state:  # rows written before agon measured turns have none
            metrics.TURN_LATENCY.observe(max(0, now_ms() - state["asked_ms"]) / 1000)
        state["turns"].append({"round": turn["round"], "speaker": turn["speaker"], "text": turn["text"]})
        state["tokens"] += turn["prompt_tokens"] + turn["completion_tokens"]
        state["attempt"] = 1
        last_speaker = state["turn"] == len(state["speakers"]) - 1
        why = unproductive(state["turns"], state["motion"])
        if state["max_tokens"] and state["tokens"] >= state["max_tokens"]:
            await self.end(
                debate_id,
                state,
                "BUDGET",
                f"{state['tokens']} tokens used of a budget of {state['max_tokens']}",
            )
        elif why:
            await self.end(debate_id, state, "UNPRODUCTIVE", why)
        elif last_speaker and state["round"] >= state["rounds"]:
            await self.end(debate_id, state, "ROUNDS", f"all {state['rounds']} rounds were held")
        else:
            state["turn"] = 0 if last_speaker else state["turn"] + 1
            state["round"] += 1 if last_speaker else 0
            await self.request_turn(debate_id, state)

    async def on_failed(self, failure: dict[str, Any]) -> None:
        state = self.current(failure)
        if state is not None and failure["attempt"] == state["attempt"]:
            await self.retry_or_end(
                failure["debate_id"], state, failure["reason"], failure["retriable"], "failed"
            )

    async def on_deadline(self, tick: dict[str, Any]) -> None:
        state = self.current(tick, turn_key="turn_id")
        if state is not None and tick["attempt"] == state["attempt"] and now_ms() >= state["deadline_ms"]:
            reason = f"no turn within {self.settings.worker.turn_timeout_s:g} s"
            await self.retry_or_end(tick["debate_id"], state, reason, True, "deadline")

    async def retry_or_end(
        self, debate_id: str, state: dict[str, Any], reason: str, retriable: bool, why: str
    ) -> None:
        tid = self.expected(debate_id, state)
        if retriable and state["attempt"] < self.settings.worker.turn_attempts:
            log.warning(
                "debate=%s turn=%s attempt=%d failed (%s); retrying", debate_id, tid, state["attempt"], reason
            )
            state["attempt"] += 1
            metrics.TURN_RETRIES.labels(why).inc()
            await self.request_turn(debate_id, state)
        else:
            await self.end(
                debate_id, state, "ERROR", f"turn {tid} failed after {state['attempt']} attempt(s): {reason}"
            )

    async def on_cancel(self, cancel: dict[str, Any]) -> None:
        """End a running debate at once (reason CANCELLED); a cancel of any other is ignored."""
        debate_id = cancel["debate_id"]
        state = self.debates.get(debate_id)
        if state is None or state.get("status", "running") != "running":
            log.info("debate=%s cancel ignored: the debate is not running here", debate_id)
            return
        who = cancel.get("requested_by") or "a client"
        await self.end(
            debate_id, state, "CANCELLED", f"cancelled by {who} after {len(state['turns'])} turn(s)"
        )

    # -- end ------------------------------------------------------------------------------
    async def end(self, debate_id: str, state: dict[str, Any], reason: str, detail: str) -> None:
        del self.debates[debate_id]  # a tombstone: the row is compacted away
        self.ended[debate_id] = {
            "at": now_ms(),
            "reason": reason,
            "turns": len(state["turns"]),
            "tokens": state["tokens"],
        }
        self.deadlines.drop(debate_id)
        await self.send_ended(debate_id, state, reason, detail)
        for speaker in state["speakers"]:
            await self.send(
                self.topics.inbox(speaker["agent"]),
                "inbox",
                "DebateEnded",
                self.ended_event(debate_id, state, reason, detail),
            )
        self.app.forget_topic(self.topics.debate(debate_id))
        self.forget(self.topics.debate(debate_id))
        self.doom(debate_id, now_ms())

    def ended_event(self, debate_id: str, state: dict[str, Any], reason: str, detail: str) -> dict[str, Any]:
        rounds_done = max((t["round"] for t in state["turns"]), default=0)
        return {
            "debate_id": debate_id,
            "event_id": f"{debate_id}:end",
            "ts": now_ms(),
            "reason": reason,
            "detail": detail,
            "summary": summarize(state["motion"], state["speakers"], state["turns"], detail),
            "rounds_completed": rounds_done,
            "tokens_used": state["tokens"],
        }

    async def send_ended(self, debate_id: str, state: dict[str, Any], reason: str, detail: str) -> None:
        log.info("debate=%s ended: %s (%s)", debate_id, reason, detail)
        metrics.DEBATES_ENDED.labels(reason).inc()
        await self.send(
            self.topics.debate(debate_id),
            "debate",
            "DebateEnded",
            self.ended_event(debate_id, state, reason, detail),
        )

    # -- deadlines ------------------------------------------------------------------------
    async def check_deadlines(self) -> None:
        """Send DeadlinePassed to ourselves for every overdue turn, again while it stays overdue."""
        now = now_ms()
        for debate_id, due in self.deadlines.overdue(now):
            try:
                await self.send(
                    self.topics.inbox(self.name),
                    "inbox",
                    "DeadlinePassed",
                    {
                        "debate_id": debate_id,
                        "event_id": f"{due.turn_id}:deadline:{due.attempt}",
                        "ts": now,
                        "turn_id": due.turn_id,
                        "attempt": due.attempt,
                    },
                    wait=True,
                )
            except Exception:  # the broker is away: the next tick tries again
                log.warning("debate=%s deadline notice not sent; retrying", debate_id, exc_info=True)
                self.deadlines.failed(debate_id, due)

    async def index_running(self) -> None:
        """After a recovery: index the deadlines of the running debates this worker now owns."""
        dues = {}
        for debate_id, state in self.debates.items():
            if state:
                dues[debate_id] = Due(self.expected(debate_id, state), state["attempt"], state["deadline_ms"])
        self.deadlines.replace(dues)
        log.info("%d running debate(s) on this worker's partitions", len(dues))

    # -- what ended debates leave behind --------------------------------------------------
    def marker(self, debate_id: str) -> dict[str, Any] | None:
        """The marker of an ended debate, unless it has expired (its changelog drops it later)."""
        marker = self.ended.get(debate_id)
        retention_ms = self.settings.history.marker_retention_s * 1000
        if marker is None or now_ms() - marker["at"] >= retention_ms:
            return None
        return marker

    def doom(self, debate_id: str, ended_ms: int) -> None:
        delete_at = ended_ms + int(self.settings.history.topic_delete_after_s * 1000)
        heapq.heappush(self.doomed, (delete_at, debate_id))

    async def index_ended(self) -> None:
        """After a recovery: schedule the deletion of ended debates' topics that still exist."""
        prefix = self.topics.debate("")
        existing = await asyncio.to_thread(topic_names, self.settings.kafka.bootstrap, prefix)
        self.doomed = []
        for debate_id, marker in self.ended.items():
            if marker and self.topics.debate(debate_id) in existing:
                self.doom(debate_id, marker["at"])

    async def delete_old_topics(self) -> None:
        now, names = now_ms(), []
        while self.doomed and self.doomed[0][0] <= now and len(names) < MAX_DELETES:
            names.append(self.topics.debate(heapq.heappop(self.doomed)[1]))
        if not names:
            return
        try:
            deleted = await asyncio.to_thread(delete_topics, self.settings.kafka.bootstrap, names)
            log.info("deleted %d topic(s) of debates that ended long ago", len(deleted))
        except AgonError as exc:  # the broker is away: try them again at the next sweep
            log.warning("could not delete old debate topics: %s", exc)
            for name in names:
                heapq.heappush(self.doomed, (now, name.removeprefix(self.topics.debate(""))))
