"""/v1/debates: start, list, read, follow (Server-Sent Events) and cancel debates."""

import asyncio
import datetime as dt
import hashlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from agon.agents.requests import validate_request
from agon.connectors.gateway.debatelog import REQUESTER, DebateLog, Request
from agon.connectors.gateway.deps import (
    ERRORS,
    SSE_ERRORS,
    Caller,
    Gateway,
    IdempotencyKey,
    LastEventId,
    Owned,
)
from agon.connectors.gateway.http import ApiError
from agon.connectors.gateway.limits import Refusal, seconds_to_midnight
from agon.connectors.gateway.models import (
    DEBATE_ID,
    DebateCreated,
    DebateIn,
    DebateItem,
    DebateList,
    DebateView,
    Error,
    Event,
)
from agon.connectors.transcript import new_request
from agon.schemas import now_ms, partition_for
from agon.streams import metrics

__all__ = ["router"]

log = logging.getLogger("agon.gateway")
router = APIRouter(prefix="/v1/debates", tags=["debates"])
VIEW_WAIT_S = 5.0  # a GET waits this long for a debate's topic to be read to its end


@router.post("", status_code=202, response_model=DebateCreated, responses=ERRORS)
async def start_debate(
    body: DebateIn, key: Caller, gateway: Gateway, response: Response, idempotency: IdempotencyKey = None
) -> DebateCreated:
    """Ask for a debate: 202 once the request is in Kafka; follow `links.events`."""
    hub = await gateway.index()
    wanted = body.model_dump()
    debate_id: str | None = None
    if idempotency is not None:
        debate_id = "k-" + hashlib.sha256(f"{key.tenant}\0{idempotency}".encode()).hexdigest()[:24]
        earlier = hub.requests.get(debate_id)
        if earlier is not None:
            if _asked(earlier.body) != _asked(wanted):
                raise ApiError(
                    422,
                    "this Idempotency-Key was used with another body",
                    code="idempotency_key_reused",
                    field="header.Idempotency-Key",
                )
            response.headers["Idempotent-Replayed"] = "true"
            status = hub.watch(debate_id).status
            return DebateCreated(debate_id=debate_id, status=status, links=gateway.links(debate_id))
    req = new_request(
        wanted["motion"],
        wanted["rounds"],
        debate_id,
        teams=wanted["teams"],
        max_tokens=wanted["max_tokens"],
        requested_by=f"{REQUESTER}{key.tenant}",
    )
    problems = validate_request(req, gateway.settings)  # the moderator's own rules
    if problems:
        field = "body.teams" if any("agent" in p or "team" in p for p in problems) else "body"
        raise ApiError(422, "; ".join(problems), field=field)
    limits = gateway.settings.gateway
    budget = limits.budget(key.tenant)
    left = budget - hub.tokens_on(key.tenant, dt.datetime.now(dt.timezone.utc).date()) if budget else 0
    if budget and left > 0:
        req["max_tokens"] = min(req["max_tokens"] or left, left)  # the moderator ends it at BUDGET
    value = gateway.encode("debate_request", "DebateRequested", req)  # 422 comes before any 429
    if hub.running(key.tenant) >= limits.max_running:
        raise Refusal("running_debates", f"{limits.max_running} debates of this tenant are running", 10)
    if budget and left <= 0:
        raise Refusal(
            "daily_tokens", f"this tenant's {budget} tokens of today are used", seconds_to_midnight()
        )
    headers = [("idempotency-key", idempotency.encode())] if idempotency else None
    await gateway.publisher.send(gateway.topics.requests, req["debate_id"], value, headers)
    hub.remember(Request(req["debate_id"], key.tenant, req["ts"], req, idempotency))
    response.headers["Location"] = f"/v1/debates/{req['debate_id']}"
    log.info("debate=%s requested by tenant %s (key %s)", req["debate_id"], key.tenant, key.key_id)
    return DebateCreated(
        debate_id=req["debate_id"], status="requested", links=gateway.links(req["debate_id"])
    )


@router.get("", response_model=DebateList, responses=ERRORS)
async def list_debates(
    key: Caller,
    gateway: Gateway,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[
        str | None, Query(pattern=DEBATE_ID, description="the last id of the previous page")
    ] = None,
) -> DebateList:
    """The caller's debates, newest first."""
    hub = await gateway.index()
    mine = hub.of_tenant(key.tenant)
    if after is not None:
        ids = [r.debate_id for r in mine]
        mine = mine[ids.index(after) + 1 :] if after in ids else []
    page = mine[:limit]
    items = []
    for req in page:
        debate = hub.logs.get(req.debate_id)
        items.append(
            DebateItem(
                debate_id=req.debate_id,
                status=debate.status if debate else "unknown",
                motion=req.body["motion"],
                requested_at=req.ts,
                reason=debate.ended["reason"] if debate and debate.ended else None,
            )
        )
    more = len(mine) > limit
    return DebateList(
        items=items, next=f"/v1/debates?limit={limit}&after={page[-1].debate_id}" if more else None
    )


@router.get("/{debate_id}", response_model=DebateView, responses=ERRORS)
async def get_debate(req: Owned, gateway: Gateway) -> DebateView:
    """The debate's state and its transcript so far (read_committed from its topic)."""
    debate = gateway.hub.watch(req.debate_id)
    # until it is read to its end, or its topic was looked for and is not there yet
    await _until(debate, lambda: debate.caught_up.is_set() or debate.missing, VIEW_WAIT_S)
    ended = debate.ended
    return DebateView(
        debate_id=req.debate_id,
        status=debate.status,
        motion=req.body["motion"],
        rounds=req.body["rounds"],
        requested_at=req.ts,
        reason=ended["reason"] if ended else None,
        tokens_used=ended["tokens_used"] if ended else debate.tokens,
        events=[Event(id=o, type=t, data=b) for o, t, b in debate.events],
        links=gateway.links(req.debate_id),
    )


@router.get("/{debate_id}/events", response_class=EventSourceResponse, responses=SSE_ERRORS)
async def debate_events(
    req: Owned, gateway: Gateway, last_event_id: LastEventId = None
) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events from the first event (or after Last-Event-ID) to DebateEnded;
    `id` is the event's offset in the debate's topic, `event` its type."""
    debate = gateway.hub.watch(req.debate_id)
    metrics.GATEWAY_STREAMS.inc()
    try:
        async for offset, record_type, body in debate.follow(int(last_event_id or -1)):
            yield ServerSentEvent(data=body, event=record_type, id=str(offset))
    finally:
        metrics.GATEWAY_STREAMS.dec()


@router.delete(
    "/{debate_id}",
    status_code=202,
    response_model=DebateCreated,
    responses={**ERRORS, 409: {"model": Error, "description": "it has ended, or not started yet"}},
)
async def cancel_debate(req: Owned, key: Caller, gateway: Gateway) -> DebateCreated:
    """End a running debate: the moderator ends it with reason CANCELLED."""
    debate = gateway.hub.watch(req.debate_id)
    # the cancel must reach the moderator after the debate's state exists
    await _until(
        debate,
        lambda: debate.started or debate.ended is not None or debate.status == "unstarted",
        gateway.settings.gateway.start_wait_s,
    )
    if debate.ended is not None:
        raise ApiError(409, f"the debate has ended ({debate.ended['reason']})", code="ended")
    if not debate.started:
        raise ApiError(
            409, "the debate has not started yet", code="not_started", headers={"Retry-After": "2"}
        )
    cancel = {
        "debate_id": req.debate_id,
        "event_id": f"{req.debate_id}:cancel",
        "ts": now_ms(),
        "requested_by": f"{REQUESTER}{key.tenant}",
    }
    settings = gateway.settings
    home = partition_for(req.debate_id.encode(), settings.kafka.partitions)
    value = gateway.encode("inbox", "CancelRequested", cancel)
    await gateway.publisher.send(
        gateway.topics.inbox(settings.moderator), req.debate_id, value, partition=home
    )
    log.info("debate=%s cancel sent by tenant %s", req.debate_id, key.tenant)
    return DebateCreated(debate_id=req.debate_id, status=debate.status, links=gateway.links(req.debate_id))


async def _until(debate: DebateLog, done: Any, timeout_s: float) -> None:
    """Wait until ``done()`` is true of ``debate`` (re-checked at each change), or the timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not done() and loop.time() < deadline:
        changed = debate.changed
        try:
            await asyncio.wait_for(changed.wait(), deadline - loop.time())
        except asyncio.TimeoutError:
            return


def _asked(body: dict[str, Any]) -> tuple:
    """What a client asked for, to compare two bodies sent with one Idempotency-Key."""
    teams = tuple(
        (t["agent"], t["stance"], t.get("persona"), t.get("model")) for t in body.get("teams") or []
    )
    return body["motion"], body["rounds"], teams
