"""The HTTP gateway against the real broker and running agents, as its users meet it:
httpx and curl over real HTTP, Server-Sent Events read off the wire."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import uuid

import httpx
import pytest
import schemathesis
from confluent_kafka import Consumer, TopicPartition
from helpers import gateway_fleet, wait_for
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzzing

from agon.connectors.gateway.server import gateway_url
from agon.schemas import Topics

pytestmark = pytest.mark.integration

TENANTS = ("alpha", "beta", "gamma", "delta", "fuzz")
KEYS = {t: f"agon_test-{t}-{uuid.uuid4().hex}" for t in TENANTS}
MAX_RUNNING = 3
DAILY_TOKENS = 4000
FUZZ_EXAMPLES = 30  # per operation


@pytest.fixture(scope="module")
def gateway(kafka_bootstrap, tmp_path_factory):
    with gateway_fleet(
        kafka_bootstrap,
        tmp_path_factory.mktemp("gateway"),
        {k: t for t, k in KEYS.items()},
        AGON_GATEWAY_MAX_RUNNING=str(MAX_RUNNING),
        AGON_GATEWAY_TENANT_DAILY_TOKENS=json.dumps({"delta": DAILY_TOKENS}),
        AGON_GATEWAY_RATE_PER_S="20",
        AGON_GATEWAY_BURST="30",
        AGON_LLM_OFFLINE_LATENCY_S="0.05",
    ) as running:
        yield running


def client(url: str, tenant: str | None = "alpha", **kw) -> httpx.Client:
    headers = {"Authorization": f"Bearer {KEYS[tenant]}"} if tenant else {}
    return httpx.Client(base_url=url, headers=headers, timeout=30, **kw)


def sse(response: httpx.Response):
    """(id, event, data) of each Server-Sent Event, parsed off the wire."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in fields:
                yield fields.get("id"), fields.get("event", "message"), json.loads(fields["data"])
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def start(http: httpx.Client, **body) -> str:
    r = http.post("/v1/debates", json={"motion": "Cats beat dogs", "rounds": 1, **body})
    assert r.status_code == 202, r.text
    return r.json()["debate_id"]


def events_to_end(http: httpx.Client, debate_id: str, **headers) -> list:
    with http.stream("GET", f"/v1/debates/{debate_id}/events", headers=headers, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        return list(sse(r))


def test_a_debate_posted_with_curl_streams_to_its_end_and_reads_back(gateway):
    settings, url = gateway
    if not shutil.which("curl"):
        pytest.skip("curl is not installed")
    auth = f"Authorization: Bearer {KEYS['alpha']}"
    posted = subprocess.run(
        [
            "curl",
            "-sS",
            "-X",
            "POST",
            f"{url}/v1/debates",
            "-H",
            auth,
            "-H",
            "Content-Type: application/json",
            "-d",
            '{"motion": "Tea beats coffee", "rounds": 2}',
            "-w",
            "\n%{http_code}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.rsplit("\n", 1)
    assert posted[1] == "202", posted
    created = json.loads(posted[0])
    debate_id = created["debate_id"]
    assert created["links"]["events"] == f"/v1/debates/{debate_id}/events"
    stream = subprocess.run(
        ["curl", "-sS", "-N", "--max-time", "60", f"{url}{created['links']['events']}", "-H", auth],
        capture_output=True,
        text=True,
        timeout=70,
        check=True,
    ).stdout
    frames = [f for f in stream.split("\n\n") if "data:" in f]
    kinds = [next(line[7:] for line in f.splitlines() if line.startswith("event: ")) for f in frames]
    assert kinds[0] == "DebateStarted" and kinds[-1] == "DebateEnded" and kinds.count("TurnTaken") == 4
    ids = [int(next(line[4:] for line in f.splitlines() if line.startswith("id: "))) for f in frames]
    assert ids == sorted(set(ids)), "ids are the topic's offsets: increasing, never repeated"

    with client(url) as http:
        view = http.get(f"/v1/debates/{debate_id}").json()
    assert view["status"] == "ended" and view["reason"] == "ROUNDS" and view["tokens_used"] > 0
    assert [e["id"] for e in view["events"]] == ids, "GET shows what the stream showed"
    turns = [e["data"] for e in view["events"] if e["type"] == "TurnTaken"]
    assert [(t["round"], t["stance"]) for t in turns] == [
        (1, "FOR"),
        (1, "AGAINST"),
        (2, "FOR"),
        (2, "AGAINST"),
    ]


def test_without_a_valid_key_every_v1_route_answers_401(gateway):
    _, url = gateway
    for headers in ({}, {"Authorization": "Bearer agon_wrong"}, {"X-API-Key": "agon_wrong"}):
        with httpx.Client(base_url=url, headers=headers) as anon:
            for method, path in (("GET", "/v1/debates"), ("POST", "/v1/debates"), ("GET", "/v1/debates/x")):
                r = anon.request(method, path, json={"motion": "m"})
                assert r.status_code == 401, (method, path, r.text)
                assert r.json()["error"]["code"] == "unauthorized"
    with httpx.Client(base_url=url, headers={"X-API-Key": KEYS["alpha"]}) as keyed:
        assert keyed.get("/v1/debates").status_code == 200, "X-API-Key works as well as Bearer"


def test_a_tenant_sees_only_its_own_debates(gateway):
    _, url = gateway
    with client(url, "alpha") as alpha, client(url, "beta") as beta:
        mine = start(alpha)
        for path in (f"/v1/debates/{mine}", f"/v1/debates/{mine}/events"):
            r = beta.get(path)
            assert r.status_code == 404, "another tenant's debate is as absent as none, never 403"
        assert beta.delete(f"/v1/debates/{mine}").status_code == 404
        assert mine not in [d["debate_id"] for d in beta.get("/v1/debates?limit=100").json()["items"]]
        assert alpha.get(f"/v1/debates/{mine}").status_code == 200
        missing = beta.get("/v1/debates/no-such-debate")
        assert missing.status_code == 404 and missing.json() == {
            "error": {
                "status": 404,
                "code": "not_found",
                "message": "no debate no-such-debate of this tenant",
                "problems": [],
            }
        }


def test_a_retried_post_with_its_idempotency_key_returns_the_same_debate(gateway):
    _, url = gateway
    key = f"retry-{uuid.uuid4().hex}"
    body = {"motion": "Retries are safe", "rounds": 1}
    with client(url) as http:
        first = http.post("/v1/debates", json=body, headers={"Idempotency-Key": key})
        again = http.post("/v1/debates", json=body, headers={"Idempotency-Key": key})
        assert first.status_code == again.status_code == 202
        assert first.json()["debate_id"] == again.json()["debate_id"]
        assert again.headers["Idempotent-Replayed"] == "true"
        other = http.post(
            "/v1/debates", json={**body, "motion": "Something else"}, headers={"Idempotency-Key": key}
        )
        assert other.status_code == 422
        assert other.json()["error"]["problems"][0]["field"] == "header.Idempotency-Key"
        events = events_to_end(http, first.json()["debate_id"])
    assert [e for _, e, _ in events].count("DebateStarted") == 1, "one debate, not two"


def test_a_stream_resumed_with_last_event_id_loses_and_repeats_nothing(gateway):
    _, url = gateway
    with client(url) as http:
        debate_id = start(http, rounds=3)
        seen = []
        with http.stream("GET", f"/v1/debates/{debate_id}/events") as r:
            for event in sse(r):
                seen.append(event)
                if len(seen) == 2:
                    break  # the client drops the connection
        rest = events_to_end(http, debate_id, **{"Last-Event-ID": seen[-1][0]})
        whole = events_to_end(http, debate_id)
    assert seen + rest == whole
    assert [e for _, e, _ in whole].count("TurnTaken") == 6


def test_delete_cancels_a_running_debate_through_the_moderator(gateway):
    _, url = gateway
    with client(url) as http:
        debate_id = start(http, rounds=50)
        with http.stream("GET", f"/v1/debates/{debate_id}/events", timeout=60) as r:
            for _, event, _ in sse(r):
                if event == "TurnTaken":
                    break
        r = http.delete(f"/v1/debates/{debate_id}")
        assert r.status_code == 202, r.text
        events = events_to_end(http, debate_id)
        ended = events[-1][2]
        assert events[-1][1] == "DebateEnded" and ended["reason"] == "CANCELLED", ended
        assert "gateway:alpha" in ended["detail"]
        assert len([e for e in events if e[1] == "TurnTaken"]) < 100
        again = http.delete(f"/v1/debates/{debate_id}")
        assert again.status_code == 409 and again.json()["error"]["code"] == "ended"


def test_the_list_is_newest_first_and_paginated(gateway):
    _, url = gateway
    with client(url, "beta") as beta:
        ids = [start(beta) for _ in range(3)]
        first = beta.get("/v1/debates?limit=2").json()
        assert [d["debate_id"] for d in first["items"]] == ids[::-1][:2]
        second = beta.get(first["next"]).json()
        assert second["items"][0]["debate_id"] == ids[0]
        for debate_id in ids:
            events_to_end(beta, debate_id)


def test_limits_answer_429_with_retry_after(gateway):
    _, url = gateway
    with client(url, "gamma") as gamma:
        ids = [start(gamma, rounds=50) for _ in range(MAX_RUNNING)]
        r = gamma.post("/v1/debates", json={"motion": "One too many"})
        assert r.status_code == 429 and r.json()["error"]["code"] == "running_debates"
        assert int(r.headers["Retry-After"]) > 0
        for debate_id in ids:
            wait_for(lambda d=debate_id: gamma.delete(f"/v1/debates/{d}").status_code == 202, 30, "cancelled")
        for debate_id in ids:
            events_to_end(gamma, debate_id)
        assert start(gamma)  # room again

    async def burst():
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": KEYS["gamma"]}, timeout=30) as http:
            return await asyncio.gather(*(http.get("/v1/debates?limit=1") for _ in range(100)))

    answers = asyncio.run(burst())
    refused = [r for r in answers if r.status_code == 429]
    assert refused and len(refused) < 100, "a burst beyond the key's bucket is refused, not all of it"
    assert {r.json()["error"]["code"] for r in refused} == {"rate_limited"}
    assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)


def test_a_tenants_daily_tokens_are_a_budget(gateway):
    _, url = gateway
    with client(url, "delta") as delta:
        debate_id = start(delta, rounds=50)  # more than the day's budget allows
        ended = events_to_end(delta, debate_id)[-1][2]
        assert ended["reason"] == "BUDGET", ended
        assert ended["tokens_used"] >= DAILY_TOKENS
        r = delta.post("/v1/debates", json={"motion": "More, please"})
        assert r.status_code == 429 and r.json()["error"]["code"] == "daily_tokens"
        assert 0 < int(r.headers["Retry-After"]) <= 86400


def _request_topic_end(settings) -> int:
    topics = Topics(settings.namespace)
    consumer = Consumer(settings.kafka.client_config(**{"group.id": f"ends-{uuid.uuid4().hex}"}))
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topics.requests, p), timeout=10)[1]
            for p in range(settings.kafka.partitions)
        )
    finally:
        consumer.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body.motion"),
        ({"motion": ""}, "body.motion"),
        ({"motion": "m", "rounds": 0}, "body.rounds"),
        ({"motion": "m", "rounds": "many"}, "body.rounds"),
        (
            {
                "motion": "m",
                "teams": [{"agent": "team-z", "stance": "FOR"}, {"agent": "team-b", "stance": "AGAINST"}],
            },
            "body.teams",
        ),
        ({"motion": "m", "max_tokens": -1}, "body.max_tokens"),
        ({"motion": "m", "colour": "red"}, "body.colour"),
        ({"motion": "\ud800"}, "body"),
        ({"motion": "   "}, "body"),
    ],
)
def test_an_invalid_body_gets_422_naming_the_field_and_nothing_reaches_kafka(gateway, body, field):
    settings, url = gateway
    before = _request_topic_end(settings)
    with client(url) as http:
        r = http.post("/v1/debates", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    fields = [p["field"] for p in r.json()["error"]["problems"]]
    assert any(f.startswith(field) for f in fields), fields
    assert _request_topic_end(settings) == before, "nothing invalid reaches Kafka"


def test_bodies_over_the_cap_and_broken_json_are_refused(gateway):
    _, url = gateway
    with client(url) as http:
        big = http.post(
            "/v1/debates",
            content=b'{"motion": "' + b"x" * 20000 + b'"}',
            headers={"Content-Type": "application/json"},
        )
        assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"
        broken = http.post("/v1/debates", content=b"{not json", headers={"Content-Type": "application/json"})
        assert broken.status_code == 422
        bad_id = http.get("/v1/debates/has_underscore")
        assert (
            bad_id.status_code == 422 and bad_id.json()["error"]["problems"][0]["field"] == "path.debate_id"
        )
        debate_id = start(http)
        bad_resume = http.get(f"/v1/debates/{debate_id}/events", headers={"Last-Event-ID": "yesterday"})
        assert bad_resume.status_code == 422
        assert bad_resume.json()["error"]["problems"][0]["field"] == "header.Last-Event-ID"
        events_to_end(http, debate_id)


def test_health_readiness_metrics_and_the_openapi_document(gateway):
    _, url = gateway
    with httpx.Client(base_url=url, timeout=30) as anon:
        assert anon.get("/healthz").json()["status"] == "ok"
        ready = anon.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["agent:moderator"].endswith("member(s)")
        text = anon.get("/metrics").text
        assert 'agon_gateway_requests_total{method="POST",route="/v1/debates",status="202"}' in text
        assert "/v1/debates/{debate_id}" in text and 'route="/v1/debates/k-' not in text
        spec = anon.get("/openapi.json").json()
        assert set(spec["paths"]) >= {
            "/v1/debates",
            "/v1/debates/{debate_id}",
            "/v1/debates/{debate_id}/events",
        }
        page = anon.get("/")
        assert page.status_code == 200 and '<label for="motion">' in page.text
        assert anon.get("/static/debate.js").status_code == 200
        assert anon.get("/static/../app.py").status_code == 404
        cors = anon.options(
            "/v1/debates", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in cors.headers, "CORS is closed by default"


def test_the_operations_view_shows_each_agents_workers_and_backlog(gateway):
    _, url = gateway
    with client(url) as http:

        def read():
            view = http.get("/v1/ops").json()
            return view if view["read_at"] else None

        view = wait_for(read, 60, "a lag reading")
        agents = {a["agent"]: a for a in view["agents"]}
        assert set(agents) == {"moderator", "team-a", "team-b"}
        assert all(a["workers"] == 1 and a["partitions"] == 4 and a["pending"] >= 0 for a in agents.values())
        assert http.get("/ops").status_code == 200
    assert httpx.get(f"{url}/v1/ops").status_code == 401


def test_the_gateway_survives_a_restart_and_still_knows_its_debates(gateway):
    settings, url = gateway
    from agon.streams.local.fleet import Fleet

    with client(url) as http:
        key = f"restart-{uuid.uuid4().hex}"
        debate_id = http.post(
            "/v1/debates", json={"motion": "Memory is in Kafka"}, headers={"Idempotency-Key": key}
        ).json()["debate_id"]
        events_to_end(http, debate_id)
    os.kill(Fleet(settings).worker("gateway", 0).pid, signal.SIGKILL)
    wait_for(lambda: (u := gateway_url(settings)) is not None and _answers(u), 60, "the gateway is back")
    with client(gateway_url(settings)) as http:
        assert http.get(f"/v1/debates/{debate_id}").json()["status"] == "ended"
        again = http.post(
            "/v1/debates", json={"motion": "Memory is in Kafka"}, headers={"Idempotency-Key": key}
        )
        assert again.json()["debate_id"] == debate_id and again.headers["Idempotent-Replayed"] == "true"


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_fuzzed_requests_get_no_5xx_and_responses_keep_to_the_schema(gateway):
    """schemathesis generates valid and invalid requests from /openapi.json, operation by
    operation, and checks every answer: no 5xx, status codes, content types, headers and
    bodies as documented. (Its pytest plugin's lazy fixtures do not run on pytest 9: the
    strategies are driven here with hypothesis directly.)"""
    settings, _ = gateway
    url = gateway_url(settings)  # where it is now, restarted or not
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    headers = {"Authorization": f"Bearer {KEYS['fuzz']}"}
    before = _answered(url)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:

        @given(case=operation.as_strategy())
        @fuzzing(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def answer(case):
            # positive_data_acceptance is left out: the moderator's rules are more than a JSON
            # schema says (each agent speaks once, two teams or more, a motion not blank,
            # strings Avro can write), so a schema-valid body can rightly get 422
            case.call_and_validate(
                base_url=url, headers=headers, excluded_checks=[schemathesis.checks.positive_data_acceptance]
            )

        answer()
    assert _answered(url) - before >= len(operations) * 10, "the fuzzing reached the gateway"


def _answered(url: str) -> float:
    """Requests the gateway has answered, from its own /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("agon_gateway_requests_total{")
    )


def test_a_taken_gateway_port_leaves_the_gateway_out_not_the_fleet(kafka_bootstrap, tmp_path, monkeypatch):
    """`make demo` must not fail because something else listens on 8000."""
    import socket

    from agon.settings import Settings
    from agon.streams.local.fleet import Fleet

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        for name, value in {
            "AGON_HOME": str(tmp_path),
            "AGON_NAMESPACE": f"t{uuid.uuid4().hex[:10]}",
            "AGON_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "AGON_GATEWAY_ENABLED": "true",
            "AGON_GATEWAY_PORT": str(port),
        }.items():
            monkeypatch.setenv(name, value)
        fleet, said = Fleet(Settings()), []
        try:
            ready = fleet.up(progress=said.append, wait_s=90)
            assert [w.name for w in ready] == ["moderator-0", "team-a-0", "team-b-0"]
            assert any(f"127.0.0.1:{port} is in use: the gateway is left out" in line for line in said), said
        finally:
            fleet.down()
