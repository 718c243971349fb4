"""Fix 4 in streams/eos.py: faust's changelog reader polls briefly only when nothing it
fetched can still be on its way to the table.

faust's Recovery is stood in for by the few attributes the decision reads, so each case is
set up exactly; the chaos test and the takeover benchmark exercise it for real.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from types import SimpleNamespace

import pytest

from agon.streams import takeover as eos

TP_A, TP_B = ("changelog", 0), ("changelog", 1)


class Recovery:
    def __init__(self, highwaters: dict, offsets: dict, in_recovery: bool = True) -> None:
        self.active_highwaters = Counter(highwaters)  # faust's: end offset - 1
        self.active_offsets = Counter(offsets)
        self.in_recovery = in_recovery

    def active_remaining(self) -> Counter:
        return Counter({tp: hw - self.active_offsets[tp] for tp, hw in self.active_highwaters.items()})


def shim(recovery: Recovery) -> eos._RecoveryAsyncio:
    s = eos._RecoveryAsyncio()
    s.app = SimpleNamespace(tables=SimpleNamespace(recovery=recovery))
    return s


async def poll_s(s: eos._RecoveryAsyncio) -> float:
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await s.wait_for(asyncio.Event().wait(), eos._FAUST_RECOVERY_IDLE_POLL_S)
    return time.monotonic() - started


async def test_only_final_commit_markers_left_polls_briefly():
    s = shim(Recovery({TP_A: 100, TP_B: 50}, {TP_A: 99, TP_B: 49}))
    assert s.only_markers_left()
    assert await poll_s(s) < 1.0


async def test_records_still_to_read_poll_long():
    s = shim(Recovery({TP_A: 100, TP_B: 50}, {TP_A: 10, TP_B: 49}))
    assert not s.only_markers_left()
    assert await poll_s(s) >= eos.RECOVERY_TAIL_POLL_S - 0.05


async def test_idle_outside_recovery_polls_briefly():
    assert shim(Recovery({TP_A: 100}, {TP_A: 10}, in_recovery=False)).only_markers_left()


async def test_an_event_is_returned_as_it_comes():
    queue: asyncio.Queue = asyncio.Queue()
    queue.put_nowait("event")
    s = shim(Recovery({TP_A: 100}, {TP_A: 10}))
    assert await s.wait_for(queue.get(), eos._FAUST_RECOVERY_IDLE_POLL_S) == "event"


async def test_other_waits_keep_their_own_timeout():
    s = shim(Recovery({TP_A: 100}, {TP_A: 10}))
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await s.wait_for(asyncio.Event().wait(), 0.05)
    assert time.monotonic() - started < 1.0
