"""The hot path of a turn: what keeps a hand-off in milliseconds rather than commit intervals.

A turn crosses three transactional hops (moderator: TurnRequested; debater: the request, then
its draft as TurnTaken), and a read_committed reader sees a hop's output only once its
transaction commits. What faust-streaming and aiokafka do by default, and what agon does:

1. **Commit when idle.** faust commits on a timer (``AGON_WORKER_COMMIT_INTERVAL_S``), so an
   output waited half an interval on average before anyone could read it, at every hop. A
   worker now commits as soon as its input queue is empty after an event, and under load
   every ``commit_max_events`` events or ``commit_max_delay_s`` seconds, whichever comes
   first (:class:`CommitPolicy`); faust's timer stays as a backstop.
2. **Every commit commits.** faust works out the offset to commit from the offsets acked and
   the gaps it saw between delivered offsets (a transaction marker takes an offset). Its gap
   intervals include the offset of the message that revealed them, and one is removed only
   when a later commit overlaps it, so after a first commit on a partition every other
   commit found "nothing to commit" and waited for the timer's. An agent handles its events
   one at a time, in partition order, and acks each before the next (``Agent.install``), so
   every offset below the highest acked one is acked or was never delivered:
   :meth:`LatencyConsumer._new_offset` commits that offset + 1.
3. **Partitions commit concurrently.** faust commits the transaction of each input
   partition one after another (three round trips each); :func:`commit_transactions` does
   them side by side.
4. **Short fetch waits.** faust hard-codes ``fetch_max_wait_ms=1500``, and aiokafka keeps one
   fetch in flight per broker, leaving out the partitions whose records it holds: a partition
   drained a moment after a fetch went out waits for that fetch to return, up to 1.5 s.
   :class:`ShortFetchConsumerThread` sets the wait from ``AGON_WORKER_FETCH_WAIT_S``.
   **Its default stays faust's 1.5 s.** At 20 ms the chaos test found workers that, right
   after a restart or a rebalance, were never handed the first record at their committed
   offset (a request never started in 1 run of 6; a turn finished only by the moderator's
   30 s retry in about half the runs), against 0 in 3 runs at 1.5 s and 3 on the code before
   these changes. Why is not understood. A one-debate hand-off measured p50 41 ms, p99 141 ms
   at 1.5 s against 32 / 93 ms at 20 ms, so little of the gain is lost.
5. **No retry sleeps on the hot path.** A transaction begun right after a commit meets
   CONCURRENT_TRANSACTIONS while the coordinator writes the previous markers; aiokafka then
   sleeps 20 ms (AddPartitionsToTxn) or its ``retry_backoff_ms``, 100 ms (AddOffsetsToTxn).
   :func:`shorten_txn_retries` makes both :data:`TXN_RETRY_S`.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import aiokafka.producer.sender as sender
from aiokafka.errors import ConcurrentTransactions, for_code
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as FaustConsumer
from faust.types import TP

__all__ = [
    "CommitPolicy",
    "LatencyConsumer",
    "ShortFetchConsumerThread",
    "commit_transactions",
    "group_by_transaction",
    "shorten_txn_retries",
]

#: the wait before a transactional request refused with CONCURRENT_TRANSACTIONS is retried
TXN_RETRY_S = 0.002


class CommitPolicy:
    """When a worker commits: at once when idle, else after a bounded batch (fix 1)."""

    def __init__(self, max_events: int, max_delay_s: float) -> None:
        self.max_events = max_events
        self.max_delay_s = max_delay_s
        self.pending = 0
        self.since: float | None = None

    def due(self, idle: bool) -> bool:
        """Note one more handled event; True when the batch should commit now."""
        now = time.monotonic()
        self.pending += 1
        if self.since is None:
            self.since = now
        if idle or self.pending >= self.max_events or now - self.since >= self.max_delay_s:
            self.pending, self.since = 0, None
            return True
        return False


async def commit_transactions(
    producer: Any, by_tid: Mapping[str, Mapping[TP, int]], group_id: str, start_new: bool = True
) -> None:
    """faust's ``Producer.commit_transactions`` with the transactions side by side (fix 3)."""

    async def commit(tid: str, offsets: Mapping[TP, int]) -> None:
        async with producer._trn_locks[tid]:
            txn = producer._transaction_producers.get(tid)
            if txn is None:
                return  # the partition was revoked meanwhile: its events will be processed again
            if offsets:  # none: outputs made outside any event (AgonApp.in_partition_transaction)
                await txn.send_offsets_to_transaction(offsets, group_id)
            await txn.commit_transaction()
            if start_new:
                await txn.begin_transaction()

    await asyncio.gather(*(commit(tid, offsets) for tid, offsets in by_tid.items()))


def group_by_transaction(offsets: Mapping[TP, int], tid_of: Any) -> dict[str, dict[TP, int]]:
    by_tid: dict[str, dict[TP, int]] = defaultdict(dict)
    for tp, offset in offsets.items():
        by_tid[tid_of(tp.topic, tp.partition)][tp] = offset
    return by_tid


class ShortFetchConsumerThread(AIOKafkaConsumerThread):
    """faust's consumer thread with the fetch wait from settings (fix 4)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = int(self.app.fetch_wait_s * 1000)
        return consumer


class LatencyConsumer(FaustConsumer):
    """faust's consumer with exact committable offsets (fix 2); :class:`agon.streams.eos.
    AgonConsumer` runs it on a :class:`ShortFetchConsumerThread` (fix 4)."""

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if not acked:
            return None
        top = max(acked)
        acked.clear()
        self._acked_index[tp].clear()
        self._gap[tp].clear()
        return top + 1


class _AddOffsetsToTxnHandler(sender.AddOffsetsToTxnHandler):
    def handle_response(self, resp: Any) -> float | None:
        backoff = super().handle_response(resp)
        if backoff is not None and for_code(resp.error_code) is ConcurrentTransactions:
            return TXN_RETRY_S
        return backoff


def shorten_txn_retries() -> None:
    """Fix 5: retry CONCURRENT_TRANSACTIONS after :data:`TXN_RETRY_S` (process-wide)."""
    sender.BACKOFF_OVERRIDE = TXN_RETRY_S
    sender.AddOffsetsToTxnHandler = _AddOffsetsToTxnHandler
