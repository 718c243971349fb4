"""Counting what a read_committed consumer of a group would still receive: the data records
from its committed offset up to the last stable offset, transaction markers and aborted
records left out (they occupy offsets, so offsets alone cannot tell). Used by
:mod:`agon.streams.lag` for its PENDING column, which the autoscaler scales on."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from agon.errors import BrokerError
from agon.settings import Settings

__all__ = ["Key", "PendingCounter"]

Key = tuple[str, int]  # (topic, partition)

log = logging.getLogger("agon.streams.lag")


class PendingCounter:
    """One read_committed consumer, reused across counts; it only assigns, never joins or
    commits its group. Not thread-safe."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: librdkafka wants a group id; this consumer never joins or commits it
        self.group_id = f"{settings.namespace}-lag-reader-{uuid.uuid4().hex[:8]}"
        self._consumer: Consumer | None = None

    def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            consumer.close()

    def count(
        self, todo: dict[tuple[str, Key], tuple[int | None, int]], limit: int, deadline: float
    ) -> dict[tuple[str, Key], tuple[int, bool]]:
        """(pending, capped) per (group, partition): data records from the committed offset (the
        beginning when none: agon's workers reset to earliest) up to the last stable offset.

        Several groups may start at different offsets on one partition: each (group, partition)
        is read on its own pass, the partitions of one pass together.
        """
        done: dict[tuple[str, Key], tuple[int, bool]] = {}
        passes: list[dict[Key, tuple[str, int | None, int]]] = []
        for (group, key), (start, end) in todo.items():
            if end <= 0 or (start is not None and start >= end):
                done[(group, key)] = (0, False)  # nothing a read_committed reader could get
                continue
            for batch in passes:
                if key not in batch:
                    batch[key] = (group, start, end)
                    break
            else:
                passes.append({key: (group, start, end)})
        for batch in passes:
            for key, (count, capped) in self._pass(batch, limit, deadline).items():
                done[(batch[key][0], key)] = (count, capped)
        return done

    def _pass(
        self, batch: dict[Key, tuple[str, int | None, int]], limit: int, deadline: float
    ) -> dict[Key, tuple[int, bool]]:
        consumer = self._reader()
        counts = dict.fromkeys(batch, 0)
        open_ = set(batch)  # not at the last stable offset yet
        capped: set[Key] = set()
        consumer.incremental_assign(
            [
                TopicPartition(t, p, OFFSET_BEGINNING if start is None else start)
                for (t, p), (_, start, _) in batch.items()
            ]
        )
        try:
            while open_ and time.monotonic() < deadline:
                for msg in _next_messages(consumer, deadline):
                    error = msg.error()
                    if error is not None and error.fatal():
                        raise BrokerError(f"the lag reader's consumer failed: {error.str()}")
                    key = (msg.topic(), msg.partition())
                    if key not in open_:
                        # a partition counted already, or the client's own news (a dropped
                        # connection it restores): the deadline bounds the wait
                        continue
                    end = batch[key][2]
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            if msg.offset() >= end:  # at the last stable offset the admin read, or past it
                                open_.discard(key)
                        elif not error.retriable():
                            raise BrokerError(
                                f"cannot count pending records on {key[0]}[{key[1]}]: {error.str()}"
                            )
                        continue
                    if msg.offset() < end:
                        counts[key] += 1
                    if msg.offset() >= end - 1:
                        open_.discard(key)
                    elif counts[key] >= limit:
                        open_.discard(key)
                        capped.add(key)
        finally:
            assigned = consumer.assignment()
            if assigned:
                consumer.incremental_unassign(assigned)
        return {key: (counts[key], key in open_ or key in capped) for key in batch}

    def _reader(self) -> Consumer:
        """A read_committed consumer of a throwaway group it never commits (it only assigns)."""
        if self._consumer is None:
            self._consumer = Consumer(
                self.settings.kafka.client_config(
                    logger=log,
                    **{
                        "group.id": self.group_id,
                        "isolation.level": "read_committed",
                        "enable.partition.eof": True,
                        "enable.auto.commit": False,
                        "enable.auto.offset.store": False,
                        "auto.offset.reset": "earliest",  # what agon's workers do with no offset
                        "fetch.wait.max.ms": 10,  # the partition EOF comes with an empty fetch
                    },
                )
            )
        return self._consumer


def _next_messages(consumer: Consumer, deadline: float) -> list[Any]:
    """The messages ready now, waiting (until the deadline) only for the first one: ``consume``
    alone waits out its whole timeout unless its batch fills."""
    first = consumer.poll(min(0.1, max(deadline - time.monotonic(), 0.0)))
    return [] if first is None else [first, *consumer.consume(500, timeout=0)]
