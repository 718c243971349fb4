"""Avro single-object encoding of agon's events (docs/design.md, "Events"), or Confluent's
wire format when a schema registry is configured (docs/schema-registry.md).

A message is ``C3 01``, the 8-byte little-endian CRC-64-AVRO fingerprint of
the writer schema's Parsing Canonical Form, then the schemaless Avro body. A
reader finds the writer schema by fingerprint among every schema the codec
knows (``<kind>.avsc`` and ``v*/*.avsc``) and resolves it against the current
schema of the kind it reads.

Records are plain dicts; enum values are their symbols (``"FOR"``); ``ts`` is
an int of epoch milliseconds both ways. The files mark ``ts`` as
``timestamp-millis`` for other readers (Kafka UI, Java); the codec drops
logical types, which are not part of the canonical form, so fingerprints stay
the same and fastavro neither wants nor returns datetimes. Writers whose library puts
logical types into the canonical form (Apache's Python ``avro``) are read too: each schema
is also known by that fingerprint (:func:`logical_alias_fingerprint`).

With a registry, a message is ``00``, the 4-byte big-endian schema id, then the body
written with that event type's record schema alone (:mod:`agon.schemas.registry`). A
reader takes either framing, so a fleet moves from one to the other without losing a
record.
"""

from __future__ import annotations

import functools
import io
import json
import re
import reprlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import fingerprint, to_parsing_canonical_form
from fastavro.validation import ValidationError, validate

from agon.errors import CodecError, RegistryError
from agon.schemas.registry import SchemaRegistry, standalone_records

__all__ = [
    "CONFLUENT_HEADER_LEN",
    "CONFLUENT_MAGIC",
    "HEADER_LEN",
    "KINDS",
    "MAGIC",
    "SCHEMA_DIR",
    "Codec",
    "logical_alias_fingerprint",
    "now_ms",
    "schema_fingerprint",
    "without_logical_types",
]

#: the .avsc files beside this module: ``<kind>.avsc`` current, ``v<n>/*.avsc`` older versions
SCHEMA_DIR = Path(__file__).parent
MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8
CONFLUENT_MAGIC = b"\x00"
CONFLUENT_HEADER_LEN = len(CONFLUENT_MAGIC) + 4
KINDS = ("debate_request", "inbox", "debate")
_DETAIL_MAX = 200  # reasons end up in dead-letter headers: keep fastavro's detail short


def now_ms() -> int:
    """The current time in epoch milliseconds, the unit of every ``ts``."""
    return time.time_ns() // 1_000_000


def schema_fingerprint(schema: Any) -> bytes:
    """The CRC-64-AVRO fingerprint of ``schema``'s Parsing Canonical Form, as header bytes.

    fastavro returns the hex of the 64-bit value's little-endian bytes, which is
    what the spec puts in the header (and Java's ``parsingFingerprint``).
    """
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def logical_alias_fingerprint(schema: Any) -> bytes | None:
    """The fingerprint other writers compute for ``schema`` when it has logical types, or None.

    Implementations differ on a logical-typed primitive's canonical form: Java and fastavro
    write ``"long"``; Apache's Python library (1.12) keeps ``{"type":"long"}``, so its header
    carries another fingerprint for the same writer schema. A reader accepts both. Each such
    node is swapped for a uniquely named placeholder that survives canonicalisation, then
    written back in the object form."""
    names: dict[str, str] = {}

    def swap(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("logicalType") and node.get("type") in _PRIMITIVES:
                name = f"agonLogicalPlaceholder{len(names)}"
                names[name] = node["type"]
                return {"type": "fixed", "name": name, "size": 0}
            return {k: swap(v) for k, v in node.items()}
        if isinstance(node, list):
            return [swap(v) for v in node]
        return node

    form = to_parsing_canonical_form(swap(schema))
    if not names:
        return None
    for name, primitive in names.items():
        form = re.sub(
            rf'\{{"name":"[^"]*{name}","type":"fixed","size":0\}}', f'{{"type":"{primitive}"}}', form
        )
    return bytes.fromhex(fingerprint(form, "CRC-64-AVRO"))


def without_logical_types(node: Any) -> Any:
    """``node`` without its logical types, which fastavro would turn into datetimes."""
    if isinstance(node, dict):
        return {k: without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [without_logical_types(v) for v in node]
    return node


def _load(path: Path) -> tuple[bytes, bytes | None, Any, Any]:
    """The fingerprint, its alias (:func:`logical_alias_fingerprint`), the parsed schema and
    the JSON of one ``.avsc`` file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return (
            schema_fingerprint(raw),
            logical_alias_fingerprint(raw),
            parse_schema(without_logical_types(raw)),
            raw,
        )
    except (OSError, ValueError) as exc:  # fastavro's SchemaParseError is a ValueError
        raise CodecError(f"cannot load schema {path}: {exc}") from exc


def _reason(what: str, exc: Exception) -> str:
    detail = str(exc)
    if len(detail) > _DETAIL_MAX:
        detail = detail[:_DETAIL_MAX] + "..."
    return f"{what}: {type(exc).__name__} {detail}".rstrip()


def _describe(exc: ValidationError) -> str:
    """fastavro's validation errors as ``field: got value, expected type``."""
    parts = []
    for error in exc.errors:
        schema = error.schema
        expected = schema if isinstance(schema, str) else schema.get("name") or schema.get("type")
        parts.append(f"{error.field or 'record'}: got {reprlib.repr(error.datum)}, expected {expected}")
    return "; ".join(parts)


def _record_type(writer: Any, data: bytes, start: int) -> str:
    """The short name of the record in a message: a union's body starts with the branch index."""
    if not isinstance(writer, list):
        return str(writer["name"]).rpartition(".")[2]
    value = shift = 0
    for byte in data[start : start + 10]:  # a zig-zag varint
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    return str(writer[(value >> 1) ^ -(value & 1)]["name"]).rpartition(".")[2]


class Codec:
    """Encodes and decodes agon events with the schemas under ``directory``.

    ``<kind>.avsc`` for each of :data:`KINDS` is the current schema: the one
    written, and the reader schema. Every ``v*/*.avsc`` is another known
    version that can be read (older ones, or newer ones shipped to readers
    before any writer uses them).
    """

    def __init__(self, directory: Path = SCHEMA_DIR, registry_url: str = "") -> None:
        self.registry = SchemaRegistry(registry_url) if registry_url else None
        self._current: dict[str, Any] = {}
        #: each event type's record alone (JSON, parsed): what the registry holds and is written
        self._records: dict[str, tuple[dict[str, Any], Any]] = {}
        self._ids: dict[str, int] = {}  # record full name -> its schema id in the registry
        self._header: dict[str, bytes] = {}
        self._types: dict[str, dict[str, tuple[str, frozenset[str]]]] = {}
        self._writers: dict[bytes, Any] = {}
        for kind in KINDS:
            fp, alias, schema, raw = _load(directory / f"{kind}.avsc")
            self._current[kind] = schema
            if self.registry is not None:  # without one, nothing writes records alone
                for full_name, record in standalone_records(raw).items():
                    # a type in two kinds (DebateRequested) is one subject: the first file's words win
                    parsed = parse_schema(without_logical_types(record))
                    self._records.setdefault(full_name, (record, parsed))
            self._header[kind] = MAGIC + fp
            self._writers[fp] = schema
            if alias:
                self._writers[alias] = schema
            records = schema if isinstance(schema, list) else [schema]
            self._types[kind] = {
                r["name"].rpartition(".")[2]: (r["name"], frozenset(f["name"] for f in r["fields"]))
                for r in records
            }
        for path in sorted(directory.glob("v*/*.avsc")):
            fp, alias, schema, _ = _load(path)
            for known in (fp, alias) if alias else (fp,):
                self._writers.setdefault(known, schema)

    @staticmethod
    @functools.cache
    def default(registry_url: str = "") -> Codec:
        """The codec of the packaged ``schemas/`` (with the registry at ``registry_url``, if
        given), loaded once."""
        return Codec(registry_url=registry_url)

    def register_all(self) -> dict[str, int]:
        """Register every event type's current schema (no-op without a registry): the
        subjects and their ids. A refusal raises :class:`RegistryError` in one line."""
        if self.registry is not None:
            for full_name in self._records:
                self._schema_id(full_name)
        return dict(self._ids)

    def _schema_id(self, full_name: str) -> int:
        schema_id = self._ids.get(full_name)
        if schema_id is None:
            assert self.registry is not None
            schema_id = self._ids[full_name] = self.registry.register(full_name, self._records[full_name][0])
        return schema_id

    def _schema(self, kind: str) -> Any:
        try:
            return self._current[kind]
        except KeyError:
            raise CodecError(f"unknown kind {kind!r}, expected one of {', '.join(KINDS)}") from None

    def encode(self, kind: str, record_type: str, record: Mapping[str, Any]) -> bytes:
        """``record`` as a single-object message of ``kind``, written with its current schema."""
        schema = self._schema(kind)
        try:
            full_name, fields = self._types[kind][record_type]
        except KeyError:
            known = ", ".join(self._types[kind])
            raise CodecError(f"{kind} carries no {record_type!r}, only {known}") from None
        unknown = sorted(set(record) - fields)
        if unknown:
            raise CodecError(f"{record_type} has no field {', '.join(unknown)}")
        if self.registry is not None:  # the record alone, under its id
            header = CONFLUENT_MAGIC + self._schema_id(full_name).to_bytes(4, "big")
            schema, datum = self._records[full_name][1], record
        else:
            header = self._header[kind]
            datum = (full_name, record) if isinstance(schema, list) else record
        try:
            validate(datum, schema)
        except ValidationError as exc:
            raise CodecError(f"invalid {record_type}: {_describe(exc)}") from None
        out = io.BytesIO()
        out.write(header)
        try:
            schemaless_writer(out, schema, datum)
        except ValueError as exc:  # what validation misses, e.g. a lone surrogate in a string
            raise CodecError(_reason(f"cannot write {record_type}", exc)) from exc
        return out.getvalue()

    def decode(self, kind: str, data: bytes | None) -> tuple[str, dict[str, Any]]:
        """The short record type name and the record of a message read as ``kind``.

        Raises :class:`CodecError` with a one-line reason fit for a dead-letter header.
        """
        reader = self._schema(kind)
        if data is None:
            raise CodecError("null value (a tombstone); an event is never null")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise CodecError(f"a value of type {type(data).__name__}, expected bytes")
        data = bytes(data)
        writer, start = self._writer(data)
        body = io.BytesIO(data)
        body.seek(start)
        try:
            datum: Any = schemaless_reader(
                body, writer, reader, return_record_name=True, return_record_name_override=True
            )
        except EOFError as exc:
            raise CodecError(_reason("truncated Avro body", exc)) from exc
        except SchemaResolutionError as exc:
            detail = str(exc)
            if detail.lower().startswith("schema mismatch"):  # fastavro dumps whole schemas here
                detail = f"{_record_type(writer, data, start)} is not in the {kind} schema"
            raise CodecError(f"writer schema does not resolve to {kind}: {detail[:_DETAIL_MAX]}") from exc
        except Exception as exc:  # fastavro reports malformed bodies with many exception types
            raise CodecError(_reason("bad Avro body", exc)) from exc
        trailing = len(data) - body.tell()
        if trailing:
            raise CodecError(f"{trailing} trailing bytes after the Avro body")
        if isinstance(datum, tuple):  # a union writer: fastavro names the branch
            full_name, record = datum
        else:  # a record writer resolved to the reader (a record, or a union's branch)
            full_name, record = (writer if isinstance(writer, dict) else reader)["name"], datum
        return full_name.rpartition(".")[2], record

    def _writer(self, data: bytes) -> tuple[Any, int]:
        """The writer schema of a message in either framing, and where its body starts."""
        if data[:1] == CONFLUENT_MAGIC:
            if len(data) < CONFLUENT_HEADER_LEN:
                raise CodecError(
                    f"truncated header: {len(data)} bytes, expected at least {CONFLUENT_HEADER_LEN}"
                )
            schema_id = int.from_bytes(data[1:CONFLUENT_HEADER_LEN], "big")
            if self.registry is None:
                raise CodecError(
                    f"Confluent wire format (schema id {schema_id}), but no schema registry is "
                    "configured (AGON_SCHEMA_REGISTRY_URL)"
                )
            try:
                return self.registry.writer(schema_id), CONFLUENT_HEADER_LEN
            except RegistryError as exc:
                raise CodecError(str(exc), retriable=exc.retriable) from None
        if len(data) >= len(MAGIC) and data[: len(MAGIC)] != MAGIC:
            raise CodecError(
                f"bad magic 0x{data[: len(MAGIC)].hex()}, expected 0x{MAGIC.hex()} "
                f"(single-object) or 0x{CONFLUENT_MAGIC.hex()} (Confluent)"
            )
        if len(data) < HEADER_LEN:
            raise CodecError(f"truncated header: {len(data)} bytes, expected at least {HEADER_LEN}")
        fp = data[len(MAGIC) : HEADER_LEN]
        writer = self._writers.get(fp)
        if writer is None:
            raise CodecError(f"unknown schema fingerprint 0x{int.from_bytes(fp, 'little'):016x}")
        return writer, HEADER_LEN
