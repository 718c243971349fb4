"""Events written with Apache's own Python Avro library are read by agon, and agon's events by
it: the contract with writers that are not agon's codec.

Apache's library (1.12) computes another Parsing Canonical Form, hence another fingerprint, for
a schema with logical types (``ts`` is ``timestamp-millis``) than Java and fastavro do; its
single-object header must still find the writer schema.
"""

from __future__ import annotations

import datetime as dt
import io

import avro.io
import avro.schema
import pytest

from agon.schemas.codec import MAGIC, SCHEMA_DIR, Codec, logical_alias_fingerprint, schema_fingerprint

REQUEST = SCHEMA_DIR / "debate_request.avsc"


def apache_schema(path=REQUEST):
    return avro.schema.parse(path.read_text())


def apache_encode(record: dict) -> bytes:
    """Single-object encoding as an outsider writes it with Apache's library."""
    schema = apache_schema()
    body = io.BytesIO()
    avro.io.DatumWriter(schema).write(record, avro.io.BinaryEncoder(body))
    return MAGIC + schema.fingerprint("CRC-64-AVRO") + body.getvalue()


@pytest.mark.parametrize("path", sorted(SCHEMA_DIR.rglob("*.avsc")), ids=lambda p: p.name)
def test_every_schema_is_known_by_apache_s_fingerprint_too(path):
    import json

    raw = json.loads(path.read_text())
    theirs = apache_schema(path).fingerprint("CRC-64-AVRO")
    assert theirs in {schema_fingerprint(raw), logical_alias_fingerprint(raw)}


def test_a_request_written_by_apache_avro_decodes():
    at = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)
    data = apache_encode(
        {
            "debate_id": "outsider-1",
            "event_id": "outsider-1",
            "ts": at,
            "motion": "Cities should ban cars",
            "rounds": 3,
            "teams": [{"agent": "team-a", "stance": "FOR", "persona": None, "model": None}],
            "max_tokens": 0,
            "requested_by": "apache-avro",
        }
    )
    assert data[2:10] != Codec.default().encode("debate_request", "DebateRequested", _agon_request())[2:10]
    record_type, body = Codec.default().decode("debate_request", data)
    assert record_type == "DebateRequested"
    assert body["motion"] == "Cities should ban cars" and body["rounds"] == 3
    assert body["ts"] == int(at.timestamp() * 1000)
    assert body["teams"][0]["stance"] == "FOR"


def test_agon_s_request_reads_with_apache_avro():
    data = Codec.default().encode("debate_request", "DebateRequested", _agon_request())
    decoder = avro.io.BinaryDecoder(io.BytesIO(data[10:]))
    read = avro.io.DatumReader(apache_schema()).read(decoder)
    assert read["debate_id"] == "agon-1" and read["motion"] == "A motion"
    assert read["ts"] == dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


def _agon_request() -> dict:
    return {
        "debate_id": "agon-1",
        "event_id": "agon-1",
        "ts": int(dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc).timestamp() * 1000),
        "motion": "A motion",
        "rounds": 2,
        "teams": [],
        "max_tokens": 0,
        "requested_by": None,
    }
