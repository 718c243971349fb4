"""The synthetic probe: a short debate requested and followed as a user would, every so
often, its success and duration exported for the SLO dashboards and alerts
(``agon_probe_*`` in :mod:`agon.streams.metrics`)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from agon.errors import AgonError
from agon.settings import Settings
from agon.streams import metrics
from agon.streams.local.files import FleetFiles

__all__ = ["ProbeResult", "probe_once", "run_probes"]

log = logging.getLogger(__name__)

NORMAL_ENDS = ("ROUNDS", "UNPRODUCTIVE", "BUDGET")
MOTION = "Synthetic probes keep services honest"


@dataclass(frozen=True)
class ProbeResult:
    debate_id: str
    ok: bool
    seconds: float
    detail: str  # the end reason, or what went wrong

    def describe(self) -> str:
        return (
            f"probe {self.debate_id}: {'ok' if self.ok else 'FAILED'} in {self.seconds:.1f} s ({self.detail})"
        )


def probe_once(
    settings: Settings, rounds: int = 1, timeout_s: float = 60.0, name: str = "debate"
) -> ProbeResult:
    """Request one debate of ``rounds`` rounds and follow it to its end (read_committed);
    export the outcome under ``probe=name``."""
    from agon.connectors.transcript import follow, new_request, send_request

    debate_id = f"probe-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    detail = "no DebateEnded"
    ok = False
    try:
        send_request(settings, new_request(MOTION, rounds, debate_id, requested_by="probe"))
        for record_type, body in follow(settings, debate_id, wait_s=timeout_s, idle_timeout_s=timeout_s):
            if record_type == "DebateEnded":
                ok, detail = body["reason"] in NORMAL_ENDS, body["reason"]
                break
            if time.monotonic() - started > timeout_s:
                detail = f"not ended within {timeout_s:.0f} s"
                break
    except AgonError as exc:
        detail = str(exc)
    seconds = time.monotonic() - started
    metrics.PROBE_RUNS.labels(name, "ok" if ok else "failed").inc()
    metrics.PROBE_SUCCESS.labels(name).set(1 if ok else 0)
    metrics.PROBE_DURATION.labels(name).set(seconds)
    metrics.PROBE_LAST.labels(name).set(time.time())
    return ProbeResult(debate_id, ok, seconds, detail)


def run_probes(
    settings: Settings,
    every_s: float,
    rounds: int = 1,
    timeout_s: float = 60.0,
    port: int = 0,
    report: Callable[[str], None] = print,
    runs: int | None = None,
) -> int:
    """Probe every ``every_s`` seconds (``runs`` times, default until interrupted), serving
    /metrics on 127.0.0.1:``port`` (0: a free one) and announcing it where the supervisor
    lists Prometheus targets; returns the number of failed probes."""
    files = FleetFiles(settings)
    url = metrics.serve(port)
    metrics.announce(files.probe_dir, url)
    report(f"probe: every {every_s:g} s, a {rounds}-round debate; metrics on {url}")
    failed = done = 0
    while runs is None or done < runs:
        started = time.monotonic()
        result = probe_once(settings, rounds, timeout_s)
        failed += not result.ok
        done += 1
        report(result.describe())
        if runs is None or done < runs:
            time.sleep(max(0.0, every_s - (time.monotonic() - started)))
    return failed
