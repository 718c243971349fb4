"""The moderator's deadlines: which running debate waits past its turn's deadline, kept in
memory so that a tick touches only running debates and never decodes a table row."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Deadlines", "Due"]


@dataclass
class Due:
    turn_id: str
    attempt: int
    deadline_ms: int
    notified_ms: int | None = None  # when a DeadlinePassed was last sent for this attempt


class Deadlines:
    """Running debates by id, with the deadline of the turn each awaits.

    A notice (DeadlinePassed) goes out when a deadline passes, and again every
    ``renotify_ms`` while the same attempt is still overdue: a notice lost on its
    way (a failed send, a crash) never leaves a debate waiting for good.
    """

    def __init__(self, renotify_ms: int) -> None:
        self.renotify_ms = renotify_ms
        self._due: dict[str, Due] = {}

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, debate_id: str) -> bool:
        return debate_id in self._due

    def set(self, debate_id: str, turn_id: str, attempt: int, deadline_ms: int) -> None:
        self._due[debate_id] = Due(turn_id, attempt, deadline_ms)

    def drop(self, debate_id: str) -> None:
        self._due.pop(debate_id, None)

    def replace(self, dues: dict[str, Due]) -> None:
        self._due = dict(dues)

    def overdue(self, now_ms: int) -> list[tuple[str, Due]]:
        """The debates to notify now; each is marked notified at ``now_ms``."""
        out = []
        for debate_id, due in self._due.items():
            if due.deadline_ms > now_ms:
                continue
            if due.notified_ms is None or now_ms - due.notified_ms >= self.renotify_ms:
                due.notified_ms = now_ms
                out.append((debate_id, due))
        return out

    def failed(self, debate_id: str, due: Due) -> None:
        """A notice could not be sent: try again at the next tick."""
        if self._due.get(debate_id) is due:
            due.notified_ms = None
