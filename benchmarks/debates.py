"""Debates on a fleet of agon workers (one per agent, exactly-once, the offline model), seen from
outside: what the debate topics committed, by the broker's record timestamps, and what each
worker process holds in memory and spends in CPU, from /proc.

A read_committed observer (the chaos harness's, ``tests/chaos/observe.py``) tails every debate
topic of the fleet's namespace; a batch of debates is requested at once and waited for until
every one has ended or its deadline passes. The requests' own timestamps are read back from
the requests topic afterwards.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from agon.connectors.transcript import new_request, send_request
from agon.deadline import wait_until
from agon.procs import cpu_seconds, rss_mib
from agon.schemas import Topics
from agon.settings import Settings
from agon.streams.local.fleet import Fleet

from .common import describe_config, log

# isort: split
# benchmarks.common put the tests' helpers and the chaos harness on sys.path
from environment import agon_environment
from observe import Observer
from records import read_all

MOTION = "AI's impact on the job market is positive"


@dataclass
class Debate:
    """One debate as the broker has it: its records' timestamps (ms)."""

    debate_id: str
    requested_ms: int | None = None
    started_ms: int | None = None
    turns_ms: list[int] = field(default_factory=list)
    ended_ms: int | None = None
    reason: str | None = None


@dataclass
class Batch:
    """Debates requested at once, and what the worker processes did meanwhile."""

    debates: list[Debate]
    rounds: int
    deadline_s: float
    elapsed_s: float
    rss_mib: dict[str, list[tuple[int, float]]]  # worker -> (wall ms, MiB) samples
    cpu_s: dict[str, float]  # process -> CPU seconds used during the batch

    @property
    def ended(self) -> int:
        return sum(d.ended_ms is not None for d in self.debates)

    @property
    def complete(self) -> bool:
        return self.ended == len(self.debates)

    def reasons(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for d in self.debates:
            found[d.reason or "not ended"] = found.get(d.reason or "not ended", 0) + 1
        return found


class Processes(threading.Thread):
    """Samples VmRSS of each worker every ``every_s``; notes the CPU time of each worker and
    of ``others`` (name -> pid: the broker, this process) over its life."""

    def __init__(self, fleet: Fleet, others: dict[str, int], every_s: float = 0.5) -> None:
        super().__init__(name="bench-rss", daemon=True)
        self.fleet, self.others, self.every_s = fleet, others, every_s
        self.rss: dict[str, list[tuple[int, float]]] = {}
        self._halt = threading.Event()
        self._cpu0 = self._cpu()

    def _pids(self) -> dict[str, int]:
        return {w.name: w.pid for w in self.fleet.workers() if w.pid}

    def _cpu(self) -> dict[str, float]:
        return {
            name: used
            for name, pid in {**self._pids(), **self.others}.items()
            if (used := cpu_seconds(pid)) is not None
        }

    def run(self) -> None:
        while not self._halt.is_set():
            now = int(time.time() * 1000)
            for name, pid in self._pids().items():
                mib = rss_mib(pid)
                if mib is not None:
                    self.rss.setdefault(name, []).append((now, mib))
            self._halt.wait(self.every_s)

    def finish(self) -> dict[str, float]:
        """Stop sampling; the CPU seconds each process used since the start."""
        self._halt.set()
        self.join(timeout=5)
        end = self._cpu()
        return {name: round(end[name] - self._cpu0[name], 2) for name in end if name in self._cpu0}


class AgonFleet:
    """One worker per agent in a namespace of its own, with the offline model at ``latency_s``;
    a context manager that stops the workers on exit."""

    def __init__(self, home: Path, bootstrap: str, latency_s: float, broker_pid: int | None = None) -> None:
        self.bootstrap, self.latency_s = bootstrap, latency_s
        self.env = {
            "AGON_HOME": str(home),
            "AGON_NAMESPACE": f"bench{uuid.uuid4().hex[:6]}",
            "AGON_GATEWAY_ENABLED": "false",  # not measured here
            "AGON_KAFKA_BOOTSTRAP": bootstrap,
            "AGON_LLM_OFFLINE_LATENCY_S": f"{latency_s:g}",
        }
        with agon_environment(self.env):
            self.settings = Settings()
        self.topics = Topics(self.settings.namespace)
        self.fleet = Fleet(self.settings)
        self.observer = Observer(bootstrap, self.topics)
        self.observer.inboxes = set()  # the debate topics only
        self.others = {"bench": os.getpid()} | ({"broker": broker_pid} if broker_pid else {})
        self._batches = 0

    def __enter__(self) -> AgonFleet:
        log(f"fleet {self.settings.namespace}: one worker per agent, model latency {self.latency_s:g} s")
        with agon_environment(self.env):  # the supervisor and its workers inherit it
            self.fleet.up(progress=lambda line: None)
        self.observer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.observer.stop()
        self.fleet.down()

    def run(self, n: int, rounds: int, deadline_s: float) -> Batch:
        """Request ``n`` debates of ``rounds`` rounds at once; wait until all have ended or
        ``deadline_s`` has passed."""
        self._batches += 1
        prefix = f"b{self._batches}-{uuid.uuid4().hex[:6]}"
        requests = [
            new_request(MOTION, rounds=rounds, debate_id=f"{prefix}-{i:04d}", requested_by="benchmarks")
            for i in range(n)
        ]
        ids = [r["debate_id"] for r in requests]
        procs = Processes(self.fleet, self.others)
        procs.start()
        t0 = time.monotonic()
        send_request(self.settings, *requests)
        wait_until(lambda: self._ended(ids) == n, deadline_s, every_s=0.05)
        elapsed = time.monotonic() - t0
        cpu = procs.finish()
        debates = self._debates(ids)
        batch = Batch(debates, rounds, deadline_s, round(elapsed, 2), procs.rss, cpu)
        log(f"{n} debate(s) × {rounds} round(s): {batch.ended} ended in {elapsed:.1f} s")
        return batch

    def timestamp_type(self) -> str | None:
        """How the broker stamps the debate topics' records (``message.timestamp.type``)."""
        with self.observer.lock:
            topic = next((s.topic for s in self.observer.seen), None)
        if topic is None:
            return None
        admin = AdminClient(self.settings.kafka.client_config())
        return describe_config(admin, topic, ["message.timestamp.type"])["message.timestamp.type"]

    def _ended(self, ids: list[str]) -> int:
        with self.observer.lock:
            views = self.observer.debates
            return sum(1 for d in ids if d in views and views[d].ended is not None)

    def _debates(self, ids: list[str]) -> list[Debate]:
        debates = {d: Debate(d) for d in ids}
        with self.observer.lock:
            seen = list(self.observer.seen)
        for s in seen:
            debate = debates.get(s.body.get("debate_id", ""))
            if debate is None:
                continue
            if s.kind == "DebateStarted":
                debate.started_ms = s.ts_ms
            elif s.kind == "TurnTaken":
                debate.turns_ms.append(s.ts_ms)
            elif s.kind == "DebateEnded":
                debate.ended_ms, debate.reason = s.ts_ms, s.body["reason"]
        requests = read_all(self.bootstrap, lambda name: name == self.topics.requests)
        for rec in requests.get(self.topics.requests, []):
            debate = debates.get((rec.key or b"").decode(errors="replace"))
            if debate is not None and debate.requested_ms is None:
                debate.requested_ms = rec.ts_ms
        for debate in debates.values():
            debate.turns_ms.sort()
        return list(debates.values())


def summary(batches: list[Batch]) -> dict[str, Any]:
    """What one or more batches of the same shape carry besides their figures: the debates of
    one batch, how many ended and why, wall time, CPU seconds per process, RSS peaks."""
    reasons: dict[str, int] = {}
    cpu: dict[str, float] = {}
    rss: dict[str, float] = {}
    for b in batches:
        for reason, count in b.reasons().items():
            reasons[reason] = reasons.get(reason, 0) + count
        for name, used in b.cpu_s.items():
            cpu[name] = round(cpu.get(name, 0.0) + used, 2)
        for worker, samples in b.rss_mib.items():
            rss[worker] = max([rss.get(worker, 0.0), *(mib for _, mib in samples)])
    return {
        "debates": len(batches[0].debates),
        "rounds": batches[0].rounds,
        "batches": len(batches),
        "ended": sum(b.ended for b in batches),
        "complete": all(b.complete for b in batches),
        "reasons": reasons,
        "elapsed_s": round(sum(b.elapsed_s for b in batches), 2),
        "deadline_s": batches[0].deadline_s,
        "cpu_s": cpu,
        "rss_max_mib": rss,
    }
