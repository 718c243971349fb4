"""The bounded chaos run CI gives every change: debates under kill -9, SIGSTOP and a broker
restart, then every guarantee of docs/design.md checked from the topics themselves.

It runs its own broker (own ports and AGON_HOME under tmp_path), not the session's, so that it
can restart it. Longer runs: ``python tests/chaos/harness.py --debates 100 --kills 50``.
"""

from __future__ import annotations

import os

import pytest
from harness import AGENTS, run_chaos

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(600)]

DEBATES, ROUNDS = 12, 3
KILLS, STOPS, BROKER_RESTARTS = 6, 1, 1  # kills rotate over the three agents: two each


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    seed = int(os.environ["AGON_CHAOS_SEED"]) if os.environ.get("AGON_CHAOS_SEED") else None
    workdir = tmp_path_factory.mktemp("chaos")
    result = run_chaos(
        debates=DEBATES,
        rounds=ROUNDS,
        kills=KILLS,
        stops=STOPS,
        broker_restarts=BROKER_RESTARTS,
        workers=2,
        latency=0.5,
        seed=seed,
        workdir=workdir,
        deadline_s=480,
        progress=print,
    )
    print(result.summary())
    return result


def test_the_run_injected_every_fault_it_promised(report):
    assert report.error is None, report.summary()
    kinds = [f.kind for f in report.faults]
    assert kinds.count("kill") >= 5 and kinds.count("stop") >= 1 and kinds.count("broker") >= 1, (
        report.summary()
    )
    assert {f.agent for f in report.kills} == set(AGENTS), "every agent is killed at least once"
    assert sum(1 for f in report.kills if f.affected) >= 3, (
        "most kills hit a worker that held debates in flight"
    )


def test_every_debate_ended_with_all_its_rounds(report):
    assert report.debates_requested == DEBATES
    assert report.debates_ended == DEBATES, report.summary()
    assert report.turns_committed == DEBATES * ROUNDS * 2, report.summary()
    assert not [v for v in report.violations if v.invariant == "a"], report.summary()


def test_every_turn_is_committed_once_in_order(report):
    assert not [v for v in report.violations if v.invariant == "b"], report.summary()


def test_every_agents_table_equals_the_fold_of_its_log(report):
    assert not [v for v in report.violations if v.invariant == "c"], report.summary()


def test_no_llm_call_is_paid_for_twice_without_a_fault_that_lost_it(report):
    assert not [v for v in report.violations if v.invariant == "d"], report.summary()
    assert report.llm_calls >= report.turns_committed
