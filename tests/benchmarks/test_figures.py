"""The benchmark's figures from timestamps, and its verdicts against the targets."""

from __future__ import annotations

import importlib

import pytest

from agon.settings import REPO_ROOT


@pytest.fixture
def bench(monkeypatch):
    """The benchmarks package (at the repository's top, not installed)."""
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    return importlib.import_module("benchmarks.figures"), importlib.import_module("benchmarks.table")


def test_gaps_are_taken_within_each_debate(bench):
    figures, _ = bench
    assert figures.gaps_ms([[100, 130, 190], [1000, 1010]]) == [30, 60, 10]


def test_a_rate_counts_intervals_not_turns(bench):
    figures, _ = bench
    # one debate: 5 turns in 2 s are 4 intervals; two windows add up
    assert figures.rate([[0.0, 0.5, 1.0, 1.5, 2.0]])["turns_per_s"] == 2.0
    assert figures.rate([[0.0, 1.0], [10.0, 10.5, 11.0]]) == {"turns": 5, "window_s": 2.0, "turns_per_s": 1.5}
    assert figures.rate([[5.0]])["turns_per_s"] is None


def test_the_peak_of_running_debates_counts_the_unended_to_the_end(bench):
    figures, _ = bench
    spans = [(0, 10), (5, 20), (10, 30), (12, None), (None, None)]
    assert figures.peak_active(spans) == (3, 12)  # the first ends as the third starts


def test_capacity_is_ideal_over_actual(bench):
    figures, _ = bench
    found = figures.capacity([1000, 1500], [9000, 17000], turns=4, latency_s=2.0)
    assert found == {"ideal_s": 8.0, "actual_s": 16.0, "fraction_of_ideal": 0.5}


def test_verdicts_say_met_missed_or_not_measured(bench):
    _, table = bench
    result = {
        "floor": {"transactional_ms": {"n": 10, "p50": 5.0, "p99": 10.0, "max": 12.0}},
        "handoff": {"gaps_ms": {"n": 100, "p50": 25.0, "p99": 300.0}},
        "rss": {"rss_max_mib": {"moderator-0": 120.0}, "peak_active": 400},
    }
    rows = {row["measure"].split(" (")[0]: row for row in table.verdicts(result)}
    assert rows["turn hand-off p50"]["met"] is True
    assert rows["turn hand-off p50"]["note"].startswith("5× the transactional p50")
    assert rows["turn hand-off p99"]["met"] is False
    assert rows["RSS per worker"]["met"] is None  # 1,000 active debates were not reached
    assert "not reached" in rows["RSS per worker"]["note"]
    assert all(row["met"] is None for name, row in rows.items() if name.startswith("raw floor"))
