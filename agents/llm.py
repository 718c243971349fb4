"""What a debater needs from a language model: the one interface every backend implements.

A call takes the whole conversation, system message first, and returns one
:class:`Reply`. Backends (``agon.connectors.llm``) raise
:class:`~agon.errors.LLMError` only; its ``retriable`` tells the caller whether
asking again can help.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from agon.errors import LLMError

__all__ = ["LLM", "LLMError", "Message", "Reply", "Role"]

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Reply:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int


class LLM(Protocol):
    async def chat(self, model: str, messages: Sequence[Message], *, timeout: float | None = None) -> Reply:
        """Answer ``messages`` (system message first) with ``model``, within ``timeout`` seconds."""
        ...

    async def aclose(self) -> None:
        """Release connections; the object is not used afterwards."""
        ...
