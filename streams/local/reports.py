"""What the supervisor tells the outside, as files: ``supervisor.json`` (its state, read by
`agon status` and `agon up`) and ``targets.json`` (Prometheus file_sd targets)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agon.files import write_atomically
from agon.settings import Settings
from agon.streams import metrics
from agon.streams.local.files import FleetFiles
from agon.streams.local.slots import Slot

__all__ = ["ChangedFile", "slot_states", "targets"]


class ChangedFile:
    """A file rewritten (atomically) only when its text changes: the supervisor reports every tick."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last = ""

    def write(self, text: str) -> None:
        if text != self._last:
            write_atomically(self.path, text)
            self._last = text


def _ordered(slots: Iterable[Slot]) -> list[Slot]:
    return sorted(slots, key=lambda s: (s.agent, s.index))


def targets(slots: Iterable[Slot], settings: Settings, files: FleetFiles) -> str:
    """Prometheus file_sd targets: every worker that announced its /metrics, the supervisor's
    own, and a running `agon probe`, each labelled with its slot and namespace."""
    found = [
        ("supervisor", metrics.announced(files.run_dir, os.getpid())),
        ("probe", metrics.announced(files.probe_dir)),  # `agon probe`, while it runs
    ]
    for s in _ordered(slots):
        if s.pid is not None:
            found.append((s.name, metrics.announced(settings.worker_dir(s.agent, s.index), s.pid)))
    entries = [
        {"targets": [url.split("/")[2]], "labels": {"slot": name, "namespace": settings.namespace}}
        for name, url in found
        if url
    ]
    return json.dumps(entries, indent=2) + "\n"


def slot_states(slots: Iterable[Slot], files: FleetFiles, stopped: bool) -> dict[str, dict[str, Any]]:
    """Each slot as ``supervisor.json`` lists it."""
    return {
        s.name: {
            "agent": s.agent,
            "index": s.index,
            "pid": s.pid,
            "restarts": max(0, s.runs - 1),
            "streak": s.backoff.streak,
            "last_exit": s.last_exit,
            "started_at": s.started_at if s.pid else None,
            "ready_at": s.ready_at,
            "stopping": s.stopping_since is not None,
            "retry_at": s.retry_at_wall if s.pid is None and not stopped else None,
            "log": str(files.log(s.agent, s.index)),
        }
        for s in _ordered(slots)
    }
