"""The run's plots as PNG (matplotlib's Figure API: no pyplot, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .table import TARGETS

TURNS_PNG = "turns_per_s.png"
HANDOFF_PNG = "handoff.png"


def turns_per_s(result: dict[str, Any], out: Path) -> Path | None:
    """Committed turns/s against concurrent debates, agon beside the in-process loop."""
    series = {
        "agon (one worker per agent, exactly-once)": result.get("throughput", {}).get("levels", []),
        "in-process asyncio loop": result.get("inprocess", {}).get("levels", []),
    }
    if not any(series.values()):
        return None
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for (label, levels), (marker, colour) in zip(series.items(), (("o", "C0"), ("s", "C1")), strict=True):
        points = [(lv["debates"], lv["turns_per_s"]) for lv in levels if lv.get("turns_per_s")]
        if points:
            xs, ys = [x for x, _ in points], [y for _, y in points]
            ax.plot(xs, ys, marker=marker, color=colour, label=label)
    at, target = TARGETS["turns_per_s_at"]
    ax.axhline(target, color="grey", linestyle=":", label=f"target at {at} debates: {target:,.0f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent debates")
    ax.set_ylabel("committed turns/s")
    ax.set_title("Turns/s, zero-latency model")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(fig, out / TURNS_PNG)


def handoff(result: dict[str, Any], out: Path) -> Path | None:
    """The hand-off gaps: histogram and cumulative distribution, with the targets."""
    gaps = result.get("handoff", {}).get("samples_ms") or []
    if not gaps:
        return None
    fig = Figure(figsize=(10, 4))
    hist, cdf = fig.subplots(1, 2)
    hist.hist(gaps, bins=min(50, max(5, len(gaps) // 4)))
    hist.set_xlabel("gap between consecutive committed turns (ms)")
    hist.set_ylabel("gaps")
    s = sorted(gaps)
    cdf.plot(s, [(i + 1) / len(s) for i in range(len(s))], drawstyle="steps-post")
    for q, style in (("p50", ":"), ("p99", "--")):
        target = TARGETS[f"handoff_{q}_ms"]
        cdf.axvline(target, color="grey", linestyle=style, label=f"{q} target {target:g} ms")
    cdf.set_xlabel("gap (ms)")
    cdf.set_ylabel("fraction of gaps ≤ x")
    cdf.legend()
    for ax in (hist, cdf):
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"Turn hand-off, one debate at a time, zero-latency model ({len(gaps)} gaps)")
    return _save(fig, out / HANDOFF_PNG)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
