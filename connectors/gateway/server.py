"""Run the gateway: uvicorn on the configured host and port, ready once it listens.

Under the supervisor the gateway is slot ``gateway-0`` (``agon worker gateway``): it
writes the ready mark the supervisor waits for, and announces its URL in its data
directory, where ``agon status``, the Prometheus targets and the tests find it (port 0
takes a free port).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket

import uvicorn

from agon.connectors.gateway.app import create_app
from agon.errors import ConfigError
from agon.settings import GATEWAY_SLOT, Settings
from agon.streams import metrics
from agon.streams.local.files import READY_MARK

__all__ = ["gateway_url", "serve"]

log = logging.getLogger("agon.gateway")


def gateway_url(settings: Settings) -> str | None:
    """The URL of the gateway running for these settings on this machine, if one announced it."""
    url = metrics.announced(settings.worker_dir(GATEWAY_SLOT, 0))
    return url.removesuffix("/metrics") if url else None


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"{host}:{port} is in use: set AGON_GATEWAY_PORT (0: any free port), "
                "or AGON_GATEWAY_ENABLED=false to run no gateway"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> int:
    logging.basicConfig(
        level=settings.log_level, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
    )
    host = host or settings.gateway.host
    port = settings.gateway.port if port is None else port
    sock = _bind(host, port)
    url = f"http://{host}:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        create_app(settings),
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            metrics.announce(settings.worker_dir(GATEWAY_SLOT, 0), f"{url}/metrics")
            print(f"agon gateway on {url} (pages at {url}/, API at {url}/docs) {READY_MARK}", flush=True)
        await task

    asyncio.run(run())
    return 0 if server.started else 1
