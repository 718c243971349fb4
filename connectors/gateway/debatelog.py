"""One debate as the gateway holds it (:class:`DebateLog`), and one tenant's request in its
index (:class:`Request`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from agon.schemas import now_ms

__all__ = ["REQUESTER", "START_GRACE_S", "DebateLog", "Request", "tenant_of", "utc_day"]

START_GRACE_S = 600.0  # a request whose debate has not started by then no longer counts as running
REQUESTER = "gateway:"


def tenant_of(requested_by: str | None) -> str | None:
    if requested_by and requested_by.startswith(REQUESTER):
        return requested_by[len(REQUESTER) :].split(":", 1)[0] or None
    return None


def utc_day(ts_ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(ts_ms / 1000, dt.timezone.utc).date()


@dataclass
class Request:
    """A tenant's DebateRequested, as the index holds it."""

    debate_id: str
    tenant: str
    ts: int
    body: dict[str, Any]
    idempotency: str | None = None


@dataclass
class DebateLog:
    """One debate's topic as read so far: its events (offset, type, body) and tallies."""

    debate_id: str
    requested_ms: int
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    started: bool = False
    ended: dict[str, Any] | None = None
    tokens: int = 0  # of its turns so far (the hub counts them by tenant and day)
    exists: bool = False
    missing: bool = False  # its topic was looked for and not found (yet)
    assigned: bool = False
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    readers: int = 0
    used: float = field(default_factory=time.monotonic)
    trimmed: bool = False  # events dropped to save memory; read again from the topic on demand

    @property
    def status(self) -> str:
        if self.ended is not None:
            return "ended"
        if self.started:
            return "running"
        if now_ms() - self.requested_ms > START_GRACE_S * 1000 and not self.exists:
            return "unstarted"
        return "requested"

    @property
    def counts_as_running(self) -> bool:
        return self.status in ("requested", "running")

    def notify(self) -> None:
        old, self.changed = self.changed, asyncio.Event()
        old.set()

    def add(self, offset: int, record_type: str, body: dict[str, Any]) -> None:
        if self.events and offset <= self.events[-1][0]:
            return  # read again after a re-assignment
        self.events.append((offset, record_type, body))
        if record_type == "DebateStarted":
            self.started = True
        elif record_type == "TurnTaken":
            self.tokens += body["prompt_tokens"] + body["completion_tokens"]
        elif record_type == "DebateEnded":
            self.ended = body
        self.notify()

    async def follow(self, after: int = -1) -> AsyncIterator[tuple[int, str, dict[str, Any]]]:
        """Every event after offset ``after``, as it arrives, until DebateEnded."""
        self.readers += 1
        try:
            i = 0
            while True:
                self.used = time.monotonic()
                changed = self.changed
                while i < len(self.events):
                    offset, record_type, body = self.events[i]
                    i += 1
                    if offset > after:
                        yield offset, record_type, body
                    if record_type == "DebateEnded":
                        return
                if self.status == "unstarted":
                    return
                await changed.wait()
        finally:
            self.readers -= 1
