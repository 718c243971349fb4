"""The chaos run's report: the faults injected, what they cost, and every broken invariant."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Violation:
    """One broken invariant, at the first record where what was read differs from what must be."""

    invariant: str
    debate: str
    where: str  # topic[partition]@offset, or a log file
    expected: Any
    got: Any
    detail: str = ""

    def __str__(self) -> str:
        text = (
            f"({self.invariant}) debate {self.debate} at {self.where}: expected {self.expected!r}, "
            f"got {self.got!r}"
        )
        return f"{text}; {self.detail}" if self.detail else text


@dataclass
class Fault:
    kind: str  # kill | stop | broker
    at_s: float  # since the run started
    wall: float
    agent: str = ""
    worker: str = ""
    pid: int | None = None
    partitions: list[int] = field(default_factory=list)
    affected: list[str] = field(default_factory=list)  # debates whose progress needs a takeover
    in_flight: list[str] = field(default_factory=list)  # turns with an LLM call running in it
    takeover_s: float | None = None  # to the first committed step of an affected debate
    recovered_s: float | None = None  # until every worker was ready and affected debates moved
    duration_s: float = 0.0  # how long a worker stayed stopped, or the broker down
    detail: str = ""


@dataclass
class ChaosReport:
    config: dict[str, Any]
    namespace: str
    workdir: str
    duration_s: float = 0.0
    debates_requested: int = 0
    debates_ended: int = 0
    turns_committed: int = 0
    llm_calls: int = 0
    extra_llm_calls: int = 0
    extra_calls_by_cause: dict[str, int] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    takeover: dict[str, Any] = field(default_factory=dict)  # SIGKILL → next committed step
    stop_takeover: dict[str, Any] = field(default_factory=dict)  # SIGSTOP → the same
    broker_recovery: dict[str, Any] = field(default_factory=dict)  # broker back → next turn
    llm_call_allowance: int = 0  # calls in flight in killed or stopped workers (bound of (d3))
    extra_calls_per_debater_kill: float | None = None
    issue_bound_holds: bool | None = None  # llm calls <= committed turns + kills
    worker_exits: dict[str, int] = field(default_factory=dict)  # exits we did not cause, per worker
    violations: list[Violation] = field(default_factory=list)
    error: str | None = None  # the run itself failed (deadline, broker)

    @property
    def kills(self) -> list[Fault]:
        return [f for f in self.faults if f.kind == "kill"]

    @property
    def ok(self) -> bool:
        return self.error is None and not self.violations

    def summary(self) -> str:
        kinds = defaultdict(int)
        for f in self.faults:
            kinds[f.kind] += 1
        per_agent = defaultdict(int)
        for f in self.kills:
            per_agent[f.agent] += 1
        lines = [
            f"chaos run {self.namespace}: {'PASSED' if self.ok else 'FAILED'} in {self.duration_s:.0f} s "
            f"(workdir {self.workdir})",
            f"  debates: {self.debates_ended}/{self.debates_requested} ended, "
            f"{self.turns_committed} turns committed",
            f"  faults: {kinds['kill']} SIGKILL ({', '.join(f'{a} {n}' for a, n in sorted(per_agent.items()))}), "
            f"{kinds['stop']} SIGSTOP, {kinds['broker']} broker restart(s)",
            f"  takeover after SIGKILL: {_fmt_stats(self.takeover)}",
            f"  takeover after SIGSTOP: {_fmt_stats(self.stop_takeover)}",
            f"  next turn after a broker restart: {_fmt_stats(self.broker_recovery)}",
            f"  LLM calls: {self.llm_calls} for {self.turns_committed} turns: {self.extra_llm_calls} extra "
            f"({', '.join(f'{k} {v}' for k, v in sorted(self.extra_calls_by_cause.items())) or 'none'}); "
            f"per debater kill {_or_dash(self.extra_calls_per_debater_kill)}; "
            f"calls in flight in killed/stopped workers {self.llm_call_allowance}; "
            f"the issue's calls <= turns + kills: {self.issue_bound_holds}",
        ]
        if self.worker_exits:
            lines.append(
                "  worker exits not caused by a SIGKILL: "
                + ", ".join(f"{w} {n}" for w, n in sorted(self.worker_exits.items()))
            )
        if self.error:
            lines.append(f"  ERROR: {self.error}")
        if self.violations:
            lines.append(f"  {len(self.violations)} violation(s); the first: {self.violations[0]}")
            lines += [f"    {v}" for v in self.violations[1:10]]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]  # nearest rank
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 3),
        "p95": round(p95, 3),
        "max": round(ordered[-1], 3),
        "samples": [round(v, 3) for v in values],
    }


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def _fmt_stats(stats: dict[str, Any]) -> str:
    if not stats.get("n"):
        return "no samples"
    return f"p50 {stats['p50']:.2f} s, p95 {stats['p95']:.2f} s, max {stats['max']:.2f} s (n={stats['n']})"
