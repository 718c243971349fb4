"""The gateway's request and response bodies: what /openapi.json promises."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agon.agents.requests import MAX_MODEL, MAX_MOTION, MAX_PERSONA, MAX_ROUNDS

MAX_TEAMS = 8
DEBATE_ID = r"^[A-Za-z0-9.-]{1,100}$"
Status = Literal["requested", "running", "ended", "unstarted", "unknown"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TeamIn(_Strict):
    agent: str = Field(min_length=1, max_length=100, description="a debater of the roster, e.g. team-a")
    stance: Literal["FOR", "AGAINST"]
    persona: str | None = Field(None, max_length=MAX_PERSONA)
    model: str | None = Field(None, max_length=MAX_MODEL, description="an Ollama model; none: the agent's")


class DebateIn(_Strict):
    motion: str = Field(min_length=1, max_length=MAX_MOTION, description="what FOR argues and AGAINST denies")
    rounds: int = Field(8, ge=1, le=MAX_ROUNDS, description="rounds of one turn per team")
    teams: list[TeamIn] = Field(default_factory=list, max_length=MAX_TEAMS, description="none: the roster's")
    max_tokens: int = Field(0, ge=0, le=2**31 - 1, description="the debate's token budget; 0: none")


class Links(BaseModel):
    self: str
    events: str
    page: str


class DebateCreated(BaseModel):
    debate_id: str
    status: Status
    links: Links


class Event(BaseModel):
    id: int = Field(description="the record's offset in the debate's topic; SSE's id")
    type: str = Field(description="DebateStarted, TurnTaken, ModeratorNote or DebateEnded")
    data: dict[str, Any]


class DebateView(BaseModel):
    debate_id: str
    status: Status
    motion: str
    rounds: int
    requested_at: int = Field(description="epoch milliseconds")
    reason: str | None = Field(None, description="why it ended (DebateEnded.reason)")
    tokens_used: int
    events: list[Event]
    links: Links


class DebateItem(BaseModel):
    debate_id: str
    status: Status
    motion: str
    requested_at: int
    reason: str | None = None


class DebateList(BaseModel):
    items: list[DebateItem]
    next: str | None = Field(None, description="the next page, if there is one")


class Problem(BaseModel):
    field: str | None = Field(None, description="where: body.motion, header.Idempotency-Key, query.limit")
    message: str


class ErrorBody(BaseModel):
    status: int
    code: str
    message: str
    problems: list[Problem] = Field(default_factory=list)


class Error(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


class AgentOps(BaseModel):
    agent: str
    role: str
    workers: int | None = Field(None, description="members of its group that own inbox partitions")
    pending: int | None = Field(None, description="records in its inboxes still to handle")
    partitions: int | None = None
    handled_per_s: float | None = Field(None, description="inbox offsets committed per second")


class Ops(BaseModel):
    agents: list[AgentOps]
    read_at: float | None = Field(None, description="when lag was last read (epoch seconds); none yet")
    error: str | None = Field(None, description="why the last reading failed, if it did")
