"""A debater: answers each TurnRequested with one argument from its LLM.

Its own history of every debate it is in lives in the ``history`` table,
with the turns it owes (``pending``). The LLM call runs in a task of its own,
outside the stream and outside any transaction, so a slow call holds up no
other debate and no commit. Its result is kept in Kafka at once, as a
``TurnDrafted`` in the debater's own inbox; publishing that draft as
``TurnTaken`` (debate topic and moderator inbox) and recording it in the table
is one transaction, once per turn id, which the call's task makes at once, in
the transaction of the request's partition (fix 12 in ``streams/eos.py``).
While every model slot is busy the debater takes no request: a backlog waits
in its inbox, as lag, where the autoscaler sees it.

After a crash, whoever takes the partition over restores the table and reads
on: a draft already written is published without a new LLM call; a turn still
pending with no draft is resumed when the worker reaches the ``Resume`` marker
it wrote to the partition on assignment (every earlier message seen by then).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any

from faust.streams import current_event

from agon.agents.base import Agent
from agon.agents.llm import LLM
from agon.agents.prompts import build_messages
from agon.errors import AgonError, LLMError
from agon.procs import meminfo_kb
from agon.schemas import now_ms
from agon.streams import metrics

log = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


#: what one model call in flight may hold, generously: its prompt, its streamed answer, a task
LLM_CALL_BYTES = 4 * 2**20
MAX_LLM_SLOTS = 4096


def llm_slots(configured: int, meminfo: Path = Path("/proc/meminfo")) -> int:
    """How many model calls a debater worker makes at once: ``configured``, or with 0 as many
    as a quarter of the memory available now holds at :data:`LLM_CALL_BYTES` each (between 64
    and :data:`MAX_LLM_SLOTS`). A call mostly waits on the model server, which queues what it
    cannot run in parallel; the limit is there so that a burst of debates cannot exhaust memory."""
    if configured:
        return configured
    available_kb = meminfo_kb("MemAvailable", meminfo)
    if available_kb is None:
        return 64
    return max(64, min(MAX_LLM_SLOTS, available_kb * 1024 // 4 // LLM_CALL_BYTES))


def looks_malformed(text: str) -> str | None:
    """Why a model's output is no argument (control bytes, a JSON fragment), or None."""
    if _CONTROL.search(text):
        return "the model's output holds control characters"
    if text.lstrip().startswith(("{", "[")):
        return "the model's output is a JSON fragment, not an argument"
    return None


def clip_answer(text: str, max_chars: int) -> str:
    """``text`` stripped and, if longer than ``max_chars``, cut after its last whole sentence
    that fits (or its last whole word), marked with an ellipsis."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    head = text[: max_chars - 1]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    if ends and ends[-1] >= max_chars // 2:
        return head[: ends[-1]].rstrip()
    return head.rsplit(None, 1)[0].rstrip() + "…" if " " in head else head + "…"


class Debater(Agent):
    role = "debater"

    def __init__(self, *args: Any, llm: LLM, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.llm = llm
        self.history = self.table("history")
        self.moderator = self.settings.moderator
        self.slots = llm_slots(self.settings.worker.max_llm_in_flight)
        self._slots = asyncio.Semaphore(self.slots)
        self._in_flight: dict[str, asyncio.Task] = {}
        self._freed = asyncio.Event()
        self._stopping = False
        #: turn id -> inbox partition of the drafts this worker kept and has not read back yet
        self._kept: dict[str, int] = {}
        self._markers: dict[int, str] = {}  # partition -> id of the last Resume we wrote
        self.app.on_partitions_assigned.connect(self.on_assigned)
        self.app.on_before_shutdown.connect(self.drain)

    async def drain(self, app: Any = None, **kwargs: Any) -> None:
        """On a graceful stop (SIGTERM, a scale-in), after the worker stopped fetching: let the
        model calls in flight finish and keep their drafts, so that the next owner of their
        partitions publishes them without paying for them again."""
        self._stopping = True  # what is drafted from now on is published by the next owner
        tasks = list(self._in_flight.values())
        if not tasks:
            return
        limit = self.settings.worker.drain_timeout_s
        log.info("stopping: waiting up to %.0f s for %d model call(s) in flight", limit, len(tasks))
        _, left = await asyncio.wait(tasks, timeout=limit)
        log.info("stopping: %d draft(s) kept, %d call(s) cut short", len(tasks) - len(left), len(left))

    async def handle(self, record_type: str, body: dict[str, Any], event: Any) -> None:
        if record_type == "TurnRequested":
            await self.on_requested(body, event.message.tp, event.message.offset)
        elif record_type == "TurnDrafted":
            await self.on_drafted(body)
        elif record_type == "Resume":
            self.on_resume(body)
        elif record_type == "DebateEnded":
            self.history.pop(body["debate_id"], None)
            topic = self.topics.debate(body["debate_id"])
            self.app.forget_topic(topic)
            self.forget(topic)
        else:
            raise AgonError(f"a debater does not handle {record_type}")

    async def on_requested(self, req: dict[str, Any], tp: Any, offset: int) -> None:
        debate_id, tid = req["debate_id"], req["event_id"]
        hist = self.history.get(debate_id) or {"turns": [], "taken": [], "pending": {}}
        if tid in hist["taken"]:
            answer = hist.get("answer")
            if answer and answer["event_id"] == tid:
                # asked again for the turn we took last: our answer never reached the moderator,
                # so it goes there once more; the debate's own topic keeps its one TurnTaken.
                # Seen in a chaos run: a moderator restarted after kill -9 was never handed a
                # committed TurnTaken of its inbox (the record after it was); why is not known
                await self.send(self.topics.inbox(self.moderator), "inbox", "TurnTaken", answer)
                log.warning("debate=%s turn=%s asked again; answer sent again", debate_id, tid)
            else:
                log.info("debate=%s turn=%s already taken; request ignored", debate_id, tid)
            return
        prev = req["previous"]
        if prev and not any(
            t["round"] == prev["round"] and t["speaker"] == prev["speaker"] for t in hist["turns"]
        ):
            hist["turns"].append(dict(prev))
        hist["stance"] = req["stance"]
        hist["pending"][tid] = {k: v for k, v in req.items() if k != "previous"}
        hist["pending"][tid]["partition"] = tp.partition
        self.history[debate_id] = hist
        self.start_draft(hist, hist["pending"][tid], after=(tp, offset))

    def start_draft(
        self, hist: dict[str, Any], req: dict[str, Any], after: tuple[Any, int] | None = None
    ) -> None:
        """Call the model for ``req`` in a task of its own. With ``after`` (the request's
        partition and offset), what the call yields is kept only once the transaction that
        recorded the request has committed: a draft never outlives an aborted request."""
        if req["event_id"] in self._in_flight:
            return
        messages = build_messages(self.name, req, hist["turns"], self.settings.llm.prompt_budget_tokens)
        source = current_event()  # the inbox event that asked: its partition's transaction publishes
        self._in_flight[req["event_id"]] = asyncio.create_task(self.draft(req, messages, after, source))

    async def on_assigned(self, app: Any, assigned: set, **kwargs: Any) -> None:
        """Mark each inbox partition we now own; see :meth:`on_resume`."""
        inbox = self.topics.inbox(self.name)
        owned = {tp.partition for tp in assigned if tp.topic == inbox}
        self._kept = {tid: p for tid, p in self._kept.items() if p in owned}
        for tp in assigned:
            if tp.topic == inbox:
                marker = f"resume:{self.name}-{self.worker}:{os.getpid()}:{tp.partition}:{uuid.uuid4().hex}"
                self._markers[tp.partition] = marker
                await self.send_now(
                    inbox,
                    "inbox",
                    "Resume",
                    {
                        "debate_id": "",
                        "event_id": marker,
                        "ts": now_ms(),
                        "partition": tp.partition,
                        "worker": f"{self.name}-{self.worker}",
                    },
                    partition=tp.partition,
                )

    def on_resume(self, marker: dict[str, Any]) -> None:
        """Everything before our latest marker is seen: a pending turn with no draft by now
        has none; its call died with the worker that made it. Call the model again.
        Another worker's marker, or an older one of ours, says nothing about what we saw."""
        if marker["event_id"] != self._markers.get(marker["partition"]):
            return
        for debate_id, hist in list(self.history.items()):
            for req in (hist or {}).get("pending", {}).values():
                tid = req["event_id"]
                # a draft of ours still on its way back (kept after the marker) is no lost call
                if (
                    req["partition"] == marker["partition"]
                    and tid not in self._in_flight
                    and tid not in self._kept
                ):
                    log.warning("debate=%s turn=%s resumed after takeover", debate_id, req["event_id"])
                    self.start_draft(hist, req)

    async def draft(
        self,
        req: dict[str, Any],
        messages: list,
        after: tuple[Any, int] | None = None,
        source: Any = None,
    ) -> None:
        debate_id, tid = req["debate_id"], req["event_id"]
        model = req["model"] or self.spec.model or self.settings.llm.model
        base = {
            "debate_id": debate_id,
            "event_id": tid,
            "ts": 0,
            "round": req["round"],
            "speaker": self.name,
            "attempt": req["attempt"],
        }
        try:
            async with self._slots:
                log.info("debate=%s turn=%s llm call to %s", debate_id, tid, model)
                with metrics.LLM_LATENCY.labels(self.name).time():
                    try:
                        reply = await self.llm.chat(model, messages, timeout=self.settings.llm.timeout_s)
                    except LLMError:
                        metrics.LLM_CALLS.labels(self.name, "error").inc()
                        raise
            bad = looks_malformed(reply.text)
            metrics.LLM_CALLS.labels(self.name, "malformed" if bad else "ok").inc()
            metrics.LLM_TOKENS.labels(self.name, reply.model, "prompt").inc(reply.prompt_tokens)
            metrics.LLM_TOKENS.labels(self.name, reply.model, "completion").inc(reply.completion_tokens)
            if not await self.request_committed(after, tid):
                return
            if bad:
                raise LLMError(bad, retriable=True)
            log.info("debate=%s turn=%s drafted by %s in %d ms", debate_id, tid, model, reply.latency_ms)
            draft = {
                **base,
                "ts": now_ms(),
                "text": clip_answer(reply.text, self.settings.llm.max_output_chars),
                "model": reply.model,
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "latency_ms": reply.latency_ms,
            }
            await self.send_now(
                self.topics.inbox(self.name), "inbox", "TurnDrafted", draft, partition=req["partition"]
            )
            self._kept[tid] = req["partition"]
            await self.publish_kept(draft, source)
        except LLMError as exc:
            log.warning("debate=%s turn=%s failed: %s", debate_id, tid, exc)
            if not await self.request_committed(after, tid):
                return
            await self.send_now(
                self.topics.inbox(self.moderator),
                "inbox",
                "TurnFailed",
                {**base, "ts": now_ms(), "reason": str(exc), "retriable": exc.retriable},
            )
        except Exception:  # the draft could not be kept (broker gone): the turn stays pending,
            # and the moderator's deadline asks for it again
            log.exception("debate=%s turn=%s draft lost", debate_id, tid)
        finally:
            self._in_flight.pop(tid, None)
            self._freed.set()

    async def capacity(self) -> None:
        """Take no event while every model-call slot is busy: the requests wait in the inbox,
        visible as lag, instead of in this worker's memory."""
        while len(self._in_flight) >= self.slots:
            self._freed.clear()
            await self._freed.wait()

    async def publish_kept(self, draft: dict[str, Any], source: Any) -> None:
        """Publish a draft just kept, at once, in the transaction of the partition that asked
        for it (fix 12 in ``streams/eos.py``): not behind the requests queued in that
        partition. Not once this worker stops, or no longer owns the partition: then the
        draft's record in the inbox is what the partition's next owner publishes."""
        if source is None or self._stopping:
            return
        async with self.app.processing:
            if source.message.tp not in self.app.consumer.assignment():
                return
            with self.app.in_partition_transaction(source):
                await self.on_drafted(draft)
        await self.app.commit_dirty()

    async def request_committed(self, after: tuple[Any, int] | None, tid: str) -> bool:
        """Wait until the request at ``after`` is committed; False if it never is here (its
        transaction aborted, or the partition moved: whoever owns it now answers it)."""
        if after is None or await self.app.committed_past(*after, self.settings.worker.commit_timeout_s):
            return True
        log.warning("turn=%s its request was not committed by this worker; the draft is dropped", tid)
        return False

    async def on_drafted(self, draft: dict[str, Any]) -> None:
        debate_id, tid = draft["debate_id"], draft["event_id"]
        self._kept.pop(tid, None)
        hist = self.history.get(debate_id)
        if hist is None or tid not in hist["pending"]:
            # published already (at once, by the call's task; or a second call's draft), or
            # the debate has ended meanwhile
            taken = hist is not None and tid in hist["taken"]
            log.log(
                logging.DEBUG if taken else logging.INFO,
                "debate=%s turn=%s is not pending; draft dropped",
                debate_id,
                tid,
            )
            return
        hist["turns"].append({"round": draft["round"], "speaker": self.name, "text": draft["text"]})
        hist["taken"].append(tid)
        hist["pending"].pop(tid, None)
        stance = hist.get("stance") or self.spec.stance or "FOR"
        taken = {
            k: draft[k]
            for k in (
                "debate_id",
                "event_id",
                "round",
                "speaker",
                "text",
                "model",
                "prompt_tokens",
                "completion_tokens",
                "latency_ms",
                "attempt",
            )
        }
        taken.update(ts=now_ms(), stance=stance)
        hist["answer"] = taken
        self.history[debate_id] = hist
        await self.send(self.topics.debate(debate_id), "debate", "TurnTaken", taken)
        await self.send(self.topics.inbox(self.moderator), "inbox", "TurnTaken", taken)
        metrics.TURNS.labels(self.name).inc()
        log.info("debate=%s turn=%s taken", debate_id, tid)
