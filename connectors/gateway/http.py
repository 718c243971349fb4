"""The gateway's HTTP plumbing: one JSON error shape, a cap on bodies, request metrics."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agon.connectors.gateway.limits import Refusal
from agon.streams import metrics

__all__ = ["ApiError", "BodyCap", "Metered", "error_response", "install_errors"]

log = logging.getLogger("agon.gateway")

CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.code = code or CODES.get(status, "error")
        self.problems = [{"field": field, "message": message}] if field else []
        self.headers = headers or {}


def error_response(
    status: int,
    message: str,
    code: str | None = None,
    problems: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "error": {
            "status": status,
            "code": code or CODES.get(status, "error"),
            "message": message,
            "problems": problems or [],
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.code, exc.problems, exc.headers)

    @app.exception_handler(Refusal)
    async def _refused(_: Request, exc: Refusal) -> JSONResponse:
        metrics.GATEWAY_REFUSED.labels(exc.code).inc()
        return error_response(429, exc.message, exc.code, headers={"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"field": _where(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        first = problems[0] if problems else {"field": None, "message": "invalid request"}
        return error_response(422, f"{first['field']}: {first['message']}", problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "the gateway failed on this request; it is logged", "internal")


class BodyCap:
    """Refuse bodies over ``limit`` bytes with 413 before the app reads them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                await self._refuse(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, f"the request body is larger than {self.limit} bytes")
        await response(scope, receive, send)


class Metered:
    """Count every response by route template (never a debate id) and time its start."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = getattr(scope.get("route"), "path", "unmatched")
                metrics.GATEWAY_LATENCY.labels(route).observe(time.perf_counter() - started)
                metrics.GATEWAY_REQUESTS.labels(route, scope["method"], str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, timed)


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
