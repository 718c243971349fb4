"""One chaos run: its own broker and fleet, debates fed while faults are injected (faults.py),
then every debate awaited and the invariants checked on the topics read afresh (checks.py)."""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from checks import check_debates, check_history_table, check_llm_calls, check_moderator_table, diagnose
from confluent_kafka import KafkaException
from environment import AGENTS, DEBATERS, agon_environment, free_port, link_jars
from faults import FaultInjection
from observe import DebateView, Observer
from records import Rec, read_all, table_key, table_value
from report import ChaosReport, stats
from worker_logs import WorkerLogs

from agon.connectors.transcript import new_request, send_request
from agon.errors import AgonError, CodecError
from agon.schemas.codec import Codec
from agon.schemas.topics import Topics
from agon.settings import Settings
from agon.streams.local.broker import LocalBroker
from agon.streams.local.fleet import Fleet

MOTIONS = (
    "AI's impact on the job market is positive",
    "Remote work is better for society",
    "Cities should ban private cars from their centres",
    "Open-source software is a public good worth public money",
)
Progress = Callable[[str], None]


class Chaos(FaultInjection):
    def __init__(
        self,
        *,
        debates: int,
        rounds: int,
        kills: int,
        stops: int,
        broker_restarts: int,
        workers: int,
        latency: float,
        seed: int,
        workdir: Path,
        deadline_s: float,
        partitions: int,
        concurrency: int,
        gap_s: tuple[float, float],
        log_level: str,
        progress: Progress,
    ) -> None:
        self.rounds, self.workers = rounds, workers
        self.rng = random.Random(seed)
        self.workdir = workdir
        self.partitions = partitions
        self.concurrency = concurrency
        self.gap_s = gap_s
        self.progress_fn = progress
        self.t0 = time.monotonic()
        self.deadline = self.t0 + deadline_s
        self.namespace = f"chaos{uuid.uuid4().hex[:8]}"
        port, controller = free_port(), free_port()
        while controller == port:
            controller = free_port()
        self.env = {
            "AGON_HOME": str(workdir / "home"),
            "AGON_NAMESPACE": self.namespace,
            "AGON_GATEWAY_ENABLED": "false",  # not measured here
            "AGON_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
            "AGON_BROKER_PORT": str(port),
            "AGON_BROKER_CONTROLLER_PORT": str(controller),
            "AGON_KAFKA_PARTITIONS": str(partitions),
            "AGON_LLM_OFFLINE_LATENCY_S": str(latency),
            "AGON_LOG_LEVEL": log_level,
        }
        self.plan_faults(kills, stops, broker_restarts)
        self.requests = [
            new_request(
                MOTIONS[i % len(MOTIONS)], rounds=rounds, debate_id=f"d{i:03d}-{uuid.uuid4().hex[:4]}"
            )
            for i in range(debates)
        ]
        self.sent: list[str] = []
        self._next_send = 0.0

    def say(self, line: str) -> None:
        self.progress_fn(f"[{time.monotonic() - self.t0:6.1f}s] {line}")

    # the run

    def run(self) -> ChaosReport:
        report = ChaosReport(config={}, namespace=self.namespace, workdir=str(self.workdir))
        with agon_environment(self.env):
            self.settings = Settings()
            self.topics = Topics(self.namespace)
            self.broker = LocalBroker(self.settings)
            self.fleet = Fleet(self.settings)
            self.logs = WorkerLogs(self.fleet.log_dir)
            self.observer = Observer(self.settings.kafka.bootstrap, self.topics)
            fleet_up = False
            try:
                link_jars(self.settings.home_dir)
                self.say(f"broker: {self.broker.up(progress=self.say).detail}")
                fleet_up = True
                self.fleet.up(workers=self.workers, wait_s=180, progress=lambda line: None)
                self.say(f"fleet: {self.workers} worker(s) per agent ready (namespace {self.namespace})")
                self.observer.start()
                self.inject_faults()
                stuck = self.finish()
                if not stuck:
                    self.settle()
                self.fleet.down()
                fleet_up = False
                self.logs.poll()
                self.verify(report)
                report.error = stuck or None
            except (AgonError, KafkaException, OSError, TimeoutError) as exc:
                report.error = f"{type(exc).__name__}: {exc}"
                self.say(f"run failed: {report.error}")
                with contextlib.suppress(Exception):
                    self.logs.poll()
                    self.fill_counts(report)
            finally:
                for f in self.faults:  # a stopped worker must never outlive the run
                    if f.kind == "stop" and f.pid:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(f.pid, signal.SIGCONT)
                if self.observer.is_alive():
                    self.observer.stop()
                if fleet_up:
                    with contextlib.suppress(Exception):
                        self.fleet.down()
                with contextlib.suppress(Exception):
                    self.broker.down()
        report.duration_s = round(time.monotonic() - self.t0, 1)
        return report

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def wait(self, check: Callable[[], Any], timeout_s: float, every_s: float = 0.2) -> Any:
        """Poll ``check`` (feeding debates meanwhile) until truthy, ``timeout_s`` or the deadline."""
        until = min(time.monotonic() + timeout_s, self.deadline)
        while True:
            self.top_up()
            self.logs.poll()
            if self.observer.failure is not None:
                raise AgonError(f"the observer failed: {self.observer.failure!r}")
            result = check()
            if result or time.monotonic() >= until:
                return result
            time.sleep(every_s)

    # debates

    def running(self, views: dict[str, DebateView] | None = None) -> list[str]:
        views = self.observer.snapshot() if views is None else views
        return [d for d in self.sent if d not in views or views[d].ended is None]

    def top_up(self, limit: int | None = None) -> None:
        """Keep up to ``concurrency`` debates in flight, one new request at a time, staggered;
        while faults remain, spread the requests over them (so that the last faults still find
        debates in flight), but never leave none in flight."""
        if self.broker_down or len(self.sent) >= len(self.requests) or time.monotonic() < self._next_send:
            return
        running = len(self.running())
        if running >= (limit or self.concurrency):
            return
        if limit is None and self.faults_left:
            quota = math.ceil(len(self.requests) * (self.faults_done + 1) / (len(self.schedule) + 1))
            if len(self.sent) >= quota and running > 0:
                return
        req = self.requests[len(self.sent)]
        send_request(self.settings, req, timeout_s=20)
        self.sent.append(req["debate_id"])
        self._next_send = time.monotonic() + self.rng.uniform(0.3, 1.2)

    # the end

    def finish(self) -> str:
        """Send what is left, and wait until every debate has a committed DebateEnded; say which
        did not (the checks then show where each stopped)."""

        def all_ended() -> bool:
            self.top_up(limit=len(self.requests))
            views = self.observer.snapshot()
            return len(self.sent) == len(self.requests) and all(
                d in views and views[d].ended is not None for d in self.sent
            )

        if not self.wait(all_ended, self.remaining(), every_s=0.5):
            views = self.observer.snapshot()
            stuck = [d for d in self.sent if d not in views or views[d].ended is None]
            detail = "; ".join(
                f"{d}: {len(views[d].turns) if d in views else 0} turns, next "
                f"{views[d].awaited(d, self.rounds) if d in views else 'start'}"
                for d in stuck[:5]
            )
            text = (
                f"{len(stuck)} debate(s) never ended before the deadline "
                f"({len(self.requests) - len(self.sent)} not sent): {detail}"
            )
            self.say(text)
            return text
        self.say(f"all {len(self.sent)} debates ended")
        return ""

    def settle(self) -> None:
        """Let the debaters take in the DebateEnded messages (their history's tombstones)."""
        names = [self.topics.app_id(a) + "-history-changelog" for a in DEBATERS]

        def deleted() -> bool:
            recs = read_all(self.settings.kafka.bootstrap, lambda t: t in names, timeout_s=30)
            gone = set.intersection(
                *[{k for k, v in _last_values(recs.get(name, [])).items() if v is None} for name in names]
            )
            return set(self.sent) <= gone

        self.wait(deleted, min(30.0, max(1.0, self.remaining())), every_s=1.0)

    def fill_counts(self, report: ChaosReport) -> None:
        report.faults = self.faults
        report.debates_requested = len(self.sent)
        views = self.observer.snapshot()
        report.debates_ended = sum(1 for d in self.sent if d in views and views[d].ended is not None)
        report.llm_calls = sum(1 for e in self.logs.events if e.kind == "call")

    def verify(self, report: ChaosReport) -> None:
        self.say("reading every topic afresh (read_committed) to check the invariants")
        ns = self.namespace
        changelogs = {
            a: f"{self.topics.app_id(a)}-{'debates' if a == 'moderator' else 'history'}-changelog"
            for a in AGENTS
        }
        changelogs["ended"] = f"{self.topics.app_id('moderator')}-ended-changelog"
        inboxes = {a: self.topics.inbox(a) for a in DEBATERS}
        recs = read_all(
            self.settings.kafka.bootstrap,
            lambda t: t.startswith(f"{ns}.debate.") or t in changelogs.values() or t in inboxes.values(),
        )
        codec = Codec.default(self.settings.schema_registry_url)
        facts, violations = check_debates(
            {r["debate_id"]: self.rounds for r in self.requests}, self.topics, recs, codec
        )
        for agent, topic in inboxes.items():
            decoded = []
            for rec in recs.get(topic, []):
                with contextlib.suppress(CodecError):
                    decoded.append((rec, *codec.decode("inbox", rec.value)))
            facts.inbox[agent] = decoded
        for v in violations:
            if v.invariant == "a":
                v.detail = "; ".join(
                    filter(None, [v.detail, diagnose(v.debate, facts, self.logs, self.partitions)])
                )
        violations += check_moderator_table(
            facts, recs.get(changelogs["moderator"], []), recs.get(changelogs["ended"], []), self.partitions
        )
        for agent in DEBATERS:
            violations += check_history_table(facts, agent, recs.get(changelogs[agent], []), self.partitions)
        acct = check_llm_calls(
            self.logs.events, facts, self.faults, self.outages, self.partitions, self.fleet.log_dir
        )
        violations += acct.violations
        self.fill_counts(report)
        report.debates_ended = sum(
            1 for d in facts.logs if any(k == "DebateEnded" for _, k, _ in facts.logs[d])
        )
        report.turns_committed = sum(len(t) for t in facts.turns.values())
        report.llm_calls = acct.calls
        report.extra_llm_calls = acct.extra
        report.extra_calls_by_cause = acct.by_cause
        report.llm_call_allowance = acct.allowance
        kills = report.kills
        report.issue_bound_holds = acct.calls <= report.turns_committed + len(kills)
        # a moderator kill cannot cost an LLM call: count per debater kill
        debater_kills = [f for f in kills if f.agent in DEBATERS]
        report.extra_calls_per_debater_kill = (
            round(acct.extra / len(debater_kills), 3) if debater_kills else None
        )
        self.measure(report)
        report.worker_exits = self.unexpected_exits()
        report.violations = violations

    def measure(self, report: ChaosReport) -> None:
        mono0 = {id(f): self.t0 + f.at_s for f in self.faults}
        for f in self.faults:
            if f.kind in ("kill", "stop") and f.affected:
                step = self.observer.first_step_after(set(f.affected), f.agent, f.wall)
                if step is not None:
                    f.takeover_s = round(step.mono - mono0[id(f)], 3)
        report.takeover = stats(
            [f.takeover_s for f in self.faults if f.kind == "kill" and f.takeover_s is not None]
        )
        report.stop_takeover = stats(
            [f.takeover_s for f in self.faults if f.kind == "stop" and f.takeover_s is not None]
        )
        back = []
        for wall, mono in self.broker_back:
            turn = self.observer.first_turn_after(wall)
            if turn is not None:
                back.append(turn.mono - mono)
        report.broker_recovery = stats(back)

    def unexpected_exits(self) -> dict[str, int]:
        starts: dict[str, int] = defaultdict(int)
        for e in self.logs.events:
            if e.kind == "start":
                starts[e.worker] += 1
        kills: dict[str, int] = defaultdict(int)
        for f in self.faults:
            if f.kind == "kill":
                kills[f.worker] += 1
        # every start after the first follows an exit; the last run ended with our `down`
        return {w: n - 1 - kills[w] for w, n in starts.items() if n - 1 - kills[w] > 0}


def _last_values(recs: list[Rec]) -> dict[str, Any]:
    return {table_key(r.key): table_value(r.value) for r in recs}
