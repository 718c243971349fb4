"""`agon`: run the local broker and the agents, start debates, follow them.

Every command reads its settings once from the environment (AGON_*); see
agon/settings.py for the names.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pydantic import ValidationError

from agon.errors import AgonError

EPILOG = """\
examples:
  agon up                                   start Kafka (if none answers) and every agent
  agon debate "AI's impact on the job market is positive"
  agon tail 20261124-101500-ab12cd          follow any debate from its beginning
  echo '{"motion": "Cats beat dogs", "rounds": 2}' | agon request
  agon status ; agon lag ; agon down
  agon up --autoscale                       worker counts follow inbox lag (KEDA's rule)
  agon probe --every 60                     a synthetic user, for the SLO alerts
  agon registry up                          a local schema registry (Confluent's wire format)
  agon keys add alice                       an API key for the HTTP gateway (`agon up` runs it)

settings come from the environment, e.g. AGON_HOME (default .agon), AGON_KAFKA_BOOTSTRAP
(default 127.0.0.1:9092), AGON_LLM_BACKEND (offline | ollama), AGON_LLM_MODEL,
AGON_SCHEMA_REGISTRY_URL (default none: Avro single-object encoding).
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agon",
        description="Multi-agent debates on Apache Kafka.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("broker", help="the local single-node Kafka broker (KRaft, no Docker)")
    b.add_argument("action", choices=["up", "down", "status"])

    u = sub.add_parser(
        "up", help="start the broker if none answers, then N workers per agent under a supervisor"
    )
    u.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="workers per agent (default 1; with --autoscale, where it starts), each with its "
        "own data directory; the supervisor restarts any that dies, and a second `up` starts "
        "only what is missing",
    )
    u.add_argument(
        "--autoscale",
        action="store_true",
        help="let the supervisor set each agent's worker count from its inbox lag, by KEDA's "
        "rule: clamp(ceil(lag / lag_threshold), min, min(max, partitions)), set by "
        "AGON_AUTOSCALE_LAG_THRESHOLD, _MIN_REPLICA_COUNT, _MAX_REPLICA_COUNT, _POLLING_INTERVAL_S "
        "and _SCALE_DOWN_STABILIZATION_S (agon/settings.py). Decisions go to the supervisor's log "
        "and its /metrics. A later `up` without it fixes the counts again",
    )
    d = sub.add_parser("down", help="stop the supervisor, the agents' workers and the broker agon started")
    d.add_argument(
        "--keep-broker", action="store_true", help="leave the broker (and the local schema registry) running"
    )
    sub.add_parser("status", help="what runs: broker, supervisor and each worker")
    from agon.connectors.cli.lag import add_parser as add_lag_parser

    add_lag_parser(sub)
    from agon.connectors.cli.registry import add_parser as add_registry_parser

    add_registry_parser(sub)
    from agon.connectors.cli.gateway import add_parsers as add_gateway_parsers

    add_gateway_parsers(sub)

    pr = sub.add_parser(
        "probe",
        help="the synthetic probe: a short debate now and then, as a user would; its outcome "
        "and duration on /metrics (agon_probe_*), where Prometheus finds it via the supervisor",
    )
    pr.add_argument("--every", type=float, default=60.0, metavar="S", help="seconds between probes (60)")
    pr.add_argument("--once", action="store_true", help="one probe; exit 0 if it ended normally, else 1")
    pr.add_argument("--rounds", type=int, default=1, help="rounds of a probe debate (1)")
    pr.add_argument("--timeout", type=float, default=60.0, metavar="S", help="a probe fails after this (60)")
    pr.add_argument("--port", type=int, default=0, help="its /metrics port (default: a free one)")

    w = sub.add_parser("worker", help="run one agent's worker in the foreground")
    w.add_argument("agent", help="an agent of the roster, e.g. moderator, team-a, team-b")
    w.add_argument("--index", type=int, default=0, help="replica number (own data directory)")

    db = sub.add_parser("debate", help="request a debate and (on a terminal) follow it live")
    db.add_argument("motion", help="what Team A argues for and Team B against")
    db.add_argument("--rounds", type=int, default=8, help="rounds of one turn per team (default 8)")
    db.add_argument("--id", dest="debate_id", help="the debate id (default: time + random)")
    db.add_argument("--model", help="the model both teams use (default: each agent's own)")
    db.add_argument("--max-tokens", type=int, default=0, help="token budget; 0 means none")
    db.add_argument(
        "--follow",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="print the debate live until it ends (default: on a terminal)",
    )
    db.add_argument("--json", action="store_true", help="print events as JSON lines")

    t = sub.add_parser("tail", help="follow a debate's topic from its beginning (read_committed)")
    t.add_argument("debate_id")
    t.add_argument("--json", action="store_true", help="print events as JSON lines")
    t.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the debate to start")

    r = sub.add_parser(
        "request",
        help="produce DebateRequested events from stdin: one JSON object, or JSON Lines (one a line); "
        'prints one {"debate_id": ...} line per request',
    )
    r.add_argument(
        "--raw", action="store_true", help="skip the client-side checks; the moderator judges the request"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        from agon.settings import Settings

        settings = Settings()
    except ValidationError as exc:
        print(f"agon: invalid settings: {exc}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](args, settings)
    except AgonError as exc:
        print(f"agon: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def cmd_broker(args: argparse.Namespace, settings: Any) -> int:
    from agon.streams.local.broker import LocalBroker

    broker = LocalBroker(settings)
    if args.action == "up":
        print(broker.up(progress=_err).detail)
    elif args.action == "down":
        print("broker stopped" if broker.down() else "no broker started by agon was running")
    else:
        status = broker.status()
        print(status.detail)
        return 0 if status.reachable else 3
    return 0


def cmd_up(args: argparse.Namespace, settings: Any) -> int:
    from agon.streams.local.broker import LocalBroker
    from agon.streams.local.fleet import Fleet
    from agon.streams.local.registry import LocalRegistry

    if args.workers < 1:
        print(f"agon: --workers must be 1 or more, not {args.workers}", file=sys.stderr)
        return 2
    broker = LocalBroker(settings)
    if settings.kafka.bootstrap == broker.bootstrap:
        _err(broker.up(progress=_err).detail)
    registry = LocalRegistry(settings)
    if settings.schema_registry_url == registry.url:
        _err(registry.up(progress=_err).detail)
    workers = Fleet(settings).up(workers=args.workers, progress=_err, autoscale=args.autoscale)
    _err(f"{len(workers)} workers ready: " + ", ".join(w.name for w in workers))
    return 0


def cmd_down(args: argparse.Namespace, settings: Any) -> int:
    from agon.streams.local.broker import LocalBroker
    from agon.streams.local.fleet import Fleet
    from agon.streams.local.registry import LocalRegistry

    fleet = Fleet(settings)
    supervisor = fleet.supervisor()
    stopped = fleet.down()
    print(
        f"stopped {len(stopped)} worker(s)"
        + (f" and the supervisor (pid {supervisor})" if supervisor else "")
    )
    if not args.keep_broker and LocalRegistry(settings).down():
        print("registry stopped")  # before its storage, the broker
    if not args.keep_broker and LocalBroker(settings).down():
        print("broker stopped")
    return 0


def cmd_status(args: argparse.Namespace, settings: Any) -> int:
    from agon.streams.local.broker import LocalBroker
    from agon.streams.local.fleet import Fleet
    from agon.streams.local.registry import LocalRegistry

    broker = LocalBroker(settings).status()
    fleet = Fleet(settings)
    workers = fleet.workers()
    width = max([len("supervisor")] + [len(w.name) for w in workers])
    print(f"{'broker':<{width}} {broker.detail}")
    registry = LocalRegistry(settings)
    if settings.schema_registry_url or registry.status().running:
        print(f"{'registry':<{width}} {registry.status().detail}")
    print(f"{'supervisor':<{width}} {fleet.describe_supervisor()}, log {fleet.files.supervisor_log}")
    for w in workers:
        print(f"{w.name:<{width}} {w.describe()}, log {w.log}")
    from agon.connectors.gateway.server import gateway_url

    url = gateway_url(settings)
    if url:
        print(f"{'pages':<{width}} {url}/ (the API: {url}/docs)")
    return 0 if broker.reachable else 3


def cmd_probe(args: argparse.Namespace, settings: Any) -> int:
    from agon.connectors.probe import run_probes

    if args.every <= 0 or args.timeout <= 0 or args.rounds < 1:
        print("agon: --every and --timeout must be above 0, --rounds 1 or more", file=sys.stderr)
        return 2
    failed = run_probes(
        settings, args.every, args.rounds, args.timeout, args.port, report=_err, runs=1 if args.once else None
    )
    return 1 if failed else 0


def cmd_worker(args: argparse.Namespace, settings: Any) -> int:
    from agon.settings import GATEWAY_SLOT

    if args.agent == GATEWAY_SLOT:  # the supervisor's gateway slot
        from agon.connectors.gateway.server import serve

        return serve(settings)
    from agon.agents.roles import build, needs_llm
    from agon.connectors.llm.factory import make_llm
    from agon.streams.worker import run_worker

    llm = make_llm(settings.llm) if needs_llm(args.agent, settings) else None
    run_worker(build(args.agent, settings, args.index, llm=llm), settings)
    return 0


def cmd_debate(args: argparse.Namespace, settings: Any) -> int:
    from agon.connectors.transcript import new_request

    teams = settings.default_teams(args.model) if args.model else []
    req = new_request(args.motion, args.rounds, args.debate_id, teams, args.max_tokens)
    follow = sys.stdout.isatty() if args.follow is None else args.follow
    return _submit(req, settings, follow=follow, as_json=args.json)


def cmd_request(args: argparse.Namespace, settings: Any) -> int:
    from agon.agents.requests import validate_request
    from agon.connectors.transcript import new_request, send_request

    requests = []
    for where, given in _read_objects(sys.stdin.read()):
        requests.append(
            new_request(
                given.get("motion", ""),
                given.get("rounds", 8),
                given.get("debate_id"),
                given.get("teams"),
                given.get("max_tokens", 0),
                given.get("requested_by", "script"),
            )
        )
        problems = [] if args.raw else validate_request(requests[-1], settings)
        for problem in problems:
            print(f"agon: rejected{where}: {problem}", file=sys.stderr)
        if problems:
            return 2  # all or nothing: no request of a batch with a bad one is sent
    if not requests:
        raise AgonError("stdin holds no request: one JSON object, or JSON Lines (one object a line)")
    send_request(settings, *requests)
    for req in requests:
        print(json.dumps({"debate_id": req["debate_id"]}))
    return 0


def _read_objects(text: str) -> list[tuple[str, dict[str, Any]]]:
    """One JSON object, or JSON Lines: (where, object) pairs; AgonError names a bad line."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        return [("", whole)]
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            given = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AgonError(f"stdin line {number} is not JSON: {exc}") from exc
        if not isinstance(given, dict):
            raise AgonError(f"stdin line {number} must be a JSON object with at least a motion")
        found.append((f" (line {number})", given))
    return found


def _submit(req: dict[str, Any], settings: Any, *, follow: bool, as_json: bool, check: bool = True) -> int:
    from agon.agents.requests import validate_request
    from agon.connectors.transcript import send_request

    problems = validate_request(req, settings) if check else []
    if problems:
        for problem in problems:
            print(f"agon: rejected: {problem}", file=sys.stderr)
        return 2
    send_request(settings, req)
    if as_json and not follow:
        print(json.dumps({"debate_id": req["debate_id"]}))
    else:
        _err(f"debate {req['debate_id']} requested")
    return _follow(settings, req["debate_id"], as_json) if follow else 0


def cmd_tail(args: argparse.Namespace, settings: Any) -> int:
    return _follow(settings, args.debate_id, args.json, wait_s=args.wait)


def _follow(settings: Any, debate_id: str, as_json: bool, wait_s: float = 120.0) -> int:
    from rich.console import Console

    from agon.connectors.transcript import follow, render

    console = Console()
    ended = None
    for record_type, body in follow(settings, debate_id, wait_s=wait_s):
        if as_json:
            print(json.dumps({"type": record_type, **body}), flush=True)
        else:
            render(console, record_type, body)
        ended = body if record_type == "DebateEnded" else ended
    return 0 if ended and ended["reason"] in ("ROUNDS", "UNPRODUCTIVE", "BUDGET") else 4


def cmd_lag(args: argparse.Namespace, settings: Any) -> int:
    from agon.connectors.cli.lag import cmd_lag as lag

    return lag(args, settings)


def cmd_registry(args: argparse.Namespace, settings: Any) -> int:
    from agon.connectors.cli.registry import cmd_registry as registry

    return registry(args, settings)


def cmd_gateway(args: argparse.Namespace, settings: Any) -> int:
    from agon.connectors.cli.gateway import cmd_gateway as gateway

    return gateway(args, settings)


def cmd_keys(args: argparse.Namespace, settings: Any) -> int:
    from agon.connectors.cli.gateway import cmd_keys as keys

    return keys(args, settings)


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


COMMANDS = {
    "broker": cmd_broker,
    "up": cmd_up,
    "down": cmd_down,
    "status": cmd_status,
    "worker": cmd_worker,
    "probe": cmd_probe,
    "debate": cmd_debate,
    "tail": cmd_tail,
    "request": cmd_request,
    "lag": cmd_lag,
    "registry": cmd_registry,
    "gateway": cmd_gateway,
    "keys": cmd_keys,
}
