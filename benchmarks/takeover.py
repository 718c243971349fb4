"""Takeover after kill -9: how long a debate waits when the worker holding its turn dies, and
how many LLM calls each kill costs.

Runs the chaos harness (tests/chaos/harness.py) with SIGKILLs only, spread over the moderator
and both debaters, each preferring a worker in the middle of a turn. Per kill, the takeover
time runs from the SIGKILL to the first record the killed agent's role commits afterwards for a
debate it held (a debater: TurnTaken; the moderator: TurnRequested or DebateEnded), as seen by
a read_committed consumer. Every invariant of the harness is checked too; a failing run says
so in the results.

    python benchmarks/takeover.py                      # 24 kills, results/takeover.json
    python benchmarks/takeover.py --kills 40 --debates 50 --update-readme
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO)]  # run as a script: the benchmarks package beside it

from benchmarks.common import README, machine, replace_block  # noqa: E402

# isort: split
# benchmarks.common put the chaos harness on sys.path; agon itself is installed
from harness import run_chaos  # noqa: E402

RESULTS = HERE / "results" / "takeover.json"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=24, help="SIGKILLs (>= 20 for the published numbers)")
    p.add_argument("--debates", type=int, default=30)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--workers", type=int, default=2, help="workers per agent")
    p.add_argument("--latency", type=float, default=1.0, help="offline model latency, seconds")
    p.add_argument("--seed", type=int, default=20261124)
    p.add_argument("--deadline", type=float, default=2400.0)
    p.add_argument("--workdir", help="broker and worker state and logs (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temp workdir even after a passing run")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--update-readme", action="store_true", help="rewrite the takeover section of README.md")
    args = p.parse_args(argv)

    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    report = run_chaos(
        debates=args.debates,
        rounds=args.rounds,
        kills=args.kills,
        stops=0,
        broker_restarts=0,
        workers=args.workers,
        latency=args.latency,
        seed=args.seed,
        deadline_s=args.deadline,
        workdir=args.workdir,
        keep=args.keep,
        progress=lambda line: print(line, flush=True),
    )
    print(report.summary())
    kills = report.kills
    result = {
        "benchmark": "takeover after SIGKILL",
        "started": started,
        "machine": machine(),
        # a diagnosis aid injected into the workers (e.g. a sitecustomize), if any: results with one
        # are not results of agon as committed
        "workers_pythonpath": os.environ.get("PYTHONPATH") or None,
        "config": report.config,
        "passed": report.ok,
        "error": report.error,
        "violations": [str(v) for v in report.violations[:20]],
        "kills": len(kills),
        "kills_per_agent": {
            a: sum(1 for f in kills if f.agent == a) for a in sorted({f.agent for f in kills})
        },
        "takeover_s": report.takeover,
        "takeover_by_agent_s": {
            a: sorted(f.takeover_s for f in kills if f.agent == a and f.takeover_s is not None)
            for a in sorted({f.agent for f in kills})
        },
        "kills_without_affected_debate": sum(1 for f in kills if not f.affected),
        "turns_committed": report.turns_committed,
        "llm_calls": report.llm_calls,
        "extra_llm_calls": report.extra_llm_calls,
        "extra_llm_calls_per_debater_kill": report.extra_calls_per_debater_kill,
        "llm_calls_in_flight_at_kills": report.llm_call_allowance,
        "extra_calls_by_cause": report.extra_calls_by_cause,
        "worker_exits_not_killed": report.worker_exits,
        "duration_s": report.duration_s,
        "targets": {"takeover_p50_s": 5.0, "extra_llm_calls_per_debater_kill": 1.0},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    if args.update_readme:
        update_readme(result)
        print(f"updated {README}")
    return 0 if report.ok else 1


def update_readme(r: dict) -> None:
    t, m = r["takeover_s"], r["machine"]
    lines = [
        f"Latest run: {r['started']}, {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, "
        f"Python {m['python']}, {m['java']}.",
        "",
        "| measure | p50 | p95 | max | n | target |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| SIGKILL → next committed step of an affected debate (s) | {t.get('p50', '-')} | {t.get('p95', '-')} "
        f"| {t.get('max', '-')} | {t.get('n', 0)} | p50 ≤ 5 |",
        "",
        f"Extra LLM calls per debater kill: {r['extra_llm_calls_per_debater_kill']} (target ≤ 1): "
        f"{r['extra_llm_calls']} extra "
        f"calls for {r['turns_committed']} turns over {r['kills']} kills; {r['llm_calls_in_flight_at_kills']} "
        f"calls were in flight in the killed workers ({r['extra_calls_by_cause']}).",
        f"Invariants: {'all held' if r['passed'] else 'FAILED: ' + (r['error'] or r['violations'][0])}.",
    ]
    if r["workers_pythonpath"]:
        lines.append(
            f"Workers ran with PYTHONPATH={r['workers_pythonpath']} (a diagnosis workaround, "
            "not agon as committed)."
        )
    replace_block("takeover", lines)


if __name__ == "__main__":
    sys.exit(main())
