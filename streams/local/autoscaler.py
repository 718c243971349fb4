"""The supervisor's autoscaler: reads each agent's inbox lag off the supervisor's loop and
turns it into worker counts with :class:`agon.streams.autoscale.Scaler`."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time

from agon.settings import Settings
from agon.streams import metrics
from agon.streams.autoscale import Decision, Scaler
from agon.streams.local.files import describe_exit

__all__ = ["Autoscaler"]

log = logging.getLogger("agon.autoscaler")
LAGWATCH = "agon.streams.local.lagwatch"


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
        self._child: subprocess.Popen | None = None
        self.crashes = 0  # lag reader children that died under us
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="agon-autoscaler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        self._thread.join(timeout=15)

    def _poll(self) -> None:
        """Read the lag child's lines; start another child when one dies."""
        failing = False
        partitions = self.settings.kafka.partitions
        # enough to tell "every worker it may have is busy": more changes nothing
        limit = self.policy.lag_threshold * (self.policy.max_replica_count or partitions)
        cmd = [sys.executable, "-m", LAGWATCH, "--every", str(self.policy.polling_interval_s)]
        cmd += ["--limit", str(limit)]
        while not self._stop.is_set():
            # its stderr is the supervisor's: a crash's stack lands in the supervisor's log
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
            self._child = proc
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = json.loads(raw)
                if "error" in line:
                    if not failing:
                        log.warning("cannot read lag (%s); keeping worker counts as they are", line["error"])
                    failing = True
                    continue
                if failing:
                    log.info("reading lag again")
                failing = False
                reading = {a: (lag, n) for a, (lag, n) in line["lag"].items()}
                with self._lock:
                    self._reading = reading
                self.last = {
                    "read_at": time.time(),
                    "read_s": line["read_s"],
                    "lag": {a: lag for a, (lag, _) in reading.items()},
                }
            code = proc.wait()
            if not self._stop.is_set():
                self.crashes += 1
                log.warning(
                    "the lag reader (pid %d) exited (%s); starting another", proc.pid, describe_exit(code)
                )
                self._stop.wait(1.0)

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
