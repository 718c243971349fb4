"""What a debater needs from a language model: the one interface every backend implements.

A call takes the whole conversation, system message first, and returns one
:class:`Reply`. Backends (``agon.connectors.llm``) raise
:class:`~agon.errors.LLMError` only; its ``retriable`` tells the caller whether
asking again can help.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from agon.errors import LLMError

__all__ = ["LLM", "LLMError", "Message", "Reply", "Role", "estimate_tokens"]

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


#: what a chat template adds around each message (role markers, separators)
MESSAGE_OVERHEAD_TOKENS = 4


def estimate_tokens(text: str) -> int:
    """Tokens ``text`` costs a typical BPE tokenizer: about one per four characters of
    English. An estimate for budgets; a backend that counts (Ollama) reports its own."""
    return math.ceil(len(text) / 4)
