"""/readyz: Kafka answers, the request index is read, every agent's group has members.

Group members come from Kafka's DescribeConsumerGroups, asked at most every
:data:`CACHE_S`, off the event loop.
"""

from __future__ import annotations

import asyncio
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from agon.connectors.gateway.hub import Hub
from agon.schemas import Topics
from agon.settings import Settings

__all__ = ["Readiness"]

CACHE_S = 2.0
TIMEOUT_S = 5.0


class Readiness:
    def __init__(self, settings: Settings, hub: Hub) -> None:
        self.settings, self.hub = settings, hub
        self.topics = Topics(settings.namespace)
        self._admin = AdminClient(settings.kafka.client_config())
        self._last: tuple[float, bool, dict[str, str]] | None = None
        self._lock = asyncio.Lock()

    def _groups(self) -> dict[str, str]:
        agents = [a.name for a in self.settings.agents]
        futures = self._admin.describe_consumer_groups(
            [self.topics.app_id(a) for a in agents], request_timeout=TIMEOUT_S
        )
        checks = {}
        for agent in agents:
            try:
                members = len(futures[self.topics.app_id(agent)].result(timeout=TIMEOUT_S).members)
            except KafkaException as exc:
                checks[f"agent:{agent}"] = f"unknown ({exc.args[0].str() if exc.args else exc})"
                continue
            checks[f"agent:{agent}"] = f"{members} member(s)" if members else "no members"
        return checks

    async def check(self) -> tuple[bool, dict[str, str]]:
        async with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < CACHE_S:
                return self._last[1], self._last[2]
            checks: dict[str, str] = {}
            kafka = await self.hub.reachable()
            checks["kafka"] = "ok" if kafka else f"no broker answers at {self.settings.kafka.bootstrap}"
            checks["index"] = "read" if self.hub.index_ready.is_set() else "reading"
            if kafka:
                try:
                    checks.update(await asyncio.wait_for(asyncio.to_thread(self._groups), TIMEOUT_S + 1))
                except (asyncio.TimeoutError, KafkaException) as exc:
                    checks["agents"] = f"unknown ({exc or 'timed out'})"
            ok = (
                kafka
                and self.hub.index_ready.is_set()
                and all(v.endswith("member(s)") for k, v in checks.items() if k.startswith("agent"))
                and "agents" not in checks
            )
            self._last = (time.monotonic(), ok, checks)
            return ok, checks
