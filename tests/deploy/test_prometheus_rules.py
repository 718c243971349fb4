"""deploy/prometheus: promtool accepts the rules and the scrape config, the rules' unit tests
pass, and every metric a rule reads is one agon exports.

The tests named ``test_promtool_*`` take the ``promtool`` fixture: it downloads Debian's
prometheus package (``apt-get download``, about 20 MB, once into ``.agon-test/tools/``) and
fails, never skips, when that cannot be done. ``-k "not promtool"`` leaves them out.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

from agon.errors import AgonError
from agon.settings import REPO_ROOT
from agon.streams.local.prometheus import PrometheusTools, install
from agon.streams.metrics import REGISTRY

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "rules" / "agon-slo.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "agon-slo-test.yml"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"

#: series Prometheus writes itself, one per target
BUILT_IN = {"up"}

_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


def exported_names() -> set[str]:
    """The series names agon's registry exposes: a counter's ``_total``, a histogram's
    ``_bucket``/``_sum``/``_count``, a gauge's own name."""
    names = set()
    for family in REGISTRY.collect():
        names |= {family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",))}
    return names


# -- a reasonable reader of PromQL's metric names --------------------------------------------
KEYWORDS = {
    # aggregations (their `by (...)`/`without (...)` lists are dropped before the search)
    *"sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk".split(),
    # binary operators and vector matching
    *"and or unless bool on ignoring group_left group_right by without atan2".split(),
    *"offset start end inf nan".split(),
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")  # Grafana's $__rate_interval, ${DS_PROMETHEUS}
_MATCHERS = re.compile(r"\{[^}]*\}")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.I)
_LABEL_VALUES = re.compile(r"\blabel_values\(\s*(?:([^,()]*?)\s*,)?[^()]*\)")  # Grafana's, in variables
_COMMENT = re.compile(r"#[^\n]*")
#: an identifier that does not continue a number or a name, and is not a function's
_NAME = re.compile(r"(?<![\w:.])[A-Za-z_:][\w:]*(?![\w:])(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """The metric (and recorded series) names a PromQL expression reads."""
    text = _STRING.sub('""', expr)
    text = _COMMENT.sub(" ", text)
    text = _VARIABLE.sub("", text)
    text = _MATCHERS.sub("{}", text)
    text = _LABEL_LIST.sub(r"\1", text)
    text = _LABEL_VALUES.sub(lambda m: m.group(1) or "", text)
    return {name for name in _NAME.findall(text) if name.lower() not in KEYWORDS}


def unknown_names(exprs: Iterable[str], known: set[str]) -> list[str]:
    """Names the expressions read that are in neither ``known`` nor agon's exports."""
    allowed = exported_names() | BUILT_IN | known
    return sorted({name for expr in exprs for name in metric_names(expr)} - allowed)


# -- a reader of the rule file: agon has no YAML library among its dependencies ---------------
_KEY = re.compile(r"^(\s*)(-\s+)?(record|alert|expr):\s*(.*?)\s*$")


def rules_of(path: Path) -> list[dict[str, str]]:
    """Each rule of a Prometheus rule file: {"record" or "alert": name, "expr": PromQL}. Reads
    inline and block (``|``, ``>``) scalars; `promtool check rules` counts the same rules."""
    lines = path.read_text().splitlines()
    rules: list[dict[str, str]] = []
    i = 0
    while i < len(lines):
        match = _KEY.match(lines[i])
        i += 1
        if match is None:
            continue
        indent = len(match.group(1)) + len(match.group(2) or "")
        key, value = match.group(3), match.group(4)
        if value[:1] in ("|", ">"):
            block = []
            while i < len(lines) and (
                not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
            ):
                block.append(lines[i].strip())
                i += 1
            value = "\n".join(block).strip()
        elif value[:1] == "'":
            value = value[1:-1].replace("''", "'")
        elif value[:1] == '"':
            value = json.loads(value)
        else:
            value = re.sub(r"\s+#.*$", "", value)
        if key == "expr":
            rules[-1]["expr"] = value
        else:
            rules.append({key: value})
    return rules


def recorded(rules: list[dict[str, str]]) -> set[str]:
    return {rule["record"] for rule in rules if "record" in rule}


# -- the rules read only what exists ---------------------------------------------------------
def test_the_name_reader_finds_every_name_of_a_known_expression() -> None:
    expr = """
        sum by (agent, le) (rate(agon_events_total{outcome="ok", type=~"Turn.*"}[$__rate_interval]))
          / on (agent) group_left() max by(agent)(agon_workers) > bool 0
        unless agon:debate_errors:ratio_rate5m offset 5m  # not_a_metric in a comment
        or histogram_quantile(0.99, sum without (instance) (rate(agon_turn_seconds_bucket[5m:1m])))>1e3
        or label_replace(up, "dst", "$1", "src", "(agon_in_a_string)") or clamp_min(agon_inbox_lag,0)
    """
    assert metric_names(expr) == {
        "agon_events_total",
        "agon_workers",
        "agon:debate_errors:ratio_rate5m",
        "agon_turn_seconds_bucket",
        "up",
        "agon_inbox_lag",
    }
    assert metric_names('label_values(up{job="agon"}, namespace)') == {"up"}


def test_a_name_agon_does_not_export_is_caught() -> None:
    exprs = ["rate(agon_does_not_exist_total[5m]) / sum(rate(agon_turn_seconds_count[5m]))"]
    assert unknown_names(exprs, known=set()) == ["agon_does_not_exist_total"]
    assert unknown_names(["agon:not_recorded:ratio > 1"], known={"agon:recorded:ratio"}) == [
        "agon:not_recorded:ratio"
    ]


def test_the_registry_s_names_are_the_series_prometheus_stores() -> None:
    names = exported_names()
    assert {"agon_debates_ended_total", "agon_turn_seconds_bucket", "agon_turn_seconds_count"} <= names
    assert {"agon_probe_success", "agon_workers"} <= names
    assert "agon_debates_ended" not in names and "agon_turn_seconds" not in names


def test_every_metric_a_rule_reads_is_exported_or_recorded() -> None:
    rules = rules_of(RULES)
    assert all(rule.get("expr") for rule in rules)
    assert unknown_names((rule["expr"] for rule in rules), known=recorded(rules)) == []


def test_each_slo_has_one_objective_and_its_windows_recorded() -> None:
    rules = rules_of(RULES)
    records = {rule.get("record"): rule["expr"] for rule in rules}
    for objective in ("agon:debate_availability:objective", "agon:turn_latency:objective"):
        assert records[objective].startswith("vector(0.99)")
    for ratio in ("agon:debate_errors", "agon:turns_slow"):
        assert {f"{ratio}:ratio_rate{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")} <= set(records)
    # REJECTED is a client's error: in neither the good nor the bad debates
    assert not any("REJECTED" in expr for expr in records.values() if expr)


# -- the installer (agon.streams.local.prometheus) ---------------------------------------------
def test_install_says_what_to_do_without_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(AgonError, match=r"apt-get not found on PATH.*`promtool` on PATH"):
        install(tmp_path / "home", progress=lambda line: None)


def test_install_reports_apt_s_failure_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fakes = {"apt-get": "echo 'E: Unable to locate package prometheus' >&2; exit 100", "dpkg-deb": "exit 0"}
    for name, script in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    home = tmp_path / "home"
    with pytest.raises(
        AgonError, match=r"\(exit 100\): E: Unable to locate package prometheus \(.*apt-get update"
    ):
        install(home, progress=lambda line: None)
    assert list((home / "tools").iterdir()) == []


def test_install_uses_what_it_kept_without_fetching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kept = tmp_path / "home" / "tools" / "prometheus-2.42.0+ds-5+deb12u1"
    kept.mkdir(parents=True)
    for name in ("prometheus", "promtool"):
        (kept / name).write_text("")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))  # no apt-get: nothing may be fetched
    assert install(tmp_path / "home") == PrometheusTools(kept / "prometheus", kept / "promtool")


# -- promtool --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def promtool() -> Path:
    """promtool from Debian's prometheus package, installed once under .agon-test/tools/."""
    try:
        return install(REPO_ROOT / ".agon-test", progress=lambda line: None).promtool
    except AgonError as exc:
        pytest.fail(f"these tests need promtool, and installing it failed: {exc}", pytrace=False)


def run(promtool: Path, *args: str | Path, cwd: Path = PROMETHEUS_DIR) -> str:
    proc = subprocess.run([str(promtool), *map(str, args)], cwd=cwd, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


@pytest.mark.timeout(900)  # the first test to run downloads Prometheus
def test_promtool_checks_the_rules(promtool: Path) -> None:
    out = run(promtool, "check", "rules", RULES)
    found = re.search(r"SUCCESS: (\d+) rules found", out)
    assert found, out
    assert int(found.group(1)) == len(rules_of(RULES)), "the reader above missed rules: " + out


@pytest.mark.timeout(900)
def test_promtool_passes_the_rule_unit_tests(promtool: Path) -> None:
    out = run(promtool, "test", "rules", RULE_TESTS)
    assert "SUCCESS" in out and "FAILED" not in out, out


@pytest.mark.timeout(900)
def test_promtool_accepts_the_scrape_config_with_the_supervisor_s_targets(
    promtool: Path, tmp_path: Path
) -> None:
    out = run(promtool, "check", "config", CONFIG)
    assert "SUCCESS: 1 rule files found" in out and f"Checking {RULES}\n" in out, "no SLO rules: " + out

    # a copy with a target file as the supervisor writes it: promtool reads file_sd files too
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, copy, ignore=shutil.ignore_patterns("targets"))
    (copy / "targets").mkdir()
    targets = [{"targets": ["127.0.0.1:9100"], "labels": {"slot": "moderator-0", "namespace": "agon"}}]
    (copy / "targets" / "agon.json").write_text(json.dumps(targets))
    out = run(promtool, "check", "config", "prometheus.yml", cwd=copy)
    assert "does not exist" not in out, out
    (copy / "targets" / "agon.json").write_text('[{"targets": ["127.0.0.1:9100"], "labels": {"0bad": "x"}}]')
    proc = subprocess.run([str(promtool), "check", "config", "prometheus.yml"], cwd=copy, capture_output=True)
    assert proc.returncode != 0, "promtool did not read the target file"
