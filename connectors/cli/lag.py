"""`agon lag`: each agent's consumer lag, as ``kafka-consumer-groups --describe`` prints it,
with the records really waiting beside it (:mod:`agon.streams.lag`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich loads only when `lag` runs: `agon`'s parser imports this module
    from rich.console import Console, Group

__all__ = ["add_parser", "cmd_lag"]

COLUMNS = (
    "GROUP",
    "TOPIC",
    "PARTITION",
    "CURRENT-OFFSET",
    "LOG-END-OFFSET",
    "LAG",
    "PENDING",
    "CONSUMER-ID",
    "HOST",
    "CLIENT-ID",
)

LEGEND = (
    "LAG = LOG-END-OFFSET - CURRENT-OFFSET, as kafka-consumer-groups counts it: transaction markers "
    "and aborted records included; PENDING = the records a read_committed consumer still receives "
    "('+': at least that many)"
)

DESCRIPTION = """\
Each agent's consumer group, partition by partition, the way Kafka's own
`kafka-consumer-groups --describe --group <group>` prints it, with a PENDING
column beside LAG: every partition the group has committed an offset on or a
member owns, and every partition of its input topics (its inbox; the
moderator's also the request topic) even before anything is committed there.

columns:
  GROUP            the agent's consumer group (<namespace>-<agent>)
  TOPIC PARTITION  the partition
  CURRENT-OFFSET   the group's committed offset ('-': nothing committed yet)
  LOG-END-OFFSET   the high watermark, the offset the next record will get
  LAG              LOG-END-OFFSET - CURRENT-OFFSET ('-' when nothing is committed), exactly
                   as kafka-consumer-groups shows it: with transactions each commit or abort
                   marker and each aborted record takes an offset, so a fully read partition
                   can show a lag of 1 or more
  PENDING          the data records a read_committed consumer of the group would still
                   receive, up to the last stable offset (open transactions wait): markers and
                   aborted records left out; from the beginning when nothing is committed (the
                   workers reset to earliest); '+' when counting stopped at --limit; counted
                   on the topics the group consumes (inbox, requests) only: a changelog a
                   member reads by assignment shows '-'
  CONSUMER-ID      the member that owns the partition ('-': none does right now)
  HOST CLIENT-ID   that member's host and client id
a TOTAL line per agent sums LAG, and PENDING: the agent's backlog, what `agon up --autoscale`
scales on.

--json prints one JSON object per partition (JSON Lines), with the keys agent, group,
topic, partition, committed, log_end, lag, stable_end, pending, pending_capped, member,
host, client_id, source (a topic the group consumes); null where the table shows '-'.
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the `lag` command to ``sub``, the subparsers of `agon`'s parser."""
    p = sub.add_parser(
        "lag",
        help="consumer lag of each agent's group, as kafka-consumer-groups shows it, and the records pending",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("agents", nargs="*", metavar="AGENT", help="agents of the roster (default: all of them)")
    p.add_argument(
        "--watch",
        nargs="?",
        const="2",
        default=None,
        metavar="SECONDS",
        help="refresh every SECONDS (default 2) until Ctrl-C",
    )
    p.add_argument("--json", action="store_true", help="JSON Lines: one object per partition")
    p.add_argument(
        "--limit",
        type=int,
        default=10_000,
        metavar="N",
        help="count at most N pending records per partition (default 10000)",
    )
    p.add_argument("--no-pending", action="store_true", help="do not count PENDING (admin requests only)")
    return p


def cmd_lag(args: argparse.Namespace, settings: Any) -> int:
    from rich.console import Console

    from agon.streams.lag import LagReader

    agents = list(args.agents)
    interval = None
    if args.watch is not None:
        try:
            interval = float(args.watch)
        except ValueError:  # `agon lag --watch team-a`: the agent, not the seconds
            agents.insert(0, args.watch)
            interval = 2.0
        if not 0 < interval < float("inf"):
            print(f"agon: --watch takes a positive number of seconds, not {args.watch}", file=sys.stderr)
            return 2
    if args.limit < 1:
        print(f"agon: --limit must be 1 or more, not {args.limit}", file=sys.stderr)
        return 2
    console = Console(width=None if sys.stdout.isatty() else 1000)
    with LagReader(settings) as reader:

        def read() -> list[Any]:
            return reader.read(agents or None, count_pending=not args.no_pending, limit=args.limit)

        if interval is None:
            _show(console, read(), args.json)
            return 0
        try:
            _watch(console, read, interval, args.json)
        except KeyboardInterrupt:
            pass
    return 0


def _watch(console: Console, read: Any, interval: float, as_json: bool) -> None:
    from rich.console import Group
    from rich.text import Text

    from agon.errors import AgonError

    live = None
    if console.is_terminal and not as_json:
        from rich.live import Live

        live = Live(console=console, auto_refresh=False)
        live.start()
    try:
        while True:
            started = time.monotonic()
            try:
                rows = read()
            except AgonError as exc:
                if not exc.retriable:
                    raise
                print(f"agon: {exc}", file=sys.stderr, flush=True)
            else:
                if live is not None:
                    stamp = Text(time.strftime("%H:%M:%S") + f"  every {interval:g} s, Ctrl-C ends")
                    live.update(Group(stamp, render(rows)), refresh=True)
                else:
                    _show(console, rows, as_json)
                    if not as_json:
                        console.print()
            time.sleep(max(interval - (time.monotonic() - started), 0.0))
    finally:
        if live is not None:
            live.stop()


def _show(console: Console, rows: list[Any], as_json: bool) -> None:
    if as_json:
        for row in rows:
            print(json.dumps(asdict(row)), flush=True)
    elif console.is_terminal:
        console.print(render(rows))
    else:  # a pipe: plain lines, without the padding rich gives the last column
        with console.capture() as captured:
            console.print(render(rows))
        print("\n".join(line.rstrip() for line in captured.get().splitlines()), flush=True)


def render(rows: list[Any]) -> Group:
    """The legend, then per agent a table like kafka-consumer-groups' and its TOTAL line."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = [Text(LEGEND, style="dim")]
    agents: dict[str, list[Any]] = {}
    for row in rows:
        agents.setdefault(row.agent, []).append(row)
    for agent, own in agents.items():
        table = Table(box=None, pad_edge=False, header_style="bold", padding=(0, 2, 0, 0))
        for name in COLUMNS:
            numeric = name in ("PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "PENDING")
            table.add_column(name, justify="right" if numeric else "left", no_wrap=True)
        for row in own:
            table.add_row(
                row.group,
                row.topic,
                str(row.partition),
                _dash(row.committed),
                str(row.log_end),
                _dash(row.lag),
                _pending(row.pending, row.pending_capped),
                _dash(row.member),
                _dash(row.host),
                _dash(row.client_id),
            )
        parts += [Text(""), table, Text(_total(agent, own), style="bold")]
    if not agents:
        parts.append(Text("no agent to show"))
    return Group(*parts)


def _total(agent: str, rows: list[Any]) -> str:
    lag = sum(r.lag for r in rows if r.lag is not None)
    counted = [r for r in rows if r.pending is not None and r.source]
    pending = (
        _pending(sum(r.pending for r in counted), any(r.pending_capped for r in counted)) if counted else "-"
    )
    members = len({r.member for r in rows if r.member})
    return (
        f"TOTAL {agent}: LAG {lag}  PENDING {pending}  "
        f"({_plural(len(rows), 'partition')}, {_plural(members, 'member')})"
    )


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def _pending(value: int | None, capped: bool) -> str:
    return "-" if value is None else f"{value}+" if capped else str(value)
