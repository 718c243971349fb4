"""A debate as the gateway holds it, and what a long-lived gateway forgets."""

from __future__ import annotations

import asyncio

from agon.connectors.gateway.debatelog import DebateLog, Request, tenant_of
from agon.connectors.gateway.hub import Hub
from agon.schemas import now_ms
from agon.settings import Settings


def turn(ts: int, tokens: int) -> dict:
    return {"ts": ts, "prompt_tokens": tokens, "completion_tokens": 0}


async def test_a_follower_gets_what_comes_after_its_id_until_the_end():
    debate = DebateLog("d1", now_ms())
    debate.add(0, "DebateStarted", {})
    debate.add(2, "TurnTaken", turn(now_ms(), 5))

    async def read(after):
        return [offset async for offset, _, _ in debate.follow(after)]

    reader = asyncio.create_task(read(0))
    await asyncio.sleep(0.01)
    debate.add(2, "TurnTaken", turn(now_ms(), 5))  # read again after a re-assignment: ignored
    debate.add(4, "DebateEnded", {"reason": "ROUNDS"})
    assert await asyncio.wait_for(reader, 1) == [2, 4]
    assert debate.status == "ended" and debate.tokens == 5
    assert debate.readers == 0


def test_only_the_gateways_own_requests_have_a_tenant():
    assert tenant_of("gateway:alice") == "alice"
    assert tenant_of("cli") is None and tenant_of(None) is None and tenant_of("gateway:") is None


def test_a_long_lived_gateway_forgets_requests_older_than_the_topics_retention():
    hub = Hub(Settings())  # no broker is needed until it starts
    now = now_ms()
    old = Request("old", "alice", now - 10 * 86400_000, {"motion": "m"}, "key-1")
    fresh = Request("fresh", "alice", now, {"motion": "m"})
    for req in (old, fresh):
        hub.remember(req)
    assert hub.prune(now - 7 * 86400_000) == 1
    assert set(hub.requests) == {"fresh"} and ("alice", "key-1") not in hub.by_key
    assert [r.debate_id for r in hub.of_tenant("alice")] == ["fresh"]
