"""The debate's domain: one module per role (moderator, debater) over a shared base, the pure
judgements they make, and the language-model interface a debater needs."""

from agon.agents.base import Agent
from agon.agents.debater import Debater
from agon.agents.llm import LLM, Message, Reply
from agon.agents.moderator import Moderator
from agon.agents.roles import ROLES, build, needs_llm

__all__ = ["LLM", "ROLES", "Agent", "Debater", "Message", "Moderator", "Reply", "build", "needs_llm"]
