"""Roles by name: the roster in settings names a role per agent; this maps it to its class.

A new kind of agent (a judge, a fact-checker) is one module here and one entry below,
plus its line in the roster; ``agon.streams`` does not change.
"""

from __future__ import annotations

import faust

from agon.agents.base import Agent
from agon.agents.debater import Debater
from agon.agents.llm import LLM
from agon.agents.moderator import Moderator
from agon.errors import ConfigError
from agon.schemas import Codec
from agon.settings import Settings
from agon.streams.app import make_app

__all__ = ["ROLES", "build", "needs_llm"]

ROLES: dict[str, type[Agent]] = {"moderator": Moderator, "debater": Debater}
NEEDS_LLM = {"debater"}


def needs_llm(agent: str, settings: Settings) -> bool:
    """Whether ``agent``'s role calls a language model (and so must be given one)."""
    return settings.agent(agent).role in NEEDS_LLM


def build(agent: str, settings: Settings, worker: int = 0, *, llm: LLM | None = None) -> faust.App:
    """The faust app of one worker of ``agent``, with its role's tables and stream installed."""
    spec = settings.agent(agent)
    cls = ROLES.get(spec.role)
    if cls is None:
        raise ConfigError(f"agent {agent!r} has unknown role {spec.role!r} (roles: {', '.join(ROLES)})")
    if spec.role in NEEDS_LLM and llm is None:
        raise ConfigError(f"agent {agent!r} ({spec.role}) needs a language model")
    app = make_app(agent, settings, worker)
    extra = {"llm": llm} if spec.role in NEEDS_LLM else {}
    codec = Codec.default(settings.schema_registry_url)
    codec.register_all()  # a refused schema stops the worker here, in one line
    cls(spec, settings, app, codec, worker, **extra).install()
    return app
