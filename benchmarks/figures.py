"""The figures of a run, from timestamps alone: pure functions, no Kafka."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def gaps_ms(turns: Iterable[Sequence[int]]) -> list[int]:
    """The gaps between consecutive committed turns of each debate (timestamps in ms)."""
    found: list[int] = []
    for stamps in turns:
        s = sorted(stamps)
        found += [b - a for a, b in zip(s, s[1:], strict=False)]
    return found


def rate(windows: Iterable[Sequence[float]]) -> dict[str, Any]:
    """Turns per second over one or more windows, each the timestamps (s) of the turns committed
    in it: (turns − 1) / (last − first), summed over the windows. A window of N turns holds N − 1
    intervals, so one debate's rate is not overstated by a turn."""
    intervals, seconds, turns = 0, 0.0, 0
    for stamps in windows:
        if not stamps:
            continue
        turns += len(stamps)
        intervals += len(stamps) - 1
        seconds += max(stamps) - min(stamps)
    per_s = round(intervals / seconds, 1) if seconds > 0 else None
    return {"turns": turns, "window_s": round(seconds, 3), "turns_per_s": per_s}


def peak_active(spans: Iterable[tuple[int | None, int | None]]) -> tuple[int, int | None]:
    """The most debates running at once and when (ms), from (started, ended) timestamps; a debate
    that has not ended counts as running to the end."""
    events = []
    for started, ended in spans:
        if started is not None:
            events.append((started, 1))
            if ended is not None:
                events.append((ended, -1))
    running, peak, at = 0, 0, None
    for when, step in sorted(events):  # an end at the same ms as a start sorts first
        running += step
        if running > peak:
            peak, at = running, when
    return peak, at


def capacity(requested_ms: Sequence[int], ended_ms: Sequence[int], turns: int, latency_s: float) -> dict:
    """From the first request to the last end, against the ideal: ``turns`` model calls in a
    row per debate, all debates in parallel."""
    ideal = turns * latency_s
    if not requested_ms or not ended_ms:
        return {"ideal_s": ideal, "actual_s": None, "fraction_of_ideal": None}
    actual = (max(ended_ms) - min(requested_ms)) / 1000
    return {"ideal_s": ideal, "actual_s": round(actual, 2), "fraction_of_ideal": round(ideal / actual, 3)}


def rss_at(samples: dict[str, list[tuple[int, float]]], when_ms: int | None) -> dict[str, float]:
    """Each worker's RSS sample nearest to ``when_ms``."""
    if when_ms is None:
        return {}
    return {
        worker: min(s, key=lambda sample: abs(sample[0] - when_ms))[1] for worker, s in samples.items() if s
    }
