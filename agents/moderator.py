"""The moderator: starts a debate, calls the speakers in turn, and ends it.

State per debate lives in the ``debates`` table (round, next speaker, attempt,
deadline, turns seen, tokens used, status). Every wait has a deadline: a timer
notices overdue turns and sends ``DeadlinePassed`` to the moderator's own inbox,
so that every state change happens in stream order, in one place.
"""

from __future__ import annotations

import logging
from typing import Any

from agon.agents.base import Agent
from agon.agents.judging import summarize, unproductive
from agon.agents.requests import validate_request
from agon.errors import AgonError, ConfigError
from agon.schemas import now_ms, partition_for
from agon.streams import metrics

log = logging.getLogger(__name__)


def turn_id(debate_id: str, round_: int, speaker: str) -> str:
    return f"{debate_id}:{round_}:{speaker}"


class Moderator(Agent):
    role = "moderator"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.debates = self.table("debates")
        self.kinds[self.topics.requests] = "debate_request"
        self._ticked: set[tuple[str, int]] = set()
        self.app.timer(1.0, name=f"{self.name}.deadlines")(self.check_deadlines)

    async def handle(self, record_type: str, body: dict[str, Any], event: Any) -> None:
        handler = {
            "DebateRequested": self.on_requested,
            "TurnTaken": self.on_turn,
            "TurnFailed": self.on_failed,
            "DeadlinePassed": self.on_deadline,
        }.get(record_type)
        if handler is None:
            raise AgonError(f"the moderator does not handle {record_type}")
        if record_type == "DebateRequested":
            await self.on_requested(body, event.message.partition)
        else:
            await handler(body)

    def home(self, debate_id: str) -> int:
        """The partition of every keyed topic where this debate lives (murmur2 of its id)."""
        return partition_for(debate_id.encode(), self.settings.kafka.partitions)

    # -- start -------------------------------------------------------------------------
    async def on_requested(self, req: dict[str, Any], partition: int) -> None:
        debate_id = req["debate_id"]
        problems = validate_request(req, self.settings)
        if problems:  # to the dead letters, with the reasons; no topic is created
            raise ConfigError("; ".join(problems))
        home = self.home(debate_id)
        if partition != home:
            # another client's partitioner (or none) put it here, where this debate's state does
            # not live: re-key it onto its own partition first, in this transaction, as Kafka
            # Streams does with repartition topics
            log.info("debate=%s request re-keyed from partition %d to %d", debate_id, partition, home)
            await self.send(self.topics.inbox(self.name), "inbox", "DebateRequested", req, partition=home)
            return
        if self.debates.get(debate_id) is not None:
            log.info("debate=%s duplicate request ignored", debate_id)
            return
        speakers = req["teams"] or self.settings.default_teams()
        state = {
            "motion": req["motion"],
            "rounds": req["rounds"],
            "speakers": speakers,
            "max_tokens": req["max_tokens"],
            "status": "running",
            "round": 1,
            "turn": 0,
            "attempt": 1,
            "deadline_ms": 0,
            "tokens": 0,
            "turns": [],
        }
        await self.app.topic(self.topics.debate(debate_id), partitions=1, replicas=1).maybe_declare()
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
            wait=True,
        )
        log.info("debate=%s started: %r, %d rounds", debate_id, req["motion"], req["rounds"])
        await self.request_turn(debate_id, state)

    # -- turns ---------------------------------------------------------------------------
    def expected(self, debate_id: str, state: dict[str, Any]) -> str:
        return turn_id(debate_id, state["round"], state["speakers"][state["turn"]]["agent"])

    async def request_turn(self, debate_id: str, state: dict[str, Any]) -> None:
        speaker = state["speakers"][state["turn"]]
        last = state["turns"][-1] if state["turns"] else None
        state["deadline_ms"] = now_ms() + int(self.settings.worker.turn_timeout_s * 1000)
        self.debates[debate_id] = state
        tid = self.expected(debate_id, state)
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
        if state is None or state["status"] != "running":
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
            await self.retry_or_end(failure["debate_id"], state, failure["reason"], failure["retriable"])

    async def on_deadline(self, tick: dict[str, Any]) -> None:
        state = self.current(tick, turn_key="turn_id")
        if state is not None and tick["attempt"] == state["attempt"] and now_ms() >= state["deadline_ms"]:
            reason = f"no turn within {self.settings.worker.turn_timeout_s:g} s"
            await self.retry_or_end(tick["debate_id"], state, reason, True)

    async def retry_or_end(self, debate_id: str, state: dict[str, Any], reason: str, retriable: bool) -> None:
        tid = self.expected(debate_id, state)
        if retriable and state["attempt"] < self.settings.worker.turn_attempts:
            log.warning(
                "debate=%s turn=%s attempt=%d failed (%s); retrying", debate_id, tid, state["attempt"], reason
            )
            state["attempt"] += 1
            await self.request_turn(debate_id, state)
        else:
            await self.end(
                debate_id, state, "ERROR", f"turn {tid} failed after {state['attempt']} attempt(s): {reason}"
            )

    # -- end ------------------------------------------------------------------------------
    async def end(self, debate_id: str, state: dict[str, Any], reason: str, detail: str) -> None:
        state["status"] = "ended"
        self.debates[debate_id] = state
        await self.send_ended(debate_id, state, reason, detail)
        for speaker in state["speakers"]:
            await self.send(
                self.topics.inbox(speaker["agent"]),
                "inbox",
                "DebateEnded",
                self.ended_event(debate_id, state, reason, detail),
            )

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
            wait=True,
        )

    # -- deadlines ------------------------------------------------------------------------
    async def check_deadlines(self) -> None:
        """Send DeadlinePassed to ourselves for every overdue turn (once per attempt)."""
        now = now_ms()
        for debate_id, state in list(self.debates.items()):
            if state is None or state["status"] != "running" or state["deadline_ms"] > now:
                continue
            tid = self.expected(debate_id, state)
            if (tid, state["attempt"]) in self._ticked:
                continue
            self._ticked.add((tid, state["attempt"]))
            await self.send(
                self.topics.inbox(self.name),
                "inbox",
                "DeadlinePassed",
                {
                    "debate_id": debate_id,
                    "event_id": f"{tid}:deadline:{state['attempt']}",
                    "ts": now,
                    "turn_id": tid,
                    "attempt": state["attempt"],
                },
            )
