"""The targets of issue #9, each measured figure against its target, and the README block."""

from __future__ import annotations

from typing import Any

TARGETS = {
    "handoff_p50_ms": 30.0,
    "handoff_p99_ms": 150.0,
    "turns_per_s_at": (40, 1000.0),  # at 40 concurrent debates, at least 1,000 turns/s
    "capacity_fraction": 0.9,  # of the ideal rate, 500 debates × 2 rounds at 2 s
    "rss_mib_at": (1000, 300.0),  # at 1,000 active debates, at most 300 MiB per worker
    "recovery_ratio": 1.5,  # moderator recovery p50 with history / without (issue #8)
}


def verdicts(r: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure: measure, measured, target, met (True, False, or None when the figure
    is not there or its condition was not reached), against the raw floor, note."""
    floor, rows = r.get("floor", {}), []
    for key, name in (("plain_ms", "plain"), ("transactional_ms", "one transaction per record")):
        f = floor.get(key)
        rows.append(_row(f"raw floor: produce → consume, {name}", _p(f), "the floor", None))

    hand = r.get("handoff", {}).get("gaps_ms") or {}
    for q, target in (("p50", TARGETS["handoff_p50_ms"]), ("p99", TARGETS["handoff_p99_ms"])):
        value = hand.get(q)
        txn = (floor.get("transactional_ms") or {}).get(q)
        rows.append(
            _row(
                f"turn hand-off {q} (gap between committed turns, zero-latency model)",
                None if value is None else f"{value:g} ms",
                f"≤ {target:g} ms",
                None if value is None else value <= target,
                f"{value / txn:.0f}× the transactional {q}" if value and txn else None,
            )
        )

    at, target = TARGETS["turns_per_s_at"]
    level = _level(r.get("throughput", {}), at)
    local = _level(r.get("inprocess", {}), at)
    value = level.get("turns_per_s") if level else None
    note = None
    if level and not level.get("complete", True):
        note = level.get("note")
    if value and local and local.get("turns_per_s"):
        note = f"{value / local['turns_per_s']:.1%} of the in-process loop's {local['turns_per_s']:,.0f}"
    rows.append(
        _row(
            f"committed turns/s, {at} concurrent debates, zero-latency model",
            None if value is None else f"{value:,.1f}",
            f"≥ {target:,.0f}",
            None if value is None else value >= target,
            note=note,
        )
    )

    cap = r.get("capacity", {})
    frac, bound, goal = (
        cap.get("fraction_of_ideal"),
        cap.get("fraction_at_most"),
        TARGETS["capacity_fraction"],
    )
    if frac is not None:
        measured = f"{cap['actual_s']:g} s (ideal {cap['ideal_s']:g} s): {frac:.0%} of the ideal rate"
        met = frac >= goal
    elif bound is not None:  # not all ended by the deadline: the rate is below this bound
        measured, met = f"< {bound:.0%} of the ideal rate", None if bound >= goal else False
    else:
        measured, met = None, None
    rows.append(
        _row(
            f"{cap.get('debates', 500)} debates × {cap.get('rounds', 2)} rounds, model latency "
            f"{cap.get('latency_s', 2):g} s",
            measured,
            f"≥ {goal:.0%} of ideal",
            met,
            note=cap.get("note"),
        )
    )

    active, limit = TARGETS["rss_mib_at"]
    rss = r.get("rss", {})
    worst = max(rss.get("rss_max_mib", {}).values(), default=None)
    reached = rss.get("peak_active", 0) >= active
    rows.append(
        _row(
            "RSS per worker (VmRSS, max during the run)",
            None
            if worst is None
            else f"{worst:g} MiB at most, at up to {rss['peak_active']:,} active debates "
            f"({', '.join(f'{w} {m:g}' for w, m in sorted(rss['rss_max_mib'].items()))})",
            f"≤ {limit:g} MiB at {active:,} active",
            None if worst is None or not reached else worst <= limit,
            note=None if worst is None or reached else f"{active:,} active debates not reached",
        )
    )

    rec = r.get("recovery", {})
    ratio = rec.get("recovery_ratio_p50")
    runs = rec.get("runs") or [{}, {}]
    rows.append(
        _row(
            f"moderator recovery after kill -9, {runs[-1].get('ended_debates', 0):,} ended debates vs none",
            None
            if ratio is None
            else f"p50 {runs[-1]['recovery_s']['p50']:g} s vs {runs[0]['recovery_s']['p50']:g} s: "
            f"ratio {ratio:g}",
            f"ratio ≤ {TARGETS['recovery_ratio']:g}",
            None if ratio is None else ratio <= TARGETS["recovery_ratio"],
            note=rec.get("note"),
        )
    )
    return rows


def readme_lines(r: dict[str, Any]) -> list[str]:
    m, v = r["machine"], r["versions"]
    lines = [
        f"Latest run: {r['started']}, {r['duration_s']:.0f} s, `{r['command']}`.",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Python {m['python']}, {m['java']}.",
        "Versions: "
        + ", ".join(f"{name} {version}" for name, version in v.items() if version)
        + f"; broker: {r['broker']}.",
        f"Timestamps: {r.get('timestamps') or 'not read'}.",
        "",
        "| measure | measured | target | met | note |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in r["verdicts"]:
        met = {True: "met", False: "**missed**", None: "–"}[row["met"]]
        lines.append(
            f"| {row['measure']} | {row['measured'] or 'not measured'} | {row['target']} | {met} "
            f"| {row['note'] or ''} |"
        )
    agon, local = r.get("throughput", {}).get("levels", []), r.get("inprocess", {}).get("levels", [])
    if agon or local:
        lines += [
            "",
            "| concurrent debates | rounds | agon turns/s | in-process turns/s | agon / in-process "
            "| gap p50 / p99 (ms) | ended |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for n in sorted({lv["debates"] for lv in agon + local}):
            a, b = _level(r["throughput"], n) or {}, _level(r.get("inprocess", {}), n) or {}
            ratio = (
                f"{a['turns_per_s'] / b['turns_per_s']:.2%}"
                if a.get("turns_per_s") and b.get("turns_per_s")
                else "–"
            )
            gaps = a.get("gaps_ms") or {}
            lines.append(
                f"| {n:,} | {a.get('rounds', b.get('rounds'))} | {_num(a.get('turns_per_s'))} "
                f"| {_num(b.get('turns_per_s'))} | {ratio} | {gaps.get('p50', '–')} / {gaps.get('p99', '–')} "
                f"| {_ended(a)} |"
            )
    notes = [f"- {note}" for note in r.get("notes", [])]
    return lines + ([""] + notes if notes else [])


def _row(measure: str, measured: str | None, target: str, met: bool | None, vs_floor=None, note=None):
    if vs_floor:
        note = vs_floor if not note else f"{vs_floor}; {note}"
    return {"measure": measure, "measured": measured, "target": target, "met": met, "note": note}


def _p(f: dict[str, Any] | None) -> str | None:
    return f"p50 {f['p50']:g} ms, p99 {f['p99']:g} ms (n {f['n']})" if f and f.get("n") else None


def _level(section: dict[str, Any], debates: int) -> dict[str, Any] | None:
    return next((lv for lv in section.get("levels", []) if lv["debates"] == debates), None)


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:,.1f}"


def _ended(level: dict[str, Any]) -> str:
    if not level:
        return "–"
    total = level["debates"] * level.get("batches", 1)
    return "all" if level.get("ended") == total else f"{level.get('ended')} of {total}"
