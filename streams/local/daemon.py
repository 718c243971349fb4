"""What the local broker and the local schema registry share: a background process agon
started, known by its pid file."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from agon.deadline import wait_until
from agon.procs import alive

__all__ = ["describe", "live_pid", "stop"]


def live_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` while that process lives; a stale file is removed."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if alive(pid):
        return pid
    pid_file.unlink(missing_ok=True)
    return None


def stop(pid_file: Path, timeout_s: float) -> bool:
    """Stop the process of ``pid_file`` (SIGTERM, then SIGKILL after ``timeout_s``); False if
    none ran."""
    pid = live_pid(pid_file)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    if not wait_until(lambda: not alive(pid), timeout_s, every_s=0.2):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


def describe(pid: int | None, reachable: bool, where: str, noun: str) -> str:
    """One line of `agon status` about a ``noun`` (broker, registry) at ``where``."""
    if pid and reachable:
        return f"running (pid {pid}) on {where}"
    if pid:
        return f"process {pid} runs but does not answer on {where} yet"
    if reachable:
        return f"a {noun} not started by agon answers on {where}"
    return f"not running (nothing answers on {where})"
