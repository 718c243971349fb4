"""The Avro schemas and the single-object codec."""

from __future__ import annotations

import json
import re
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema
from fastavro.schema import to_parsing_canonical_form

from agon.errors import CodecError
from agon.schemas import SCHEMA_DIR
from agon.schemas.codec import HEADER_LEN, KINDS, MAGIC, Codec, now_ms, schema_fingerprint

TS = 1_700_000_000_123
TEAMS = [
    {"agent": "team-a", "stance": "FOR", "persona": "an economist", "model": "llama3"},
    {"agent": "team-b", "stance": "AGAINST", "persona": None, "model": None},
]
TURN = {
    "debate_id": "d1",
    "event_id": "d1:2:team-b",
    "ts": TS,
    "round": 2,
    "speaker": "team-b",
    "stance": "AGAINST",
    "text": "Jobs vanish.",
    "model": "llama3",
    "prompt_tokens": 120,
    "completion_tokens": 80,
    "latency_ms": 950,
    "attempt": 2,
}
ENDED = {
    "debate_id": "d1",
    "event_id": "d1:end",
    "ts": TS,
    "reason": "BUDGET",
    "detail": "spent 4000 tokens",
    "summary": "Both sides agreed on retraining.",
    "rounds_completed": 5,
    "tokens_used": 4012,
}
# (kind, record type, record with every field set)
SAMPLES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "debate_request",
        "DebateRequested",
        {
            "debate_id": "d1",
            "event_id": "d1",
            "ts": TS,
            "motion": "AI is good for jobs",
            "rounds": 4,
            "teams": TEAMS,
            "max_tokens": 4000,
            "requested_by": "cli",
        },
    ),
    (
        "inbox",
        "TurnRequested",
        {
            "debate_id": "d1",
            "event_id": "d1:2:team-b",
            "ts": TS,
            "motion": "AI is good for jobs",
            "round": 2,
            "speaker": "team-b",
            "stance": "AGAINST",
            "persona": "a unionist",
            "model": "llama3",
            "attempt": 2,
            "previous": {"speaker": "team-a", "round": 1, "text": "Productivity rises."},
        },
    ),
    (
        "inbox",
        "TurnDrafted",
        {
            "debate_id": "d1",
            "event_id": "d1:2:team-b",
            "ts": TS,
            "round": 2,
            "speaker": "team-b",
            "attempt": 1,
            "text": "Jobs vanish. ✓",
            "model": "llama3",
            "prompt_tokens": 120,
            "completion_tokens": 80,
            "latency_ms": 950,
        },
    ),
    ("inbox", "TurnTaken", TURN),
    (
        "inbox",
        "TurnFailed",
        {
            "debate_id": "d1",
            "event_id": "d1:2:team-b",
            "ts": TS,
            "round": 2,
            "speaker": "team-b",
            "attempt": 3,
            "reason": "LLM timeout",
            "retriable": True,
        },
    ),
    (
        "inbox",
        "DeadlinePassed",
        {
            "debate_id": "d1",
            "event_id": "d1:2:team-b:deadline:1",
            "ts": TS,
            "turn_id": "d1:2:team-b",
            "attempt": 1,
        },
    ),
    ("inbox", "DebateEnded", ENDED),
    (
        "debate",
        "DebateStarted",
        {
            "debate_id": "d1",
            "event_id": "d1:start",
            "ts": TS,
            "motion": "AI is good for jobs",
            "rounds": 4,
            "speakers": TEAMS,
            "max_tokens": 4000,
        },
    ),
    ("debate", "TurnTaken", TURN),
    ("debate", "ModeratorNote", {"debate_id": "d1", "event_id": "d1:note:1", "ts": TS, "text": "Round 3."}),
    ("debate", "DebateEnded", ENDED),
]
SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.avsc")) + sorted(SCHEMA_DIR.glob("v*/*.avsc"))


def rabin64(data: bytes) -> int:
    """CRC-64-AVRO exactly as the Avro specification writes it ("Schema Fingerprints")."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def make_codec(root: Path, current: Path, *others: Path) -> Codec:
    """A codec whose current schemas come from ``current`` (else today's) and that also knows ``others``."""
    root.mkdir()
    for kind in KINDS:
        source = current / f"{kind}.avsc"
        shutil.copy(source if source.exists() else SCHEMA_DIR / f"{kind}.avsc", root)
    for number, other in enumerate(others, start=2):
        shutil.copytree(other, root / f"v{number}", ignore=shutil.ignore_patterns("v*", "__*"))
    return Codec(root)


@pytest.fixture
def v1_codec(tmp_path: Path) -> Codec:
    """A service still on v1 that has been given today's schemas as known writers."""
    return make_codec(tmp_path / "old", SCHEMA_DIR / "v1", SCHEMA_DIR)


@pytest.mark.parametrize(("kind", "record_type", "record"), SAMPLES, ids=[f"{k}-{t}" for k, t, _ in SAMPLES])
def test_round_trip(kind: str, record_type: str, record: dict[str, Any]) -> None:
    codec = Codec.default()
    assert codec.decode(kind, codec.encode(kind, record_type, record)) == (record_type, record)


def test_defaults_fill_optional_fields() -> None:
    codec = Codec.default()
    minimal = {"debate_id": "d", "event_id": "d", "ts": 1, "motion": "m"}
    data = codec.encode("debate_request", "DebateRequested", minimal)
    assert codec.decode("debate_request", data)[1] == {
        "debate_id": "d",
        "event_id": "d",
        "ts": 1,
        "motion": "m",
        "rounds": 8,
        "teams": [],
        "max_tokens": 0,
        "requested_by": None,
    }


def test_fingerprint_matches_the_spec_test_vector() -> None:
    # Avro's own test data: the canonical form "null" has fingerprint 7195948357588979594.
    assert rabin64(b'"null"') == 0x63DD24E7CC258F8A == 7195948357588979594
    little_endian = (0x63DD24E7CC258F8A).to_bytes(8, "little")
    assert schema_fingerprint("null") == little_endian == bytes.fromhex("8a8f25cce724dd63")


@pytest.mark.parametrize(("kind", "record_type", "record"), [SAMPLES[0], SAMPLES[3], SAMPLES[-1]])
def test_header_is_magic_and_little_endian_fingerprint(
    kind: str, record_type: str, record: dict[str, Any]
) -> None:
    data = Codec.default().encode(kind, record_type, record)
    canonical = to_parsing_canonical_form(json.loads((SCHEMA_DIR / f"{kind}.avsc").read_text()))
    assert data[:2] == b"\xc3\x01" == MAGIC
    assert data[2:HEADER_LEN] == rabin64(canonical.encode()).to_bytes(8, "little")


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: str(p.relative_to(SCHEMA_DIR)))
def test_schema_files_parse_and_carry_the_common_fields(path: Path) -> None:
    raw = json.loads(path.read_text())
    parse_schema(raw)
    for record in raw if isinstance(raw, list) else [raw]:
        assert record["namespace"] == "agon.v1"
        fields = {f["name"]: f["type"] for f in record["fields"]}
        assert fields["debate_id"] == fields["event_id"] == "string"
        assert fields["ts"] == {"type": "long", "logicalType": "timestamp-millis"}


def test_shared_records_are_identical_in_inbox_and_debate() -> None:
    def records(kind: str) -> dict[str, Any]:
        return {r["name"]: r for r in json.loads((SCHEMA_DIR / f"{kind}.avsc").read_text())}

    inbox, debate = records("inbox"), records("debate")
    assert inbox["TurnTaken"] == debate["TurnTaken"]
    assert inbox["DebateEnded"] == debate["DebateEnded"]


def test_a_turn_taken_written_for_the_debate_log_reads_as_inbox() -> None:
    codec = Codec.default()
    assert codec.decode("inbox", codec.encode("debate", "TurnTaken", TURN)) == ("TurnTaken", TURN)


def test_v1_debate_request_reads_with_todays_schema(v1_codec: Codec) -> None:
    old = {k: v for k, v in SAMPLES[0][2].items() if k not in ("max_tokens", "requested_by")}
    data = v1_codec.encode("debate_request", "DebateRequested", old)
    assert Codec.default().decode("debate_request", data) == (
        "DebateRequested",
        {**old, "max_tokens": 0, "requested_by": None},
    )


def test_v1_debate_ended_reads_with_todays_schema(v1_codec: Codec) -> None:
    old = {k: v for k, v in ENDED.items() if k != "tokens_used"} | {"reason": "UNPRODUCTIVE"}
    data = v1_codec.encode("debate", "DebateEnded", old)
    assert Codec.default().decode("debate", data) == ("DebateEnded", {**old, "tokens_used": 0})


def test_v1_inbox_data_written_before_resume_existed_still_reads(v1_codec: Codec) -> None:
    taken = next(r for k, t, r in SAMPLES if k == "inbox" and t == "TurnTaken")
    data = v1_codec.encode("inbox", "TurnTaken", taken)
    assert data[2:10] != Codec.default().encode("inbox", "TurnTaken", taken)[2:10], (
        "the inbox schema changed, so v1 data carries the old fingerprint"
    )
    assert Codec.default().decode("inbox", data) == ("TurnTaken", taken)


def test_inbox_data_written_before_requests_were_re_keyed_still_reads(tmp_path: Path) -> None:
    v2 = make_codec(tmp_path / "v2", SCHEMA_DIR / "v2", SCHEMA_DIR)
    taken = next(r for k, t, r in SAMPLES if k == "inbox" and t == "TurnTaken")
    data = v2.encode("inbox", "TurnTaken", taken)
    assert data[2:10] != Codec.default().encode("inbox", "TurnTaken", taken)[2:10]
    assert Codec.default().decode("inbox", data) == ("TurnTaken", taken)
    assert v2.decode("inbox", Codec.default().encode("inbox", "TurnTaken", taken)) == ("TurnTaken", taken)


def test_a_request_written_to_the_moderator_s_inbox_reads_as_one() -> None:
    request = SAMPLES[0][2]
    data = Codec.default().encode("debate_request", "DebateRequested", request)
    assert Codec.default().decode("inbox", data) == ("DebateRequested", request)


def test_todays_debate_request_reads_with_the_v1_schema(v1_codec: Codec) -> None:
    data = Codec.default().encode("debate_request", "DebateRequested", SAMPLES[0][2])
    old = {k: v for k, v in SAMPLES[0][2].items() if k not in ("max_tokens", "requested_by")}
    assert v1_codec.decode("debate_request", data) == ("DebateRequested", old)


def test_todays_debate_ended_reads_with_the_v1_schema_unless_the_reason_is_new(v1_codec: Codec) -> None:
    codec = Codec.default()
    data = codec.encode("debate", "DebateEnded", ENDED | {"reason": "ROUNDS"})
    old = {k: v for k, v in ENDED.items() if k != "tokens_used"} | {"reason": "ROUNDS"}
    assert v1_codec.decode("debate", data) == ("DebateEnded", old)
    # Not forward compatible: v1's EndReason has no "default", so a v1 reader cannot map
    # BUDGET to anything. Today's EndReason has one ("ERROR") for reasons added after it.
    with pytest.raises(CodecError, match="does not resolve to debate: BUDGET not found"):
        v1_codec.decode("debate", codec.encode("debate", "DebateEnded", ENDED))


def test_a_reason_added_later_reads_as_the_enum_default(tmp_path: Path) -> None:
    future = tmp_path / "future"
    future.mkdir()
    raw = json.loads((SCHEMA_DIR / "debate.avsc").read_text())
    ended = next(r for r in raw if r["name"] == "DebateEnded")
    next(f for f in ended["fields"] if f["name"] == "reason")["type"]["symbols"].append("TIMEOUT")
    (future / "debate.avsc").write_text(json.dumps(raw))
    data = make_codec(tmp_path / "new", future).encode("debate", "DebateEnded", ENDED | {"reason": "TIMEOUT"})
    today = make_codec(tmp_path / "today", SCHEMA_DIR, future)
    assert today.decode("debate", data) == ("DebateEnded", ENDED | {"reason": "ERROR"})


def _valid() -> bytes:
    return Codec.default().encode("inbox", "TurnTaken", TURN)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated header: 0 bytes"),
        (b'{"debate_id": "d1"}', "bad magic 0x7b22"),
        (MAGIC + b"\x01\x02", "truncated header: 4 bytes"),
        (MAGIC + bytes(8) + b"\x00", "unknown schema fingerprint 0x0000000000000000"),
        (
            MAGIC + (0x0123456789ABCDEF).to_bytes(8, "little") + b"\x00",
            "unknown schema fingerprint 0x0123456789abcdef",
        ),
        (_valid()[:-3], "truncated Avro body"),
        (_valid()[:HEADER_LEN], "truncated Avro body"),
        (_valid() + b"\x00", "1 trailing bytes after the Avro body"),
        (_valid()[:HEADER_LEN] + b"\xff" * 20, "bad Avro body"),
        (_valid()[:HEADER_LEN] + b"\x04\x02\xff\xfe", "bad Avro body: UnicodeDecodeError"),
        (
            Codec.default().encode("debate", "ModeratorNote", SAMPLES[-2][2]),
            "writer schema does not resolve to inbox: ModeratorNote is not in the inbox schema",
        ),
        (None, "null value (a tombstone)"),
        ("text", "a value of type str, expected bytes"),
    ],
)
def test_undecodable_bytes_raise_codec_error_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(CodecError) as caught:
        Codec.default().decode("inbox", data)
    assert reason in str(caught.value)
    assert len(str(caught.value)) < 300 and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("record_type", "change", "reason"),
    [
        ("TurnTaken", {"round": "2"}, "agon.v1.TurnTaken.round: got '2', expected int"),
        ("TurnTaken", {"stance": "MAYBE"}, "agon.v1.TurnTaken.stance: got 'MAYBE', expected agon.v1.Stance"),
        ("TurnTaken", {"ts": datetime.now(timezone.utc)}, "agon.v1.TurnTaken.ts"),
        ("TurnTaken", {"round_no": 2}, "TurnTaken has no field round_no"),
        ("TurnTaken", {"text": "\ud800"}, "cannot write TurnTaken"),
        ("DebateStarted", {}, "inbox carries no 'DebateStarted'"),
    ],
)
def test_invalid_records_raise_codec_error_naming_the_field(
    record_type: str, change: dict[str, Any], reason: str
) -> None:
    with pytest.raises(CodecError, match=re.escape(reason)):
        Codec.default().encode("inbox", record_type, TURN | change)


def test_missing_required_field_is_named() -> None:
    record = {k: v for k, v in TURN.items() if k != "speaker"}
    with pytest.raises(CodecError, match=r"invalid TurnTaken: agon\.v1\.TurnTaken\.speaker: got None"):
        Codec.default().encode("inbox", "TurnTaken", record)


def test_unknown_kind() -> None:
    with pytest.raises(CodecError, match="unknown kind 'transcript'"):
        Codec.default().decode("transcript", _valid())


def test_default_is_cached_and_now_ms_is_epoch_millis() -> None:
    assert Codec.default() is Codec.default()
    assert abs(now_ms() - time.time() * 1000) < 1000
