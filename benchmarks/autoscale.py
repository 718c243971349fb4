"""Lag-based autoscaling: how fast new workers help with a sudden backlog, and how much sooner
the backlog is gone than with a fixed fleet.

One broker of its own; two runs in namespaces of their own, one per agent worker to start
with: a fixed fleet, then one under ``agon up --autoscale``. Each run sends a burst of
debates at once; every debater worker makes at most ``--in-flight`` model calls at a time
(``AGON_WORKER_MAX_LLM_IN_FLIGHT``), so the burst waits in the debaters' inboxes as lag.

Figures, from outside agon's own code where they can be:
- drain: from the burst to the last DebateEnded, by the broker's record timestamps;
- reaction (autoscaled run): from the burst to the supervisor's decision (its state file),
  to each new worker's readiness, and to the first turn each new worker took (its log);
  target: the desired count consuming within 10 s (KEDA's defaults react in 30–45 s).

    python benchmarks/autoscale.py                     # results/autoscale.json
    python benchmarks/autoscale.py --debates 40 --update-readme
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from agon.connectors.transcript import follow, new_request, send_request
from agon.schemas import Codec, Topics
from agon.settings import Settings
from agon.streams.local.files import FleetFiles
from agon.streams.local.fleet import Fleet

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]  # run as a script: the benchmarks package beside it
from benchmarks.common import log, machine, own_broker, replace_block, versions  # noqa: E402

RESULTS = HERE / "results" / "autoscale.json"
TARGET_S = 10.0
_LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debates", type=int, default=80, help="debates in the burst (80)")
    p.add_argument("--rounds", type=int, default=1, help="rounds per debate (1)")
    p.add_argument("--latency", type=float, default=1.0, help="the offline model's latency, s (1.0)")
    p.add_argument("--in-flight", type=int, default=2, help="model calls per debater worker at once (2)")
    p.add_argument("--lag-threshold", type=int, default=5, help="AGON_AUTOSCALE_LAG_THRESHOLD (5)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--update-readme", action="store_true", help="rewrite the autoscale block of README.md")
    return p.parse_args(argv)


class Watch(threading.Thread):
    """Samples the supervisor's state: when each agent's count first rose, and each slot's
    readiness."""

    def __init__(self, files: FleetFiles, threshold: int) -> None:
        super().__init__(daemon=True)
        self.files = files
        self.threshold = threshold
        self.step: dict[str, float] = {}  # when the supervisor first read a lag over the threshold
        self.stop = threading.Event()
        self.first_rise: dict[str, float] = {}
        self.peak: dict[str, int] = {}
        self.ready: dict[str, float] = {}
        self.lag_peak: dict[str, int] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            state = self.files.read_state()
            now = time.time()
            for agent, n in (state.get("desired") or {}).items():
                if n > 1:
                    self.first_rise.setdefault(agent, now)
                self.peak[agent] = max(self.peak.get(agent, 0), n)
            for name, slot in (state.get("slots") or {}).items():
                if slot.get("ready_at") and slot.get("index", 0) > 0:
                    self.ready.setdefault(name, slot["ready_at"])
            reading = state.get("autoscaler") or {}
            for agent, lag in (reading.get("lag") or {}).items():
                self.lag_peak[agent] = max(self.lag_peak.get(agent, 0), lag)
                if lag > self.threshold:
                    self.step.setdefault(agent, reading["read_at"])
            time.sleep(0.05)


def first_turn_at(path: Path) -> float | None:
    """The wall clock of the first turn a worker's log says it took (a debater) or asked for
    (the moderator)."""
    if not path.exists():
        return None
    for line in path.read_text(errors="replace").splitlines():
        if "turn=" in line and (" taken" in line or " requested" in line):
            m = _LOG_TIME.match(line)
            if m:
                return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def ended_at(settings: Settings, debate_ids: list[str]) -> list[float]:
    """The broker's timestamp of each debate's DebateEnded."""
    topics, codec = Topics(settings.namespace), Codec.default(settings.schema_registry_url)
    consumer = Consumer(
        settings.kafka.client_config(
            **{
                "group.id": f"bench-{uuid.uuid4().hex[:6]}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
    )
    found = []
    try:
        for debate_id in debate_ids:
            consumer.assign([TopicPartition(topics.debate(debate_id), 0, 0)])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is None or msg.error():
                    continue
                record_type, _ = codec.decode("debate", msg.value())
                if record_type == "DebateEnded":
                    found.append(msg.timestamp()[1] / 1000)
                    break
    finally:
        consumer.close()
    return found


def burst(home: Path, bootstrap: str, args: argparse.Namespace, autoscale: bool) -> dict[str, Any]:
    os.environ.update(
        {
            "AGON_HOME": str(home),
            "AGON_NAMESPACE": f"as{uuid.uuid4().hex[:8]}",
            "AGON_GATEWAY_ENABLED": "false",  # not measured here
            "AGON_KAFKA_BOOTSTRAP": bootstrap,
            "AGON_LLM_OFFLINE_LATENCY_S": str(args.latency),
            "AGON_WORKER_MAX_LLM_IN_FLIGHT": str(args.in_flight),
            "AGON_AUTOSCALE_LAG_THRESHOLD": str(args.lag_threshold),
        }
    )
    settings = Settings()
    fleet, files = Fleet(settings), FleetFiles(settings)
    fleet.up(progress=lambda line: None, autoscale=autoscale)
    watch = Watch(files, args.lag_threshold)
    watch.start()
    try:
        reqs = [
            new_request("Night trains beat flights in Europe", args.rounds, f"b-{uuid.uuid4().hex[:8]}")
            for _ in range(args.debates)
        ]
        t0 = time.time()
        send_request(settings, *reqs)
        for r in reqs:
            events = list(follow(settings, r["debate_id"], wait_s=120, idle_timeout_s=300))
            assert events[-1][0] == "DebateEnded", events[-1]
        ends = ended_at(settings, [r["debate_id"] for r in reqs])
        time.sleep(0.5)
    finally:
        watch.stop.set()
        fleet.down()
    run: dict[str, Any] = {
        "autoscale": autoscale,
        "debates": len(ends),
        "drain_s": round(max(ends) - t0, 2),
        "peak_workers": watch.peak,
        "peak_pending": watch.lag_peak,
    }
    if autoscale:
        run["reaction"] = {}
        for agent, rose in sorted(watch.first_rise.items()):
            new = [n for n in watch.ready if n.rsplit("-", 1)[0] == agent]
            took = {n: first_turn_at(files.log(agent, int(n.rsplit("-", 1)[1]))) for n in new}
            consuming = [t for t in took.values() if t]
            step = watch.step.get(agent, t0)
            run["reaction"][agent] = {
                "lag_step_s": round(step - t0, 2),
                "decided_s": round(rose - t0, 2),
                "new_workers": len(new),
                "last_ready_s": round(max(watch.ready[n] for n in new) - t0, 2) if new else None,
                "last_first_turn_s": round(max(consuming) - t0, 2) if consuming else None,
                "new_workers_that_took_turns": len(consuming),
                "step_to_consuming_s": round(max(consuming) - step, 2) if consuming else None,
            }
    log(json.dumps(run))
    return run


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    with tempfile.TemporaryDirectory(prefix="agon-bench-as-") as tmp:
        home = Path(tmp)
        broker = own_broker(home)
        try:
            fixed = burst(home, broker.bootstrap, args, autoscale=False)
            scaled = burst(home, broker.bootstrap, args, autoscale=True)
        finally:
            broker.down()
    result = {
        "started": started,
        "machine": machine(),
        "versions": versions(Settings().broker.kafka_version),
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "update_readme")},
        "fixed": fixed,
        "autoscaled": scaled,
        "drain_ratio_autoscaled_to_fixed": round(scaled["drain_s"] / fixed["drain_s"], 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {"drain_ratio": result["drain_ratio_autoscaled_to_fixed"], "reaction": scaled.get("reaction")}
        )
    )
    if args.update_readme:
        update_readme(result)
    return 0


def update_readme(r: dict[str, Any]) -> None:
    m, c, fixed, scaled = r["machine"], r["config"], r["fixed"], r["autoscaled"]
    lines = [
        f"Latest run: {r['started']}, {m['nproc']} CPUs ({m['cpu']}). Command: "
        f"`python benchmarks/autoscale.py --debates {c['debates']} --rounds {c['rounds']} "
        f"--latency {c['latency']} --in-flight {c['in_flight']} --lag-threshold {c['lag_threshold']}`.",
        "",
        "| agent | lag over the threshold | decided | last new worker ready | its first turn | "
        "lag step → all consuming | new workers (took turns) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for agent, x in scaled.get("reaction", {}).items():
        lines.append(
            f"| {agent} | {x['lag_step_s']} s | {x['decided_s']} s | {x['last_ready_s']} s | "
            f"{x['last_first_turn_s']} s | **{x['step_to_consuming_s']} s** | "
            f"{x['new_workers']} ({x['new_workers_that_took_turns']}) |"
        )
    met = all(
        x["step_to_consuming_s"] is not None and x["step_to_consuming_s"] <= TARGET_S
        for x in scaled.get("reaction", {}).values()
    )
    lines += [
        "",
        "Seconds from the burst, but the last column: from the agent's own lag step (the first "
        "reading over the threshold; team-b's backlog builds only as team-a answers) to the "
        f"last new worker's first turn. Target: within {TARGET_S:g} s: "
        f"**{'met' if met else 'missed'}**.",
        "",
        f"Drain (burst → last DebateEnded, broker timestamps): fixed fleet {fixed['drain_s']} s, "
        f"autoscaled {scaled['drain_s']} s: **{r['drain_ratio_autoscaled_to_fixed']}×**. "
        f"Peak workers {scaled['peak_workers']}; peak pending {scaled['peak_pending']}.",
    ]
    replace_block("autoscale", lines)


if __name__ == "__main__":
    sys.exit(main())
