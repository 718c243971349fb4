"""Facts about local processes and ports, from /proc and the socket API; read in one place."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

__all__ = ["alive", "cmdline", "cpu_seconds", "meminfo_kb", "port_taken", "rss_mib", "started_at"]


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat(pid)
    return fields is None or fields[0] != "Z"


def cmdline(pid: int) -> list[str] | None:
    """The command line of ``pid``, or None where /proc cannot tell."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def started_at(pid: int) -> float | None:
    """When ``pid`` started (wall clock), where /proc tells."""
    fields = _stat(pid)
    try:
        ticks = int(fields[19]) if fields else None
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return None if ticks is None else boot + ticks / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds ``pid`` has used so far (user + system), or None once it is gone."""
    fields = _stat(pid)
    try:
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else None
    except (ValueError, IndexError):
        return None


def rss_mib(pid: int) -> float | None:
    """The resident memory of ``pid`` (VmRSS) in MiB, or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return round(int(found.group(1)) / 1024, 1) if found else None


def meminfo_kb(field: str, meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """A field of /proc/meminfo (``MemTotal``, ``MemAvailable``, …) in kB, or None."""
    try:
        found = re.search(rf"^{field}:\s+(\d+) kB", meminfo.read_text(), re.M)
    except OSError:
        return None
    return int(found.group(1)) if found else None


def port_taken(host: str, port: int) -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0
