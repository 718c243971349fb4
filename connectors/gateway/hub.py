"""The gateway's one Kafka consumer, shared by every reader of every debate.

It reads two things, read_committed, without a consumer group (nothing to commit:
it always reads from the beginning):

- **the request topic**, from its beginning: the index of every debate a tenant
  asked for through a gateway (``requested_by = "gateway:<tenant>"``), so that any
  replica, restarted or not, knows whose debate an id is, which Idempotency-Key made
  it, and what each tenant has running;
- **the debates' own topics**, one partition each, assigned while someone reads them
  or while they count for a tenant's limits (requested in the last
  :data:`LEDGER_S`, not yet ended). A reader gets a :class:`DebateLog` and waits on
  it; a thousand SSE streams cost one consumer, not a thousand.

All state lives on the event loop; the consumer is called from one thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from agon.connectors.gateway.debatelog import DebateLog, Request, tenant_of, utc_day
from agon.errors import BrokerError, CodecError
from agon.schemas import Codec, Topics, now_ms
from agon.settings import Settings
from agon.streams import metrics

__all__ = ["LEDGER_S", "Hub"]

log = logging.getLogger("agon.gateway")

LEDGER_S = 2 * 86400.0  # a tenant's requests this recent count for its limits
INDEX_KEEP_S = 7 * 86400.0  # the request topic's retention (Kafka's default): older ones are forgotten
PRUNE_EVERY_S = 60.0
CHECK_EVERY_S = 0.1  # how often topics still missing are looked for (the wait a new debate adds)
LOOKS = 16  # topics looked for per check, newest first (librdkafka finds the others in ~1 s)
POLL_S = 0.02  # the consumer's poll: assignments wait at most this long for the one Kafka thread


class Hub:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings.namespace)
        self.codec = Codec.default(settings.schema_registry_url)
        self._consumer = Consumer(
            settings.kafka.client_config(
                **{
                    "group.id": f"{settings.namespace}-gateway-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "enable.partition.eof": True,
                    "auto.offset.reset": "earliest",
                    # a partition assigned while a fetch waits joins the next fetch: keep waits
                    # short, so that a new debate's first event is not held back by an idle one
                    "fetch.wait.max.ms": 25,
                }
            )
        )
        self._kafka = ThreadPoolExecutor(1, thread_name_prefix="agon-gateway-kafka")
        self.requests: dict[str, Request] = {}
        self.by_key: dict[tuple[str, str], str] = {}  # (tenant, Idempotency-Key) -> debate id
        self.by_tenant: dict[str, list[Request]] = {}
        self.active: dict[str, set[str]] = {}  # tenant -> debates that may still be running
        self.tokens: dict[tuple[str, dt.date], int] = {}  # (tenant, UTC day) -> model tokens
        self._counted: dict[str, int] = {}  # debate id -> the last TurnTaken offset counted
        self.logs: dict[str, DebateLog] = {}
        self._request_parts: set[int] = set()  # request partitions not yet read to their end
        self.index_ready = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._checked = 0.0
        self._pruned = time.monotonic()
        self._fresh: list[DebateLog] = []  # watched, to be assigned
        self._assigned: dict[str, DebateLog] = {}  # the debates whose topic the consumer reads

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._kafka, fn, *args)

    # -- life -----------------------------------------------------------------------------
    async def start(self, wait_s: float = 60.0) -> None:
        parts = await self._request_partitions(wait_s)
        self._request_parts = set(parts)
        await self._call(
            self._consumer.assign,
            [TopicPartition(self.topics.requests, p, OFFSET_BEGINNING) for p in parts],
        )
        self._task = asyncio.create_task(self._run(), name="agon-gateway-hub")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self._call(self._consumer.close)
        self._kafka.shutdown(wait=True)

    async def _request_partitions(self, wait_s: float) -> list[int]:
        """The request topic's partitions, once each has a leader (a topic just created may
        have none yet, or no partitions in its metadata at all)."""
        deadline = time.monotonic() + wait_s
        while True:
            topic = (await self._call(self._metadata, self.topics.requests)).topics.get(self.topics.requests)
            if topic is not None and topic.error is None and topic.partitions:
                if all(p.leader >= 0 for p in topic.partitions.values()):
                    return sorted(topic.partitions)
            if time.monotonic() > deadline:
                raise BrokerError(f"{self.topics.requests} has no partitions with leaders (is it created?)")
            await asyncio.sleep(0.5)

    def _metadata(self, topic: str | None = None, timeout_s: float = 10.0) -> Any:
        try:
            return self._consumer.list_topics(topic=topic, timeout=timeout_s)
        except KafkaException as exc:
            raise BrokerError(f"no Kafka broker answers at {self.settings.kafka.bootstrap}: {exc}") from exc

    def _poll(self) -> list[Any]:
        first = self._consumer.poll(POLL_S)
        return [] if first is None else [first, *self._consumer.consume(1000, 0)]

    async def _run(self) -> None:
        while not self._stopping:
            try:
                for msg in await self._call(self._poll):
                    self._handle(msg)
                await self._assign_new()
                if time.monotonic() - self._checked >= CHECK_EVERY_S:
                    self._checked = time.monotonic()
                    await self._look()
                    await self._release()
                if time.monotonic() - self._pruned >= PRUNE_EVERY_S:
                    self._pruned = time.monotonic()
                    self.prune(now_ms() - int(INDEX_KEEP_S * 1000))
            except Exception:  # the broker away, a bad record: keep serving what is known
                log.exception("the gateway's consumer failed; going on")
                await asyncio.sleep(1.0)

    # -- records --------------------------------------------------------------------------
    def _handle(self, msg: Any) -> None:
        topic = msg.topic()
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                log.warning("reading %s: %s", topic, msg.error())
            elif topic == self.topics.requests:
                self._request_parts.discard(msg.partition())
                if not self._request_parts and not self.index_ready.is_set():
                    log.info("request index read: %d debate(s) of tenants", len(self.requests))
                    self.index_ready.set()
            elif (debate := self.logs.get(topic.removeprefix(self.topics.debate("")))) is not None:
                debate.exists, debate.missing = True, False
                debate.caught_up.set()
                debate.notify()
            return
        if topic == self.topics.requests:
            self._index(msg)
            return
        debate = self.logs.get(topic.removeprefix(self.topics.debate("")))
        if debate is None:
            return
        try:
            record_type, body = self.codec.decode("debate", msg.value())
        except CodecError as exc:
            log.warning("%s offset %d undecodable: %s", topic, msg.offset(), exc)
            return
        debate.exists, debate.missing = True, False
        debate.add(msg.offset(), record_type, body)
        if record_type == "TurnTaken":
            self._count(debate.debate_id, msg.offset(), body)

    def _index(self, msg: Any) -> None:
        try:
            record_type, body = self.codec.decode("debate_request", msg.value())
        except CodecError:
            return  # the moderator dead-letters it
        tenant = tenant_of(body.get("requested_by"))
        if tenant is None or body["debate_id"] in self.requests:
            return
        headers = dict(msg.headers() or [])
        key = headers.get("idempotency-key")
        self.remember(
            Request(body["debate_id"], tenant, body["ts"], body, key.decode() if key else None),
        )

    def remember(self, req: Request) -> None:
        """Index ``req`` (the gateway's own POST does so before the topic comes back to it)."""
        if req.debate_id in self.requests:
            return
        self.requests[req.debate_id] = req
        self.by_tenant.setdefault(req.tenant, []).append(req)
        if req.idempotency:
            self.by_key[(req.tenant, req.idempotency)] = req.debate_id
        if now_ms() - req.ts < LEDGER_S * 1000:
            self.watch(req.debate_id)
            self.active.setdefault(req.tenant, set()).add(req.debate_id)

    # -- debates --------------------------------------------------------------------------
    def watch(self, debate_id: str) -> DebateLog:
        """The debate's log, read from its topic's beginning (assigned at the loop's next turn)."""
        debate = self.logs.get(debate_id)
        if debate is None or debate.trimmed:
            req = self.requests.get(debate_id)
            debate = DebateLog(debate_id, req.ts if req else now_ms())
            self.logs[debate_id] = debate
            self._fresh.append(debate)
        elif not debate.assigned and debate.ended is None and debate not in self._fresh:
            self._fresh.append(debate)  # given up on as unstarted once: look again
        debate.used = time.monotonic()
        return debate

    async def _assign_new(self) -> None:
        """Assign the debates watched since the last call, at offset 0: a debate's topic starts
        there (were it trimmed, auto.offset.reset=earliest applies), and no ListOffsets round
        trip comes before the first fetch. A topic not created yet is assigned too: librdkafka
        looks for it again by itself (about every second), and :meth:`_look` sooner."""
        fresh, self._fresh = self._fresh, []
        fresh = [d for d in fresh if not d.assigned and not d.trimmed and self.logs.get(d.debate_id) is d]
        if fresh:
            await self._call(
                self._consumer.incremental_assign,
                [TopicPartition(self.topics.debate(d.debate_id), 0, 0) for d in fresh],
            )
            for debate in fresh:
                debate.assigned = True
                self._assigned[debate.debate_id] = debate
            metrics.GATEWAY_WATCHED.set(len(self._assigned))

    async def _look(self) -> None:
        """Ask for the metadata of the newest debates whose topic has not shown up: a
        targeted request finds it (and tells librdkafka to fetch it) within milliseconds."""
        waiting = [d for d in self._assigned.values() if not d.exists and d.status == "requested"]
        for debate in sorted(waiting, key=lambda d: d.requested_ms, reverse=True)[:LOOKS]:
            name = self.topics.debate(debate.debate_id)
            topic = (await self._call(self._metadata, name)).topics.get(name)
            found = topic is not None and topic.error is None and bool(topic.partitions)
            debate.exists, debate.missing = debate.exists or found, not found
            debate.notify()
        for debate in waiting:
            if debate.status == "unstarted":  # no longer waited for: followers stop
                debate.caught_up.set()
                debate.notify()

    async def _release(self) -> None:
        """Unassign ended debates nobody reads; past the cache's size, drop their events."""
        done = [
            d
            for d in self._assigned.values()
            if (d.ended is not None or d.status == "unstarted") and d.readers == 0
        ]
        if done:
            await self._call(
                self._consumer.incremental_unassign,
                [TopicPartition(self.topics.debate(d.debate_id), 0) for d in done],
            )
            for debate in done:
                debate.assigned = False
                del self._assigned[debate.debate_id]
            metrics.GATEWAY_WATCHED.set(len(self._assigned))
        cached = self.settings.gateway.cached_debates
        if len(self.logs) - len(self._assigned) > cached:  # only then is a whole scan worth it
            kept = [d for d in self.logs.values() if d.events and not d.assigned and d.readers == 0]
            for debate in sorted(kept, key=lambda d: d.used)[: max(0, len(kept) - cached)]:
                debate.events, debate.trimmed = [], True

    def prune(self, before_ms: int) -> int:
        """Forget requests older than ``before_ms`` that nobody reads (a restarted gateway would
        not find them in the request topic either), so that a long-lived gateway's memory does
        not grow with every debate ever held. How many were forgotten."""

        def forgettable(req: Request) -> bool:
            debate = self.logs.get(req.debate_id)
            return req.ts < before_ms and (debate is None or not (debate.assigned or debate.readers))

        old = [r for r in self.requests.values() if forgettable(r)]
        for req in old:
            del self.requests[req.debate_id]
            self.logs.pop(req.debate_id, None)
            self._counted.pop(req.debate_id, None)
            if req.idempotency:
                self.by_key.pop((req.tenant, req.idempotency), None)
            self.active.get(req.tenant, set()).discard(req.debate_id)
        if old:
            gone = {r.debate_id for r in old}
            for tenant, reqs in self.by_tenant.items():
                self.by_tenant[tenant] = [r for r in reqs if r.debate_id not in gone]
        oldest_day = utc_day(now_ms() - int(LEDGER_S * 1000))
        self.tokens = {k: v for k, v in self.tokens.items() if k[1] >= oldest_day}
        return len(old)

    # -- what a tenant has ----------------------------------------------------------------
    def of_tenant(self, tenant: str) -> list[Request]:
        """The tenant's requests, newest first."""
        return sorted(self.by_tenant.get(tenant, []), key=lambda r: (r.ts, r.debate_id), reverse=True)

    def running(self, tenant: str) -> int:
        """The tenant's debates requested or running (the ones that ended leave the set)."""
        active = self.active.get(tenant, set())
        for debate_id in list(active):
            debate = self.logs.get(debate_id)
            if debate is None or not debate.counts_as_running:
                active.discard(debate_id)
        return len(active)

    def tokens_on(self, tenant: str, day: dt.date) -> int:
        """The model tokens of the tenant's turns taken on ``day`` (UTC)."""
        return self.tokens.get((tenant, day), 0)

    def _count(self, debate_id: str, offset: int, body: dict[str, Any]) -> None:
        """Add a TurnTaken's tokens to its tenant's day, once per offset (a log read again,
        after its events were dropped, counts nothing twice)."""
        req = self.requests.get(debate_id)
        if req is None or offset <= self._counted.get(debate_id, -1):
            return
        self._counted[debate_id] = offset
        key = (req.tenant, utc_day(body["ts"]))
        self.tokens[key] = self.tokens.get(key, 0) + body["prompt_tokens"] + body["completion_tokens"]

    async def reachable(self) -> bool:
        """Whether the broker answers a metadata request (on the consumer's one thread)."""
        try:
            await self._call(self._metadata, self.topics.requests, 2.0)
            return True
        except BrokerError:
            return False
