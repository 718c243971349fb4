"""Chaos harness: kill -9, SIGSTOP and broker restarts against a live agon fleet, then proof.

:func:`run_chaos` starts its own broker (own ``AGON_HOME``, own ports, so a restart touches
nothing else) and N workers per agent under agon's supervisor, requests debates on the
offline model with latency, and injects one fault at a time while debates are in flight:
SIGKILL of a worker (preferring one in the middle of a turn, spread over every agent),
SIGSTOP of a worker for longer than the session timeout, a broker restart. It waits for
every debate to end, then checks docs/design.md's guarantees by reading the topics afresh with
a read_committed consumer:

(a) every debate ended, with reason ROUNDS (nothing else should end one);
(b) per debate: DebateStarted first; then one TurnTaken per turn id ``<id>:<round>:<speaker>``,
    rounds 1..R contiguous, speakers alternating as DebateStarted lists them; DebateEnded
    last, with the rounds and the tokens of the turns before it;
(c) the moderator's table (last value per key of its changelog) equals the fold of each
    debate's log (status ended, the same turns in order, tokens = Σ prompt + completion);
    each debater's history of a debate holds, in its last value before deletion, exactly
    the turns of the log it took or was shown, each of its turn ids taken once and nothing
    pending; and it is deleted (last record a tombstone) once the debate ended;
(d) LLM calls (``llm call`` lines of the debaters' logs): every call beyond one per committed
    turn is explained by a fault that lost an earlier call of the same turn (its worker was
    killed, stopped, or lost the partition while the call ran, or the broker was down), and
    no call was made for a turn whose draft was already stored ahead of what triggered it.
    The issue's coarser bound, calls <= turns + kills, is reported beside it: it assumes one
    call in flight per killed worker, while a worker holds one per debate it is answering.

Takeover time per SIGKILL: from the kill to the first record the killed agent's role commits
afterwards for an affected debate (a debater: TurnTaken; the moderator: TurnRequested or
DebateEnded), affected meaning its inbox partition was owned by the killed worker
(assignment.json) and, for a debater, its turn was requested and not yet taken. A record
counts only if produced after the kill (its timestamp), so a transaction committed just
before the kill is never taken for a takeover.

Run it longer: ``python tests/chaos/harness.py --debates 100 --kills 50 --stops 5
--broker-restarts 2`` (``--json`` for the report as JSON). The bounded CI run is
tests/chaos/test_chaos.py; the takeover benchmark is benchmarks/takeover.py.

The modules beside this one: run.py (one run, start to end), faults.py (choosing and injecting
the faults), observe.py (the live read_committed observer), worker_logs.py (the workers' logs),
records.py (the topics read afresh), checks.py (the invariants), report.py (the report) and
environment.py (agents, ports, AGON_* variables).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

from environment import AGENTS
from report import ChaosReport
from run import Chaos, Progress

__all__ = ["AGENTS", "ChaosReport", "main", "run_chaos"]


def run_chaos(
    debates: int = 12,
    rounds: int = 3,
    kills: int = 6,
    stops: int = 1,
    broker_restarts: int = 1,
    workers: int = 2,
    latency: float = 1.0,
    seed: int | None = None,
    workdir: Path | str | None = None,
    deadline_s: float = 600.0,
    partitions: int = 4,
    concurrency: int = 4,
    gap_s: tuple[float, float] = (1.0, 3.0),
    keep: bool | None = None,
    log_level: str = "INFO",
    progress: Progress = print,
) -> ChaosReport:
    """Run debates under faults and check the invariants; see the module's docstring.

    ``workdir`` holds the broker's and the workers' state and logs (default: a new temp dir,
    removed after a passing run unless ``keep``; kept after a failing one, for post-mortems).
    """
    seed = random.randrange(1 << 30) if seed is None else seed
    own = workdir is None
    path = Path(tempfile.mkdtemp(prefix="agon-chaos-")) if own else Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    chaos = Chaos(
        debates=debates,
        rounds=rounds,
        kills=kills,
        stops=stops,
        broker_restarts=broker_restarts,
        workers=workers,
        latency=latency,
        seed=seed,
        workdir=path,
        deadline_s=deadline_s,
        partitions=partitions,
        concurrency=concurrency,
        gap_s=gap_s,
        log_level=log_level,
        progress=progress,
    )
    report = chaos.run()
    report.config = {
        "debates": debates,
        "rounds": rounds,
        "kills": kills,
        "stops": stops,
        "broker_restarts": broker_restarts,
        "workers": workers,
        "latency_s": latency,
        "seed": seed,
        "deadline_s": deadline_s,
        "partitions": partitions,
        "concurrency": concurrency,
        "session_timeout_s": getattr(getattr(chaos, "settings", None), "worker", None)
        and chaos.settings.worker.session_timeout_s,
    }
    if own and report.ok and not keep:
        shutil.rmtree(path, ignore_errors=True)
    else:
        (path / "report.json").write_text(json.dumps(report.to_json(), indent=2, default=str))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Run agon debates under kill -9, SIGSTOP and broker "
        "restarts, then check exactly-once turns and LLM calls."
    )
    p.add_argument("--debates", type=int, default=12)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--kills", type=int, default=6, help="SIGKILLs, spread over every agent")
    p.add_argument("--stops", type=int, default=1, help="SIGSTOPs past the session timeout")
    p.add_argument("--broker-restarts", type=int, default=1)
    p.add_argument("--workers", type=int, default=2, help="workers per agent")
    p.add_argument("--latency", type=float, default=1.0, help="offline model latency, seconds")
    p.add_argument("--concurrency", type=int, default=4, help="debates in flight while faults run")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--seed", type=int)
    p.add_argument("--workdir", help="keep state and logs here (default: a temp dir)")
    p.add_argument("--deadline", type=float, default=1800.0, help="seconds for the whole run")
    p.add_argument("--keep", action="store_true", help="keep the temp workdir after a passing run")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO"], help="the workers' log level")
    p.add_argument("--json", action="store_true", help="print the report as JSON at the end")
    args = p.parse_args(argv)
    report = run_chaos(
        debates=args.debates,
        rounds=args.rounds,
        kills=args.kills,
        stops=args.stops,
        broker_restarts=args.broker_restarts,
        workers=args.workers,
        latency=args.latency,
        seed=args.seed,
        workdir=args.workdir,
        deadline_s=args.deadline,
        partitions=args.partitions,
        concurrency=args.concurrency,
        keep=args.keep,
        log_level=args.log_level,
        progress=lambda line: print(line, file=sys.stderr if args.json else sys.stdout, flush=True),
    )
    if args.json:
        print(json.dumps(report.to_json(), indent=2, default=str))
    else:
        print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
