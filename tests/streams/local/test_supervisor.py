"""The supervisor keeps N workers per agent running: it restarts the dead with back-off, leaves
the living (even a stopped one) alone, scales down, and `agon down` leaves nothing behind.

The first tests drive the supervisor's loop by hand over stand-in workers (a few lines of
Python that print faust's Ready line); the integration tests run real faust workers.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from helpers import running_fleet, wait_for

from agon.connectors.cli.main import main
from agon.procs import alive
from agon.settings import Settings
from agon.streams.local.files import READY_MARK, is_worker
from agon.streams.local.fleet import Fleet
from agon.streams.local.supervisor import Backoff, Supervisor

SLEEPER = f"import time; print({READY_MARK!r}, flush=True); time.sleep(120)"
CRASHER = "import sys; sys.exit(3)"


# back-off, without processes


def test_backoff_doubles_from_a_fifth_of_a_second_up_to_thirty():
    backoff = Backoff()
    delays = [backoff.after_exit(uptime_s=1.0) for _ in range(10)]
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30, 30])


def test_backoff_starts_over_after_a_run_of_fifteen_seconds():
    backoff = Backoff()
    for _ in range(5):
        backoff.after_exit(uptime_s=2.0)
    assert backoff.after_exit(uptime_s=14.0) == pytest.approx(6.4)
    assert backoff.after_exit(uptime_s=15.0) == pytest.approx(0.2)
    assert backoff.after_exit(uptime_s=0.1) == pytest.approx(0.4)


def test_backoff_stays_capped_however_long_a_worker_crash_loops():
    backoff = Backoff()
    assert [backoff.after_exit(0.0) for _ in range(2000)][-1] == 30


# the supervisor's loop over stand-in workers


def stand_in(code: str):
    """Workers that run ``code``; their command line names agent and index as real ones do."""
    return lambda agent, index: [sys.executable, "-c", code, "worker", agent, "--index", str(index)]


@pytest.fixture
def home_settings(tmp_path, monkeypatch) -> Settings:
    monkeypatch.setenv("AGON_HOME", str(tmp_path))
    monkeypatch.setenv("AGON_NAMESPACE", "sup")
    return Settings()


@pytest.fixture
def supervisors():
    made: list[Supervisor] = []
    yield made
    for sup in made:
        sup.stop_all()


def supervisor(settings, supervisors, code=SLEEPER, **kwargs) -> Supervisor:
    sup = Supervisor(settings, tick_s=0.05, stop_timeout_s=5.0, command=stand_in(code), **kwargs)
    supervisors.append(sup)
    return sup


def want(sup: Supervisor, **workers: int) -> None:
    sup.files.write_desired({agent.replace("_", "-"): n for agent, n in workers.items()})


def run_until(sup: Supervisor, check, timeout_s: float, what: str):
    def step_and_check():
        sup.step()
        return check()

    return wait_for(step_and_check, timeout_s, what, every_s=0.05)


def slot_state(sup: Supervisor, name: str) -> dict:
    return json.loads(sup.files.state.read_text())["slots"].get(name, {})


def pid_of(sup: Supervisor, name: str) -> int | None:
    path = sup.files.run_dir / f"{name}.pid"
    return int(path.read_text()) if path.exists() else None


def test_the_supervisor_starts_what_fleet_json_asks_for_and_nothing_twice(home_settings, supervisors):
    sup = supervisor(home_settings, supervisors)
    want(sup, moderator=2, team_a=1)
    names = ("moderator-0", "moderator-1", "team-a-0")
    run_until(sup, lambda: all(slot_state(sup, n).get("ready_at") for n in names), 10, "3 ready")
    pids = {n: pid_of(sup, n) for n in names}
    assert len(set(pids.values())) == 3
    assert is_worker(pids["moderator-1"], "moderator", 1)
    assert not is_worker(pids["moderator-1"], "moderator", 0)
    for _ in range(10):
        sup.step()
    assert {n: pid_of(sup, n) for n in pids} == pids
    assert pid_of(sup, "team-b-0") is None


def test_a_killed_worker_is_reaped_and_restarted_after_half_a_second(home_settings, supervisors):
    sup = supervisor(home_settings, supervisors)
    want(sup, moderator=2)
    run_until(sup, lambda: slot_state(sup, "moderator-1").get("ready_at"), 10, "moderator-1 ready")
    old, other = pid_of(sup, "moderator-1"), pid_of(sup, "moderator-0")
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    new = run_until(
        sup,
        lambda: pid_of(sup, "moderator-1") not in (None, old) and pid_of(sup, "moderator-1"),
        10,
        "a new moderator-1",
    )
    assert time.monotonic() - killed >= 0.2, "restarted without back-off"
    assert not Path(f"/proc/{old}").exists(), "the killed worker was left a zombie"
    run_until(sup, lambda: slot_state(sup, "moderator-1").get("ready_at"), 10, "moderator-1 ready again")
    state = slot_state(sup, "moderator-1")
    assert state["pid"] == new and state["restarts"] == 1 and state["last_exit"] == -signal.SIGKILL
    assert pid_of(sup, "moderator-0") == other and slot_state(sup, "moderator-0")["restarts"] == 0
    log = (sup.files.log_dir / "moderator-1.log").read_text()
    assert log.count(READY_MARK) == 2 and "starting moderator-1 (restart 1)" in log


def test_a_crash_looping_worker_is_restarted_ever_more_slowly(home_settings, supervisors):
    sup = supervisor(home_settings, supervisors, code=CRASHER, backoff=lambda: Backoff(base_s=0.1, cap_s=0.4))
    want(sup, team_a=1)
    began = time.monotonic()
    run_until(sup, lambda: slot_state(sup, "team-a-0").get("restarts", 0) >= 4, 15, "4 restarts")
    # restart k waits 0.1 × 2^(k-1) s: four restarts take at least 0.1 + 0.2 + 0.4 + 0.4 s
    assert time.monotonic() - began >= 1.1
    state = slot_state(sup, "team-a-0")
    assert state["last_exit"] == 3 and state["streak"] >= 4 and state["ready_at"] is None


def test_a_stopped_worker_is_alive_and_still_stops_cleanly(home_settings, supervisors):
    sup = supervisor(home_settings, supervisors)
    want(sup, moderator=1)
    run_until(sup, lambda: slot_state(sup, "moderator-0").get("ready_at"), 10, "moderator-0 ready")
    pid = pid_of(sup, "moderator-0")
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        sup.step()
        time.sleep(0.05)
    assert pid_of(sup, "moderator-0") == pid and slot_state(sup, "moderator-0")["restarts"] == 0
    began = time.monotonic()
    sup.stop_all()
    assert time.monotonic() - began < 4, "a SIGSTOPped worker needed SIGKILL"
    assert not alive(pid) and sup.slots["moderator-0"].last_exit == -signal.SIGTERM
    assert pid_of(sup, "moderator-0") is None


def test_scaling_down_stops_the_highest_indexes_only(home_settings, supervisors):
    sup = supervisor(home_settings, supervisors)
    want(sup, moderator=3)
    run_until(
        sup,
        lambda: all(slot_state(sup, f"moderator-{i}").get("ready_at") for i in range(3)),
        10,
        "3 moderators ready",
    )
    pids = [pid_of(sup, f"moderator-{i}") for i in range(3)]
    sup.files.desired.write_text("{not json")  # half written, say: the last wish stands
    for _ in range(5):
        sup.step()
    assert [pid_of(sup, f"moderator-{i}") for i in range(3)] == pids
    want(sup, moderator=1)
    run_until(
        sup,
        lambda: "moderator-1" not in sup.slots and "moderator-2" not in sup.slots,
        10,
        "moderator-1 and -2 stopped",
    )
    assert not alive(pids[1]) and not alive(pids[2]) and pid_of(sup, "moderator-1") is None
    assert pid_of(sup, "moderator-0") == pids[0] and alive(pids[0])
    assert list(json.loads(sup.files.state.read_text())["slots"]) == ["moderator-0"]


def test_a_new_supervisor_adopts_the_workers_of_one_that_died(home_settings, supervisors):
    first = supervisor(home_settings, supervisors)
    want(first, moderator=1)
    run_until(first, lambda: slot_state(first, "moderator-0").get("ready_at"), 10, "moderator-0 ready")
    pid, started_at = pid_of(first, "moderator-0"), slot_state(first, "moderator-0")["started_at"]
    time.sleep(1.0)
    second = supervisor(home_settings, supervisors)  # the first is gone without stopping its worker
    second.adopt()
    for _ in range(5):
        second.step()
    adopted = slot_state(second, "moderator-0")
    assert pid_of(second, "moderator-0") == pid and adopted["ready_at"] and adopted["restarts"] == 0
    assert abs(adopted["started_at"] - started_at) < 0.5, "the adopted worker's age is lost"
    os.kill(pid, signal.SIGKILL)
    first.slots["moderator-0"].proc.wait()  # (its parent, the test process, reaps it)
    run_until(second, lambda: pid_of(second, "moderator-0") not in (None, pid), 10, "a new moderator-0")
    assert slot_state(second, "moderator-0")["restarts"] == 1
    first.slots.clear()


def test_up_refuses_zero_workers(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("AGON_HOME", str(tmp_path))
    assert main(["up", "--workers", "0"]) == 2
    assert "--workers must be 1 or more" in capsys.readouterr().err


# real workers on a real broker


@pytest.fixture(scope="module")
def two_moderators(kafka_bootstrap, tmp_path_factory):
    with running_fleet(
        kafka_bootstrap, tmp_path_factory.mktemp("pair"), agents=["moderator"], workers=2
    ) as settings:
        yield settings


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_up_runs_n_workers_per_agent_and_up_again_starts_nothing(two_moderators):
    fleet = Fleet(two_moderators)
    workers = fleet.workers()
    assert [w.name for w in workers] == ["moderator-0", "moderator-1"]
    pids = [w.pid for w in workers]
    assert None not in pids and len(set(pids)) == 2 and all(w.ready for w in workers)
    datadirs = [two_moderators.home_dir / "workers" / two_moderators.namespace / w.name for w in workers]
    assert all(d.is_dir() and any(d.iterdir()) for d in datadirs)
    supervisor = fleet.supervisor()
    lines: list[str] = []
    again = fleet.up(["moderator"], workers=2, progress=lines.append)
    assert [w.pid for w in again] == pids and fleet.supervisor() == supervisor
    assert lines == [f"moderator-{i} already running (pid {pids[i]}, log {workers[i].log})" for i in (0, 1)]
    assert fleet.workers(["team-a"]) == []


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_a_killed_worker_is_restarted_without_touching_the_other(two_moderators, capsys):
    fleet = Fleet(two_moderators)
    first, second = fleet.workers()
    os.kill(second.pid, signal.SIGKILL)
    restarted = wait_for(
        lambda: (w := fleet.worker("moderator", 1)).pid not in (None, second.pid) and w.ready and w,
        60,
        "moderator-1 restarted and ready",
    )
    assert restarted.restarts == 1 and restarted.last_exit == -signal.SIGKILL
    assert second.log.read_text().count(READY_MARK) == 2
    assert fleet.worker("moderator", 0).pid == first.pid and fleet.worker("moderator", 0).restarts == 0
    main(["status"])
    out = capsys.readouterr().out
    assert f"moderator-1 running (pid {restarted.pid}" in out and "1 restart, last exit SIGKILL" in out


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_down_leaves_no_process_behind(kafka_bootstrap, tmp_path):
    with running_fleet(kafka_bootstrap, tmp_path, agents=["moderator"], workers=2) as settings:
        fleet = Fleet(settings)
        pids = [w.pid for w in fleet.workers()]
        supervisor = fleet.supervisor()
        assert supervisor is not None and None not in pids
        os.kill(pids[1], signal.SIGSTOP)  # even a stopped worker goes
        began = time.monotonic()
        stopped = fleet.down()
        assert time.monotonic() - began < 15, "down needed SIGKILL"
        assert sorted(w.pid for w in stopped) == sorted(pids)
        assert not any(alive(pid) for pid in [supervisor, *pids])
        assert fleet.supervisor() is None and all(w.pid is None for w in fleet.workers())
        assert not list(fleet.run_dir.glob("*.pid"))
