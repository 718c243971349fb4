"""The shared base of every agent: decode the inbox, route bad input to dead letters, send events.

An agent is a faust app over its inbox (plus any other source it declares), a
few tables, and one ``handle`` method. It knows no Kafka plumbing beyond
``send``; topics and codec come from ``agon.schemas``, the app from ``agon.streams``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import faust
from aiokafka.errors import (
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from faust.exceptions import ProducerSendError
from faust.types import EventT

from agon.errors import AgonError, CodecError
from agon.files import write_atomically
from agon.schemas import Codec, Topics
from agon.settings import AgentSpec, Settings
from agon.streams import metrics

log = logging.getLogger(__name__)

RAW = {"key_serializer": "raw", "value_serializer": "raw"}
MAX_REASON = 1000
MAX_DEAD_KEY = 1024
# a copy in the dead-letter topic stays under the broker's default record limit (1 MiB)
MAX_DEAD_VALUE = 900_000
#: Kafka errors that a record's content causes (a name or size Kafka refuses): input errors
INPUT_ERRORS = (InvalidTopicError, MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)


def input_error(exc: BaseException) -> BaseException | None:
    """The Kafka error behind ``exc`` if the input caused it, else None."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, INPUT_ERRORS):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


class Agent:
    """One role. Subclasses set ``role``, declare tables in ``__init__`` and implement ``handle``."""

    role: ClassVar[str]

    def __init__(
        self, spec: AgentSpec, settings: Settings, app: faust.App, codec: Codec, worker: int = 0
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.settings = settings
        self.app = app
        self.codec = codec
        self.topics = Topics(settings.namespace)
        self._topic_cache: dict[str, faust.TopicT] = {}
        self.kinds = {self.topics.inbox(self.name): "inbox"}
        self.worker = worker
        self.app.on_partitions_assigned.connect(self._record_assignment)

    # -- wiring ----------------------------------------------------------------------
    def table(self, name: str, retention_s: float | None = None) -> faust.Table:
        """A RocksDB table backed by a compacted changelog; with ``retention_s`` its rows also
        expire from the changelog by age (see :func:`agon.streams.worker.changelog_config`)."""
        table = self.app.Table(
            name, default=None, partitions=self.settings.kafka.partitions, options={"driver": "rocksdict"}
        )
        table.retention_s = retention_s
        return table

    def topic(self, name: str) -> faust.TopicT:
        topic = self._topic_cache.get(name)
        if topic is None:
            topic = self._topic_cache[name] = self.app.topic(name, **RAW)
        return topic

    def forget(self, topic: str) -> None:
        """Drop what this agent keeps about ``topic`` (an ended debate's)."""
        self._topic_cache.pop(topic, None)

    def install(self) -> None:
        """Register the faust agent that feeds every source topic to ``handle``."""
        source = self.app.topic(*self.kinds, partitions=self.settings.kafka.partitions, **RAW)

        async def run(stream: faust.StreamT) -> None:
            try:
                async for event in stream.noack().events():
                    # backpressure: what this worker cannot take on yet stays in its inbox,
                    # where it shows as lag (and the autoscaler adds workers)
                    await self.capacity()
                    # a commit never falls inside an event: its effects share one transaction
                    async with self.app.processing:
                        # a handler is quick (no LLM call happens in one); one that hangs
                        # (a send that never completes) would stall its partitions for good
                        await asyncio.wait_for(self.dispatch(event), self.settings.worker.commit_timeout_s)
                        event.ack()
                    await self.app.after_event(idle=stream.channel.empty())
            except Exception as exc:
                # a worker whose stream died must not linger: exit, be restarted, resume
                log.exception("%s: stream failed; stopping the worker", self.name)
                await self.app.crash(exc)
                raise

        self.app.agent(source, name=f"{self.name}.run")(run)
        self.app.task(self._serve_metrics)  # faust's Worker owns on_startup_finished

    async def _serve_metrics(self) -> None:
        """Serve /metrics once the worker runs, and say where (``metrics.json``)."""
        metrics.INBOX_LAG.labels(self.name).set_function(self.inbox_lag)
        url = metrics.serve(metrics.port_of(self.settings, self.name, self.worker))
        metrics.announce(Path(self.app.conf.datadir), url)
        log.info("%s serves metrics on %s", self.name, url)

    def inbox_lag(self) -> float:
        """Kafka's lag on the inbox partitions this worker owns, for a scrape (from the HTTP
        server's thread: copies, never iterates faust's live structures)."""
        inbox = self.topics.inbox(self.name)
        consumer = self.app.consumer
        lag = 0
        try:
            committed = dict(consumer._committed_offset)
            for tp in list(consumer.assignment()):
                if tp.topic == inbox and committed.get(tp) is not None:
                    lag += max(0, consumer.highwater(tp) - committed[tp])
        except (RuntimeError, AttributeError, KeyError, TypeError):  # mid-rebalance: no figure
            return float("nan")
        return lag

    async def capacity(self) -> None:
        """Return once this worker can take on another event (always, unless overridden)."""

    async def dispatch(self, event: EventT) -> None:
        """Decode and handle one event (bad input goes to dead letters). Its table writes are
        with the broker by the time its transaction commits (fix 7 in ``streams/eos.py``)."""
        msg = event.message
        kind = self.kinds[msg.topic]
        try:
            record_type, body = self.codec.decode(kind, msg.value)
            if msg.timestamp:
                metrics.HANDOFF.labels(self.name, record_type).observe(max(0.0, time.time() - msg.timestamp))
        except CodecError as exc:
            if exc.retriable:  # the schema registry did not answer: the event may be fine
                raise
            await self.reject(event, "undecodable", f"undecodable {kind} event: {exc}")
            return
        problem = self.envelope_problem(record_type, body, msg.key)
        if problem:
            await self.reject(event, record_type, f"{record_type} refused by {self.name}: {problem}")
            return
        try:
            await self.handle(record_type, body, event)
            metrics.EVENTS.labels(self.name, record_type, "ok").inc()
        except AgonError as exc:
            if exc.retriable:
                raise
            await self.reject(event, record_type, f"{record_type} rejected by {self.name}: {exc}")
        except (KafkaError, ProducerSendError) as exc:
            cause = input_error(exc)
            if cause is None:
                raise  # the infrastructure failed, not the event: crash, restart, redo
            await self.reject(
                event,
                record_type,
                f"{record_type} cannot be handled: Kafka refused what it asks for: {cause}",
            )
        except Exception as exc:  # a bug for this one event: park it, keep serving the rest
            log.exception("debate=%s %s handler failed", body.get("debate_id"), record_type)
            await self.reject(
                event,
                record_type,
                f"{record_type} handler failed in {self.name}: {type(exc).__name__}: {exc}",
            )

    def envelope_problem(self, record_type: str, body: dict[str, Any], key: bytes | None) -> str | None:
        """What is wrong with an event's debate id or key, whatever its type; None if nothing.

        Every event but a ``Resume`` marker names a debate whose id could name a topic; a keyed
        event's key is its debate id (an unkeyed request is fine: the id is in the value)."""
        debate_id = body.get("debate_id")
        if record_type != "Resume":
            problem = self.topics.debate_id_problem(debate_id)
            if problem:
                return problem
        if key is not None and key != str(debate_id).encode():
            return f"its key {key[:60]!r} is not its debate id {str(debate_id)[:60]!r}"
        return None

    async def handle(self, record_type: str, body: dict[str, Any], event: EventT) -> None:
        """Handle one decoded event, within the transaction of its input partition."""
        raise NotImplementedError

    async def _record_assignment(self, app: Any, assigned: set, **kwargs: Any) -> None:
        """Keep the inbox partitions this worker owns in ``<datadir>/assignment.json``, for
        operators and the chaos harness (which debates did a killed worker hold?)."""
        inbox = self.topics.inbox(self.name)
        owned = sorted(tp.partition for tp in assigned if tp.topic == inbox)
        write_atomically(
            Path(self.app.conf.datadir) / "assignment.json",
            json.dumps({"pid": os.getpid(), "topic": inbox, "partitions": owned, "at": time.time()}),
        )
        log.info("%s owns inbox partitions %s", self.name, owned)

    # -- output ----------------------------------------------------------------------
    async def send(
        self,
        topic: str,
        kind: str,
        record_type: str,
        body: dict[str, Any],
        *,
        wait: bool = False,
        partition: int | None = None,
    ) -> None:
        """Encode and produce an event keyed by its debate id; ``wait`` for the broker's ack.

        Within a handler the event joins the input partition's transaction; from a
        timer or a background task it goes out at once, outside any transaction.
        """
        value = self.codec.encode(kind, record_type, body)
        fut = await self.topic(topic).send(key=body["debate_id"].encode(), value=value, partition=partition)
        if wait:
            await fut

    async def send_now(
        self, topic: str, kind: str, record_type: str, body: dict[str, Any], *, partition: int | None = None
    ) -> None:
        """Produce outside any transaction, even from within a handler's context, and wait
        for the broker's ack: for what must be durable before the transaction commits."""
        value = self.codec.encode(kind, record_type, body)
        await self.app.send_untransacted(topic, body["debate_id"].encode(), value, partition)

    async def reject(self, event: EventT, record_type: str, reason: str) -> None:
        await self.dead_letter(event, reason)
        metrics.EVENTS.labels(self.name, record_type, "dead_letter").inc()

    async def dead_letter(self, event: EventT, reason: str) -> None:
        """Park ``event`` in the dead-letter topic with its reason and source coordinates, in
        the transaction of its input partition (so its offset advances with it)."""
        msg = event.message
        log.warning("dead letter from %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, reason)
        metrics.DEAD_LETTERS.labels(self.name).inc()
        headers = [
            ("reason", reason[:MAX_REASON].encode(errors="replace")),
            ("source.topic", msg.topic.encode()),
            ("source.partition", str(msg.partition).encode()),
            ("source.offset", str(msg.offset).encode()),
            ("agent", self.name.encode()),
        ]
        key, value = msg.key, msg.value
        if key is not None and len(key) > MAX_DEAD_KEY:
            headers.append(("key.truncated.from", str(len(key)).encode()))
            key = key[:MAX_DEAD_KEY]
        if value is not None and len(value) > MAX_DEAD_VALUE:
            # the whole record stays at its source coordinates until that topic's retention
            headers.append(("value.truncated.from", str(len(value)).encode()))
            value = value[:MAX_DEAD_VALUE]
        fut = await self.topic(self.topics.dead_letters).send(key=key, value=value, headers=headers)
        await fut
