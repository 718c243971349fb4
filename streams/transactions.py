"""The transactions of :mod:`agon.streams.eos`: faust's TransactionManager routed by input
partition (fixes 1–3), sends that refuse a missing topic at once (fix 6), and a table whose
changelog writes a commit awaits (fix 7). The fixes are described in ``streams/eos.py``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any

import faust
from aiokafka.errors import ProducerFenced
from faust.streams import current_event
from faust.transport.consumer import TransactionManager
from faust.types import TP
from faust.types.tuples import RecordMetadata

from agon.errors import MissingTopic
from agon.streams import metrics
from agon.streams.latency import commit_transactions, group_by_transaction

__all__ = ["AgonTable", "RoutedTransactionManager", "track"]

MISSING_TOPIC_CHECKS = 5  # a topic created a moment ago can take a refresh or two to show


async def track(producer: Any, topic: str) -> None:
    """Fix 6: make ``producer`` (an AIOKafkaProducer) keep ``topic`` in its metadata.

    Raises :class:`MissingTopic` when the topic does not exist, rather than let a send
    wait for it until it times out (an event naming a deleted or forged debate)."""
    client = producer.client
    if topic in client._topics:
        return
    await client.add_topic(topic)  # refreshes the metadata
    for _ in range(MISSING_TOPIC_CHECKS):
        if client.cluster.partitions_for_topic(topic) is not None:
            return
        await asyncio.sleep(0.1)
        await client.force_metadata_update()
    client._topics.discard(topic)
    raise MissingTopic(f"topic {topic} does not exist")


class AgonTable(faust.Table):
    """A table whose changelog writes can be awaited (fix 7)."""

    #: rows also expire from the changelog after this long (None: only compaction)
    retention_s: float | None = None

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        fut = super().send_changelog(*args, **kwargs)
        self.app.unsent_changelog.append(fut)
        return fut


class RoutedTransactionManager(TransactionManager):
    """faust's TransactionManager with fixes 1–3 and 6 (``streams/eos.py``)."""

    def _transactional_id(self, topic: str, partition: int) -> str:
        group = self.app.assignor.group_for_topic(topic)
        return f"{self.app.conf.id}-{group}-{partition}"

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> Awaitable[RecordMetadata]:
        tid = None
        if partition is not None and topic in self.app.changelog_topics():  # a table write
            tid = self._transactional_id(topic, partition)
        else:
            event = current_event()
            if event is not None:
                tid = self._transactional_id(event.message.topic, event.message.partition)
        aio = self.producer._transaction_producers.get(tid) if tid else self.producer._producer
        if aio is not None:
            await track(aio, topic)
        return await self.producer.send(
            topic, key, value, partition, timestamp, headers, transactional_id=tid
        )

    async def _stop_transactions(self, tids: Iterable[str]) -> None:
        """On revocation faust drops a partition's producer with its transaction open; its
        successor's fencing aborts it (counted as aborted here)."""
        tids = list(tids)
        open_ = sum(1 for tid in tids if tid in self.producer._transaction_producers)
        metrics.TRANSACTIONS.labels(self.app.agent_name, "aborted").inc(open_)
        await super()._stop_transactions(tids)

    async def commit(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        async with self.app.processing:
            try:
                return await asyncio.wait_for(
                    self._commit(offsets, start_new_transaction), self.app.commit_timeout_s
                )
            except asyncio.TimeoutError as exc:
                metrics.TRANSACTIONS.labels(self.app.agent_name, "aborted").inc()
                # a transaction that cannot commit blocks its partition for good: die, and let
                # the supervisor's restart fence it (its writes are aborted, then redone)
                self.log.error(
                    "commit of %s did not finish in %.0f s; stopping the worker",
                    sorted(offsets),
                    self.app.commit_timeout_s,
                )
                await self.app.crash(exc)
                return False

    async def _commit(self, offsets: Mapping[TP, int], start_new_transaction: bool) -> bool:
        await self.app.producer.buffer.flush()
        await self.app.flush_changelog()
        by_tid = group_by_transaction(offsets, self._transactional_id)
        assigned, extra = self.app.consumer.assignment(), {}
        for tp in self.app.take_dirty():  # outputs made outside any event: commit them too
            if tp in assigned and tp not in offsets:
                group = by_tid.setdefault(self._transactional_id(tp.topic, tp.partition), {})
                new = self.app.consumer._new_offset(tp)  # with the events acked meanwhile
                if new is not None:
                    group[tp] = extra[tp] = new
        if not by_tid:
            return True
        agent = self.app.agent_name
        started = time.monotonic()
        try:
            await commit_transactions(self.producer, by_tid, self.app.conf.id, start_new_transaction)
        except ProducerFenced as exc:  # a successor owns our partitions: this worker is a zombie
            self.log.warning("fenced while committing: %r", exc)
            metrics.TRANSACTIONS.labels(agent, "aborted").inc(len(by_tid))
            await self.app.crash(exc)
            return False
        metrics.COMMIT_LATENCY.labels(agent).observe(time.monotonic() - started)
        metrics.TRANSACTIONS.labels(agent, "committed").inc(len(by_tid))
        self.app.consumer._committed_offset.update(extra)  # faust's own commits do this
        self.app.note_committed({**offsets, **extra})
        self.app.forget_committed_topics()
        return True
