"""Choosing and injecting the faults: SIGKILL and SIGSTOP of a worker (preferring one with an
LLM call running or debates awaiting it on its inbox partitions) and broker restarts, one at a
time, each followed by waiting for the fleet to recover."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from typing import Any

from environment import AGENTS
from observe import DebateView, Observer
from records import partition_of
from report import Fault
from worker_logs import WorkerLogs

from agon.settings import Settings
from agon.streams.local.broker import LocalBroker
from agon.streams.local.fleet import Fleet


class FaultInjection:
    """The fault half of :class:`run.Chaos`, which provides the attributes annotated here and
    ``say``, ``wait``, ``remaining`` and ``running``."""

    rng: random.Random
    t0: float
    rounds: int
    partitions: int
    gap_s: tuple[float, float]
    namespace: str
    settings: Settings
    broker: LocalBroker
    fleet: Fleet
    logs: WorkerLogs
    observer: Observer

    def plan_faults(self, kills: int, stops: int, broker_restarts: int) -> None:
        schedule = ["kill"] * kills + ["stop"] * stops
        self.rng.shuffle(schedule)
        # broker restarts away from the very start and end, where few debates are in flight
        for i in range(broker_restarts):
            schedule.insert((i + 1) * len(schedule) // (broker_restarts + 1) + i, "broker")
        self.schedule = schedule
        self.kill_agents = self._spread(kills)
        self.stop_agents = self._spread(stops)
        self.faults: list[Fault] = []
        self.outages: list[tuple[float, float]] = []
        self.broker_back: list[tuple[float, float]] = []  # (wall, monotonic) the broker answered again
        self.broker_down = False
        self.faults_done = 0
        self.faults_left = len(schedule)

    def _spread(self, n: int) -> list[str]:
        agents = list(AGENTS)
        self.rng.shuffle(agents)
        return [agents[i % len(agents)] for i in range(n)]

    def inject_faults(self) -> None:
        kills = iter(self.kill_agents)
        stops = iter(self.stop_agents)
        for n, kind in enumerate(self.schedule, 1):
            if not self.wait(self.ready_for_fault, 120):
                self.say(
                    f"no debate in flight or a worker not ready: {len(self.schedule) - n + 1} fault(s) "
                    "not injected"
                )
                break
            if self.remaining() < 60:
                self.say("deadline near: no more faults")
                break
            self.wait(lambda: False, self.rng.uniform(*self.gap_s))
            if kind == "kill":
                self.kill(next(kills))
            elif kind == "stop":
                self.stop(next(stops))
            else:
                self.restart_broker()
            self.faults_done, self.faults_left = n, len(self.schedule) - n
        self.faults_left = 0

    def ready_for_fault(self) -> bool:
        """Every worker up and ready, and a debate in flight that has taken a turn."""
        if any(w.pid is None or not w.ready for w in self.fleet.workers()):
            return False
        views = self.observer.snapshot()
        return any(views.get(d) and views[d].turns for d in self.running(views))

    def owned(self, worker: Any) -> list[int] | None:
        """The inbox partitions ``worker`` owns per its assignment.json, if written by this pid."""
        path = self.settings.home_dir / "workers" / self.namespace / worker.name / "assignment.json"
        try:
            got = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return got["partitions"] if got.get("pid") == worker.pid else None

    def affected(self, agent: str, partitions: list[int], views: dict[str, DebateView]) -> list[str]:
        out = []
        for d in self.running(views):
            view = views.get(d)
            if view is None or partition_of(d, self.partitions) not in partitions:
                continue
            if agent == "moderator":
                if view.started:
                    out.append(d)
                continue
            awaited = view.awaited(d, self.rounds)
            if awaited and awaited[1] == agent and awaited[0] in view.requested:
                out.append(d)
        return sorted(out)

    def pick(self, agent: str) -> tuple[Any, list[int], list[str], list[str]] | None:
        """A ready worker of ``agent``, preferring one with an LLM call running (debaters) or
        with debates awaiting it on its partitions."""

        def candidates() -> list[tuple[int, Any, list[int], list[str], list[str]]]:
            views = self.observer.snapshot()
            committed = {t for v in views.values() for t in v.turns}
            found = []
            for w in self.fleet.workers([agent]):
                parts = self.owned(w) if w.pid and w.ready else None
                if parts is None:
                    continue
                hit = self.affected(agent, parts, views)
                busy = sorted(t for t in self.logs.in_flight[w.name] if t not in committed)
                score = 2 if (busy and hit) or (agent == "moderator" and hit) else (1 if hit or busy else 0)
                found.append((score, w, parts, hit, busy))
            return found

        best = self.wait(lambda: [c for c in candidates() if c[0] == 2], 8.0, every_s=0.05)
        pool = best or candidates()
        if not pool:
            return None
        top = max(c[0] for c in pool)
        _, w, parts, hit, busy = self.rng.choice([c for c in pool if c[0] == top])
        return w, parts, hit, busy

    def kill(self, agent: str) -> None:
        picked = self.pick(agent)
        if picked is None:
            self.say(f"no ready worker of {agent} to kill")
            return
        w, parts, hit, busy = picked
        wall = time.time()
        os.kill(w.pid, signal.SIGKILL)
        fault = Fault(
            "kill", round(time.monotonic() - self.t0, 2), wall, agent, w.name, w.pid, parts, hit, busy
        )
        self.faults.append(fault)
        self.say(
            f"SIGKILL {w.name} (pid {w.pid}, partitions {parts}); in flight {busy or '-'}; "
            f"affected {hit or '-'}"
        )
        self.await_recovery(fault)

    def stop(self, agent: str) -> None:
        picked = self.pick(agent)
        if picked is None:
            self.say(f"no ready worker of {agent} to stop")
            return
        w, parts, hit, busy = picked
        pause = self.settings.worker.session_timeout_s + 2.0
        wall = time.time()
        os.kill(w.pid, signal.SIGSTOP)
        fault = Fault(
            "stop",
            round(time.monotonic() - self.t0, 2),
            wall,
            agent,
            w.name,
            w.pid,
            parts,
            hit,
            busy,
            duration_s=pause,
        )
        self.faults.append(fault)
        self.say(
            f"SIGSTOP {w.name} (pid {w.pid}, partitions {parts}) for {pause:g} s; in flight "
            f"{busy or '-'}; affected {hit or '-'}"
        )
        try:
            self.wait(lambda: False, pause)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGCONT)
        self.say(f"SIGCONT {w.name} (pid {w.pid})")
        self.await_recovery(fault)

    def restart_broker(self) -> None:
        wall, mono = time.time(), time.monotonic()
        self.faults.append(Fault("broker", round(mono - self.t0, 2), wall, affected=self.running()))
        self.say("broker restart: stopping it (SIGTERM)")
        self.broker_down = True
        try:
            self.broker.down()
            self.wait(lambda: False, 1.0)
            status = self.broker.up(progress=lambda line: None)
        finally:
            self.broker_down = False
        back = time.time()
        self.outages.append((wall, back))
        self.broker_back.append((back, time.monotonic()))
        self.faults[-1].duration_s = round(back - wall, 2)
        self.say(f"broker back after {back - wall:.1f} s: {status.detail}")
        self.await_recovery(self.faults[-1])

    def await_recovery(self, fault: Fault) -> None:
        """Until every worker is ready again and the fault's affected debates moved on."""
        mono0 = self.t0 + fault.at_s

        def recovered() -> bool:
            if any(w.pid is None or not w.ready for w in self.fleet.workers()):
                return False
            if fault.kind == "broker":
                return (
                    self.observer.first_turn_after(self.broker_back[-1][0]) is not None or not self.running()
                )
            return (
                not fault.affected
                or self.observer.first_step_after(set(fault.affected), fault.agent, fault.wall) is not None
            )

        if self.wait(recovered, 90.0):
            fault.recovered_s = round(time.monotonic() - mono0, 2)
            self.say(f"recovered in {fault.recovered_s:.1f} s")
        else:
            self.say(f"not recovered after 90 s from the {fault.kind} (the final checks will tell)")
