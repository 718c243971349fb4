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
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from faust.types import EventT

from agon.errors import AgonError, CodecError
from agon.files import write_atomically
from agon.schemas import Codec, Topics
from agon.settings import AgentSpec, Settings
from agon.streams import metrics

log = logging.getLogger(__name__)

RAW = {"key_serializer": "raw", "value_serializer": "raw"}


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
    def table(self, name: str) -> faust.Table:
        return self.app.Table(
            name, default=None, partitions=self.settings.kafka.partitions, options={"driver": "rocksdict"}
        )

    def topic(self, name: str) -> faust.TopicT:
        topic = self._topic_cache.get(name)
        if topic is None:
            topic = self._topic_cache[name] = self.app.topic(name, **RAW)
        return topic

    def install(self) -> None:
        """Register the faust agent that feeds every source topic to ``handle``."""
        source = self.app.topic(*self.kinds, partitions=self.settings.kafka.partitions, **RAW)

        async def run(stream: faust.StreamT) -> None:
            try:
                async for event in stream.noack().events():
                    # a commit never falls inside an event: its effects share one transaction
                    async with self.app.processing:
                        # a handler is quick (no LLM call happens in one); one that hangs
                        # (a send that never completes) would stall its partitions for good
                        await asyncio.wait_for(self.dispatch(event), self.settings.worker.commit_timeout_s)
                        event.ack()
            except Exception as exc:
                # a worker whose stream died must not linger: exit, be restarted, resume
                log.exception("%s: stream failed; stopping the worker", self.name)
                await self.app.crash(exc)
                raise

        self.app.agent(source, name=f"{self.name}.run")(run)
        if self.settings.worker.metrics_port:
            metrics.serve(metrics.port_of(self.settings, self.name, self.worker))

    async def dispatch(self, event: EventT) -> None:
        """Decode and handle one event (bad input goes to dead letters), then wait until its
        table writes are with the broker, inside its transaction."""
        await self._dispatch(event)
        await self.app.flush_changelog()

    async def _dispatch(self, event: EventT) -> None:
        msg = event.message
        kind = self.kinds[msg.topic]
        try:
            record_type, body = self.codec.decode(kind, msg.value)
        except CodecError as exc:
            await self.dead_letter(event, f"undecodable {kind} event: {exc}")
            metrics.EVENTS.labels(self.name, "undecodable", "dead_letter").inc()
            return
        try:
            await self.handle(record_type, body, event)
            metrics.EVENTS.labels(self.name, record_type, "ok").inc()
        except AgonError as exc:
            if exc.retriable:
                raise
            await self.dead_letter(event, f"{record_type} rejected by {self.name}: {exc}")
            metrics.EVENTS.labels(self.name, record_type, "dead_letter").inc()
        except (KafkaError, ProducerSendError):
            raise  # the infrastructure failed, not the event: crash, restart, redo
        except Exception as exc:  # a bug for this one event: park it, keep serving the rest
            log.exception("debate=%s %s handler failed", body.get("debate_id"), record_type)
            await self.dead_letter(
                event, f"{record_type} handler failed in {self.name}: {type(exc).__name__}: {exc}"
            )
            metrics.EVENTS.labels(self.name, record_type, "dead_letter").inc()

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

    async def dead_letter(self, event: EventT, reason: str) -> None:
        msg = event.message
        log.warning("dead letter from %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, reason)
        metrics.DEAD_LETTERS.labels(self.name).inc()
        headers = [
            ("reason", reason.encode()),
            ("source.topic", msg.topic.encode()),
            ("source.partition", str(msg.partition).encode()),
            ("source.offset", str(msg.offset).encode()),
            ("agent", self.name.encode()),
        ]
        fut = await self.topic(self.topics.dead_letters).send(key=msg.key, value=msg.value, headers=headers)
        await fut
