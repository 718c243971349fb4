"""Each measure of ``python -m benchmarks``: what it runs, and the JSON section it returns."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import figures, floor, inprocess
from .common import log, percentiles
from .debates import AgonFleet, Batch, summary

MEASURES = ("floor", "inprocess", "handoff", "throughput", "capacity", "rss", "recovery")


@dataclass(frozen=True)
class Plan:
    """The sizes of a run: ``make bench``'s, or the smoke run's tiny ones."""

    smoke: bool = False
    levels: tuple[int, ...] = (1, 10, 40, 100, 1000)
    floor_records: int = 300
    capacity: tuple[int, int] = (500, 2)  # debates, rounds
    rss: tuple[int, int] = (1000, 3)
    latency_s: float = 2.0
    history: int = 2000
    kills: int = 2
    cpu_window_s: float = 5.0
    settle_s: float = 20.0
    #: debates, rounds of a batch run before the levels and not counted: a fresh broker's JIT
    #: (and the workers' first topic and metadata work) would otherwise weigh on level 1
    warm_up: tuple[int, int] = (20, 10)

    @classmethod
    def tiny(cls) -> Plan:
        return cls(True, (1, 3), 20, (4, 1), (6, 1), 0.5, 0, 1, 1.0, 1.0, (1, 1))

    def shape(self, debates: int) -> tuple[int, int]:
        """(rounds, batches) of a concurrency level: one debate at a time five times over, long
        enough for a hundred-odd gaps; more debates, fewer rounds each."""
        if self.smoke:
            return 2, 1
        if debates == 1:
            return 20, 5
        return max(2, min(10, 400 // debates)), 1


def deadline_s(debates: int, rounds: int, latency_s: float) -> float:
    """How long a batch may take: ample at 20 turns/s plus its model calls in a row; at most 4 min."""
    turns = debates * rounds * 2
    return min(240.0, 30 + turns * 0.05 + rounds * 2 * latency_s)


@dataclass
class Run:
    """Where a run happens: its broker, its home, its plan; notes for the README."""

    plan: Plan
    home: Path
    bootstrap: str
    broker: Any = None  # LocalBroker, when the run started its own
    budget_s: float = 840.0
    notes: list[str] = field(default_factory=list)
    timestamps: str | None = None
    started: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        """Seconds of the run's budget left."""
        return self.budget_s - (time.monotonic() - self.started)

    def deadline(self, debates: int, rounds: int, latency_s: float) -> float:
        return max(1.0, min(deadline_s(debates, rounds, latency_s), self.left()))

    @property
    def broker_pid(self) -> int | None:
        return self.broker.status().pid if self.broker is not None else None


def measure_floor(run: Run) -> dict[str, Any]:
    log(f"raw floor: {run.plan.floor_records} records plain, then one transaction each")
    return floor.measure(run.bootstrap, run.plan.floor_records)


def measure_inprocess(run: Run) -> dict[str, Any]:
    levels = []
    for n in run.plan.levels:
        rounds, batches = run.plan.shape(n)
        stamps = inprocess.run(n, rounds, batches)
        levels.append({"debates": n, "rounds": rounds, "batches": batches, **figures.rate(stamps)})
        log(f"in-process, {n} debate(s): {levels[-1]['turns_per_s']} turns/s")
    return {"levels": levels}


def measure_levels(run: Run, levels: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    """Turns/s at each level on a zero-latency fleet; the hand-off from level 1's debates."""
    found: dict[str, dict[str, Any]] = {"throughput": {"levels": []}}
    with AgonFleet(run.home, run.bootstrap, 0.0, run.broker_pid) as fleet:
        n, rounds = run.plan.warm_up
        log(f"warm-up, not counted: {n} debate(s) × {rounds} round(s)")
        fleet.run(n, rounds, run.deadline(n, rounds, 0.0))
        for n in levels:
            rounds, batches = run.plan.shape(n)
            done = [fleet.run(n, rounds, run.deadline(n, rounds, 0.0)) for _ in range(batches)]
            level = level_figures(done)
            found["throughput"]["levels"].append(level)
            log(f"agon, {n} debate(s): {level['turns_per_s']} turns/s, gaps {level['gaps_ms']}")
            if not level["complete"]:
                run.notes.append(f"level {n}: {level['note']}; the level was not reached")
                break  # what still runs would load the next level
            if n == 1:
                gaps = figures.gaps_ms(d.turns_ms for b in done for d in b.debates)
                found["handoff"] = {
                    "debates": batches,
                    "rounds": rounds,
                    "gaps_ms": percentiles(gaps),
                    "samples_ms": gaps,
                }
        run.timestamps = fleet.timestamp_type()
    return found


def level_figures(batches: list[Batch]) -> dict[str, Any]:
    level = {
        **summary(batches),
        **figures.rate([[t / 1000 for d in b.debates for t in d.turns_ms] for b in batches]),
        "gaps_ms": percentiles(figures.gaps_ms(d.turns_ms for b in batches for d in b.debates)),
        "peak_active": max(_peak(b)[0] for b in batches),
    }
    if not level["complete"]:
        total = sum(len(b.debates) for b in batches)
        deadline = batches[-1].deadline_s
        level["note"] = f"{level['ended']} of {total} debates ended within the {deadline:.0f} s deadline"
    return level


def measure_slow(run: Run, which: set[str]) -> dict[str, dict[str, Any]]:
    """Capacity and memory on a fleet whose model takes ``plan.latency_s`` a call."""
    found = {}
    latency = run.plan.latency_s
    with AgonFleet(run.home, run.bootstrap, latency, run.broker_pid) as fleet:
        for name in ("capacity", "rss"):
            if name not in which:
                continue
            n, rounds = getattr(run.plan, name)
            batch = fleet.run(n, rounds, run.deadline(n, rounds, latency))
            found[name] = slow_figures(batch, latency)
            log(
                f"{name}: {found[name].get('fraction_of_ideal')} of ideal, peak {found[name]['peak_active']} active"
            )
            if not batch.complete:
                run.notes.append(f"{name}: {found[name]['note']}")
                break
    return found


def slow_figures(batch: Batch, latency: float) -> dict[str, Any]:
    peak, at = _peak(batch)
    ended = [d.ended_ms for d in batch.debates if d.ended_ms is not None]
    requested = [d.requested_ms for d in batch.debates if d.requested_ms is not None]
    found = {
        **summary([batch]),
        "latency_s": latency,
        **figures.capacity(requested, ended, 2 * batch.rounds, latency),
        "peak_active": peak,
        "rss_at_peak_mib": figures.rss_at(batch.rss_mib, at),
    }
    if not batch.complete:
        bound = found["ideal_s"] / batch.elapsed_s
        found.update(actual_s=None, fraction_of_ideal=None, fraction_at_most=round(bound, 3))
        found["note"] = (
            f"{batch.ended} of {len(batch.debates)} debates ended within the {batch.deadline_s:.0f} s deadline "
            f"(at most {bound:.0%} of the ideal rate)"
        )
    return found


def measure_recovery(run: Run) -> dict[str, Any]:
    if run.plan.smoke:
        return {"note": "not run with --smoke (each kill waits out the supervisor's back-off)"}
    if run.broker is None:
        return {"note": "not run: needs a broker of its own (it compacts and sizes changelogs)"}
    from environment import agon_environment

    from . import recovery

    plan = run.plan
    log(f"moderator recovery: {plan.history:,} ended debates vs none, {plan.kills} kill(s) each")
    with agon_environment({"AGON_HOME": str(run.home)}):
        found = recovery.measure(
            run.broker, run.home, plan.history, plan.kills, plan.cpu_window_s, settle_s=plan.settle_s
        )
    found["note"] = (
        f"{plan.history:,} ended debates, {plan.kills} kill(s), sizes settled for {plan.settle_s:g} s; "
        "the reference is `python benchmarks/recovery.py` (10,000, 5 kills)"
    )
    return found


def _peak(batch: Batch) -> tuple[int, int | None]:
    return figures.peak_active((d.started_ms, d.ended_ms) for d in batch.debates)
