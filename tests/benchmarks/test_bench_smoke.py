"""`python -m benchmarks --smoke` runs on the session's broker and writes its results and plots.

It asserts only that: no timing figure is checked here (the machine's load is not ours).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agon.settings import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

PNG = b"\x89PNG\r\n\x1a\n"


def test_the_smoke_benchmark_writes_its_results_and_plots(kafka_bootstrap, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "benchmarks", "--smoke", "--bootstrap", kafka_bootstrap]
    cmd += ["--out", str(out), "--workdir", str(tmp_path / "home")]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    result = json.loads((out / "bench.json").read_text())
    for measure in ("floor", "inprocess", "throughput", "handoff", "capacity", "rss"):
        assert "error" not in result[measure], result[measure]
    assert [lv["debates"] for lv in result["throughput"]["levels"]] == [1, 3]
    assert all(lv["complete"] for lv in result["throughput"]["levels"])
    assert result["handoff"]["gaps_ms"]["n"] > 0
    assert result["capacity"]["complete"] and result["rss"]["rss_max_mib"]
    assert "not run" in result["recovery"]["note"]
    assert {row["measure"].split(",")[0] for row in result["verdicts"]} >= {"raw floor: produce → consume"}
    for plot in ("turns_per_s.png", "handoff.png"):
        assert (out / plot).read_bytes().startswith(PNG)
