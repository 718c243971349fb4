"""agon's schemas in a Confluent-compatible schema registry (docs/schema-registry.md).

Subjects follow the RecordNameStrategy: one subject per event type, named by the
record's full name (``agon.v1.TurnTaken``), each holding that record alone as its
schema. A topic carries several event types (an inbox holds TurnRequested and
DebateCancelled; a debate topic every event of a debate), and debates get topics of
their own, so the TopicNameStrategy would want a union per topic and a subject per
debate. Compatibility is BACKWARD per subject, set by agon before it registers there,
so the registry refuses a new version that cannot read the last one's records.

The client is confluent-kafka's own (it caches ids and schemas); failures become one-line
:class:`~agon.errors.RegistryError`\\ s.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from fastavro import parse_schema

from agon.errors import RegistryError

__all__ = ["COMPATIBILITY", "SchemaRegistry", "standalone_records"]

COMPATIBILITY = "BACKWARD"
TIMEOUT_S = 10.0
_NAMED = ("record", "enum", "error", "fixed")
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def _full(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _definitions(node: Any, namespace: str, out: dict[str, Any]) -> None:
    """Every named type defined anywhere in ``node``, by full name."""
    if isinstance(node, list):
        for item in node:
            _definitions(item, namespace, out)
    elif isinstance(node, dict):
        kind = node.get("type")
        if kind in _NAMED:
            full = _full(node["name"], node.get("namespace", namespace))
            out.setdefault(full, node)
            namespace = full.rpartition(".")[0]
            for f in node.get("fields", []):
                _definitions(f["type"], namespace, out)
        elif kind == "array":
            _definitions(node["items"], namespace, out)
        elif kind == "map":
            _definitions(node["values"], namespace, out)
        elif isinstance(kind, (dict, list)):
            _definitions(kind, namespace, out)


def _inline(node: Any, namespace: str, named: dict[str, Any], defined: set[str]) -> Any:
    """``node`` with every named type defined at its first use and referred to by full name
    after, so that it stands alone."""
    if isinstance(node, str):
        if node in _PRIMITIVES:
            return node
        full = _full(node, namespace)
        if full in defined or full not in named:
            return full
        return _inline(named[full], namespace, named, defined)
    if isinstance(node, list):
        return [_inline(item, namespace, named, defined) for item in node]
    kind = node.get("type")
    if kind in _NAMED:
        full = _full(node["name"], node.get("namespace", namespace))
        if full in defined:
            return full
        defined.add(full)
        out = {k: v for k, v in node.items() if k != "namespace"}
        out["name"] = full
        inner = full.rpartition(".")[0]
        if "fields" in node:
            out["fields"] = [{**f, "type": _inline(f["type"], inner, named, defined)} for f in node["fields"]]
        return out
    if kind == "array":
        return {**node, "items": _inline(node["items"], namespace, named, defined)}
    if kind == "map":
        return {**node, "values": _inline(node["values"], namespace, named, defined)}
    if isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in _PRIMITIVES):
        return {**node, "type": _inline(kind, namespace, named, defined)}
    return node  # a primitive, perhaps with a logical type


def standalone_records(raw: Any) -> dict[str, dict[str, Any]]:
    """Each record of a kind's schema (a record, or a union of records) as a schema of its
    own, by full name: named types it borrows from its siblings defined inside it."""
    named: dict[str, Any] = {}
    _definitions(raw, "", named)
    records = raw if isinstance(raw, list) else [raw]
    out = {}
    for record in records:
        full = _full(record["name"], record.get("namespace", ""))
        out[full] = _inline(record, "", named, set())
    return out


def _one_line(exc: Exception) -> str:
    message = getattr(exc, "error_message", None) or str(exc)
    return " ".join(str(message).split())[:300]


class SchemaRegistry:
    """Registers agon's record schemas and finds writer schemas by id."""

    def __init__(self, url: str) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self.url = url
        # the client waits forever by default: a registry that hangs must not stall a worker
        self.client = SchemaRegistryClient({"url": url, "timeout": TIMEOUT_S})
        self._writers: dict[int, Any] = {}

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        """The id of ``schema`` under ``subject``, registering it (BACKWARD) if it is new."""
        from confluent_kafka.schema_registry import Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            self.client.set_compatibility(subject_name=subject, level=COMPATIBILITY)
            return self.client.register_schema(subject, Schema(json.dumps(schema), "AVRO"))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 409:
                raise RegistryError(
                    f"the schema registry at {self.url} refused {subject}: it is not {COMPATIBILITY} "
                    f"compatible with the version registered there ({_one_line(exc)})"
                ) from None
            raise RegistryError(
                f"the schema registry at {self.url} refused {subject} "
                f"(HTTP {exc.http_status_code}: {_one_line(exc)})",
                retriable=exc.http_status_code >= 500,
            ) from None
        except httpx.HTTPError as exc:  # nothing answered
            raise RegistryError(
                f"cannot reach the schema registry at {self.url}: {_one_line(exc)}", retriable=True
            ) from None

    def writer(self, schema_id: int) -> Any:
        """The parsed writer schema of ``schema_id`` (fetched once)."""
        writer = self._writers.get(schema_id)
        if writer is not None:
            return writer
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            found = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            raise RegistryError(
                f"schema id {schema_id} is not in the schema registry at {self.url} "
                f"(HTTP {exc.http_status_code}: {_one_line(exc)})"
            ) from None
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"cannot reach the schema registry at {self.url} for schema id {schema_id}: {_one_line(exc)}",
                retriable=True,
            ) from None
        if (found.schema_type or "AVRO") != "AVRO":
            raise RegistryError(f"schema id {schema_id} is {found.schema_type}, not Avro")
        from agon.schemas.codec import without_logical_types

        writer = self._writers[schema_id] = parse_schema(without_logical_types(json.loads(found.schema_str)))
        return writer
