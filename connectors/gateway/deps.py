"""What every route of the gateway shares, and the dependencies that check who calls."""

import asyncio
import logging
from typing import Annotated, Any

from fastapi import Depends, Header
from fastapi import Path as PathParam
from fastapi import Request as HttpRequest
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from agon.connectors.gateway.debatelog import Request
from agon.connectors.gateway.http import ApiError
from agon.connectors.gateway.hub import Hub
from agon.connectors.gateway.keys import Key, Keyring
from agon.connectors.gateway.limits import Bucket
from agon.connectors.gateway.models import DEBATE_ID, Error, Links
from agon.connectors.gateway.ops import Operations
from agon.connectors.gateway.producer import Publisher
from agon.connectors.gateway.readiness import Readiness
from agon.errors import CodecError
from agon.schemas import Codec, Topics
from agon.settings import Settings

__all__ = [
    "ERRORS",
    "SSE_ERRORS",
    "Caller",
    "DebateId",
    "Gateway",
    "IdempotencyKey",
    "LastEventId",
    "Owned",
    "Shared",
    "shared",
]

log = logging.getLogger("agon.gateway")
INDEX_WAIT_S = 10.0  # a request that needs the index waits this long for it at start

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "no valid API key"},
    404: {"model": Error, "description": "no such debate of this tenant"},
    413: {"model": Error, "description": "the body is too large"},
    422: {"model": Error, "description": "an invalid body, parameter or header"},
    429: {"model": Error, "description": "a limit: see Retry-After"},
    503: {"model": Error, "description": "Kafka does not answer; try again (Retry-After)"},
}
#: the SSE route's errors are JSON too (FastAPI would give them its text/event-stream)
SSE_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {
        "description": spec["description"],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for status, spec in ERRORS.items()
}
DebateId = Annotated[str, PathParam(pattern=DEBATE_ID)]


class Shared:
    """The gateway's parts: settings, codec, keys and buckets at once; the hub, the
    publisher and the readiness checks once the app has started (its lifespan)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings.namespace)
        self.codec = Codec.default(settings.schema_registry_url)
        self.keyring = Keyring(settings.gateway.api_keys, settings.gateway.keys_path(settings.home_dir))
        self.bucket = Bucket(settings.gateway)
        self.hub: Hub
        self.publisher: Publisher
        self.readiness: Readiness
        self.operations = Operations(settings)

    async def start(self) -> None:
        self.codec.register_all()
        self.hub = Hub(self.settings)
        await self.hub.start()
        self.publisher = Publisher(self.settings)
        self.readiness = Readiness(self.settings, self.hub)
        if not len(self.keyring):
            log.warning("no API key is configured: every /v1 request gets 401 (agon keys add TENANT)")

    async def stop(self) -> None:
        self.operations.stop()
        self.publisher.close()
        await self.hub.stop()

    async def index(self) -> Hub:
        """The hub, once it has read the request topic to its end."""
        try:
            await asyncio.wait_for(self.hub.index_ready.wait(), INDEX_WAIT_S)
        except asyncio.TimeoutError:
            raise ApiError(
                503, "the gateway is still reading the request topic", headers={"Retry-After": "2"}
            ) from None
        return self.hub

    def encode(self, kind: str, record_type: str, record: dict[str, Any]) -> bytes:
        try:
            return self.codec.encode(kind, record_type, record)
        except CodecError as exc:  # what validation cannot see, e.g. a lone surrogate
            raise ApiError(422, str(exc), field="body") from None

    @staticmethod
    def links(debate_id: str) -> Links:
        base = f"/v1/debates/{debate_id}"
        return Links(self=base, events=f"{base}/events", page=f"/?debate={debate_id}")


def shared(request: HttpRequest) -> Shared:
    return request.app.state.shared


Gateway = Annotated[Shared, Depends(shared)]
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="or X-API-Key: <API key>")


async def caller(  # async: it runs on the loop, as the bucket assumes, not in a thread pool
    gateway: Gateway,
    token: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_api_key)],
) -> Key:
    presented = header or (token.credentials if token else None)
    key = gateway.keyring.lookup(presented) if presented else None
    if key is None:
        raise ApiError(
            401,
            "a valid API key is needed: Authorization: Bearer <key> or X-API-Key: <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    gateway.bucket.take(key.key_id)
    return key


Caller = Annotated[Key, Depends(caller)]


async def owned(debate_id: DebateId, key: Caller, gateway: Gateway) -> Request:
    """The caller's debate ``debate_id``; another tenant's is as absent as none (404)."""
    hub = await gateway.index()
    req = hub.requests.get(debate_id)
    if req is None or req.tenant != key.tenant:
        raise ApiError(404, f"no debate {debate_id} of this tenant")
    return req


Owned = Annotated[Request, Depends(owned)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="the same key and body return the same debate",
    ),
]
LastEventId = Annotated[
    str | None,
    Header(alias="Last-Event-ID", pattern=r"^-?\d{1,18}$", description="resume after this event id"),
]
