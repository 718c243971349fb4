"""/v1/ops: each agent's workers, inbox backlog and handling rate, for the operations page.

Lag comes from a child process (:class:`agon.streams.local.lagwatch.LagFollower`), as the
autoscaler's does: librdkafka's admin client can abort the process it runs in, and the
gateway must not share that. The child starts with the first request for the page.
"""

import threading
import time
from typing import Any

from agon.settings import Settings
from agon.streams.local.lagwatch import LagFollower

__all__ = ["Operations"]

EVERY_S = 2.0
LIMIT = 100_000  # records counted per agent at most


class Operations:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._follower: LagFollower | None = None
        self._lock = threading.Lock()
        self._last: dict[str, Any] | None = None
        self._rate: dict[str, float] = {}
        self.error: str | None = None

    def _on_line(self, line: dict[str, Any]) -> None:
        with self._lock:
            if "error" in line:
                self.error = line["error"]
                return
            now = time.time()
            before = self._last
            if before is not None and now > before["at"]:
                self._rate = {
                    agent: max(0, done - before["committed"].get(agent, done)) / (now - before["at"])
                    for agent, done in line["committed"].items()
                }
            self._last, self.error = {**line, "at": now}, None

    def view(self) -> dict[str, Any]:
        if self._follower is None:
            self._follower = LagFollower(EVERY_S, LIMIT, self._on_line)
        with self._lock:
            last, rate = self._last, dict(self._rate)
        agents = []
        for spec in self.settings.agents:
            lag, partitions = (last or {}).get("lag", {}).get(spec.name, [None, None])
            agents.append(
                {
                    "agent": spec.name,
                    "role": spec.role,
                    "workers": (last or {}).get("members", {}).get(spec.name),
                    "pending": lag,
                    "partitions": partitions,
                    "handled_per_s": round(rate[spec.name], 2) if spec.name in rate else None,
                }
            )
        return {"agents": agents, "read_at": last["at"] if last else None, "error": self.error}

    def stop(self) -> None:
        if self._follower is not None:
            self._follower.stop()
