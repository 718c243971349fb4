"""Every process serves /metrics that promtool accepts, the supervisor lists them all for
Prometheus, and a real Prometheus server scrapes them and evaluates the SLO rules."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from helpers import free_port, running_fleet, wait_for

from agon.connectors.transcript import follow, new_request, send_request
from agon.settings import REPO_ROOT
from agon.streams.local.files import FleetFiles
from agon.streams.local.prometheus import install

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROUNDS = 2
SLOTS = {"supervisor", "probe", "moderator-0", "team-a-0", "team-b-0"}


def samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


@pytest.fixture(scope="module")
def tools():
    return install(REPO_ROOT / ".agon-test", progress=lambda line: None)


def test_every_process_is_scraped_and_its_metrics_say_what_happened(kafka_bootstrap, tmp_path, tools):
    with running_fleet(kafka_bootstrap, tmp_path / "home") as settings:
        files = FleetFiles(settings)
        probe = subprocess.Popen(
            [sys.executable, "-m", "agon.connectors.cli", "probe", "--every", "3", "--timeout", "30"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            reqs = [new_request("Tea beats coffee", ROUNDS, f"m-{uuid.uuid4().hex[:8]}") for _ in range(2)]
            send_request(settings, *reqs)
            for r in reqs:
                assert list(follow(settings, r["debate_id"], wait_s=60))[-1][1]["reason"] == "ROUNDS"

            def listed():
                targets = json.loads(files.targets.read_text()) if files.targets.exists() else []
                found = {t["labels"]["slot"]: t["targets"][0] for t in targets}
                return found if set(found) == SLOTS else None

            targets = wait_for(listed, 30, f"the supervisor to list {sorted(SLOTS)} for Prometheus")

            # promtool accepts every page, and the pages tell what happened
            pages = {}
            for slot, address in targets.items():
                text = httpx.get(f"http://{address}/metrics").text
                check = subprocess.run(
                    [str(tools.promtool), "check", "metrics"], input=text, capture_output=True, text=True
                )
                assert check.returncode == 0, f"{slot}: {check.stdout}{check.stderr}"
                pages[slot] = samples(text)
            team_a, moderator = pages["team-a-0"], pages["moderator-0"]
            assert not any("debate_id" in k for page in pages.values() for k in page)
            assert team_a['agon_turns_taken_total{agent="team-a"}'] >= 2 * ROUNDS
            assert team_a['agon_llm_tokens_total{agent="team-a",kind="completion",model="offline"}'] > 0
            assert team_a['agon_handoff_seconds_count{agent="team-a",type="TurnRequested"}'] >= 2 * ROUNDS
            assert team_a['agon_transactions_total{agent="team-a",outcome="committed"}'] > 0
            assert team_a['agon_commit_seconds_count{agent="team-a"}'] > 0
            assert 'agon_inbox_lag{agent="team-a"}' in team_a
            assert moderator['agon_debates_ended_total{reason="ROUNDS"}'] >= 2
            assert moderator["agon_turn_seconds_count"] >= 4 * ROUNDS
            assert moderator["agon_debates_started_total"] >= 2
            assert "agon_debates_running" in moderator

            def probed():
                page = samples(httpx.get(f"http://{targets['probe']}/metrics").text)
                return page.get('agon_probe_runs_total{outcome="ok",probe="debate"}', 0) >= 1

            wait_for(probed, 60, "a probe debate to end normally")

            # a real Prometheus, with agon's scrape config and rules, scrapes them all
            conf = tmp_path / "prometheus"
            shutil.copytree(REPO_ROOT / "deploy" / "prometheus" / "rules", conf / "rules")
            (conf / "targets").mkdir()
            (conf / "targets" / "agon.json").symlink_to(files.targets)
            config = (REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
            for slow, fast in (
                ("evaluation_interval: 30s", "evaluation_interval: 1s"),
                ("scrape_timeout: 4s", "scrape_timeout: 1s"),
            ):
                assert slow in config
                config = config.replace(slow, fast)
            config = config.replace("scrape_interval: 5s", "scrape_interval: 1s").replace(
                "refresh_interval: 10s", "refresh_interval: 1s"
            )
            (conf / "prometheus.yml").write_text(config)
            port = free_port()
            server = subprocess.Popen(
                [
                    str(tools.prometheus),
                    f"--config.file={conf / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=open(tmp_path / "prometheus.log", "w"),
            )
            api = f"http://127.0.0.1:{port}/api/v1"
            try:

                def all_up():
                    if server.poll() is not None:
                        pytest.fail(f"prometheus exited: {(tmp_path / 'prometheus.log').read_text()[-2000:]}")
                    try:
                        active = httpx.get(f"{api}/targets").json()["data"]["activeTargets"]
                    except (httpx.HTTPError, ValueError, KeyError):
                        return None
                    up = {t["labels"]["slot"] for t in active if t["health"] == "up"}
                    return up if up == SLOTS else None

                wait_for(all_up, 60, "Prometheus to scrape every target")

                def query(expr):
                    return httpx.get(f"{api}/query", params={"query": expr}).json()["data"]["result"]

                def recorded():
                    got = query('sum by (agent) (agon_turns_taken_total{job="agon"})')
                    rule = query("agon:turns_slow:ratio_rate5m")
                    return got and rule

                wait_for(recorded, 60, "the turn counts and a recording rule in Prometheus")
                turns = {
                    r["metric"]["agent"]: float(r["value"][1])
                    for r in query("sum by (agent) (agon_turns_taken_total)")
                }
                assert turns["team-a"] >= 2 * ROUNDS and turns["team-b"] >= 2 * ROUNDS
                time.sleep(0.1)
            finally:
                server.terminate()
                server.wait(timeout=30)
        finally:
            probe.terminate()
            probe.wait(timeout=30)
