"""The workers' logs, read as they grow: LLM calls, drafts, takeovers, assignments."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from agon.streams.local.supervisor import START_MARK

_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] \[(\d+)\] \[\w+\] (.*)$")
_TURN = re.compile(r"debate=(\S+) turn=(\S+) (llm call to|drafted by|failed:|resumed after takeover)")
_OWNS = re.compile(r"\S+ owns inbox partitions \[([\d, ]*)\]")
_KINDS = {
    "llm call to": "call",
    "drafted by": "drafted",
    "failed:": "failed",
    "resumed after takeover": "resumed",
}


@dataclass
class LogEvent:
    kind: str  # start | call | drafted | failed | resumed | owns
    worker: str  # agent-index
    pid: int
    wall: float
    turn: str = ""
    partitions: tuple[int, ...] = ()

    @property
    def agent(self) -> str:
        return self.worker.rpartition("-")[0]


class WorkerLogs:
    """The workers' logs, read as they grow: LLM calls, drafts, takeovers, assignments."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._offsets: dict[Path, int] = {}
        self.events: list[LogEvent] = []
        #: worker -> turns whose LLM call runs in its current process
        self.in_flight: dict[str, set[str]] = defaultdict(set)
        self.last_line: dict[int, float] = {}  # pid -> wall time of its last log line

    def poll(self) -> None:
        for path in sorted(self.log_dir.glob("*-*.log")):
            if path.stem.startswith("supervisor"):
                continue
            start = self._offsets.get(path, 0)
            try:
                with open(path, "rb") as f:
                    f.seek(start)
                    data = f.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1  # a half-written last line waits for the next poll
            self._offsets[path] = start + end
            for raw in data[:end].decode(errors="replace").splitlines():
                self._parse(path.stem, raw)

    def _parse(self, worker: str, raw: str) -> None:
        if raw.startswith(START_MARK):
            self.in_flight[worker].clear()
            self.events.append(LogEvent("start", worker, 0, time.time()))
            return
        m = _LINE.match(raw)
        if m is None:
            return
        wall = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        pid, msg = int(m.group(2)), m.group(3)
        self.last_line[pid] = wall
        if (t := _TURN.search(msg)) is not None:
            kind = _KINDS[t.group(3)]
            self.events.append(LogEvent(kind, worker, pid, wall, turn=t.group(2)))
            if kind == "call":
                self.in_flight[worker].add(t.group(2))
            elif kind in ("drafted", "failed"):
                self.in_flight[worker].discard(t.group(2))
        elif (o := _OWNS.search(msg)) is not None:
            parts = tuple(int(p) for p in o.group(1).replace(" ", "").split(",") if p)
            self.events.append(LogEvent("owns", worker, pid, wall, partitions=parts))
