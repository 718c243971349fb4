"""Agent worker processes on this machine: run one in the foreground, or start/stop the roster
in the background with pid files and logs under AGON_HOME."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from streams.errors import AgonError
from streams.procs import alive
from streams.settings import Settings
from streams.topics import Topics, ensure_topics

READY_MARK = "[^Worker]: Ready"


def run_worker(agent: str, settings: Settings, index: int = 0) -> None:
    """Run one agent worker in this process until it is stopped (SIGTERM/SIGINT)."""
    from faust.worker import Worker

    from agents.roles import build

    ensure_agon_topics(settings)
    app = build(agent, settings, index)
    # faust creates changelog topics itself, but a first write can race that creation
    changelogs = {t.changelog_topic.get_topic_name(): t.partitions or settings.kafka.partitions
                  for t in app.tables.values()}
    ensure_topics(settings.kafka.bootstrap, changelogs, config={"cleanup.policy": "compact"})
    Worker(app, loglevel=settings.log_level.lower(), quiet=True).execute_from_commandline()


def ensure_agon_topics(settings: Settings) -> list[str]:
    """The shared topics of the contract: requests, one inbox per agent, dead letters."""
    topics = Topics(settings.namespace)
    n = settings.kafka.partitions
    names = {topics.requests: n, topics.dead_letters: 1}
    names.update({topics.inbox(a.name): n for a in settings.agents})
    return ensure_topics(settings.kafka.bootstrap, names)


@dataclass(frozen=True)
class WorkerProc:
    agent: str
    index: int
    pid: int | None
    log: Path


class Fleet:
    """The background workers of one namespace: one per agent of the roster (for now)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.run_dir = settings.home_dir / "run" / settings.namespace
        self.log_dir = settings.home_dir / "logs" / settings.namespace

    def _pid_file(self, agent: str, index: int) -> Path:
        return self.run_dir / f"{agent}-{index}.pid"

    def worker(self, agent: str, index: int = 0) -> WorkerProc:
        pid_file = self._pid_file(agent, index)
        try:
            pid = int(pid_file.read_text())
        except (FileNotFoundError, ValueError):
            pid = None
        if pid is not None and not alive(pid):
            pid_file.unlink(missing_ok=True)
            pid = None
        return WorkerProc(agent, index, pid, self.log_dir / f"{agent}-{index}.log")

    def workers(self, agents: Iterable[str] | None = None) -> list[WorkerProc]:
        names = [a.name for a in self.settings.agents] if agents is None else list(agents)
        return [self.worker(name) for name in names]

    def up(self, agents: Iterable[str] | None = None, wait_s: float = 90.0,
           progress=print) -> list[WorkerProc]:
        """Start every worker (of ``agents``, default the roster) that is not running; wait
        until each says it is ready."""
        ensure_agon_topics(self.settings)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        started = []
        for w in self.workers(agents):
            if w.pid is not None:
                continue
            offset = w.log.stat().st_size if w.log.exists() else 0
            with open(w.log, "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "connectors.cli.main", "worker", w.agent, "--index", str(w.index)],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True)
            self._pid_file(w.agent, w.index).write_text(str(proc.pid))
            progress(f"started {w.agent} (pid {proc.pid}, log {w.log})")
            started.append((self.worker(w.agent, w.index), proc, offset))
        deadline = time.monotonic() + wait_s
        for w, proc, offset in started:
            while not _log_has(w.log, READY_MARK, offset):
                if proc.poll() is not None:
                    raise AgonError(f"worker {w.agent} exited with code {proc.returncode}; see {w.log}")
                if time.monotonic() > deadline:
                    raise AgonError(f"worker {w.agent} not ready after {wait_s:.0f} s; see {w.log}")
                time.sleep(0.2)
        return self.workers(agents)

    def down(self, timeout_s: float = 20.0) -> list[WorkerProc]:
        stopped = [w for w in self.workers() if w.pid is not None]
        for w in stopped:
            os.kill(w.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for w in stopped:
            while alive(w.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if alive(w.pid):
                os.kill(w.pid, signal.SIGKILL)
            self._pid_file(w.agent, w.index).unlink(missing_ok=True)
        return stopped


def _log_has(path: Path, mark: str, offset: int) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return mark.encode() in f.read()
    except FileNotFoundError:
        return False

