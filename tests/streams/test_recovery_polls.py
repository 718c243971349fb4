"""Fix 4 in streams/eos.py: faust's changelog reader may time out (and so end recovery) only
when nothing it fetched can still be on its way to the table.

faust's Recovery and consumer are stood in for by the few attributes the decision reads, so
each case is set up exactly; the chaos test and the takeover benchmark exercise it for real.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace

import pytest

from agon.streams import eos

TP_A, TP_B = ("changelog", 0), ("changelog", 1)


class Recovery:
    def __init__(self, highwaters: dict, offsets: dict, in_recovery: bool = True) -> None:
        self.active_highwaters = Counter(highwaters)  # faust's: end offset - 1
        self.active_offsets = Counter(offsets)
        self.in_recovery = in_recovery

    def active_remaining(self) -> Counter:
        return Counter({tp: hw - self.active_offsets[tp] for tp, hw in self.active_highwaters.items()})


class Consumer:
    def __init__(self, positions: dict) -> None:
        self.positions = positions

    async def position(self, tp):
        return self.positions.get(tp)


def shim(recovery: Recovery, positions: dict) -> eos._RecoveryAsyncio:
    s = eos._RecoveryAsyncio()
    s.app = SimpleNamespace(tables=SimpleNamespace(recovery=recovery), consumer=Consumer(positions))
    return s


async def test_only_final_commit_markers_left_times_out_at_once():
    s = shim(Recovery({TP_A: 100, TP_B: 50}, {TP_A: 99, TP_B: 49}), {})
    assert await s.settled()


async def test_fetched_but_not_yet_applied_records_are_waited_for():
    # the consumer thread has fetched to the end; the records are not in the table yet
    s = shim(Recovery({TP_A: 100}, {TP_A: 10}), {TP_A: 101})
    assert not await s.settled()
    assert not await s.settled()
    assert await s.settled(), "after the quiet polls an aborted tail is taken for the end"


async def test_a_partition_still_being_read_is_never_given_up():
    s = shim(Recovery({TP_A: 100, TP_B: 100}, {TP_A: 10, TP_B: 99}), {TP_A: 40})
    for _ in range(10):
        assert not await s.settled()


async def test_idle_outside_recovery_times_out():
    s = shim(Recovery({TP_A: 100}, {TP_A: 10}, in_recovery=False), {})
    assert await s.settled()


async def test_an_arriving_event_resets_the_quiet_polls():
    s = shim(Recovery({TP_A: 100}, {TP_A: 10}), {TP_A: 101})
    queue: asyncio.Queue = asyncio.Queue()
    assert not await s.settled()
    queue.put_nowait("event")
    assert await s.wait_for(queue.get(), eos._FAUST_RECOVERY_IDLE_POLL_S) == "event"
    assert s.quiet_polls == 0
    with pytest.raises(asyncio.TimeoutError):
        await s.wait_for(queue.get(), eos._FAUST_RECOVERY_IDLE_POLL_S)
    assert s.quiet_polls == eos.QUIET_POLLS_AFTER_FETCH + 1


async def test_other_waits_keep_their_own_timeout():
    s = shim(Recovery({TP_A: 100}, {TP_A: 10}), {TP_A: 0})  # never settles
    with pytest.raises(asyncio.TimeoutError):
        await s.wait_for(asyncio.Event().wait(), 0.05)
