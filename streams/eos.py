"""Exactly-once processing on faust-streaming: what its own mode gets wrong, and the fixes.

faust's ``processing_guarantee="exactly_once"`` keeps one transactional
producer per input partition (``{app id}-{topic group}-{partition}``) and
commits each partition's offsets inside its transaction. The numbered list
below is every way that contract broke for agon, each with its fix, made
through faust's extension points (a TransactionManager subclass installed by
:class:`AgonApp`, a Table subclass) or, where faust has none, named here:

1. **Outputs picked the wrong transaction.** faust chooses the transaction
   from the *destination* topic and partition (``TransactionManager.send``),
   so a message to a topic the app does not consume (a debate's topic, another
   agent's inbox) either raised ``KeyError`` in ``group_for_topic`` or, when
   the partition was unknown, went out with no transaction at all. Here an
   output joins the transaction of the *input* partition being processed
   (faust's ``current_event()``); changelog writes (to a table's changelog topic,
   by name: an explicit partition alone does not make one) keep faust's rule,
   which is right for them (co-partitioned with the input).
   A send with no current event (timers, background LLM calls) goes out
   outside any transaction, on purpose.
2. **Table writes could miss their transaction** (faust-streaming #177:
   ``send_soon`` outside the transaction). Table changelog writes wait in
   faust's producer buffer; the exactly-once commit did not flush that buffer
   (the at-least-once path does), so a write could land in the *next*
   transaction, after the offsets it belongs with. :meth:`commit` flushes it.
3. **A commit could split one event's effects** (a cause of faust-streaming
   #517, duplicates after a kill). The commit timer runs beside the stream, so
   it could commit an event's first output before the event's table write and
   offset. Handlers and commits here share one lock (:attr:`AgonApp.
   processing`): a transaction holds whole events only.
4. **Every takeover waited 10 s in table recovery.** Under exactly-once a
   changelog partition ends with a transaction marker, which a consumer never
   sees as a message, so faust's recovery never reaches the high watermark by
   reading; it notices (``detect_aborted_tx``) only after two idle polls of a
   fixed 5 s each, and then ends recovery whatever is still on its way to the
   table. :func:`shorten_recovery_polls` polls every 0.25 s once only final
   commit markers are left, and every 2 s otherwise (see
   :class:`_RecoveryAsyncio`), in the one ``asyncio.wait_for`` in
   ``faust.tables.recovery`` with that timeout.
5. **A commit that never returns.** Seen once under test: a worker's first
   transaction never committed and nothing was logged; its partitions stalled
   until the debates timed out. A commit now has a deadline
   (``AGON_WORKER_COMMIT_TIMEOUT_S``, 15 s); past it the worker crashes, its
   supervisor restarts it, and the restart fences and aborts the stuck
   transaction, whose inputs are then processed again.

6. **A producer forgot the topics it was writing to** (aiokafka 0.14). A
   fresh producer's metadata covers every topic; its first send to a topic it
   does not know yet (a new debate's topic) makes it track that topic alone,
   and the next metadata refresh drops the others: a changelog batch already
   queued loses its leader and the sender retries for good, so the handler
   hung. :func:`track` registers every topic before the first send to it.
7. **A table write could still trail its commit.** The buffer flush of fix 2
   does not cover a changelog write that faust's buffer task had already
   taken from the queue; it could land after the commit of the offsets it
   belongs to. :class:`AgonTable` remembers each write's future, and a commit
   awaits them all (:meth:`AgonApp.flush_changelog`) before it sends its offsets:
   one wait per transaction rather than a round trip per event.
8. **Local state under exactly-once.** RocksDB keeps a write as soon as it is
   made, but its transaction may abort (a kill): a worker restarted on the
   same data directory would serve writes that never happened. Like Kafka
   Streams after an unclean stop, a worker discards its local tables at start
   and restores them from the changelogs (:func:`discard_local_tables`).
9. **A crash that cannot stop.** A crashed worker's graceful stop flushes its
   producer, which can hang on the very fault that crashed it; past
   ``HARD_EXIT_S`` the process exits, so that its supervisor restarts it.
10. **A rebalance crashed a worker that kept its tables** (robinhood/faust
   #658). Under exactly-once, faust's recovery takes a changelog partition's
   high watermark from the consumer's cached last stable offset, which a fresh
   assignment does not have until a fetch returns (None, read as -1); a worker
   whose table already holds that partition then fails its consistency check
   ("persisted offset 12 > highwater -1") and crashes, with calls in flight.
   :class:`RecoveringConsumerThread` asks the broker (ListOffsets,
   read_committed: the last stable offset) for every partition whose cached
   value is missing.
11. **A stopped static member held its partitions for a session timeout.**
   aiokafka sends no LeaveGroup for a member with a ``group_instance_id``
   (static membership, so that a killed worker restarted in time keeps its
   partitions). A worker that stops gracefully (SIGTERM: a scale-in, `agon
   down`) goes for good, though, and its partitions waited 6 s (the session
   timeout) before anyone took them, long enough for their lag to make the
   autoscaler scale out again. :class:`RecoveringConsumerThread` leaves the
   group after its last commit (LeaveGroup by member id, which Kafka 4.3
   accepts for a static member: measured 0.3 s instead of 10.4 s). A kill -9
   still leaves nothing, and keeps static membership's quick restart.
12. **A draft waited behind the backlog it was part of.** A debater keeps a
   model's answer in its own inbox (``TurnDrafted``) and used to publish it
   only when its stream read that record back: behind every request queued in
   the partition, once the debater stopped taking requests while its model
   slots were busy. It now publishes the kept draft at once, from the call's
   task, in the transaction of the request's input partition, as a handler
   would (:meth:`AgonApp.in_partition_transaction`: faust's current event set
   to that request, under the processing lock), and commits that transaction
   (:meth:`AgonApp.commit_dirty`; a partition with no new offset commits its
   outputs alone). The record read back later finds the turn taken; after a
   crash it is what the next owner publishes.

Fixes 4, 8, 10 and 11 (taking partitions over) live in :mod:`agon.streams.takeover`, the
hot path's in :mod:`agon.streams.latency`, the rest here.

Not biting here, and why: #440 (KeyError at start with no tables) — every
agent has a table; #136 and the 60 s producer ``transaction_timeout_ms`` — no
transaction spans an LLM call (a debater acks its request at once and calls
the model outside the stream), so a transaction lives at most one commit
interval (0.2 s; usually milliseconds, see ``streams/latency.py``); #323
(ProducerFenced on rebalance) — a fenced zombie crashes and its supervisor
restarts it; turn ids make every handler idempotent, so what it
redoes changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import faust
from faust import streams as faust_streams
from faust.types import TP, TransportT

from agon.streams.latency import (
    CommitPolicy,
    shorten_txn_retries,
)
from agon.streams.takeover import AgonConsumer, shorten_recovery_polls
from agon.streams.transactions import AgonTable, RoutedTransactionManager, track

__all__ = ["AgonApp", "AgonConsumer", "AgonTable"]

HARD_EXIT_S = 10.0


class AgonApp(faust.App):
    """A faust App whose transport uses :class:`RoutedTransactionManager`."""

    def __init__(
        self,
        *args: Any,
        commit_timeout_s: float = 15.0,
        commit_max_events: int = 500,
        commit_max_delay_s: float = 0.05,
        fetch_wait_s: float = 1.5,
        agent_name: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.agent_name = agent_name or self.conf.id  # the label of its metrics
        self.commit_timeout_s = commit_timeout_s
        self.commit_policy = CommitPolicy(commit_max_events, commit_max_delay_s)
        self.fetch_wait_s = fetch_wait_s
        shorten_txn_retries()
        self.unsent_changelog: list[asyncio.Future] = []
        self._forget_after_commit: set[str] = set()
        self._changelogs: set[str] = set()
        #: per input partition, the next offset after what this worker has committed
        self.committed: dict[TP, int] = {}
        self._commits = asyncio.Condition()
        shorten_recovery_polls(self)
        #: held by a handler for a whole event, and by every commit
        self.processing = asyncio.Lock()
        self._dirty: set[TP] = set()
        self._committing_dirty = False

    @contextlib.contextmanager
    def in_partition_transaction(self, event: Any) -> Iterator[None]:
        """Outside the stream (a background task), act as if handling ``event`` again: sends
        and table writes join the transaction of its input partition, as the stream's do
        (fix 12). Hold :attr:`processing` around it, and :meth:`commit_dirty` after."""
        token = faust_streams._current_event.set(weakref.ref(event))
        try:
            yield
        finally:
            faust_streams._current_event.reset(token)
            self._dirty.add(event.message.tp)

    def take_dirty(self) -> set[TP]:
        dirty, self._dirty = self._dirty, set()
        return dirty

    async def commit_dirty(self) -> None:
        """Commit the transactions that :meth:`in_partition_transaction` wrote to: one commit
        at a time, each taking every partition written to by then."""
        if self._committing_dirty:
            return  # the running one goes round again for what is written meanwhile
        self._committing_dirty = True
        try:
            while self._dirty and self.in_transaction:
                await asyncio.sleep(0)  # what finishes at the same moment joins this commit
                await self.consumer.transactions.commit({}, start_new_transaction=True)
        finally:
            self._committing_dirty = False

    async def after_event(self, idle: bool) -> None:
        """An event is handled and acked: commit now if the policy says so (exactly-once only;
        ``idle``: no other event is waiting)."""
        if self.in_transaction and self.commit_policy.due(idle):
            while await self.consumer.maybe_wait_for_commit_to_finish():
                pass  # the timer's commit did not include this event
            await self.consumer.commit()

    def note_committed(self, offsets: Mapping[TP, int]) -> None:
        self.committed.update(offsets)
        asyncio.ensure_future(self._notify_commits())

    async def _notify_commits(self) -> None:
        async with self._commits:
            self._commits.notify_all()

    async def committed_past(self, tp: TP, offset: int, timeout_s: float) -> bool:
        """Wait until this worker has committed ``offset`` of ``tp`` (its transaction is
        visible); False after ``timeout_s``, or once ``tp`` is no longer assigned here."""

        if not self.in_transaction:  # at-least-once: nothing to wait for
            return True

        def done() -> bool:
            return self.committed.get(tp, -1) > offset or tp not in self.consumer.assignment()

        try:
            async with self._commits:
                await asyncio.wait_for(self._commits.wait_for(done), timeout_s)
        except asyncio.TimeoutError:
            return False
        return self.committed.get(tp, -1) > offset

    def changelog_topics(self) -> set[str]:
        """The changelog topics of this app's tables (known once the tables are declared)."""
        if len(self._changelogs) != len(self.tables):
            self._changelogs = {t.changelog_topic.get_topic_name() for t in self.tables.values()}
        return self._changelogs

    async def flush_changelog(self) -> None:
        """Wait until every table write made so far is with the broker (fix 7)."""
        pending, self.unsent_changelog = self.unsent_changelog, []
        if pending:
            await asyncio.gather(*pending)

    def forget_topic(self, topic: str) -> None:
        """Stop tracking ``topic`` in every producer's metadata (its debate ended): producers
        must not track ever more topics. Under exactly-once this waits for the next commit,
        when every send to it has been acknowledged: a batch still queued for a topic its
        producer no longer tracks would lose its leader and be retried for good (fix 6)."""
        if self.in_transaction:
            self._forget_after_commit.add(topic)
        else:
            self._untrack(topic)

    def forget_committed_topics(self) -> None:
        topics, self._forget_after_commit = self._forget_after_commit, set()
        for topic in topics:
            self._untrack(topic)

    def _untrack(self, topic: str) -> None:
        producers = [self.producer._producer, *self.producer._transaction_producers.values()]
        for producer in producers:
            if producer is not None:
                producer.client._topics.discard(topic)

    async def send_untransacted(
        self, topic: str, key: bytes, value: bytes, partition: int | None = None
    ) -> None:
        """Produce outside any transaction and wait for the broker's ack."""
        await self.producer.maybe_start()
        await track(self.producer._producer, topic)
        fut = await self.producer.send(topic, key, value, partition, None, None)
        await fut

    async def crash(self, reason: BaseException) -> None:
        """Fix 9: crash, and exit for sure if the graceful stop does not finish."""
        timer = threading.Timer(HARD_EXIT_S, os._exit, args=(70,))
        timer.daemon = True
        timer.start()
        await super().crash(reason)

    def _new_transport(self) -> TransportT:
        transport = super()._new_transport()
        transport.TransactionManager = RoutedTransactionManager
        transport.Consumer = AgonConsumer
        return transport
