"""`agon gateway` (the HTTP gateway in the foreground) and `agon keys` (its API keys)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_parsers", "cmd_gateway", "cmd_keys"]

GATEWAY = """\
REST and Server-Sent Events in front of the agents (connectors/gateway/); `agon up` runs
it under the supervisor unless AGON_GATEWAY_ENABLED=false. Every /v1 request needs an
API key (`agon keys add TENANT`).

  POST   /v1/debates                {"motion": ..., "rounds": 2}     202 + the debate's id
  GET    /v1/debates/{id}           state and transcript so far
  GET    /v1/debates/{id}/events    Server-Sent Events to DebateEnded (Last-Event-ID resumes)
  GET    /v1/debates                the caller's debates, newest first
  DELETE /v1/debates/{id}           the moderator ends it (CANCELLED)
  /healthz /readyz /metrics /openapi.json /docs, and the debate page at /

limits per key and tenant: AGON_GATEWAY_RATE_PER_S, _BURST, _MAX_RUNNING, _DAILY_TOKENS;
AGON_GATEWAY_CORS_ORIGINS (closed by default), AGON_GATEWAY_MAX_BODY_BYTES.
"""

KEYS = """\
add TENANT   make a key for TENANT; prints it once. Only its SHA-256 is kept, in
             $AGON_HOME/gateway/keys.json (AGON_GATEWAY_KEYS_FILE), which a running
             gateway re-reads. Hashes can also come from AGON_GATEWAY_API_KEYS as
             '{"<sha256>": "<tenant>"}'.
list         the tenants and key ids (first 12 hex digits of each hash) configured.
"""


def add_parsers(sub: Any) -> None:
    g = sub.add_parser(
        "gateway",
        help="the HTTP gateway in the foreground: REST + Server-Sent Events, and the debate page",
        description=GATEWAY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g.add_argument("--host", help="address to listen on (AGON_GATEWAY_HOST, default 127.0.0.1)")
    g.add_argument("--port", type=int, help="port (AGON_GATEWAY_PORT, default 8000; 0: any free one)")
    k = sub.add_parser(
        "keys",
        help="the gateway's API keys: add one for a tenant, list them",
        description=KEYS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    k.add_argument("action", choices=["add", "list"])
    k.add_argument("tenant", nargs="?", help="the tenant the new key belongs to (add)")


def cmd_gateway(args: argparse.Namespace, settings: Any) -> int:
    from agon.connectors.gateway.server import serve

    return serve(settings, args.host, args.port)


def cmd_keys(args: argparse.Namespace, settings: Any) -> int:
    from agon.connectors.gateway.keys import Keyring, add_key

    path = settings.gateway.keys_path(settings.home_dir)
    if args.action == "add":
        if not args.tenant:
            print("agon: keys add needs a TENANT", file=sys.stderr)
            return 2
        key, digest = add_key(path, args.tenant)
        print(key)
        print(
            f"(key {digest[:12]} of tenant {args.tenant}; only its hash is kept, in {path})", file=sys.stderr
        )
        return 0
    ring = Keyring(settings.gateway.api_keys, path)
    for digest, tenant in sorted(ring.entries().items(), key=lambda kv: kv[1]):
        print(f"{tenant}\t{digest[:12]}")
    if not len(ring):
        print(f"no keys: agon keys add TENANT (they go to {path})", file=sys.stderr)
    return 0
