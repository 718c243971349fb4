"""The HTTP gateway: REST and Server-Sent Events in front of the agents (docs/gateway.md).

It never calls an agent. A POST becomes a DebateRequested on the request topic; a
DELETE a CancelRequested in the moderator's inbox; every read comes from the debate's
own topic through the shared consumer of :mod:`agon.connectors.gateway.hub`.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Response
from fastapi import Path as PathParam
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agon.connectors.gateway import debates
from agon.connectors.gateway.deps import ERRORS, Caller, Gateway, Shared
from agon.connectors.gateway.http import ApiError, BodyCap, Metered, install_errors
from agon.connectors.gateway.models import Health, Ops
from agon.settings import Settings
from agon.streams import metrics

__all__ = ["create_app"]

PAGES = Path(__file__).parent / "pages"


def create_app(settings: Settings) -> FastAPI:
    shared = Shared(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await shared.start()
        try:
            yield
        finally:
            await shared.stop()

    app = FastAPI(
        title="agon gateway",
        version="1",
        summary="Start debates between AI agents and watch them live; the agents run on Kafka.",
        lifespan=lifespan,
    )
    app.state.shared = shared
    install_errors(app)
    origins = settings.gateway.cors_origins
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Idempotency-Key", "Last-Event-ID", "Content-Type"],
        )
    app.add_middleware(BodyCap, limit=settings.gateway.max_body_bytes)
    app.add_middleware(Metered)
    app.include_router(debates.router)

    # -- operations -----------------------------------------------------------------------
    @app.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz() -> Health:
        """The process answers."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, responses={503: {"model": Health}}, tags=["operations"])
    async def readyz(response: Response, gateway: Gateway) -> Health:
        """Kafka answers, the request index is read, every agent's group has members."""
        ok, checks = await gateway.readiness.check()
        if not ok:
            response.status_code = 503
        return Health(status="ok" if ok else "unready", checks=checks)

    @app.get("/v1/ops", response_model=Ops, responses=ERRORS, tags=["operations"])
    async def operations(_: Caller, gateway: Gateway) -> Ops:
        """Each agent's workers, inbox backlog and handling rate (read every 2 s)."""
        return Ops(**gateway.operations.view())

    @app.get("/metrics", response_class=PlainTextResponse, tags=["operations"])
    async def prometheus() -> Response:
        """Prometheus' text format."""
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    # -- pages ----------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def debate_page() -> FileResponse:
        return FileResponse(PAGES / "index.html")

    @app.get("/ops", include_in_schema=False)
    async def operations_page() -> FileResponse:
        return FileResponse(PAGES / "ops.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: Annotated[str, PathParam(pattern=r"^[a-z]+\.(js|css)$")]) -> FileResponse:
        path = PAGES / name
        if not path.is_file():
            raise ApiError(404, f"no {name}")
        return FileResponse(path)

    return app
