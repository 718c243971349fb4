"""`agon registry`: the local schema registry (Apicurio, :mod:`agon.streams.local.registry`)
and agon's schemas in whichever registry AGON_SCHEMA_REGISTRY_URL names."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "cmd_registry"]

DESCRIPTION = """\
up       fetch Apicurio Registry from Maven Central (once) and start it on
         127.0.0.1:AGON_REGISTRY_PORT (8081), its storage a Kafka topic of the broker
         at AGON_KAFKA_BOOTSTRAP; it needs Java 21+ (AGON_REGISTRY_JAVA, JAVA_HOME, PATH
         or /usr/lib/jvm). Then
           export AGON_SCHEMA_REGISTRY_URL=http://127.0.0.1:8081/apis/ccompat/v7
         and agon writes Confluent's wire format; `agon up` starts the registry itself
         whenever AGON_SCHEMA_REGISTRY_URL names this local one.
down     stop it (its schemas stay in Kafka).
status   whether it runs, and the subjects the configured registry holds.
register register agon's schemas (one subject per event type, BACKWARD compatibility)
         in the registry of AGON_SCHEMA_REGISTRY_URL; a schema it refuses is reported
         in one line, with exit code 1.
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the `registry` command to ``sub``, the subparsers of `agon`'s parser."""
    p = sub.add_parser(
        "registry",
        help="the local schema registry (Apicurio, Confluent's API) and agon's schemas in it",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=["up", "down", "status", "register"])
    p.add_argument(
        "--schemas",
        type=Path,
        default=None,
        metavar="DIR",
        help="register: the schema files to register (default: the packaged schemas/)",
    )
    return p


def cmd_registry(args: argparse.Namespace, settings: Any) -> int:
    from agon.streams.local.registry import LocalRegistry

    local = LocalRegistry(settings)
    if args.action == "up":
        from agon.streams.local.broker import LocalBroker

        broker = LocalBroker(settings)  # its storage
        if settings.kafka.bootstrap == broker.bootstrap:
            _err(broker.up(progress=_err).detail)
        status = local.up(progress=_err)
        print(status.detail)
        if settings.schema_registry_url != local.url:
            _err(f"to use it: export AGON_SCHEMA_REGISTRY_URL={local.url}")
        return 0
    if args.action == "down":
        print("registry stopped" if local.down() else "no registry started by agon was running")
        return 0
    if args.action == "status":
        return _status(local, settings)
    return _register(settings, args.schemas)


def _status(local: Any, settings: Any) -> int:
    status = local.status()
    print(f"local registry: {status.detail}")
    url = settings.schema_registry_url
    if not url:
        print("AGON_SCHEMA_REGISTRY_URL is not set: events are Avro single-object encoded")
        return 0 if status.reachable or not status.running else 3
    from confluent_kafka.schema_registry import SchemaRegistryClient

    try:
        subjects = SchemaRegistryClient({"url": url}).get_subjects()
    except Exception as exc:  # the client raises httpx's errors and its own
        print(f"AGON_SCHEMA_REGISTRY_URL={url}: does not answer ({exc})")
        return 3
    print(f"AGON_SCHEMA_REGISTRY_URL={url}: {len(subjects)} subject(s)")
    for subject in sorted(subjects):
        print(f"  {subject}")
    return 0


def _register(settings: Any, directory: Path | None) -> int:
    from agon.schemas.codec import SCHEMA_DIR, Codec

    if not settings.schema_registry_url:
        print("agon: set AGON_SCHEMA_REGISTRY_URL to the registry to register in", file=sys.stderr)
        return 2
    codec = Codec(directory or SCHEMA_DIR, registry_url=settings.schema_registry_url)
    for subject, schema_id in sorted(codec.register_all().items()):
        print(f"{subject}: id {schema_id}")
    return 0


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
