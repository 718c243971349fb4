"""Prompt tokens per turn over a long debate: with agon's prompt budget, and without one.

Runs one 30-round debate on the offline model under each setting, in namespaces of their own
on one broker, and reads every turn's ``prompt_tokens`` from the debate's own topic (the
offline model counts with agon's estimate, about four characters a token). Without a budget
the prompt carries the whole history and grows every turn; with one it stops growing once
the history fills the budget: the newest turns verbatim, older ones condensed, the oldest
dropped.

    python benchmarks/prompt_tokens.py                 # results/prompt_tokens.json
    python benchmarks/prompt_tokens.py --rounds 50 --budget 1024
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from agon.connectors.transcript import follow, new_request, send_request
from agon.settings import Settings
from agon.streams.local.fleet import Fleet

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]  # run as a script: the benchmarks package beside it
from benchmarks.common import log, machine, own_broker, replace_block  # noqa: E402

RESULTS = HERE / "results" / "prompt_tokens.json"
UNBOUNDED = 1_000_000


def debate(home: Path, bootstrap: str, rounds: int, budget: int) -> list[dict[str, Any]]:
    os.environ.update(
        {
            "AGON_HOME": str(home),
            "AGON_NAMESPACE": f"pt{uuid.uuid4().hex[:8]}",
            "AGON_GATEWAY_ENABLED": "false",  # not measured here
            "AGON_KAFKA_BOOTSTRAP": bootstrap,
            "AGON_LLM_PROMPT_BUDGET_TOKENS": str(budget),
            "AGON_LLM_CONTEXT_TOKENS": str(max(4096, budget + 1024)),
        }
    )
    settings = Settings()
    fleet = Fleet(settings)
    fleet.up(["moderator", "team-a", "team-b"], progress=lambda line: None)
    try:
        req = new_request("AI's impact on the job market is positive", rounds=rounds)
        send_request(settings, req)
        events = list(follow(settings, req["debate_id"], wait_s=60, idle_timeout_s=120))
    finally:
        fleet.down()
    ended = events[-1][1]
    log(f"budget {budget}: {ended['reason']} after {ended['rounds_completed']} rounds")
    return [
        {"round": b["round"], "speaker": b["speaker"], "prompt_tokens": b["prompt_tokens"]}
        for t, b in events
        if t == "TurnTaken"
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--budget", type=int, default=Settings.model_construct().llm.prompt_budget_tokens)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--update-readme", action="store_true")
    args = p.parse_args(argv)

    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    home = Path(tempfile.mkdtemp(prefix="agon-prompt-tokens-"))
    broker = own_broker(home)
    try:
        bounded = debate(home, broker.bootstrap, args.rounds, args.budget)
        unbounded = debate(home, broker.bootstrap, args.rounds, UNBOUNDED)
    finally:
        broker.down()

    def by_round(turns: list[dict[str, Any]]) -> dict[int, int]:
        return {t["round"]: t["prompt_tokens"] for t in turns if t["speaker"] == "team-b"}

    b, u = by_round(bounded), by_round(unbounded)
    last = max(set(b) & set(u))
    result = {
        "benchmark": "prompt tokens per turn, with and without a budget",
        "started": started,
        "machine": machine(),
        "config": {"rounds": args.rounds, "budget_tokens": args.budget},
        "team_b_prompt_tokens_by_round": {"budget": b, "unbounded": u},
        "max_with_budget": max(b.values()),
        "last_round": last,
        "last_round_ratio_unbounded_to_budget": round(u[last] / b[last], 2),
        "turns": {"budget": bounded, "unbounded": unbounded},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("max_with_budget", "last_round_ratio_unbounded_to_budget")}))
    if args.update_readme:
        update_readme(result)
    return 0 if result["max_with_budget"] <= args.budget else 1


def update_readme(r: dict[str, Any]) -> None:
    m, tokens = r["machine"], r["team_b_prompt_tokens_by_round"]
    shown = [x for x in (1, 2, 4, 8, 12, 16, 20, 25, 30, 40, 50) if x in tokens["budget"]]
    lines = [
        f"Latest run: {r['started']}, {m['nproc']} CPUs ({m['cpu']}); {r['config']['rounds']} rounds, "
        f"budget {r['config']['budget_tokens']} tokens. team-b's prompt tokens by round:",
        "",
        "| round | " + " | ".join(str(x) for x in shown) + " |",
        "| --- | " + " | ".join("---" for _ in shown) + " |",
        "| with the budget | " + " | ".join(str(tokens["budget"][x]) for x in shown) + " |",
        "| without | " + " | ".join(str(tokens["unbounded"][x]) for x in shown) + " |",
        "",
        f"At round {r['last_round']} the prompt without a budget is "
        f"{r['last_round_ratio_unbounded_to_budget']}× the budgeted one; the budgeted prompt never "
        f"exceeds {r['max_with_budget']} tokens.",
    ]
    replace_block("prompt-tokens", lines)


if __name__ == "__main__":
    sys.exit(main())
