"""Topic names: the contract of docs/design.md ("Topics").

Every name starts with the namespace (``agon`` by default), so that tests and
tenants can run side by side on one cluster without sharing a topic or group.
"""

from __future__ import annotations

import re

__all__ = ["Topics", "valid_debate_id"]

_DEBATE_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class Topics:
    def __init__(self, namespace: str = "agon") -> None:
        self.namespace = namespace
        self.requests = f"{namespace}.debate-requests"
        self.dead_letters = f"{namespace}.dead-letters"

    def inbox(self, agent: str) -> str:
        return f"{self.namespace}.inbox.{agent}"

    def debate(self, debate_id: str) -> str:
        return f"{self.namespace}.debate.{debate_id}"

    def app_id(self, agent: str) -> str:
        """The faust app id, hence consumer group and changelog prefix, of an agent."""
        return f"{self.namespace}-{agent}"


def valid_debate_id(debate_id: str) -> bool:
    """A debate id must be usable inside a topic name."""
    return bool(_DEBATE_ID.match(debate_id))
