"""The supervisor's lag reader, as a child process: one JSON line per reading on stdout.

librdkafka's admin client can abort the process it runs in when a group request times
out or the broker restarts under it (``rd_kafka_enq_once_del_source_return: Assertion
`eonce->refcnt > 0'``, confluentinc/librdkafka#4605 and #3663, open in 2.16; a segfault in
``rdk:main`` on the same path). In a child such a crash costs one reading; the
supervisor, which restarts workers, must not share it. Settings come from the
environment, as the supervisor's own do.

A line is ``{"lag": {agent: [pending, partitions]}, "members": {agent: n}, "committed":
{agent: offsets}, "read_s": s}`` or ``{"error": reason}``. The child ends when its parent
does. :class:`LagFollower` runs the child from a parent (the supervisor's autoscaler, the
gateway's operations page) and hands it each line, starting another child when one dies.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from agon.errors import AgonError
from agon.settings import Settings
from agon.streams.lag import LagReader, pending_by_agent

__all__ = ["LagFollower", "main", "reading"]

log = logging.getLogger("agon.lagwatch")


def reading(rows: list[Any], partitions: int) -> dict[str, list[int]]:
    """Each agent's records pending in its inboxes (the source rows of a reading; changelogs
    are no backlog) and how many inbox partitions it has."""
    pending = pending_by_agent(rows)
    spread: dict[str, int] = {}
    for row in rows:
        spread[row.agent] = max(spread.get(row.agent, 0), row.partition + 1)
    return {a: [pending.get(a, 0), spread.get(a, partitions)] for a in spread}


def activity(reader_rows: list[Any]) -> tuple[dict[str, int], dict[str, int]]:
    """Each agent's members owning its source partitions, and the sum of its committed offsets."""
    members: dict[str, set[str]] = {}
    committed: dict[str, int] = {}
    for row in reader_rows:
        members.setdefault(row.agent, set())
        if row.member:
            members[row.agent].add(row.member)
        committed[row.agent] = committed.get(row.agent, 0) + (row.committed or 0)
    return {a: len(m) for a, m in members.items()}, committed


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
                rows = [row for row in reader.read(limit=args.limit) if row.source]
                members, committed = activity(rows)
                line = {
                    "lag": reading(rows, settings.kafka.partitions),
                    "members": members,
                    "committed": committed,
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


class LagFollower:
    """A thread that follows a lag child's lines (``on_line``), and starts another child,
    after a pause, when one exits: a crash in librdkafka costs a reading, not the caller."""

    def __init__(self, every_s: float, limit: int, on_line: Callable[[dict[str, Any]], None]) -> None:
        self.cmd = [sys.executable, "-m", __name__, "--every", str(every_s), "--limit", str(limit)]
        self.on_line = on_line
        self.crashes = 0  # children that died under us
        self._child: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="agon-lagwatch", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        from agon.streams.local.files import describe_exit

        while not self._stop.is_set():
            # its stderr is the parent's: a crash's stack lands in the parent's log
            proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
            self._child = proc
            assert proc.stdout is not None
            for raw in proc.stdout:
                self.on_line(json.loads(raw))
            code = proc.wait()
            if not self._stop.is_set():
                self.crashes += 1
                log.warning(
                    "the lag reader (pid %d) exited (%s); starting another", proc.pid, describe_exit(code)
                )
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        self._thread.join(timeout=15)


if __name__ == "__main__":
    sys.exit(main())
