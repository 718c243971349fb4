"""The supervisor's lag reader, as a child process: one JSON line per reading on stdout.

librdkafka's admin client can abort the process it runs in when a group request times
out or the broker restarts under it (``rd_kafka_enq_once_del_source_return: Assertion
`eonce->refcnt > 0'``, confluentinc/librdkafka#4605 and #3663, open in 2.16; a segfault in
``rdk:main`` on the same path). In a child such a crash costs one reading; the
supervisor, which restarts workers, must not share it. Settings come from the
environment, as the supervisor's own do.

A line is ``{"lag": {agent: [pending, partitions]}, "read_s": s}`` or ``{"error": reason}``.
The child ends when its parent does.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import sys
import time

from agon.errors import AgonError
from agon.settings import Settings
from agon.streams.lag import LagReader, pending_by_agent

__all__ = ["main", "reading"]


def reading(reader: LagReader, limit: int, partitions: int) -> dict[str, list[int]]:
    """Each agent's records pending in its inboxes (changelogs are no backlog) and how many
    inbox partitions it has."""
    rows = [row for row in reader.read(limit=limit) if row.source]
    pending = pending_by_agent(rows)
    spread: dict[str, int] = {}
    for row in rows:
        spread[row.agent] = max(spread.get(row.agent, 0), row.partition + 1)
    return {a: [pending.get(a, 0), spread.get(a, partitions)] for a in spread}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agon.streams.local.lagwatch", description=__doc__)
    p.add_argument("--every", type=float, required=True, metavar="S", help="seconds between readings")
    p.add_argument("--limit", type=int, required=True, help="stop counting an agent's backlog here")
    args = p.parse_args(argv)
    faulthandler.enable()  # a crash leaves librdkafka's caller in the supervisor's log
    settings = Settings()
    parent = os.getppid()
    with LagReader(settings) as reader:
        while os.getppid() == parent:
            started = time.monotonic()
            try:
                line = {
                    "lag": reading(reader, args.limit, settings.kafka.partitions),
                    "read_s": round(time.monotonic() - started, 3),
                }
            except AgonError as exc:
                line = {"error": str(exc)}
            try:
                print(json.dumps(line), flush=True)
            except BrokenPipeError:  # the supervisor stopped listening
                return 0
            time.sleep(max(0.0, args.every - (time.monotonic() - started)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
