"""The supervisor's autoscaler: reads each agent's inbox lag off the supervisor's loop and
turns it into worker counts with :class:`agon.streams.autoscale.Scaler`."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from agon.settings import Settings
from agon.streams import metrics
from agon.streams.autoscale import Decision, Scaler
from agon.streams.local.lagwatch import LagFollower

__all__ = ["Autoscaler"]

log = logging.getLogger("agon.autoscaler")


class Autoscaler:
    """A thread follows a child process that reads lag every ``polling_interval_s`` (a slow
    or absent broker must not hold up the supervisor's restarts, and a crash in librdkafka
    must not end the supervisor: streams/local/lagwatch.py); :meth:`decide` turns the newest
    reading into decisions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.policy = settings.autoscale
        self.scaler = Scaler(self.policy)
        self._reading: dict[str, tuple[int, int]] | None = None  # agent -> (lag, partitions)
        #: the newest reading and when it was taken (wall clock), for supervisor.json
        self.last: dict[str, object] = {}
        self._lock = threading.Lock()
        self._failing = False
        # enough to tell "every worker it may have is busy": more changes nothing
        limit = self.policy.lag_threshold * (self.policy.max_replica_count or settings.kafka.partitions)
        self._follower = LagFollower(self.policy.polling_interval_s, limit, self._on_line)

    @property
    def crashes(self) -> int:
        """Lag reader children that died under us."""
        return self._follower.crashes

    def stop(self) -> None:
        self._follower.stop()

    def _on_line(self, line: dict[str, Any]) -> None:
        if "error" in line:
            if not self._failing:
                log.warning("cannot read lag (%s); keeping worker counts as they are", line["error"])
            self._failing = True
            return
        if self._failing:
            log.info("reading lag again")
        self._failing = False
        reading = {a: (lag, n) for a, (lag, n) in line["lag"].items()}
        with self._lock:
            self._reading = reading
        self.last = {
            "read_at": time.time(),
            "read_s": line["read_s"],
            "lag": {a: lag for a, (lag, _) in reading.items()},
        }

    def decide(self, desired: dict[str, int], now: float, busy: set[str] = frozenset()) -> list[Decision]:
        """Decisions for the agents of ``desired`` from the reading not yet used (none if
        there is no new one); the ``busy`` ones (a worker starting or stopping) are not scaled
        in. Exports the lag it saw."""
        with self._lock:
            reading, self._reading = self._reading, None
        if reading is None:
            return []
        decisions = []
        for agent, current in desired.items():
            if agent not in reading:
                continue
            lag, partitions = reading[agent]
            metrics.SCALER_LAG.labels(agent).set(lag)
            decision = self.scaler.decide(agent, lag, partitions, current, now, settled=agent not in busy)
            if decision.direction:
                metrics.SCALER_DECISIONS.labels(agent, decision.direction).inc()
                decisions.append(decision)
        return decisions
