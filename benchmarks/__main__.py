"""agon's benchmark, side by side in one run (`make bench`, under 15 minutes on 2 CPUs).

On a broker of its own (or the one --bootstrap names), with one worker per agent, exactly-once
on and the offline model, measured from outside (the broker's record timestamps, /proc):

  floor       raw produce -> consume round trip with confluent-kafka at its defaults, plain
              and with one transaction per record (client-side clock)
  handoff     gap between consecutive committed TurnTaken records of a debate, p50/p99,
              one debate at a time, zero-latency model
  throughput  committed turns/s at 1, 10, 40, 100 and 1,000 concurrent debates, zero-latency
              model (includes handoff: level 1 is its debates)
  inprocess   the same debates in a plain asyncio loop in this process, same model: the
              ratio agon / in-process is what the distribution costs
  capacity    500 debates x 2 rounds with a 2 s model: first request -> last DebateEnded
              against the ideal 8 s
  rss         VmRSS of each worker while 1,000 debates run on the 2 s model
  recovery    moderator recovery after kill -9 with a history of ended debates vs none
              (benchmarks/recovery.py, smaller than its standalone reference run)

Writes bench.json, turns_per_s.png and handoff.png to --out; --update-readme rewrites the
table in benchmarks/README.md. The standalone benchmarks run on their own:
python -m benchmarks.takeover | .recovery | .prompt_tokens (or python benchmarks/<name>.py).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from . import plots
from .common import HERE, alter_config, log, machine, own_broker, replace_block, versions
from .measures import (
    MEASURES,
    Plan,
    Run,
    measure_floor,
    measure_inprocess,
    measure_levels,
    measure_recovery,
    measure_slow,
)
from .table import TARGETS, readme_lines, verdicts

RESULTS = HERE / "results"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes: it runs, in about a minute")
    p.add_argument("--only", metavar="NAME[,NAME]", help=f"a subset of: {', '.join(MEASURES)}")
    p.add_argument("--out", type=Path, default=RESULTS, metavar="DIR", help="default: benchmarks/results")
    p.add_argument("--update-readme", action="store_true", help="rewrite the bench table in README.md")
    p.add_argument("--bootstrap", metavar="HOST:PORT", help="use this broker instead of starting one")
    p.add_argument("--workdir", type=Path, help="broker and worker state and logs (default: a temp dir)")
    p.add_argument("--levels", help="concurrency levels, e.g. 1,10,40 (default 1,10,40,100,1000)")
    p.add_argument("--history", type=int, help="ended debates for the recovery measure (default 2000)")
    p.add_argument(
        "--budget", type=float, default=840.0, metavar="SECONDS", help="the run's time limit (default 840)"
    )
    args = p.parse_args(argv)
    args.which = set(args.only.split(",")) if args.only else set(MEASURES)
    unknown = args.which - set(MEASURES)
    if unknown:
        p.error(f"unknown measure(s) {', '.join(sorted(unknown))}; known: {', '.join(MEASURES)}")
    return args


def plan_of(args: argparse.Namespace) -> Plan:
    plan = Plan.tiny() if args.smoke else Plan()
    changes: dict[str, Any] = {}
    if args.levels:
        changes["levels"] = tuple(int(x) for x in args.levels.split(","))
    if args.history is not None:
        changes["history"] = args.history
    return Plan(**{**plan.__dict__, **changes})


def start_broker(home: Path) -> Any:
    """A broker of our own, stamping every record with the time it appends it
    (``log.message.timestamp.type=LogAppendTime`` on each broker): the broker's own clock."""
    broker = own_broker(home)
    stamp_on_append(broker.bootstrap)
    return broker


def stamp_on_append(bootstrap: str) -> None:
    """Make every broker of ``bootstrap`` stamp records with their append time (a dynamic
    per-broker setting: librdkafka refuses the cluster-wide default's empty name)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for broker_id in admin.list_topics(timeout=30).brokers:
        alter_config(admin, str(broker_id), {"log.message.timestamp.type": "LogAppendTime"}, kind="BROKER")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    plan = plan_of(args)
    home = args.workdir or Path(tempfile.mkdtemp(prefix="agon-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    result: dict[str, Any] = {
        "benchmark": "agon, side by side (python -m benchmarks)",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(
            ["python -m benchmarks", shlex.join(sys.argv[1:] if argv is None else argv)]
        ).strip(),
        "machine": machine(),
        "plan": plan.__dict__,
        "measures": sorted(args.which, key=MEASURES.index),
        "targets": TARGETS,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "bench.json"
    broker = None
    if args.bootstrap or args.which == {"inprocess"}:
        bootstrap = args.bootstrap or ""
    else:
        broker = start_broker(home)
        bootstrap = broker.bootstrap
    kafka = broker.settings.broker.kafka_version if broker else None
    result["versions"] = versions(kafka)
    result["broker"] = f"its own, {bootstrap}" if broker else f"given, {bootstrap or 'none'}"
    run = Run(plan, home, bootstrap, broker, args.budget)
    steps = [  # (measures, seconds of the budget it needs at least, what runs them)
        # the levels first: their warm-up batch also warms the broker's JIT for the floor
        ({"handoff", "throughput"}, 30, lambda: measure_levels(run, levels(plan, args.which))),
        ({"floor"}, 0, lambda: {"floor": measure_floor(run)}),
        ({"inprocess"}, 0, lambda: {"inprocess": measure_inprocess(run)}),
        ({"capacity", "rss"}, 30, lambda: measure_slow(run, args.which)),
        ({"recovery"}, 0 if plan.smoke else 180, lambda: {"recovery": measure_recovery(run)}),
    ]
    failed = []
    try:
        for names, needs_s, step in steps:
            if not names & args.which:
                continue
            if run.left() < needs_s:
                note = f"not run: {run.left():.0f} s of the {args.budget:.0f} s budget left"
                result.update({n: {"note": note} for n in names & args.which})
                run.notes.append(f"{', '.join(sorted(names & args.which))}: {note}")
                continue
            try:
                result.update(step())
            except Exception as exc:  # the other measures still run; the error is in the results
                log(f"{'/'.join(sorted(names))} failed: {exc!r}")
                traceback.print_exc()
                result.update({n: {"error": repr(exc)} for n in names & args.which})
                failed += sorted(names & args.which)
            write(result, out, t0, run)
    finally:
        if broker is not None:
            broker.down()
    result["verdicts"] = verdicts(result)
    result["plots"] = [
        str(p) for p in (plots.turns_per_s(result, args.out), plots.handoff(result, args.out)) if p
    ]
    write(result, out, t0, run)
    log(f"wrote {out} and {len(result['plots'])} plot(s) in {result['duration_s']:.0f} s")
    for row in result["verdicts"]:
        met = {True: "met", False: "MISSED", None: "-"}[row["met"]]
        print(f"  {row['measure']}: {row['measured'] or 'not measured'} (target {row['target']}: {met})")
    if args.update_readme:
        replace_block("bench", readme_lines(result))
        log("updated benchmarks/README.md")
    return 1 if failed else 0


def levels(plan: Plan, which: set[str]) -> tuple[int, ...]:
    return plan.levels if "throughput" in which else (1,)


def write(result: dict[str, Any], out: Path, t0: float, run: Run) -> None:
    result["duration_s"] = round(time.monotonic() - t0, 1)
    result["notes"] = list(run.notes)
    if run.timestamps:
        who = "set on the benchmark's own broker" if run.broker else "the given broker's"
        result["timestamps"] = f"{run.timestamps} ({who}) on the debate topics"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
