"""Chaos harness: kill -9, SIGSTOP and broker restarts against a live agon fleet, then proof.

:func:`run_chaos` starts its own broker (own ``AGON_HOME``, own ports, so a restart touches
nothing else) and N workers per agent under agon's supervisor, requests debates on the
offline model with latency, and injects one fault at a time while debates are in flight:
SIGKILL of a worker (preferring one in the middle of a turn, spread over every agent),
SIGSTOP of a worker for longer than the session timeout, a broker restart. It waits for
every debate to end, then checks DESIGN.md's guarantees by reading the topics afresh with
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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: python tests/chaos/harness.py
    sys.path.insert(0, str(REPO))

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition  # noqa: E402

from connectors.cli.supervisor import START_MARK  # noqa: E402
from connectors.cli.workers import Fleet  # noqa: E402
from connectors.transcript import new_request, send_request  # noqa: E402
from streams.broker import LocalBroker  # noqa: E402
from streams.codec import Codec  # noqa: E402
from streams.errors import AgonError, CodecError  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.topics import Topics  # noqa: E402

AGENTS = ("moderator", "team-a", "team-b")
DEBATERS = ("team-a", "team-b")
KAFKA_VERSION = "4.3.1"
MOTIONS = (
    "AI's impact on the job market is positive",
    "Remote work is better for society",
    "Cities should ban private cars from their centres",
    "Open-source software is a public good worth public money",
)
Progress = Callable[[str], None]


# -- the report ------------------------------------------------------------------------

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
        text = (f"({self.invariant}) debate {self.debate} at {self.where}: expected {self.expected!r}, "
                f"got {self.got!r}")
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
    extra_calls_per_kill: float | None = None
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
            f"per kill {self.extra_calls_per_kill if self.extra_calls_per_kill is not None else '-'}; "
            f"calls in flight in killed/stopped workers {self.llm_call_allowance}; "
            f"the issue's calls <= turns + kills: {self.issue_bound_holds}",
        ]
        if self.worker_exits:
            lines.append("  worker exits not caused by a SIGKILL: "
                         + ", ".join(f"{w} {n}" for w, n in sorted(self.worker_exits.items())))
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


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]  # nearest rank
    return {"n": len(ordered), "p50": round(statistics.median(ordered), 3), "p95": round(p95, 3),
            "max": round(ordered[-1], 3), "samples": [round(v, 3) for v in values]}


def _fmt_stats(stats: dict[str, Any]) -> str:
    if not stats.get("n"):
        return "no samples"
    return f"p50 {stats['p50']:.2f} s, p95 {stats['p95']:.2f} s, max {stats['max']:.2f} s (n={stats['n']})"


# -- Kafka's default partitioner ------------------------------------------------------------

def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's and aiokafka's default partitioner), unsigned."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail, rest = length & ~3, length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_of(debate_id: str, partitions: int) -> int:
    return (murmur2(debate_id.encode()) & 0x7FFFFFFF) % partitions


# -- worker logs ------------------------------------------------------------------------------

_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] \[(\d+)\] \[\w+\] (.*)$")
_TURN = re.compile(r"debate=(\S+) turn=(\S+) (llm call to|drafted by|failed:|resumed after takeover)")
_OWNS = re.compile(r"\S+ owns inbox partitions \[([\d, ]*)\]")
_KINDS = {"llm call to": "call", "drafted by": "drafted", "failed:": "failed",
          "resumed after takeover": "resumed"}


@dataclass
class LogEvent:
    kind: str  # start | call | drafted | failed | resumed | owns
    worker: str  # agent-index
    pid: int
    wall: float
    turn: str = ""
    partitions: tuple[int, ...] = ()
    line: str = ""

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
            self.events.append(LogEvent("start", worker, 0, time.time(), line=raw))
            return
        m = _LINE.match(raw)
        if m is None:
            return
        wall = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        pid, msg = int(m.group(2)), m.group(3)
        self.last_line[pid] = wall
        if (t := _TURN.search(msg)) is not None:
            kind = _KINDS[t.group(3)]
            self.events.append(LogEvent(kind, worker, pid, wall, turn=t.group(2), line=raw))
            if kind == "call":
                self.in_flight[worker].add(t.group(2))
            elif kind in ("drafted", "failed"):
                self.in_flight[worker].discard(t.group(2))
        elif (o := _OWNS.search(msg)) is not None:
            parts = tuple(int(p) for p in o.group(1).replace(" ", "").split(",") if p)
            self.events.append(LogEvent("owns", worker, pid, wall, partitions=parts, line=raw))


# -- watching the topics live -----------------------------------------------------------------

@dataclass
class Seen:
    """A record as the observer saw it: when it became visible to read_committed readers."""

    mono: float
    topic: str
    partition: int
    offset: int
    ts_ms: int
    kind: str
    body: dict[str, Any]


@dataclass
class DebateView:
    speakers: list[str] = field(default_factory=list)
    started: bool = False
    turns: list[str] = field(default_factory=list)  # committed TurnTaken ids, as seen
    requested: set[str] = field(default_factory=set)  # TurnRequested ids seen in inboxes
    ended: dict[str, Any] | None = None
    last_progress: float = 0.0

    def awaited(self, debate_id: str, rounds: int) -> tuple[str, str] | None:
        """(turn id, speaker) of the turn the debate waits for, or None."""
        if not self.started or self.ended is not None or not self.speakers:
            return None
        k = len(self.turns)
        if k >= rounds * len(self.speakers):
            return None
        speaker = self.speakers[k % len(self.speakers)]
        return f"{debate_id}:{k // len(self.speakers) + 1}:{speaker}", speaker


class Observer(threading.Thread):
    """Tails every debate topic and the debaters' inboxes, read_committed, from the start."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        super().__init__(name="chaos-observer", daemon=True)
        self.bootstrap = bootstrap
        self.topics = topics
        self.inboxes = {topics.inbox(a) for a in DEBATERS}
        self.debate_prefix = topics.debate("")
        self.codec = Codec.default()
        self.lock = threading.Lock()
        self.seen: list[Seen] = []
        self.debates: dict[str, DebateView] = defaultdict(DebateView)
        self._stopping = threading.Event()
        self.failure: BaseException | None = None

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=10)

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported by the harness, not lost in a thread
            self.failure = exc

    def _run(self) -> None:
        consumer = Consumer({"bootstrap.servers": self.bootstrap,
                             "group.id": f"chaos-observer-{uuid.uuid4().hex[:8]}",
                             "enable.auto.commit": False, "isolation.level": "read_committed",
                             "auto.offset.reset": "earliest", "log_level": 0,
                             "error_cb": lambda err: None})
        assigned: set[str] = set()
        next_scan = 0.0
        try:
            while not self._stopping.is_set():
                if time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + 0.5
                    self._assign_new(consumer, assigned)
                msg = consumer.poll(0.1)
                if msg is None or msg.error():
                    continue
                self._record(msg)
        finally:
            consumer.close()

    def _assign_new(self, consumer: Consumer, assigned: set[str]) -> None:
        try:
            metadata = consumer.list_topics(timeout=2)
        except KafkaException:
            return  # the broker is restarting: try again on the next scan
        new = [TopicPartition(name, p, OFFSET_BEGINNING)
               for name, meta in metadata.topics.items()
               if name not in assigned and (name.startswith(self.debate_prefix) or name in self.inboxes)
               and meta.error is None and meta.partitions
               for p in meta.partitions]
        if new:
            consumer.incremental_assign(new)
            assigned.update(tp.topic for tp in new)

    def _record(self, msg: Any) -> None:
        topic = msg.topic()
        kind = "inbox" if topic in self.inboxes else "debate"
        try:
            record_type, body = self.codec.decode(kind, msg.value())
        except CodecError:
            return  # the final check reports undecodable records
        seen = Seen(time.monotonic(), topic, msg.partition(), msg.offset(), msg.timestamp()[1],
                    record_type, body)
        with self.lock:
            self.seen.append(seen)
            view = self.debates[body.get("debate_id", "")]
            if record_type == "DebateStarted":
                view.started = True
                view.speakers = [s["agent"] for s in body["speakers"]]
            elif record_type == "TurnTaken" and kind == "debate":
                if body["event_id"] not in view.turns:
                    view.turns.append(body["event_id"])
                view.last_progress = seen.mono
            elif record_type == "TurnRequested":
                view.requested.add(body["event_id"])
            elif record_type == "DebateEnded" and kind == "debate":
                view.ended = body
                view.last_progress = seen.mono

    def snapshot(self) -> dict[str, DebateView]:
        with self.lock:
            return {d: DebateView(list(v.speakers), v.started, list(v.turns), set(v.requested),
                                  v.ended, v.last_progress) for d, v in self.debates.items() if d}

    def first_step_after(self, debates: set[str], agent: str, after_wall: float) -> Seen | None:
        """The first record, produced after ``after_wall``, by which ``agent``'s role moved one of
        ``debates`` on: a debater's TurnTaken; the moderator's TurnRequested or DebateEnded."""
        after_ms = after_wall * 1000
        with self.lock:
            for s in self.seen:
                if s.ts_ms < after_ms or s.body.get("debate_id") not in debates:
                    continue
                if agent == "moderator":
                    if s.kind == "TurnRequested" or (s.kind == "DebateEnded" and s.topic.startswith(
                            self.debate_prefix)):
                        return s
                elif s.kind == "TurnTaken" and s.topic.startswith(self.debate_prefix) \
                        and s.body.get("speaker") == agent:
                    return s
        return None

    def first_turn_after(self, after_wall: float) -> Seen | None:
        after_ms = after_wall * 1000
        with self.lock:
            return next((s for s in self.seen if s.kind == "TurnTaken" and s.ts_ms >= after_ms
                         and s.topic.startswith(self.debate_prefix)), None)


# -- reading the topics afresh --------------------------------------------------------------

@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    ts_ms: int
    key: bytes | None
    value: bytes | None

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def read_all(bootstrap: str, wanted: Callable[[str], bool], timeout_s: float = 90.0) -> dict[str, list[Rec]]:
    """Every committed record of the topics ``wanted`` picks, each partition to its end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"chaos-check-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "enable.partition.eof": True, "log_level": 0, "error_cb": lambda err: None})
    out: dict[str, list[Rec]] = defaultdict(list)
    try:
        metadata = consumer.list_topics(timeout=30)
        tps = [TopicPartition(name, p, OFFSET_BEGINNING) for name, meta in metadata.topics.items()
               if wanted(name) for p in meta.partitions]
        if not tps:
            return out
        consumer.assign(tps)
        pending = {(tp.topic, tp.partition) for tp in tps}
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise AgonError(f"reading the topics afresh: {len(pending)} partition(s) not read to "
                                f"their end within {timeout_s:.0f} s, e.g. {sorted(pending)[0]}")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == -191:  # KafkaError._PARTITION_EOF
                    pending.discard((msg.topic(), msg.partition()))
                continue
            out[msg.topic()].append(Rec(msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1],
                                        msg.key(), msg.value()))
    finally:
        consumer.close()
    for recs in out.values():
        recs.sort(key=lambda r: (r.partition, r.offset))
    return out


def table_key(raw: bytes | None) -> str:
    """A faust table key as written to its changelog (JSON of the key, or the raw bytes)."""
    if raw is None:
        return ""
    try:
        key = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")
    return key if isinstance(key, str) else raw.decode(errors="replace")


def table_value(raw: bytes | None) -> Any:
    return None if raw is None else json.loads(raw)


# -- the checks -----------------------------------------------------------------------------

@dataclass
class Facts:
    """What the final read found, for the checks and the report."""

    rounds: dict[str, int]  # debate -> rounds requested
    logs: dict[str, list[tuple[Rec, str, dict[str, Any]]]]  # debate -> decoded records in order
    turns: dict[str, list[dict[str, Any]]]  # debate -> TurnTaken bodies, as logged
    inbox: dict[str, list[tuple[Rec, str, dict[str, Any]]]]  # debater -> decoded inbox records


def check_debates(rounds: dict[str, int], topics: Topics, recs: dict[str, list[Rec]],
                  codec: Codec) -> tuple[Facts, list[Violation]]:
    """Invariants (a) and (b): every debate ended by ROUNDS; its log complete and in order."""
    out: list[Violation] = []
    facts = Facts(rounds, {}, {}, {})
    for debate_id, r in rounds.items():
        topic = topics.debate(debate_id)
        decoded = []
        for rec in recs.get(topic, []):
            try:
                kind, body = codec.decode("debate", rec.value)
            except CodecError as exc:
                out.append(Violation("b", debate_id, rec.where, "a decodable event", "undecodable", str(exc)))
                kind, body = "Undecodable", {}
            decoded.append((rec, kind, body))
        facts.logs[debate_id] = decoded
        facts.turns[debate_id] = [b for _, k, b in decoded if k == "TurnTaken"]
        out += _check_log(debate_id, r, topic, decoded)
    return facts, out


def _check_log(debate_id: str, rounds: int, topic: str,
               decoded: list[tuple[Rec, str, dict[str, Any]]]) -> list[Violation]:
    events = [(rec, k, b) for rec, k, b in decoded if k != "ModeratorNote"]
    if not events:
        return [Violation("a", debate_id, topic, "DebateStarted ... DebateEnded", "no committed record")]
    rec, kind, body = events[0]
    if kind != "DebateStarted":
        return [Violation("b", debate_id, rec.where, "DebateStarted first", kind)]
    speakers = [s["agent"] for s in body["speakers"]]
    expected = [f"{debate_id}:{n}:{s}" for n in range(1, rounds + 1) for s in speakers]
    i, tokens = 0, 0
    for rec, kind, body in events[1:]:
        if kind == "TurnTaken":
            want = expected[i] if i < len(expected) else "DebateEnded"
            if body["event_id"] != want:
                why = "a duplicate of a committed turn" if body["event_id"] in expected[:i] else "out of order"
                return [Violation("b", debate_id, rec.where, want, body["event_id"], why)]
            _, r, s = want.rsplit(":", 2)
            if (body["round"], body["speaker"]) != (int(r), s):
                return [Violation("b", debate_id, rec.where, (int(r), s), (body["round"], body["speaker"]),
                                  "round and speaker disagree with the turn id")]
            tokens += body["prompt_tokens"] + body["completion_tokens"]
            i += 1
        elif kind == "DebateEnded":
            if i < len(expected):
                return [Violation("a", debate_id, rec.where, expected[i], f"DebateEnded ({body['reason']}: "
                                  f"{body['detail']})", "ended before its last round")]
            if body["reason"] != "ROUNDS":
                return [Violation("a", debate_id, rec.where, "reason ROUNDS", body["reason"], body["detail"])]
            if (body["rounds_completed"], body["tokens_used"]) != (rounds, tokens):
                return [Violation("b", debate_id, rec.where, {"rounds": rounds, "tokens": tokens},
                                  {"rounds": body["rounds_completed"], "tokens": body["tokens_used"]},
                                  "DebateEnded disagrees with its turns")]
            if rec is not events[-1][0]:
                later = events[events.index((rec, kind, body)) + 1]
                return [Violation("b", debate_id, later[0].where, "nothing after DebateEnded", later[1])]
            return []
        else:
            return [Violation("b", debate_id, rec.where, "TurnTaken or DebateEnded", kind)]
    last = events[-1][0]
    return [Violation("a", debate_id, f"{topic} after @{last.offset}", "DebateEnded",
                      f"no end after {i} of {len(expected)} turns")]


def check_moderator_table(facts: Facts, changelog: list[Rec], partitions: int) -> list[Violation]:
    """Invariant (c), moderator: the table's last value per debate is the fold of its log."""
    out: list[Violation] = []
    last: dict[str, tuple[Rec, Any]] = {}
    for rec in changelog:
        last[table_key(rec.key)] = (rec, table_value(rec.value))
    for debate_id, turns in facts.turns.items():
        if debate_id not in last:
            out.append(Violation("c", debate_id, changelog[0].topic if changelog else "moderator changelog",
                                 "a row for the debate", "none"))
            continue
        rec, state = last[debate_id]
        if rec.partition != partition_of(debate_id, partitions):
            out.append(Violation("c", debate_id, rec.where, f"partition {partition_of(debate_id, partitions)}",
                                 f"partition {rec.partition}", "changelog row not co-partitioned with the "
                                 "debate's inbox messages: a takeover would restore it on the wrong worker"))
        if state is None:
            out.append(Violation("c", debate_id, rec.where, "the debate's state", "a tombstone"))
            continue
        want_turns = [{"round": t["round"], "speaker": t["speaker"], "text": t["text"]} for t in turns]
        got_turns = [{"round": t["round"], "speaker": t["speaker"], "text": t["text"]} for t in state["turns"]]
        for i in range(max(len(want_turns), len(got_turns))):
            want = want_turns[i] if i < len(want_turns) else None
            got = got_turns[i] if i < len(got_turns) else None
            if want != got:
                out.append(Violation("c", debate_id, rec.where, want, got,
                                     f"moderator table turn #{i + 1} differs from the debate's log"))
                break
        want_tokens = sum(t["prompt_tokens"] + t["completion_tokens"] for t in turns)
        checks = [("status", "ended", state.get("status")), ("tokens", want_tokens, state.get("tokens"))]
        if len(turns) == facts.rounds[debate_id] * len(state.get("speakers") or [1, 1]):
            checks.append(("round", facts.rounds[debate_id], state.get("round")))
        for name, want, got in checks:
            if want != got:
                out.append(Violation("c", debate_id, rec.where, f"{name}={want!r}", f"{name}={got!r}",
                                     "moderator table differs from the fold of the debate's log"))
    return out


def check_history_table(facts: Facts, agent: str, changelog: list[Rec], partitions: int) -> list[Violation]:
    """Invariant (c), debaters: the history before deletion holds the log's turns the debater
    took or was shown (each of its own once, nothing pending), then a tombstone."""
    out: list[Violation] = []
    rows: dict[str, list[tuple[Rec, Any]]] = defaultdict(list)
    for rec in changelog:
        rows[table_key(rec.key)].append((rec, table_value(rec.value)))
    for debate_id, turns in facts.turns.items():
        where = changelog[0].topic if changelog else f"{agent} history changelog"
        history = rows.get(debate_id)
        if not history:
            if any(t["speaker"] == agent for t in turns):
                out.append(Violation("c", debate_id, where, f"{agent}'s history rows", "none"))
            continue
        rec, value = history[-1]
        if value is not None:
            out.append(Violation("c", debate_id, rec.where, "a tombstone (history deleted at the end)",
                                 f"a value with {len(value.get('turns', []))} turns"))
            continue
        if rec.partition != partition_of(debate_id, partitions):
            out.append(Violation("c", debate_id, rec.where, f"partition {partition_of(debate_id, partitions)}",
                                 f"partition {rec.partition}", "changelog row not co-partitioned"))
        values = [(r, v) for r, v in history if v is not None]
        if not values:
            continue  # compacted away: only the tombstone is left to check
        rec, final = values[-1]
        own = [t for t in turns if t["speaker"] == agent]
        last_own = max((i for i, t in enumerate(turns) if t["speaker"] == agent), default=-1)
        want_turns = [{"round": t["round"], "speaker": t["speaker"], "text": t["text"]}
                      for t in turns[:last_own + 1]]
        got_turns = [{"round": t["round"], "speaker": t["speaker"], "text": t["text"]} for t in final["turns"]]
        if final.get("taken") != [t["event_id"] for t in own]:
            out.append(Violation("c", debate_id, rec.where, [t["event_id"] for t in own], final.get("taken"),
                                 f"{agent}'s taken turn ids differ from its TurnTaken in the log"))
        elif want_turns != got_turns:
            i = next(i for i in range(max(len(want_turns), len(got_turns)))
                     if (want_turns[i:i + 1] or [None])[0] != (got_turns[i:i + 1] or [None])[0])
            out.append(Violation("c", debate_id, rec.where, (want_turns[i:i + 1] or [None])[0],
                                 (got_turns[i:i + 1] or [None])[0], f"{agent}'s history turn #{i + 1} "
                                 "differs from the debate's log"))
        elif final.get("pending"):
            out.append(Violation("c", debate_id, rec.where, "nothing pending",
                                 sorted(final["pending"]), f"{agent} still owes turns of an ended debate"))
    return out


@dataclass
class Accounting:
    calls: int
    extra: int
    by_cause: dict[str, int]
    allowance: int  # calls in flight in killed or stopped workers: at most that many repeats
    violations: list[Violation]


def check_llm_calls(events: list[LogEvent], facts: Facts, faults: list[Fault],
                    outages: list[tuple[float, float]], partitions: int, log_dir: Path) -> Accounting:
    """Invariant (d), per turn: a repeated LLM call is (d1) never made while a draft of the turn was
    stored ahead of what triggered it, and (d2) always explained by a fault that lost an earlier
    call of the turn; in all, (d3) calls <= committed turns + calls in flight in killed or
    stopped workers (each of those may be repeated once by whoever takes its turns over)."""
    calls = [e for e in events if e.kind == "call"]
    by_pid: dict[int, list[LogEvent]] = defaultdict(list)
    for e in events:
        if e.pid:
            by_pid[e.pid].append(e)
    killed = {f.pid: f.wall for f in faults if f.kind == "kill" and f.pid}
    stopped = [(f.pid, f.wall, f.wall + f.duration_s) for f in faults if f.kind == "stop" and f.pid]
    out: list[Violation] = []
    by_cause: dict[str, int] = defaultdict(int)

    def end_of(call: LogEvent) -> float | None:
        return next((e.wall for e in by_pid[call.pid] if e.turn == call.turn and e.wall >= call.wall
                     and e.kind in ("drafted", "failed")), None)

    allowance = 0
    for f in faults:
        if f.kind in ("kill", "stop") and f.pid:
            allowance += sum(1 for c in by_pid[f.pid] if c.kind == "call" and c.wall <= f.wall
                             and ((end := end_of(c)) is None or end > f.wall))

    drafts: dict[str, list[Rec]] = defaultdict(list)
    for recs in facts.inbox.values():
        for rec, kind, body in recs:
            if kind == "TurnDrafted":
                drafts[body["event_id"]].append(rec)

    def lost(call: LogEvent, later: LogEvent) -> str | None:
        """Why this call's result could not serve the turn before ``later`` began, or None."""
        end = end_of(call)
        until = end if end is not None else math.inf
        if call.pid in killed and killed[call.pid] >= call.wall and (end is None or killed[call.pid] - end < 2.0):
            return "killed mid-call" if end is None else "killed before its draft was stored"
        if any(pid == call.pid and t0 <= until + 1.0 and t1 >= call.wall for pid, t0, t1 in stopped):
            return "stopped mid-call"
        p = partition_of(call.turn.split(":")[0], partitions)
        if any(e.kind == "owns" and call.wall <= e.wall <= until + 1.0 and p not in e.partitions
               for e in by_pid[call.pid]):
            return "partition moved mid-call"
        if any(t0 <= until + 2.0 and t1 >= call.wall for t0, t1 in outages):
            return "broker restart mid-call"
        if end is None:
            return "worker exited mid-call"
        if not any(call.wall * 1000 <= d.ts_ms <= later.wall * 1000 for d in drafts[call.turn]):
            return "draft never stored (its worker crashed or stalled)"
        return None

    grouped: dict[str, list[LogEvent]] = defaultdict(list)
    for c in calls:
        grouped[c.turn].append(c)
    committed = {t["event_id"] for turns in facts.turns.values() for t in turns}
    for turn, group in grouped.items():
        group.sort(key=lambda e: e.wall)
        used: set[int] = set()
        for k in range(1, len(group)):
            later = group[k]
            stale = _draft_before_trigger(later, by_pid, facts, turn)
            if stale:
                out.append(Violation("d", turn.split(":")[0], stale[0], "no LLM call: a draft of the turn was "
                                     "stored", f"a call by {later.worker} pid {later.pid} at {_clock(later.wall)}",
                                     stale[1]))
                continue
            j, why = next(((j, w) for j in range(k) if j not in used and (w := lost(group[j], later))),
                          (None, None))
            if j is None:
                out.append(Violation("d", turn.split(":")[0], str(log_dir / f"{later.worker}.log"),
                                     "no repeated LLM call without a fault that lost the earlier one",
                                     f"{len(group)} calls", f"turn {turn}: calls at "
                                     + "; ".join(f"{c.worker} pid {c.pid} {_clock(c.wall)} (done "
                                                 f"{_clock(end_of(c)) if end_of(c) else 'never'})" for c in group)))
                continue
            used.add(j)
            by_cause[why] += 1
    extra = len(calls) - len(committed)
    if len(calls) > len(committed) + allowance:
        out.append(Violation("d", "*", str(log_dir), f"<= {len(committed)} turns + {allowance} calls in flight "
                             "in killed or stopped workers", f"{len(calls)} LLM calls"))
    return Accounting(len(calls), extra, dict(by_cause), allowance, out)


def _draft_before_trigger(call: LogEvent, by_pid: dict[int, list[LogEvent]], facts: Facts,
                          turn: str) -> tuple[str, str] | None:
    """(where, why) when a TurnDrafted of ``turn`` was in the inbox ahead of what should have
    triggered ``call``: the Resume marker its own worker wrote on taking the partition over (all
    before it has been seen when it is reached), or the repeated TurnRequested it answers."""
    agent = turn.rsplit(":", 1)[1]
    inbox = facts.inbox.get(agent, [])
    drafts = [rec for rec, k, b in inbox if k == "TurnDrafted" and b["event_id"] == turn]
    if not drafts:
        return None
    partition = drafts[0].partition
    markers = [rec for rec, k, _ in inbox if k == "Resume" and rec.partition == partition]
    resumed = [e for e in by_pid[call.pid] if e.kind == "resumed" and e.turn == turn
               and 0 <= call.wall - e.wall < 5.0]
    if resumed:
        assigned = [e.wall for e in by_pid[call.pid] if e.kind == "owns" and partition in e.partitions
                    and e.wall <= resumed[-1].wall]
        own = [m for m in markers if assigned and assigned[-1] - 1.0 <= m.ts_ms / 1000 <= resumed[-1].wall + 0.001]
        if not own:
            return None
        trigger, what = own[-1], f"{call.worker}'s own Resume marker"
    else:
        requests = [rec for rec, k, b in inbox if k == "TurnRequested" and b["event_id"] == turn
                    and rec.ts_ms <= call.wall * 1000 + 1]
        if len(requests) < 2:
            return None
        trigger, what = requests[-1], f"the repeated TurnRequested (attempt {len(requests)})"
    before = [rec for rec in drafts if rec.offset < trigger.offset]
    if not before:
        return None
    seen = ", ".join(f"@{m.offset} ({_clock(m.ts_ms / 1000)})" for m in markers if m.ts_ms <= call.wall * 1000)
    return (before[0].where, f"turn {turn}: a TurnDrafted was stored at {before[0].where} "
            f"({_clock(before[0].ts_ms / 1000)}), before {what} at {trigger.where}, yet pid {call.pid} called "
            f"the model again{' after logging resumed after takeover' if resumed else ''}; Resume markers "
            f"on that partition by then: {seen}: the turn was paid twice")


def diagnose(debate_id: str, facts: Facts, logs: WorkerLogs, partitions: int) -> str:
    """For a debate that did not end by ROUNDS: the turn it lacks, who owned that turn's inbox
    partition when it was requested, and what that worker last logged."""
    turns = facts.turns.get(debate_id, [])
    started = next((b for _, k, b in facts.logs.get(debate_id, []) if k == "DebateStarted"), None)
    if started is None:
        return "never started: see the moderator's logs"
    speakers = [s["agent"] for s in started["speakers"]]
    k = len(turns)
    agent = speakers[k % len(speakers)]
    turn = f"{debate_id}:{k // len(speakers) + 1}:{agent}"
    p = partition_of(debate_id, partitions)
    requests = [(rec, b) for rec, kind, b in facts.inbox.get(agent, [])
                if kind == "TurnRequested" and b["event_id"] == turn]
    if not requests:
        return f"missing {turn}: no TurnRequested for it committed in {agent}'s inbox (moderator side)"
    first = requests[0][0]
    at = first.ts_ms / 1000
    owners = [e for e in logs.events if e.kind == "owns" and e.agent == agent and e.wall <= at + 0.5]
    owner = next((e for e in reversed(owners) if p in e.partitions), None)
    text = (f"missing {turn}: requested {len(requests)}x, first at {_clock(at)} ({first.where})")
    if owner is None:
        return text + f"; no {agent} worker had logged owning partition {p} by then"
    mine = [e for e in logs.events if e.pid == owner.pid and e.kind in ("call", "drafted", "resumed")]
    last_turn = max((e.wall for e in mine), default=None)
    return (text + f"; partition {p} owned by {owner.worker} pid {owner.pid} (since {_clock(owner.wall)}), "
            f"whose last turn line was at {_clock(last_turn) if last_turn else '-'} and last log line at "
            f"{_clock(logs.last_line.get(owner.pid, 0))}; calls for this turn: "
            f"{sum(1 for e in logs.events if e.kind == 'call' and e.turn == turn)}")


def _clock(wall: float) -> str:
    return datetime.fromtimestamp(wall).strftime("%H:%M:%S.%f")[:-3]


# -- the run ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def agon_environment(env: dict[str, str]) -> Iterator[None]:
    """Exactly ``env`` as the AGON_* variables, for Settings() and the processes we start."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("AGON_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("AGON_")]:
            del os.environ[key]
        os.environ.update(saved)


def _link_jars(home: Path) -> None:
    """Reuse Kafka's jars from an earlier launcher run rather than fetch them again."""
    libs = home / "kafka" / KAFKA_VERSION / "libs"
    for base in (REPO / ".agon-test", REPO / ".agon", Path.home() / ".agon"):
        source = base / "kafka" / KAFKA_VERSION / "libs"
        if (source / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
            libs.parent.mkdir(parents=True, exist_ok=True)
            libs.symlink_to(source, target_is_directory=True)
            return


class Chaos:
    def __init__(self, *, debates: int, rounds: int, kills: int, stops: int, broker_restarts: int,
                 workers: int, latency: float, seed: int, workdir: Path, deadline_s: float,
                 partitions: int, concurrency: int, gap_s: tuple[float, float], log_level: str,
                 progress: Progress) -> None:
        self.rounds, self.workers = rounds, workers
        self.rng = random.Random(seed)
        self.workdir = workdir
        self.partitions = partitions
        self.concurrency = concurrency
        self.gap_s = gap_s
        self.progress_fn = progress
        self.t0 = time.monotonic()
        self.deadline = self.t0 + deadline_s
        self.namespace = f"chaos{uuid.uuid4().hex[:8]}"
        port, controller = free_port(), free_port()
        while controller == port:
            controller = free_port()
        self.env = {
            "AGON_HOME": str(workdir / "home"), "AGON_NAMESPACE": self.namespace,
            "AGON_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "AGON_BROKER_PORT": str(port),
            "AGON_BROKER_CONTROLLER_PORT": str(controller), "AGON_KAFKA_PARTITIONS": str(partitions),
            "AGON_LLM_OFFLINE_LATENCY_S": str(latency), "AGON_LOG_LEVEL": log_level,
        }
        schedule = ["kill"] * kills + ["stop"] * stops
        self.rng.shuffle(schedule)
        # broker restarts away from the very start and end, where few debates are in flight
        for i in range(broker_restarts):
            schedule.insert((i + 1) * len(schedule) // (broker_restarts + 1) + i, "broker")
        self.schedule = schedule
        self.kill_agents = self._spread(kills)
        self.stop_agents = self._spread(stops)
        self.requests = [new_request(MOTIONS[i % len(MOTIONS)], rounds=rounds,
                                     debate_id=f"d{i:03d}-{uuid.uuid4().hex[:4]}") for i in range(debates)]
        self.sent: list[str] = []
        self.faults: list[Fault] = []
        self.outages: list[tuple[float, float]] = []
        self.broker_back: list[tuple[float, float]] = []  # (wall, monotonic) the broker answered again
        self.broker_down = False
        self.faults_done = 0
        self.faults_left = len(schedule)
        self._next_send = 0.0

    def _spread(self, n: int) -> list[str]:
        agents = list(AGENTS)
        self.rng.shuffle(agents)
        return [agents[i % len(agents)] for i in range(n)]

    def say(self, line: str) -> None:
        self.progress_fn(f"[{time.monotonic() - self.t0:6.1f}s] {line}")

    # the run

    def run(self) -> ChaosReport:
        report = ChaosReport(config={}, namespace=self.namespace, workdir=str(self.workdir))
        with agon_environment(self.env):
            self.settings = Settings()
            self.topics = Topics(self.namespace)
            self.broker = LocalBroker(self.settings)
            self.fleet = Fleet(self.settings)
            self.logs = WorkerLogs(self.fleet.log_dir)
            self.observer = Observer(self.settings.kafka.bootstrap, self.topics)
            fleet_up = False
            try:
                _link_jars(self.settings.home_dir)
                self.say(f"broker: {self.broker.up(progress=self.say).detail}")
                fleet_up = True
                self.fleet.up(workers=self.workers, wait_s=180, progress=lambda line: None)
                self.say(f"fleet: {self.workers} worker(s) per agent ready (namespace {self.namespace})")
                self.observer.start()
                self.inject_faults()
                stuck = self.finish()
                if not stuck:
                    self.settle()
                self.fleet.down()
                fleet_up = False
                self.logs.poll()
                self.verify(report)
                report.error = stuck or None
            except (AgonError, KafkaException, OSError, TimeoutError) as exc:
                report.error = f"{type(exc).__name__}: {exc}"
                self.say(f"run failed: {report.error}")
                with contextlib.suppress(Exception):
                    self.logs.poll()
                    self.fill_counts(report)
            finally:
                for f in self.faults:  # a stopped worker must never outlive the run
                    if f.kind == "stop" and f.pid:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(f.pid, signal.SIGCONT)
                if self.observer.is_alive():
                    self.observer.stop()
                if fleet_up:
                    with contextlib.suppress(Exception):
                        self.fleet.down()
                with contextlib.suppress(Exception):
                    self.broker.down()
        report.duration_s = round(time.monotonic() - self.t0, 1)
        return report

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def wait(self, check: Callable[[], Any], timeout_s: float, every_s: float = 0.2) -> Any:
        """Poll ``check`` (feeding debates meanwhile) until truthy, ``timeout_s`` or the deadline."""
        until = min(time.monotonic() + timeout_s, self.deadline)
        while True:
            self.top_up()
            self.logs.poll()
            if self.observer.failure is not None:
                raise AgonError(f"the observer failed: {self.observer.failure!r}")
            result = check()
            if result or time.monotonic() >= until:
                return result
            time.sleep(every_s)

    # debates

    def running(self, views: dict[str, DebateView] | None = None) -> list[str]:
        views = self.observer.snapshot() if views is None else views
        return [d for d in self.sent if d not in views or views[d].ended is None]

    def top_up(self, limit: int | None = None) -> None:
        """Keep up to ``concurrency`` debates in flight, one new request at a time, staggered;
        while faults remain, spread the requests over them (so that the last faults still find
        debates in flight), but never leave none in flight."""
        if self.broker_down or len(self.sent) >= len(self.requests) or time.monotonic() < self._next_send:
            return
        running = len(self.running())
        if running >= (limit or self.concurrency):
            return
        if limit is None and self.faults_left:
            quota = math.ceil(len(self.requests) * (self.faults_done + 1) / (len(self.schedule) + 1))
            if len(self.sent) >= quota and running > 0:
                return
        req = self.requests[len(self.sent)]
        send_request(self.settings, req, timeout_s=20)
        self.sent.append(req["debate_id"])
        self._next_send = time.monotonic() + self.rng.uniform(0.3, 1.2)

    # faults

    def inject_faults(self) -> None:
        kills = iter(self.kill_agents)
        stops = iter(self.stop_agents)
        for n, kind in enumerate(self.schedule, 1):
            if not self.wait(self.ready_for_fault, 120):
                self.say(f"no debate in flight or a worker not ready: {len(self.schedule) - n + 1} fault(s) "
                         "not injected")
                break
            if self.remaining() < 60:
                self.say("deadline near: no more faults")
                break
            self.wait(lambda: False, self.rng.uniform(*self.gap_s))
            if kind == "kill":
                self.kill(next(kills))
            elif kind == "stop":
                self.stop(next(stops))
            else:
                self.restart_broker()
            self.faults_done, self.faults_left = n, len(self.schedule) - n
        self.faults_left = 0

    def ready_for_fault(self) -> bool:
        """Every worker up and ready, and a debate in flight that has taken a turn."""
        if any(w.pid is None or not w.ready for w in self.fleet.workers()):
            return False
        views = self.observer.snapshot()
        return any(views.get(d) and views[d].turns for d in self.running(views))

    def owned(self, worker: Any) -> list[int] | None:
        """The inbox partitions ``worker`` owns per its assignment.json, if written by this pid."""
        path = self.settings.home_dir / "workers" / self.namespace / worker.name / "assignment.json"
        try:
            got = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return got["partitions"] if got.get("pid") == worker.pid else None

    def affected(self, agent: str, partitions: list[int], views: dict[str, DebateView]) -> list[str]:
        out = []
        for d in self.running(views):
            view = views.get(d)
            if view is None or partition_of(d, self.partitions) not in partitions:
                continue
            if agent == "moderator":
                if view.started:
                    out.append(d)
                continue
            awaited = view.awaited(d, self.rounds)
            if awaited and awaited[1] == agent and awaited[0] in view.requested:
                out.append(d)
        return sorted(out)

    def pick(self, agent: str) -> tuple[Any, list[int], list[str], list[str]] | None:
        """A ready worker of ``agent``, preferring one with an LLM call running (debaters) or
        with debates awaiting it on its partitions."""
        def candidates() -> list[tuple[int, Any, list[int], list[str], list[str]]]:
            views = self.observer.snapshot()
            committed = {t for v in views.values() for t in v.turns}
            found = []
            for w in self.fleet.workers([agent]):
                parts = self.owned(w) if w.pid and w.ready else None
                if parts is None:
                    continue
                hit = self.affected(agent, parts, views)
                busy = sorted(t for t in self.logs.in_flight[w.name] if t not in committed)
                score = 2 if (busy and hit) or (agent == "moderator" and hit) else (1 if hit or busy else 0)
                found.append((score, w, parts, hit, busy))
            return found

        best = self.wait(lambda: [c for c in candidates() if c[0] == 2], 8.0, every_s=0.05)
        pool = best or candidates()
        if not pool:
            return None
        top = max(c[0] for c in pool)
        _, w, parts, hit, busy = self.rng.choice([c for c in pool if c[0] == top])
        return w, parts, hit, busy

    def kill(self, agent: str) -> None:
        picked = self.pick(agent)
        if picked is None:
            self.say(f"no ready worker of {agent} to kill")
            return
        w, parts, hit, busy = picked
        wall = time.time()
        os.kill(w.pid, signal.SIGKILL)
        fault = Fault("kill", round(time.monotonic() - self.t0, 2), wall, agent, w.name, w.pid, parts,
                      hit, busy)
        self.faults.append(fault)
        self.say(f"SIGKILL {w.name} (pid {w.pid}, partitions {parts}); in flight {busy or '-'}; "
                 f"affected {hit or '-'}")
        self.await_recovery(fault)

    def stop(self, agent: str) -> None:
        picked = self.pick(agent)
        if picked is None:
            self.say(f"no ready worker of {agent} to stop")
            return
        w, parts, hit, busy = picked
        pause = self.settings.worker.session_timeout_s + 2.0
        wall = time.time()
        os.kill(w.pid, signal.SIGSTOP)
        fault = Fault("stop", round(time.monotonic() - self.t0, 2), wall, agent, w.name, w.pid, parts,
                      hit, busy, duration_s=pause)
        self.faults.append(fault)
        self.say(f"SIGSTOP {w.name} (pid {w.pid}, partitions {parts}) for {pause:g} s; in flight "
                 f"{busy or '-'}; affected {hit or '-'}")
        try:
            self.wait(lambda: False, pause)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGCONT)
        self.say(f"SIGCONT {w.name} (pid {w.pid})")
        self.await_recovery(fault)

    def restart_broker(self) -> None:
        wall, mono = time.time(), time.monotonic()
        self.faults.append(Fault("broker", round(mono - self.t0, 2), wall,
                                 affected=self.running()))
        self.say("broker restart: stopping it (SIGTERM)")
        self.broker_down = True
        try:
            self.broker.down()
            self.wait(lambda: False, 1.0)
            status = self.broker.up(progress=lambda line: None)
        finally:
            self.broker_down = False
        back = time.time()
        self.outages.append((wall, back))
        self.broker_back.append((back, time.monotonic()))
        self.faults[-1].duration_s = round(back - wall, 2)
        self.say(f"broker back after {back - wall:.1f} s: {status.detail}")
        self.await_recovery(self.faults[-1])

    def await_recovery(self, fault: Fault) -> None:
        """Until every worker is ready again and the fault's affected debates moved on."""
        mono0 = self.t0 + fault.at_s

        def recovered() -> bool:
            if any(w.pid is None or not w.ready for w in self.fleet.workers()):
                return False
            if fault.kind == "broker":
                return self.observer.first_turn_after(self.broker_back[-1][0]) is not None \
                    or not self.running()
            return not fault.affected or self.observer.first_step_after(
                set(fault.affected), fault.agent, fault.wall) is not None

        if self.wait(recovered, 90.0):
            fault.recovered_s = round(time.monotonic() - mono0, 2)
            self.say(f"recovered in {fault.recovered_s:.1f} s")
        else:
            self.say(f"not recovered after 90 s from the {fault.kind} (the final checks will tell)")

    # the end

    def finish(self) -> str:
        """Send what is left, and wait until every debate has a committed DebateEnded; say which
        did not (the checks then show where each stopped)."""
        def all_ended() -> bool:
            self.top_up(limit=len(self.requests))
            views = self.observer.snapshot()
            return len(self.sent) == len(self.requests) and all(
                d in views and views[d].ended is not None for d in self.sent)

        if not self.wait(all_ended, self.remaining(), every_s=0.5):
            views = self.observer.snapshot()
            stuck = [d for d in self.sent if d not in views or views[d].ended is None]
            detail = "; ".join(f"{d}: {len(views[d].turns) if d in views else 0} turns, next "
                               f"{views[d].awaited(d, self.rounds) if d in views else 'start'}" for d in stuck[:5])
            text = (f"{len(stuck)} debate(s) never ended before the deadline "
                    f"({len(self.requests) - len(self.sent)} not sent): {detail}")
            self.say(text)
            return text
        self.say(f"all {len(self.sent)} debates ended")
        return ""

    def settle(self) -> None:
        """Let the debaters take in the DebateEnded messages (their history's tombstones)."""
        names = [self.topics.app_id(a) + "-history-changelog" for a in DEBATERS]

        def deleted() -> bool:
            recs = read_all(self.settings.kafka.bootstrap, lambda t: t in names, timeout_s=30)
            gone = set.intersection(*[
                {k for k, v in _last_values(recs.get(name, [])).items() if v is None} for name in names])
            return set(self.sent) <= gone

        self.wait(deleted, min(30.0, max(1.0, self.remaining())), every_s=1.0)

    def fill_counts(self, report: ChaosReport) -> None:
        report.faults = self.faults
        report.debates_requested = len(self.sent)
        views = self.observer.snapshot()
        report.debates_ended = sum(1 for d in self.sent if d in views and views[d].ended is not None)
        report.llm_calls = sum(1 for e in self.logs.events if e.kind == "call")

    def verify(self, report: ChaosReport) -> None:
        self.say("reading every topic afresh (read_committed) to check the invariants")
        ns = self.namespace
        changelogs = {a: f"{self.topics.app_id(a)}-{'debates' if a == 'moderator' else 'history'}-changelog"
                      for a in AGENTS}
        inboxes = {a: self.topics.inbox(a) for a in DEBATERS}
        recs = read_all(self.settings.kafka.bootstrap,
                        lambda t: t.startswith(f"{ns}.debate.") or t in changelogs.values()
                        or t in inboxes.values())
        codec = Codec.default()
        facts, violations = check_debates({r["debate_id"]: self.rounds for r in self.requests},
                                          self.topics, recs, codec)
        for agent, topic in inboxes.items():
            decoded = []
            for rec in recs.get(topic, []):
                with contextlib.suppress(CodecError):
                    decoded.append((rec, *codec.decode("inbox", rec.value)))
            facts.inbox[agent] = decoded
        for v in violations:
            if v.invariant == "a":
                v.detail = "; ".join(filter(None, [v.detail, diagnose(v.debate, facts, self.logs, self.partitions)]))
        violations += check_moderator_table(facts, recs.get(changelogs["moderator"], []), self.partitions)
        for agent in DEBATERS:
            violations += check_history_table(facts, agent, recs.get(changelogs[agent], []), self.partitions)
        acct = check_llm_calls(self.logs.events, facts, self.faults, self.outages, self.partitions,
                               self.fleet.log_dir)
        violations += acct.violations
        self.fill_counts(report)
        report.debates_ended = sum(1 for d in facts.logs if any(k == "DebateEnded" for _, k, _ in facts.logs[d]))
        report.turns_committed = sum(len(t) for t in facts.turns.values())
        report.llm_calls = acct.calls
        report.extra_llm_calls = acct.extra
        report.extra_calls_by_cause = acct.by_cause
        report.llm_call_allowance = acct.allowance
        kills = report.kills
        report.issue_bound_holds = acct.calls <= report.turns_committed + len(kills)
        report.extra_calls_per_kill = round(acct.extra / len(kills), 3) if kills else None
        self.measure(report)
        report.worker_exits = self.unexpected_exits()
        report.violations = violations

    def measure(self, report: ChaosReport) -> None:
        mono0 = {id(f): self.t0 + f.at_s for f in self.faults}
        for f in self.faults:
            if f.kind in ("kill", "stop") and f.affected:
                step = self.observer.first_step_after(set(f.affected), f.agent, f.wall)
                if step is not None:
                    f.takeover_s = round(step.mono - mono0[id(f)], 3)
        report.takeover = _stats([f.takeover_s for f in self.faults if f.kind == "kill" and f.takeover_s is not None])
        report.stop_takeover = _stats([f.takeover_s for f in self.faults
                                       if f.kind == "stop" and f.takeover_s is not None])
        back = []
        for wall, mono in self.broker_back:
            turn = self.observer.first_turn_after(wall)
            if turn is not None:
                back.append(turn.mono - mono)
        report.broker_recovery = _stats(back)

    def unexpected_exits(self) -> dict[str, int]:
        starts: dict[str, int] = defaultdict(int)
        for e in self.logs.events:
            if e.kind == "start":
                starts[e.worker] += 1
        kills: dict[str, int] = defaultdict(int)
        for f in self.faults:
            if f.kind == "kill":
                kills[f.worker] += 1
        # every start after the first follows an exit; the last run ended with our `down`
        return {w: n - 1 - kills[w] for w, n in starts.items() if n - 1 - kills[w] > 0}


def _last_values(recs: list[Rec]) -> dict[str, Any]:
    return {table_key(r.key): table_value(r.value) for r in recs}


def run_chaos(debates: int = 12, rounds: int = 3, kills: int = 6, stops: int = 1, broker_restarts: int = 1,
              workers: int = 2, latency: float = 1.0, seed: int | None = None, workdir: Path | str | None = None,
              deadline_s: float = 600.0, partitions: int = 4, concurrency: int = 4,
              gap_s: tuple[float, float] = (1.0, 3.0), keep: bool | None = None,
              log_level: str = "INFO", progress: Progress = print) -> ChaosReport:
    """Run debates under faults and check the invariants; see the module's docstring.

    ``workdir`` holds the broker's and the workers' state and logs (default: a new temp dir,
    removed after a passing run unless ``keep``; kept after a failing one, for post-mortems).
    """
    seed = random.randrange(1 << 30) if seed is None else seed
    own = workdir is None
    path = Path(tempfile.mkdtemp(prefix="agon-chaos-")) if own else Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    chaos = Chaos(debates=debates, rounds=rounds, kills=kills, stops=stops, broker_restarts=broker_restarts,
                  workers=workers, latency=latency, seed=seed, workdir=path, deadline_s=deadline_s,
                  partitions=partitions, concurrency=concurrency, gap_s=gap_s, log_level=log_level,
                  progress=progress)
    report = chaos.run()
    report.config = {"debates": debates, "rounds": rounds, "kills": kills, "stops": stops,
                     "broker_restarts": broker_restarts, "workers": workers, "latency_s": latency,
                     "seed": seed, "deadline_s": deadline_s, "partitions": partitions,
                     "concurrency": concurrency, "session_timeout_s": 4.0}
    if own and report.ok and not keep:
        shutil.rmtree(path, ignore_errors=True)
    else:
        (path / "report.json").write_text(json.dumps(report.to_json(), indent=2, default=str))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run agon debates under kill -9, SIGSTOP and broker "
                                "restarts, then check exactly-once turns and LLM calls.")
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
    report = run_chaos(debates=args.debates, rounds=args.rounds, kills=args.kills, stops=args.stops,
                       broker_restarts=args.broker_restarts, workers=args.workers, latency=args.latency,
                       seed=args.seed, workdir=args.workdir, deadline_s=args.deadline,
                       partitions=args.partitions, concurrency=args.concurrency, keep=args.keep,
                       log_level=args.log_level,
                       progress=lambda line: print(line, file=sys.stderr if args.json else sys.stdout,
                                                   flush=True))
    if args.json:
        print(json.dumps(report.to_json(), indent=2, default=str))
    else:
        print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
