"""Where a namespace's fleet keeps its state under AGON_HOME, and small facts about its
processes; shared by :mod:`agon.streams.local.fleet` and the supervisor."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from agon.files import write_atomically
from agon.procs import alive, cmdline
from agon.settings import Settings

#: how the supervisor starts worker ``agent-index``: the CLI's ``worker`` command
WORKER_MODULE = "agon.connectors.cli"
SUPERVISOR_MODULE = "agon.streams.local.supervisor"

READY_MARK = "[^Worker]: Ready"


def describe_exit(code: int | None) -> str:
    """Popen's return code in words: ``code 1``, ``SIGKILL``, ``unknown`` (not our child)."""
    if code is None:
        return "unknown"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


class FleetFiles:
    """Where one namespace's fleet keeps its state under AGON_HOME (the supervisor writes,
    :class:`Fleet` and tools read)."""

    def __init__(self, settings: Settings) -> None:
        self.run_dir = settings.home_dir / "run" / settings.namespace
        self.log_dir = settings.home_dir / "logs" / settings.namespace
        self.desired = self.run_dir / "fleet.json"
        self.state = self.run_dir / "supervisor.json"
        self.supervisor_pid = self.run_dir / "supervisor.pid"
        self.supervisor_log = self.log_dir / "supervisor.log"
        self.lock = self.run_dir / "supervisor.lock"
        #: Prometheus file_sd targets: every live worker's (and the supervisor's) /metrics
        self.targets = self.run_dir / "targets.json"
        self.probe_dir = self.run_dir / "probe"  # where `agon probe` announces its /metrics

    def pid_file(self, agent: str, index: int) -> Path:
        return self.run_dir / f"{agent}-{index}.pid"

    def log(self, agent: str, index: int) -> Path:
        return self.log_dir / f"{agent}-{index}.log"

    def worker_pid_files(self) -> list[Path]:
        return sorted(p for p in self.run_dir.glob("*-*.pid"))

    def read_desired(self) -> dict[str, int] | None:
        """Workers wanted per agent, or None when there is no readable fleet.json."""
        return self.read_fleet()[0]

    def read_fleet(self) -> tuple[dict[str, int] | None, bool]:
        """fleet.json read once: (workers wanted per agent, or None when it is not readable;
        whether it hands the counts to the supervisor's autoscaler)."""
        try:
            fleet = json.loads(self.desired.read_text())
            workers = {str(agent): max(0, int(n)) for agent, n in fleet["workers"].items()}
            return workers, fleet.get("autoscale") is True
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None, False

    def write_desired(self, workers: dict[str, int], autoscale: bool = False) -> None:
        text = json.dumps({"workers": workers, "autoscale": autoscale}, indent=2) + "\n"
        write_atomically(self.desired, text)

    def read_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}


def is_worker(pid: int, agent: str, index: int) -> bool:
    """``pid`` runs and is agon's worker ``agent-index`` (not a recycled pid)."""
    if not alive(pid):
        return False
    args = cmdline(pid)
    return args is None or ("worker" in args and agent in args and args[-2:] == ["--index", str(index)])


def is_supervisor(pid: int) -> bool:
    if not alive(pid):
        return False
    args = cmdline(pid)
    return args is None or SUPERVISOR_MODULE in args


def settings_fingerprint(settings: Settings) -> str:
    """Tells whether the supervisor (and so its workers) runs with the settings of this process."""
    return hashlib.sha256(settings.model_dump_json().encode()).hexdigest()[:16]


def worker_command(agent: str, index: int) -> list[str]:
    return [sys.executable, "-m", WORKER_MODULE, "worker", agent, "--index", str(index)]


def stop_signal(pid: int, sig: signal.Signals = signal.SIGTERM) -> None:
    """Send ``sig``, then SIGCONT so that a stopped (SIGSTOP) process can act on it."""
    for s in (sig, signal.SIGCONT):
        try:
            os.kill(pid, s)
        except ProcessLookupError:
            return
