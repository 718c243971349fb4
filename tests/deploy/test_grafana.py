"""deploy/grafana/agon.json: one datasource input, a sound grid, and only metrics that exist."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from test_prometheus_rules import RULES, metric_names, recorded, rules_of, unknown_names

from agon.settings import REPO_ROOT

DASHBOARD = json.loads((REPO_ROOT / "deploy" / "grafana" / "agon.json").read_text())
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


def panels() -> Iterator[dict[str, Any]]:
    for panel in DASHBOARD["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def exprs() -> list[str]:
    """Every query of the dashboard: its panels' and its query variables'."""
    found = [t["expr"] for p in panels() for t in p.get("targets", [])]
    for var in DASHBOARD["templating"]["list"]:
        if var["type"] == "query":
            found.append(var["query"]["query"] if isinstance(var["query"], dict) else var["query"])
    return found


def test_the_datasource_is_one_input_and_variable() -> None:
    (given,) = DASHBOARD["__inputs"]  # asked for on import (Dashboards > Import)
    assert (given["name"], given["type"], given["pluginId"]) == ("DS_PROMETHEUS", "datasource", "prometheus")
    # a variable of the same name serves a provisioned copy, which no import resolves
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"] == DATASOURCE for t in panel["targets"]), panel["title"]


def test_panels_have_their_own_ids_and_cells() -> None:
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))
    taken: dict[tuple[int, int], str] = {}
    for panel in DASHBOARD["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_every_metric_the_dashboard_reads_is_exported_or_recorded() -> None:
    assert unknown_names(exprs(), known=recorded(rules_of(RULES))) == []


def test_the_dashboard_shows_what_an_operator_looks_for() -> None:
    used = {name for expr in exprs() for name in metric_names(expr)}
    assert {
        "agon_inbox_lag",
        "agon_workers",
        "agon_handoff_seconds_bucket",
        "agon_turn_seconds_bucket",
        "agon_llm_latency_seconds_bucket",
        "agon_llm_calls_total",
        "agon_llm_tokens_total",
        "agon_dead_letters_total",
        "agon_debates_started_total",
        "agon_debates_ended_total",
        "agon_debates_running",
        "agon_transactions_total",
        "agon_commit_seconds_bucket",
        "agon_probe_success",
        "agon_probe_duration_seconds",
    } <= used
    # the SLO burn rates come from the recording rules, over the windows the alerts use
    for ratio in ("agon:debate_errors", "agon:turns_slow"):
        assert {f"{ratio}:ratio_rate{w}" for w in ("5m", "1h", "6h", "1d", "3d")} <= used
