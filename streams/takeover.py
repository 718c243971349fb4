"""Taking partitions over under exactly-once: fixes 4, 8, 10 and 11 of the list in
:mod:`agon.streams.eos` (table recovery's polls and high watermarks, local tables
discarded at start, a stopping static member leaving its group)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import faust
from aiokafka.protocol.group import LeaveGroupRequest
from faust.types import TP

from agon.streams.latency import LatencyConsumer, ShortFetchConsumerThread

__all__ = ["AgonConsumer", "RecoveringConsumerThread", "discard_local_tables", "shorten_recovery_polls"]


class RecoveringConsumerThread(ShortFetchConsumerThread):
    """faust's consumer thread, with the last stable offsets recovery needs (fix 10), and a
    static member that leaves its group when it stops (fix 11)."""

    async def on_thread_stop(self) -> None:
        coordinator = getattr(self._consumer, "_coordinator", None)
        if coordinator is not None and coordinator._group_instance_id and coordinator.generation > 0:
            try:  # after faust's last commit (the consumer's on_stop), before aiokafka's stop
                await coordinator._send_req(LeaveGroupRequest(coordinator.group_id, coordinator.member_id))
                self.log.info("left group %s as %s", coordinator.group_id, coordinator._group_instance_id)
            except Exception as exc:  # best effort: the session timeout is the fallback
                self.log.warning("could not leave group %s: %r", coordinator.group_id, exc)
        await super().on_thread_stop()

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        found = dict(await super()._highwaters(partitions))
        unknown = [tp for tp, offset in found.items() if offset is None]
        if unknown:  # under read_committed, ListOffsets answers with the last stable offset
            found.update(await self._ensure_consumer().end_offsets(unknown))
        return found


class AgonConsumer(LatencyConsumer):
    """The consumer of an :class:`AgonApp`: the hot path's fixes (``streams/latency.py``) and
    fix 10."""

    def _new_consumer_thread(self) -> RecoveringConsumerThread:
        return RecoveringConsumerThread(self, loop=self.loop, beacon=self.beacon)


def discard_local_tables(app: faust.App) -> None:
    """Fix 8: drop the RocksDB tables under the app's data directory (before it starts), so
    that they are restored from their changelogs, where only committed writes are."""
    for tables in Path(app.conf.datadir).glob("v*/tables"):
        shutil.rmtree(tables)


RECOVERY_IDLE_POLL_S = 0.25
#: the poll while a changelog still has more than its final marker unread: an aborted tail,
#: or records on their way from the consumer thread that a short poll would give up on
RECOVERY_TAIL_POLL_S = 2.0
_FAUST_RECOVERY_IDLE_POLL_S = 5.0


class _RecoveryAsyncio:
    """``asyncio`` as faust's recovery module sees it: fix 4.

    Faust's changelog reader waits up to 5 s for an event; after two such waits in a row
    (counted across its whole life, so one after a restart often suffices) it ends recovery
    for every partition whose consumer position has reached the end, applied or not. A
    short wait alone ends it while fetched records are still on their way from the consumer
    thread to the queue: the table then misses rows (seen under chaos: a running debate
    lost, its next turn ignored). So the wait is short (0.25 s) only when every active
    changelog is read up to its final transaction marker, where nothing can be on its way;
    otherwise it is 2 s.
    """

    app: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def wait_for(self, aw: Any, timeout: float | None) -> Any:
        if timeout == _FAUST_RECOVERY_IDLE_POLL_S and self.app is not None:
            timeout = RECOVERY_IDLE_POLL_S if self.only_markers_left() else RECOVERY_TAIL_POLL_S
        return await asyncio.wait_for(aw, timeout)

    def only_markers_left(self) -> bool:
        recovery = self.app.tables.recovery
        return not recovery.in_recovery or all(left <= 1 for left in recovery.active_remaining().values())


_RECOVERY_ASYNCIO = _RecoveryAsyncio()


def shorten_recovery_polls(app: faust.App) -> None:
    """Fix 4 above, for ``app`` (one app per worker process)."""
    import faust.tables.recovery as recovery

    _RECOVERY_ASYNCIO.app = app
    recovery.asyncio = _RECOVERY_ASYNCIO  # type: ignore[assignment]
