"""The invariants, checked on what was read afresh after the run (see harness.py's docstring):
(a) every debate ended by ROUNDS; (b) its log complete and in order; (c) each agent's table is
the fold of the logs; (d) no LLM call repeated without a fault that lost the earlier one."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from records import Rec, partition_of, table_key, table_value
from report import Fault, Violation
from worker_logs import LogEvent, WorkerLogs

from agon.errors import CodecError
from agon.schemas.codec import Codec
from agon.schemas.topics import Topics


@dataclass
class Facts:
    """What the final read found, for the checks and the report."""

    rounds: dict[str, int]  # debate -> rounds requested
    logs: dict[str, list[tuple[Rec, str, dict[str, Any]]]]  # debate -> decoded records in order
    turns: dict[str, list[dict[str, Any]]]  # debate -> TurnTaken bodies, as logged
    inbox: dict[str, list[tuple[Rec, str, dict[str, Any]]]]  # debater -> decoded inbox records


def check_debates(
    rounds: dict[str, int], topics: Topics, recs: dict[str, list[Rec]], codec: Codec
) -> tuple[Facts, list[Violation]]:
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


def _check_log(
    debate_id: str, rounds: int, topic: str, decoded: list[tuple[Rec, str, dict[str, Any]]]
) -> list[Violation]:
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
                why = (
                    "a duplicate of a committed turn" if body["event_id"] in expected[:i] else "out of order"
                )
                return [Violation("b", debate_id, rec.where, want, body["event_id"], why)]
            _, r, s = want.rsplit(":", 2)
            if (body["round"], body["speaker"]) != (int(r), s):
                return [
                    Violation(
                        "b",
                        debate_id,
                        rec.where,
                        (int(r), s),
                        (body["round"], body["speaker"]),
                        "round and speaker disagree with the turn id",
                    )
                ]
            tokens += body["prompt_tokens"] + body["completion_tokens"]
            i += 1
        elif kind == "DebateEnded":
            if i < len(expected):
                return [
                    Violation(
                        "a",
                        debate_id,
                        rec.where,
                        expected[i],
                        f"DebateEnded ({body['reason']}: {body['detail']})",
                        "ended before its last round",
                    )
                ]
            if body["reason"] != "ROUNDS":
                return [Violation("a", debate_id, rec.where, "reason ROUNDS", body["reason"], body["detail"])]
            if (body["rounds_completed"], body["tokens_used"]) != (rounds, tokens):
                return [
                    Violation(
                        "b",
                        debate_id,
                        rec.where,
                        {"rounds": rounds, "tokens": tokens},
                        {"rounds": body["rounds_completed"], "tokens": body["tokens_used"]},
                        "DebateEnded disagrees with its turns",
                    )
                ]
            if rec is not events[-1][0]:
                later = events[events.index((rec, kind, body)) + 1]
                return [Violation("b", debate_id, later[0].where, "nothing after DebateEnded", later[1])]
            return []
        else:
            return [Violation("b", debate_id, rec.where, "TurnTaken or DebateEnded", kind)]
    last = events[-1][0]
    return [
        Violation(
            "a",
            debate_id,
            f"{topic} after @{last.offset}",
            "DebateEnded",
            f"no end after {i} of {len(expected)} turns",
        )
    ]


def check_moderator_table(
    facts: Facts, changelog: list[Rec], markers: list[Rec], partitions: int
) -> list[Violation]:
    """Invariant (c), moderator: an ended debate's row is deleted (its last record a tombstone),
    and its marker in the ``ended`` table holds the fold of its log (turns and tokens)."""
    out: list[Violation] = []
    last: dict[str, tuple[Rec, Any]] = {}
    for rec in changelog:
        last[table_key(rec.key)] = (rec, table_value(rec.value))
    marks: dict[str, tuple[Rec, Any]] = {}
    for rec in markers:
        marks[table_key(rec.key)] = (rec, table_value(rec.value))
    for debate_id, turns in facts.turns.items():
        home = partition_of(debate_id, partitions)
        for table, rows in (("debates", last), ("ended", marks)):
            if debate_id not in rows:
                out.append(Violation("c", debate_id, f"moderator {table} changelog", "a record", "none"))
                continue
            rec = rows[debate_id][0]
            if rec.partition != home:
                out.append(
                    Violation(
                        "c",
                        debate_id,
                        rec.where,
                        f"partition {home}",
                        f"partition {rec.partition}",
                        f"{table} row not co-partitioned with the debate's inbox messages: "
                        "a takeover would restore it on the wrong worker",
                    )
                )
        if debate_id in last and last[debate_id][1] is not None:
            rec, state = last[debate_id]
            out.append(Violation("c", debate_id, rec.where, "a tombstone (row deleted at the end)", state))
        if debate_id not in marks:
            continue
        rec, marker = marks[debate_id]
        want = {
            "turns": len(turns),
            "tokens": sum(t["prompt_tokens"] + t["completion_tokens"] for t in turns),
        }
        got = {k: (marker or {}).get(k) for k in want}
        if want != got:
            out.append(
                Violation(
                    "c", debate_id, rec.where, want, got, "the end marker differs from the fold of the log"
                )
            )
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
            out.append(
                Violation(
                    "c",
                    debate_id,
                    rec.where,
                    "a tombstone (history deleted at the end)",
                    f"a value with {len(value.get('turns', []))} turns",
                )
            )
            continue
        if rec.partition != partition_of(debate_id, partitions):
            out.append(
                Violation(
                    "c",
                    debate_id,
                    rec.where,
                    f"partition {partition_of(debate_id, partitions)}",
                    f"partition {rec.partition}",
                    "changelog row not co-partitioned",
                )
            )
        values = [(r, v) for r, v in history if v is not None]
        if not values:
            continue  # compacted away: only the tombstone is left to check
        rec, final = values[-1]
        own = [t for t in turns if t["speaker"] == agent]
        last_own = max((i for i, t in enumerate(turns) if t["speaker"] == agent), default=-1)
        want_turns = [
            {"round": t["round"], "speaker": t["speaker"], "text": t["text"]} for t in turns[: last_own + 1]
        ]
        got_turns = [
            {"round": t["round"], "speaker": t["speaker"], "text": t["text"]} for t in final["turns"]
        ]
        if final.get("taken") != [t["event_id"] for t in own]:
            out.append(
                Violation(
                    "c",
                    debate_id,
                    rec.where,
                    [t["event_id"] for t in own],
                    final.get("taken"),
                    f"{agent}'s taken turn ids differ from its TurnTaken in the log",
                )
            )
        elif want_turns != got_turns:
            i = next(
                i
                for i in range(max(len(want_turns), len(got_turns)))
                if (want_turns[i : i + 1] or [None])[0] != (got_turns[i : i + 1] or [None])[0]
            )
            out.append(
                Violation(
                    "c",
                    debate_id,
                    rec.where,
                    (want_turns[i : i + 1] or [None])[0],
                    (got_turns[i : i + 1] or [None])[0],
                    f"{agent}'s history turn #{i + 1} differs from the debate's log",
                )
            )
        elif final.get("pending"):
            out.append(
                Violation(
                    "c",
                    debate_id,
                    rec.where,
                    "nothing pending",
                    sorted(final["pending"]),
                    f"{agent} still owes turns of an ended debate",
                )
            )
    return out


@dataclass
class Accounting:
    calls: int
    extra: int
    by_cause: dict[str, int]
    allowance: int  # calls in flight in killed or stopped workers: at most that many repeats
    violations: list[Violation]


def check_llm_calls(
    events: list[LogEvent],
    facts: Facts,
    faults: list[Fault],
    outages: list[tuple[float, float]],
    partitions: int,
    log_dir: Path,
) -> Accounting:
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
        return next(
            (
                e.wall
                for e in by_pid[call.pid]
                if e.turn == call.turn and e.wall >= call.wall and e.kind in ("drafted", "failed")
            ),
            None,
        )

    allowance = 0
    for f in faults:
        if f.kind in ("kill", "stop") and f.pid:
            allowance += sum(
                1
                for c in by_pid[f.pid]
                if c.kind == "call" and c.wall <= f.wall and ((end := end_of(c)) is None or end > f.wall)
            )

    drafts: dict[str, list[Rec]] = defaultdict(list)
    for recs in facts.inbox.values():
        for rec, kind, body in recs:
            if kind == "TurnDrafted":
                drafts[body["event_id"]].append(rec)

    def lost(call: LogEvent, later: LogEvent) -> str | None:
        """Why this call's result could not serve the turn before ``later`` began, or None."""
        end = end_of(call)
        until = end if end is not None else math.inf
        if call.pid in killed and killed[call.pid] >= call.wall:
            kill_ms = killed[call.pid] * 1000
            if not any(call.wall * 1000 <= d.ts_ms <= kill_ms for d in drafts[call.turn]):  # no grace
                return "killed mid-call" if end is None else "killed before its draft was stored"
        if any(pid == call.pid and t0 <= until + 1.0 and t1 >= call.wall for pid, t0, t1 in stopped):
            return "stopped mid-call"
        p = partition_of(call.turn.split(":")[0], partitions)
        if any(
            e.kind == "owns" and call.wall <= e.wall <= until + 1.0 and p not in e.partitions
            for e in by_pid[call.pid]
        ):
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
                out.append(
                    Violation(
                        "d",
                        turn.split(":")[0],
                        stale[0],
                        "no LLM call: a draft of the turn was stored",
                        f"a call by {later.worker} pid {later.pid} at {_clock(later.wall)}",
                        stale[1],
                    )
                )
                continue
            j, why = next(
                ((j, w) for j in range(k) if j not in used and (w := lost(group[j], later))), (None, None)
            )
            if j is None:
                out.append(
                    Violation(
                        "d",
                        turn.split(":")[0],
                        str(log_dir / f"{later.worker}.log"),
                        "no repeated LLM call without a fault that lost the earlier one",
                        f"{len(group)} calls",
                        f"turn {turn}: calls at "
                        + "; ".join(
                            f"{c.worker} pid {c.pid} {_clock(c.wall)} (done "
                            f"{_clock(end_of(c)) if end_of(c) else 'never'})"
                            for c in group
                        ),
                    )
                )
                continue
            used.add(j)
            by_cause[why] += 1
    extra = len(calls) - len(committed)
    if len(calls) > len(committed) + allowance:
        out.append(
            Violation(
                "d",
                "*",
                str(log_dir),
                f"<= {len(committed)} turns + {allowance} calls in flight in killed or stopped workers",
                f"{len(calls)} LLM calls",
            )
        )
    return Accounting(len(calls), extra, dict(by_cause), allowance, out)


def _draft_before_trigger(
    call: LogEvent, by_pid: dict[int, list[LogEvent]], facts: Facts, turn: str
) -> tuple[str, str] | None:
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
    resumed = [
        e
        for e in by_pid[call.pid]
        if e.kind == "resumed" and e.turn == turn and 0 <= call.wall - e.wall < 5.0
    ]
    if resumed:
        assigned = [
            e.wall
            for e in by_pid[call.pid]
            if e.kind == "owns" and partition in e.partitions and e.wall <= resumed[-1].wall
        ]
        own = [
            m
            for m in markers
            if assigned and assigned[-1] - 1.0 <= m.ts_ms / 1000 <= resumed[-1].wall + 0.001
        ]
        if not own:
            return None
        trigger, what = own[-1], f"{call.worker}'s own Resume marker"
    else:
        requests = [
            rec
            for rec, k, b in inbox
            if k == "TurnRequested" and b["event_id"] == turn and rec.ts_ms <= call.wall * 1000 + 1
        ]
        if len(requests) < 2:
            return None
        trigger, what = requests[-1], f"the repeated TurnRequested (attempt {len(requests)})"
    before = [rec for rec in drafts if rec.offset < trigger.offset]
    if not before:
        return None
    seen = ", ".join(
        f"@{m.offset} ({_clock(m.ts_ms / 1000)})" for m in markers if m.ts_ms <= call.wall * 1000
    )
    return (
        before[0].where,
        f"turn {turn}: a TurnDrafted was stored at {before[0].where} "
        f"({_clock(before[0].ts_ms / 1000)}), before {what} at {trigger.where}, yet pid {call.pid} called "
        f"the model again{' after logging resumed after takeover' if resumed else ''}; Resume markers "
        f"on that partition by then: {seen}: the turn was paid twice",
    )


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
    requests = [
        (rec, b)
        for rec, kind, b in facts.inbox.get(agent, [])
        if kind == "TurnRequested" and b["event_id"] == turn
    ]
    if not requests:
        return f"missing {turn}: no TurnRequested for it committed in {agent}'s inbox (moderator side)"
    first = requests[0][0]
    at = first.ts_ms / 1000
    owners = [e for e in logs.events if e.kind == "owns" and e.agent == agent and e.wall <= at + 0.5]
    owner = next((e for e in reversed(owners) if p in e.partitions), None)
    text = f"missing {turn}: requested {len(requests)}x, first at {_clock(at)} ({first.where})"
    if owner is None:
        return text + f"; no {agent} worker had logged owning partition {p} by then"
    mine = [e for e in logs.events if e.pid == owner.pid and e.kind in ("call", "drafted", "resumed")]
    last_turn = max((e.wall for e in mine), default=None)
    return (
        text + f"; partition {p} owned by {owner.worker} pid {owner.pid} (since {_clock(owner.wall)}), "
        f"whose last turn line was at {_clock(last_turn) if last_turn else '-'} and last log line at "
        f"{_clock(logs.last_line.get(owner.pid, 0))}; calls for this turn: "
        f"{sum(1 for e in logs.events if e.kind == 'call' and e.turn == turn)}"
    )


def _clock(wall: float) -> str:
    return datetime.fromtimestamp(wall).strftime("%H:%M:%S.%f")[:-3]
