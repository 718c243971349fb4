"""Agent worker processes on this machine: N per agent in the background under a supervisor
(:mod:`agon.streams.local.supervisor`), with pid files, state and logs under AGON_HOME."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agon.deadline import wait_until
from agon.errors import AgonError, ConfigError
from agon.files import read_pid
from agon.procs import alive, port_taken
from agon.settings import GATEWAY_SLOT, Settings
from agon.streams.admin import ensure_agon_topics
from agon.streams.local.files import (
    SUPERVISOR_MODULE,
    FleetFiles,
    describe_exit,
    is_supervisor,
    is_worker,
    settings_fingerprint,
    stop_signal,
)
from agon.streams.metrics import announced

__all__ = ["Fleet", "WorkerProc"]

KEEPS_DYING = 3  # consecutive short runs after which `up` gives up waiting for a worker


@dataclass(frozen=True)
class WorkerProc:
    """One wanted worker slot, ``agent-index``, as it stands now."""

    agent: str
    index: int
    pid: int | None
    log: Path
    restarts: int = 0
    started_at: float | None = None  # wall clock of its current run
    ready: bool = False  # logged READY_MARK since its current run started
    last_exit: int | None = None  # Popen's return code of its previous run
    retry_at: float | None = None  # wall clock of its next start while it is down
    metrics_url: str | None = None  # where its current run serves /metrics

    @property
    def name(self) -> str:
        return f"{self.agent}-{self.index}"

    def describe(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if self.pid is None:
            state = "stopped"
            if self.retry_at is not None:
                state = f"restarting in {max(0.0, self.retry_at - now):.1f} s"
        else:
            state = "running" if self.ready else "starting"
            up = f", up {_duration(now - self.started_at)}" if self.started_at else ""
            state = f"{state} (pid {self.pid}{up})"
        if self.restarts:
            state += f", {self.restarts} restart{'s' if self.restarts > 1 else ''}"
        if self.last_exit is not None:
            state += f", last exit {describe_exit(self.last_exit)}"
        if self.metrics_url:
            state += f", metrics {self.metrics_url}"
        return state


class Fleet:
    """The background workers of one namespace, kept to ``fleet.json`` by its supervisor."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.files = FleetFiles(settings)
        self.run_dir = self.files.run_dir
        self.log_dir = self.files.log_dir
        self.roster = settings.supervised
        self._spawned: subprocess.Popen | None = None  # the supervisor, when this Fleet started it

    # what runs

    def supervisor(self) -> int | None:
        """The pid of this namespace's supervisor, when one runs."""
        pid = read_pid(self.files.supervisor_pid)
        return pid if pid is not None and is_supervisor(pid) else None

    def describe_supervisor(self) -> str:
        pid = self.supervisor()
        if pid is None:
            return "stopped"
        state = self.files.read_state()
        up = f", up {_duration(time.time() - state['started_at'])}" if state.get("pid") == pid else ""
        return f"running (pid {pid}{up})"

    def desired(self) -> dict[str, int]:
        """Workers wanted per agent: fleet.json, or one per roster agent before any `up`."""
        got = self.files.read_desired()
        if got is None:
            return dict.fromkeys(self.roster, 1)
        return {a: got[a] for a in self.roster if a in got}

    def worker(self, agent: str, index: int = 0, state: dict[str, Any] | None = None) -> WorkerProc:
        pid = read_pid(self.files.pid_file(agent, index))
        if pid is not None and not is_worker(pid, agent, index):
            pid = None
        slots = (self.files.read_state() if state is None else state).get("slots", {})
        slot = slots.get(f"{agent}-{index}") or {}
        current = pid is not None and slot.get("pid") == pid
        return WorkerProc(
            agent,
            index,
            pid,
            self.files.log(agent, index),
            restarts=slot.get("restarts", 0),
            last_exit=slot.get("last_exit"),
            started_at=slot.get("started_at") if current else None,
            ready=bool(current and slot.get("ready_at")),
            retry_at=slot.get("retry_at") if pid is None else None,
            metrics_url=announced(self.settings.worker_dir(agent, index), pid) if pid else None,
        )

    def workers(self, agents: Iterable[str] | None = None) -> list[WorkerProc]:
        """Every wanted slot (of ``agents``, default all), running or not."""
        desired = self.desired()
        names = list(desired) if agents is None else [a for a in agents if a in desired]
        state = self.files.read_state()
        return [self.worker(agent, i, state) for agent in names for i in range(desired[agent])]

    # up and down

    def up(
        self,
        agents: Iterable[str] | None = None,
        workers: int = 1,
        wait_s: float = 90.0,
        progress: Callable[[str], None] = print,
        autoscale: bool = False,
    ) -> list[WorkerProc]:
        """Want ``workers`` workers of each of ``agents`` (default: the roster; other agents keep
        what they had), start the supervisor if none runs, and wait until every wanted worker
        has said it is ready. Workers that already run are left alone. With ``autoscale`` the
        supervisor then sets the counts from lag (``workers`` is where it starts)."""
        names = self.roster if agents is None else list(agents)
        unknown = [a for a in names if a not in self.roster]
        if unknown:
            raise ConfigError(
                f"unknown agent(s) {', '.join(unknown)} (the roster has: {', '.join(self.roster)})"
            )
        if workers < 0:
            raise ConfigError(f"workers must be 0 or more, not {workers}")
        ensure_agon_topics(self.settings)
        running = {w.name: w.pid for w in self._running_workers()}
        got = self.files.read_desired() or {}
        desired = {a: got[a] for a in self.roster if a in got}
        desired.update({a: 1 if a == GATEWAY_SLOT else workers for a in names})
        if desired.get(GATEWAY_SLOT) and f"{GATEWAY_SLOT}-0" not in running and self._gateway_port_taken():
            gateway = self.settings.gateway
            progress(
                f"{gateway.host}:{gateway.port} is in use: the gateway is left out "
                "(AGON_GATEWAY_PORT picks another port, 0 any free one)"
            )
            desired[GATEWAY_SLOT] = 0
        self.files.write_desired(desired, autoscale=autoscale)
        supervisor = self._ensure_supervisor(progress)
        self._wait_ready(supervisor, desired, running, wait_s, progress, autoscale)
        return self.workers(names)

    def _gateway_port_taken(self) -> bool:
        gateway = self.settings.gateway
        return bool(gateway.port) and port_taken(gateway.host, gateway.port)

    def _ensure_supervisor(self, progress: Callable[[str], None]) -> int:
        pid = self.supervisor()
        if pid is not None:
            return pid
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.files.supervisor_log, "ab") as out:
            # the environment (AGON_*) and working directory pass on to it and its workers
            proc = subprocess.Popen(
                [sys.executable, "-m", SUPERVISOR_MODULE],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._spawned = proc

        def started() -> int | None:
            pid = self.supervisor()
            if pid is None and proc.poll() is not None:
                raise AgonError(
                    f"the supervisor exited ({describe_exit(proc.returncode)}); "
                    f"see {self.files.supervisor_log}"
                )
            return pid

        pid = wait_until(started, 30.0, every_s=0.05)
        if pid is None:
            raise AgonError(f"the supervisor did not start; see {self.files.supervisor_log}")
        if pid == proc.pid:
            progress(f"started the supervisor (pid {pid}, log {self.files.supervisor_log})")
        return pid

    def _wait_ready(
        self,
        supervisor: int,
        desired: dict[str, int],
        running: dict[str, int | None],
        wait_s: float,
        progress: Callable[[str], None],
        autoscale: bool,
    ) -> None:
        announced: set[str] = set()
        pending: list[tuple[str, Path]] = []

        def ready() -> bool:
            nonlocal pending
            if not alive(supervisor):
                raise AgonError(f"the supervisor (pid {supervisor}) exited; see {self.files.supervisor_log}")
            pending = self._pending(supervisor, desired, running, announced, progress, autoscale)
            return not pending

        if not wait_until(ready, wait_s, every_s=0.2):
            what, log = pending[0]
            raise AgonError(f"{what} not ready after {wait_s:.0f} s; see {log}")

    def _pending(
        self,
        supervisor: int,
        desired: dict[str, int],
        running: dict[str, int | None],
        announced: set[str],
        progress: Callable[[str], None],
        autoscale: bool = False,
    ) -> list[tuple[str, Path]]:
        """What is not yet as wanted, per the supervisor's state file, each with the log to read;
        raises when a worker keeps dying."""
        state = self.files.read_state()
        if state.get("pid") != supervisor or state.get("stopped"):
            return [(f"the supervisor (pid {supervisor})", self.files.supervisor_log)]
        missing = [a for a, n in desired.items() if n and a not in state.get("roster", [])]
        if missing:
            raise AgonError(
                f"the running supervisor (pid {supervisor}) has no agent {missing[0]} in its "
                "roster (started with other settings?); `agon down` first"
            )
        if state.get("settings") != settings_fingerprint(self.settings) and "settings" not in announced:
            announced.add("settings")
            progress(
                f"note: the supervisor (pid {supervisor}) and its workers run with other settings "
                "than these; `agon down` first to apply them"
            )
        if autoscale:  # the autoscaler may have changed the counts already: wait for its own
            if state.get("autoscale") is not True:
                return [(f"the supervisor (pid {supervisor})", self.files.supervisor_log)]
            desired = {a: state.get("desired", {}).get(a, n) for a, n in desired.items()}
        elif any(state.get("desired", {}).get(a, 0) != n for a, n in desired.items()):
            return [(f"the supervisor (pid {supervisor})", self.files.supervisor_log)]  # fleet.json unread
        pending = []
        slots = state.get("slots", {})
        for agent, n in desired.items():
            for index in range(n):
                name, log = f"{agent}-{index}", self.files.log(agent, index)
                slot = slots.get(name) or {}
                if slot.get("pid") and slot.get("ready_at"):
                    if name not in announced:
                        announced.add(name)
                        how = "already running" if running.get(name) == slot["pid"] else "ready"
                        progress(f"{name} {how} (pid {slot['pid']}, log {log})")
                    continue
                if slot.get("streak", 0) >= KEEPS_DYING:
                    raise AgonError(
                        f"worker {name} keeps dying ({slot.get('restarts')} restarts, last "
                        f"exit {describe_exit(slot.get('last_exit'))}): {_last_line(log)}; "
                        f"see {log}"
                    )
                pending.append((f"worker {name}", log))
        pending += [
            (f"stopping worker {name}", Path(slot["log"]))
            for name, slot in slots.items()
            if slot["index"] >= desired.get(slot["agent"], 0)
        ]
        return pending

    def down(self, timeout_s: float = 30.0) -> list[WorkerProc]:
        """Stop the supervisor (it stops its workers), then any worker it left behind."""
        stopped = self._running_workers()
        supervisor = self.supervisor()
        if supervisor is None and self._spawned is not None and self._spawned.poll() is None:
            supervisor = self._spawned.pid  # started, but has not written its pid file yet
        if supervisor is not None:
            stop_signal(supervisor)
            if not _wait_dead([supervisor], timeout_s):
                stop_signal(supervisor, signal.SIGKILL)
        if self._spawned is not None:
            self._spawned.wait()  # our child: reap it
        strays = [w.pid for w in self._running_workers()]
        for pid in strays:
            stop_signal(pid)
        if not _wait_dead(strays, 20.0):
            for pid in strays:
                stop_signal(pid, signal.SIGKILL)
        for path in self.files.worker_pid_files():
            path.unlink(missing_ok=True)
        if read_pid(self.files.supervisor_pid) == supervisor:
            self.files.supervisor_pid.unlink(missing_ok=True)
        return stopped

    def _running_workers(self) -> list[WorkerProc]:
        """Every worker with a live pid file, wanted or not."""
        found = []
        for path in self.files.worker_pid_files():
            agent, _, index = path.stem.rpartition("-")
            if index.isdigit():
                w = self.worker(agent, int(index), {})
                if w.pid is not None:
                    found.append(w)
        return found


def _wait_dead(pids: list[int], timeout_s: float) -> bool:
    return bool(wait_until(lambda: not any(alive(pid) for pid in pids), timeout_s))


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 2000))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "empty log"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m}m" if h else f"{m}m {s}s" if m else f"{s}s"
