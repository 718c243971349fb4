"""Lag-based autoscaling on one machine: a backlog on one agent's inbox brings that agent
more workers (bounded by its partitions), which take partitions over and help; once the
backlog is gone, the supervisor stops them again, and no debate is lost or doubled."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from helpers import kafka_describe, running_fleet, wait_for

from agon.connectors.transcript import follow, new_request, send_request
from agon.streams.lag import pending_by_agent, read_lag
from agon.streams.local.files import FleetFiles

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

DEBATES = 24
ROUNDS = 2
MAX_WORKERS = 3


def test_a_backlog_scales_its_agent_out_and_back_in(kafka_bootstrap, tmp_path):
    with running_fleet(
        kafka_bootstrap,
        tmp_path,
        autoscale=True,
        AGON_LLM_OFFLINE_LATENCY_S="1.0",
        AGON_WORKER_MAX_LLM_IN_FLIGHT="1",  # one model call at a time per worker: requests queue
        AGON_AUTOSCALE_LAG_THRESHOLD="4",
        AGON_AUTOSCALE_MAX_REPLICA_COUNT=str(MAX_WORKERS),
        AGON_AUTOSCALE_POLLING_INTERVAL_S="0.5",
        AGON_AUTOSCALE_SCALE_DOWN_STABILIZATION_S="8",
    ) as settings:
        files = FleetFiles(settings)
        seen: dict[str, int] = {}
        lag_seen: dict[str, int] = {}
        watching = threading.Event()

        def watch() -> None:  # the highest count the supervisor wanted, the highest lag it read
            while not watching.is_set():
                state = files.read_state()
                for agent, n in (state.get("desired") or {}).items():
                    seen[agent] = max(seen.get(agent, 0), n)
                for agent, lag in ((state.get("autoscaler") or {}).get("lag") or {}).items():
                    lag_seen[agent] = max(lag_seen.get(agent, 0), lag)
                time.sleep(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        reqs = [
            new_request("Cities should ban cars", rounds=ROUNDS, debate_id=f"s-{uuid.uuid4().hex[:8]}")
            for _ in range(DEBATES)
        ]
        send_request(settings, *reqs)  # team-a is asked for 24 first turns at once
        results: dict[str, list] = {}
        threads = [
            threading.Thread(
                target=lambda d=r["debate_id"]: results.__setitem__(
                    d, list(follow(settings, d, wait_s=120, idle_timeout_s=120))
                )
            )
            for r in reqs
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)

        assert seen.get("team-a") == MAX_WORKERS, f"team-a was never scaled out: {seen}"
        for r in reqs:  # nothing lost, nothing doubled, in order
            events = results[r["debate_id"]]
            assert events[-1][1]["reason"] == "ROUNDS", events[-1]
            turns = [b["event_id"] for k, b in events if k == "TurnTaken"]
            expected = [
                f"{r['debate_id']}:{n}:{s}" for n in range(1, ROUNDS + 1) for s in ("team-a", "team-b")
            ]
            assert turns == expected

        # the new workers took partitions over and answered turns
        helped = []
        for index in range(1, MAX_WORKERS):
            log = files.log("team-a", index)
            if log.exists() and " taken" in log.read_text():
                helped.append(index)
        assert helped, "no scaled-out team-a worker took a turn"

        # the backlog is gone: after the stabilization window every agent is back to one worker
        def back_to_one():
            desired = files.read_state().get("desired") or {}
            slots = files.read_state().get("slots") or {}
            return desired.get("team-a") == 1 and all(
                s["agent"] != "team-a" or s["index"] == 0 for s in slots.values()
            )

        wait_for(back_to_one, 60, "team-a to be scaled back in to one worker")
        watching.set()

        # the lag rose under the burst and drained; it is what Kafka's own tool says
        assert lag_seen["team-a"] > 4, lag_seen

        def drained():  # the last rebalance's Resume markers, read by the one worker left
            rows = read_lag(settings, ["team-a"])
            return rows if pending_by_agent(rows) == {"team-a": 0} else None

        rows = wait_for(drained, 30, "team-a's inbox to drain")

        def steady():  # the fleet is live: compare only when no marker landed during the tool's run
            before = {
                (r.topic, r.partition): (r.committed, r.lag)
                for r in read_lag(settings, ["team-a"])
                if r.source
            }
            tool = kafka_describe(settings.kafka.bootstrap, rows[0].group)
            after = {
                (r.topic, r.partition): (r.committed, r.lag)
                for r in read_lag(settings, ["team-a"])
                if r.source
            }
            return (after, tool) if before == after else None

        inbox, tool = wait_for(steady, 30, "team-a's offsets to hold still while kafka-consumer-groups runs")
        assert len(inbox) == 4
        for key, (committed, lag) in inbox.items():
            assert (tool[key]["CURRENT-OFFSET"], tool[key]["LAG"]) == (str(committed), str(lag))
            assert lag <= 2  # transaction markers only: nothing waits
        log = files.supervisor_log.read_text()
        assert "autoscale team-a: lag" in log
        assert json.loads(files.desired.read_text())["autoscale"] is True


def test_a_crash_of_the_lag_reader_costs_a_reading_not_the_supervisor(settings, monkeypatch):
    """librdkafka's admin client can abort its process (confluentinc/librdkafka#4605): the
    autoscaler reads lag in a child, and starts another when one dies."""
    import os
    import signal

    from agon.streams.local.autoscaler import Autoscaler

    monkeypatch.setenv("AGON_AUTOSCALE_POLLING_INTERVAL_S", "0.2")
    scaler = Autoscaler(type(settings)())
    try:
        wait_for(lambda: "read_at" in scaler.last, 30, "a first lag reading")
        follower = scaler._follower
        first = follower._child
        os.kill(first.pid, signal.SIGABRT)  # what the failed assertion does
        wait_for(lambda: scaler.crashes == 1 and follower._child is not first, 30, "a second lag reader")
        read_at = scaler.last["read_at"]
        wait_for(lambda: scaler.last["read_at"] > read_at, 30, "a reading from the second lag reader")
        assert follower._thread.is_alive()
    finally:
        scaler.stop()
    assert follower._child.poll() is not None, "the lag reader outlived its autoscaler"
