"""Avro single-object encoding of agon's events (docs/design.md, "Events").

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

from agon.errors import CodecError

__all__ = [
    "HEADER_LEN",
    "KINDS",
    "MAGIC",
    "SCHEMA_DIR",
    "Codec",
    "logical_alias_fingerprint",
    "now_ms",
    "schema_fingerprint",
]

#: the .avsc files beside this module: ``<kind>.avsc`` current, ``v<n>/*.avsc`` older versions
SCHEMA_DIR = Path(__file__).parent
MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8
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


def _without_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_without_logical_types(v) for v in node]
    return node


def _load(path: Path) -> tuple[bytes, bytes | None, Any]:
    """The fingerprint, its alias (:func:`logical_alias_fingerprint`) and the parsed schema of
    one ``.avsc`` file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return (
            schema_fingerprint(raw),
            logical_alias_fingerprint(raw),
            parse_schema(_without_logical_types(raw)),
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


def _record_type(writer: Any, data: bytes) -> str:
    """The short name of the record in a message: a union's body starts with the branch index."""
    if not isinstance(writer, list):
        return str(writer["name"]).rpartition(".")[2]
    value = shift = 0
    for byte in data[HEADER_LEN : HEADER_LEN + 10]:  # a zig-zag varint
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

    def __init__(self, directory: Path = SCHEMA_DIR) -> None:
        self._current: dict[str, Any] = {}
        self._header: dict[str, bytes] = {}
        self._types: dict[str, dict[str, tuple[str, frozenset[str]]]] = {}
        self._writers: dict[bytes, Any] = {}
        for kind in KINDS:
            fp, alias, schema = _load(directory / f"{kind}.avsc")
            self._current[kind] = schema
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
            fp, alias, schema = _load(path)
            for known in (fp, alias) if alias else (fp,):
                self._writers.setdefault(known, schema)

    @staticmethod
    @functools.cache
    def default() -> Codec:
        """The codec of the packaged ``schemas/``, loaded once."""
        return Codec()

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
        datum = (full_name, record) if isinstance(schema, list) else record
        try:
            validate(datum, schema)
        except ValidationError as exc:
            raise CodecError(f"invalid {record_type}: {_describe(exc)}") from None
        out = io.BytesIO()
        out.write(self._header[kind])
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
        if len(data) >= len(MAGIC) and data[: len(MAGIC)] != MAGIC:
            raise CodecError(f"bad magic 0x{data[: len(MAGIC)].hex()}, expected 0x{MAGIC.hex()}")
        if len(data) < HEADER_LEN:
            raise CodecError(f"truncated header: {len(data)} bytes, expected at least {HEADER_LEN}")
        fp = data[len(MAGIC) : HEADER_LEN]
        writer = self._writers.get(fp)
        if writer is None:
            raise CodecError(f"unknown schema fingerprint 0x{int.from_bytes(fp, 'little'):016x}")
        body = io.BytesIO(data)
        body.seek(HEADER_LEN)
        try:
            datum: Any = schemaless_reader(
                body, writer, reader, return_record_name=True, return_record_name_override=True
            )
        except EOFError as exc:
            raise CodecError(_reason("truncated Avro body", exc)) from exc
        except SchemaResolutionError as exc:
            detail = str(exc)
            if detail.lower().startswith("schema mismatch"):  # fastavro dumps whole schemas here
                detail = f"{_record_type(writer, data)} is not in the {kind} schema"
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
