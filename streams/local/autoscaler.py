"""The supervisor's autoscaler: reads each agent's inbox lag off the supervisor's loop and
turns it into worker counts with :class:`agon.streams.autoscale.Scaler`."""

from __future__ import annotations

import logging
import threading
import time

from agon.errors import AgonError
from agon.settings import Settings
from agon.streams import metrics
from agon.streams.autoscale import Decision, Scaler
from agon.streams.lag import LagReader, pending_by_agent

__all__ = ["Autoscaler"]

log = logging.getLogger("agon.autoscaler")


class Autoscaler:
    """A thread polls lag every ``polling_interval_s`` (a slow or absent broker must not hold
    up the supervisor's restarts); :meth:`decide` turns the newest reading into decisions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.policy = settings.autoscale
        self.scaler = Scaler(self.policy)
        self._reading: dict[str, tuple[int, int]] | None = None  # agent -> (lag, partitions)
        #: the newest reading and when it was taken (wall clock), for supervisor.json
        self.last: dict[str, object] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="agon-autoscaler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _poll(self) -> None:
        reader = LagReader(self.settings)
        failing = False
        partitions = self.settings.kafka.partitions
        # enough to tell "every worker it may have is busy": more changes nothing
        limit = self.policy.lag_threshold * (self.policy.max_replica_count or partitions)
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    rows = reader.read(limit=limit)
                except AgonError as exc:
                    if not failing:
                        log.warning("cannot read lag (%s); keeping worker counts as they are", exc)
                    failing = True
                else:
                    if failing:
                        log.info("reading lag again")
                    failing = False
                    rows = [row for row in rows if row.source]  # changelogs are no backlog
                    pending = pending_by_agent(rows)
                    spread: dict[str, int] = {}
                    for row in rows:
                        spread[row.agent] = max(spread.get(row.agent, 0), row.partition + 1)
                    reading = {a: (pending.get(a, 0), spread.get(a, partitions)) for a in spread}
                    with self._lock:
                        self._reading = reading
                    self.last = {
                        "read_at": time.time(),
                        "read_s": round(time.monotonic() - started, 3),
                        "lag": {a: lag for a, (lag, _) in reading.items()},
                    }
                self._stop.wait(max(0.0, self.policy.polling_interval_s - (time.monotonic() - started)))
        finally:
            reader.close()

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
