"""Roles by name: the roster in settings names a role per agent; this maps it to its class.

A new kind of agent (a judge, a fact-checker) is one module here and one entry below,
plus its line in the roster; ``streams/`` does not change.
"""

from __future__ import annotations

import importlib

import faust

from connectors.llm.factory import make_llm
from streams.app import make_app
from streams.codec import Codec
from streams.settings import Settings

ROLES = {
    "moderator": "agents.moderator:Moderator",
    "debater": "agents.debater:Debater",
}

NEEDS_LLM = {"debater"}


def build(agent: str, settings: Settings, worker: int = 0) -> faust.App:
    """The faust app of one worker of ``agent``, with its role's tables and stream installed."""
    spec = settings.agent(agent)
    if spec.role not in ROLES:
        raise KeyError(f"agent {agent!r} has unknown role {spec.role!r} (roles: {', '.join(ROLES)})")
    module, _, cls_name = ROLES[spec.role].partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    app = make_app(agent, settings, worker)
    extra = {"llm": make_llm(settings.llm)} if spec.role in NEEDS_LLM else {}
    cls(spec, settings, app, Codec.default(), worker, **extra).install()
    return app
