"""One wanted worker slot of the supervisor (``agent-index``) across its restarts, and the
back-off between those restarts."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from agon import procs

__all__ = ["Backoff", "Slot"]


@dataclass
class Backoff:
    """Delay before restarting a worker: ``base_s`` × 2^k after k consecutive short runs,
    at most ``cap_s``; a run of ``reset_after_s`` or more clears the streak."""

    base_s: float = 0.2  # a killed worker's partitions wait for its restart: be quick
    cap_s: float = 30.0
    reset_after_s: float = 15.0  # a worker that served this long was not crash-looping
    streak: int = 0

    def after_exit(self, uptime_s: float) -> float:
        if uptime_s >= self.reset_after_s:
            self.streak = 0
        delay = min(self.cap_s, self.base_s * 2 ** min(self.streak, 32))
        self.streak += 1
        return delay


@dataclass
class Slot:
    """One wanted worker, ``agent-index``, across its restarts."""

    agent: str
    index: int
    backoff: Backoff
    proc: subprocess.Popen | None = None
    pid: int | None = None  # proc's pid, or the pid of a worker adopted from an earlier supervisor
    started_at: float | None = None  # wall clock of the current run
    started_mono: float = 0.0
    scanned: int = 0  # how far the log was searched for READY_MARK
    ready_at: float | None = None
    runs: int = 0
    last_exit: int | None = None
    retry_at: float = 0.0  # monotonic: not started again before this
    retry_at_wall: float | None = None  # the same, for readers of supervisor.json
    stopping_since: float | None = None
    last_pid: int | None = None

    @property
    def name(self) -> str:
        return f"{self.agent}-{self.index}"

    def exit_code(self) -> tuple[bool, int | None]:
        """(ended, code): Popen reaps our children; adopted ones are only watched."""
        if self.proc is not None:
            code = self.proc.poll()
            return code is not None, code
        return not procs.alive(self.pid), None
