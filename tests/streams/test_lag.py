"""`agon lag` against a real broker: its rows are what Kafka's own kafka-consumer-groups prints,
and PENDING counts the records a read_committed reader still gets, markers and aborts left out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from helpers import free_port, kafka_describe

from agon.errors import BrokerError
from agon.schemas.topics import Topics
from agon.settings import Settings
from agon.streams.admin import ensure_agon_topics
from agon.streams.lag import LagReader, PartitionLag, pending_by_agent, read_lag

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

AGENT = "team-a"


def produce(settings: Settings, topic: str, partition: int, n: int, *, abort: bool = False) -> None:
    """``n`` records to ``topic[partition]`` in one transaction, committed or aborted."""
    producer = Producer(
        settings.kafka.client_config(**{"transactional.id": f"{settings.namespace}-{topic}-{partition}"})
    )
    producer.init_transactions(10)
    producer.begin_transaction()
    for i in range(n):
        producer.produce(topic, f"record {i}".encode(), partition=partition)
    if abort:
        producer.flush(10)  # written, then aborted: abort_transaction alone drops unsent records
        producer.abort_transaction(10)
    else:
        producer.commit_transaction(10)


def open_transaction(settings: Settings, topic: str, partition: int, n: int) -> Producer:
    """A producer whose transaction of ``n`` records stays open (the caller aborts it)."""
    producer = Producer(settings.kafka.client_config(**{"transactional.id": f"{settings.namespace}-open"}))
    producer.init_transactions(10)
    producer.begin_transaction()
    for _ in range(n):
        producer.produce(topic, b"open", partition=partition)
    producer.flush(10)
    return producer


def consume_and_commit(settings: Settings, agent: str, topic: str, partition: int, n: int | None) -> int:
    """As the agent's group: read ``n`` records (None: all) read_committed from the beginning, commit
    after the last; return the offset committed."""
    consumer = Consumer(
        settings.kafka.client_config(
            **{
                "group.id": Topics(settings.namespace).app_id(agent),
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
    )
    consumer.assign([TopicPartition(topic, partition, 0)])
    last, got = None, 0
    deadline = time.monotonic() + 20
    try:
        while (n is None or got < n) and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF and n is None:
                    break
                continue
            last, got = msg, got + 1
        assert last is not None and (n is None or got == n), f"read {got} of {n} records"
        consumer.commit(message=last, asynchronous=False)
        return last.offset() + 1
    finally:
        consumer.close()


def rows_of(rows: list[PartitionLag], agent: str = AGENT) -> dict[tuple[str, int], PartitionLag]:
    return {(r.topic, r.partition): r for r in rows if r.agent == agent}


def dash(value: object) -> str:
    return "-" if value is None else str(value)


def test_rows_are_what_kafka_consumer_groups_prints(settings: Settings) -> None:
    topics = Topics(settings.namespace)
    inbox, group = topics.inbox(AGENT), topics.app_id(AGENT)
    ensure_agon_topics(settings)
    produce(settings, inbox, 0, 5)
    produce(settings, inbox, 1, 3)
    produce(settings, inbox, 1, 2, abort=True)
    produce(settings, inbox, 2, 2)
    consume_and_commit(settings, AGENT, inbox, 0, 3)
    consume_and_commit(settings, AGENT, inbox, 1, None)
    # a live member of the group owns every inbox partition; it commits nothing (p2 and p3 stay '-')
    member = Consumer(
        settings.kafka.client_config(
            **{"group.id": group, "enable.auto.commit": False, "client.id": "lag-test-member"}
        )
    )
    member.subscribe([inbox])
    deadline = time.monotonic() + 20
    while not member.assignment() and time.monotonic() < deadline:
        member.poll(0.1)
    # and an open transaction on p0: the high watermark passes the last stable offset
    still_open = open_transaction(settings, inbox, 0, 2)
    try:
        assert len(member.assignment()) == settings.kafka.partitions, "the member never got its partitions"
        kafka = kafka_describe(settings.kafka.bootstrap, group)
        ours = rows_of(read_lag(settings, [AGENT]))
    finally:
        still_open.abort_transaction(10)
        member.close()

    assert set(kafka) == {(inbox, p) for p in range(settings.kafka.partitions)}
    assert set(ours) == set(kafka)
    for key, theirs in kafka.items():
        row = ours[key]
        assert (dash(row.committed), str(row.log_end), dash(row.lag)) == (
            theirs["CURRENT-OFFSET"],
            theirs["LOG-END-OFFSET"],
            theirs["LAG"],
        ), key
        assert (row.member, row.host, row.client_id) == (
            theirs["CONSUMER-ID"],
            theirs["HOST"],
            theirs["CLIENT-ID"],
        )
    # p0: 5 records + marker, 3 read, then 2 in the open transaction; p1: 3 + marker + 2 aborted
    # + marker, all read
    p0 = ours[(inbox, 0)]
    assert (p0.log_end, p0.stable_end, p0.lag, p0.pending) == (8, 6, 5, 2)
    assert (ours[(inbox, 1)].lag, ours[(inbox, 1)].pending) == (4, 0)
    # nothing committed: LAG '-' as the tool shows it, PENDING from the beginning (earliest)
    assert (ours[(inbox, 2)].lag, ours[(inbox, 2)].pending) == (None, 2)
    assert (ours[(inbox, 3)].log_end, ours[(inbox, 3)].pending) == (0, 0)


def test_the_moderator_also_reads_the_request_topic(settings: Settings) -> None:
    topics = Topics(settings.namespace)
    ensure_agon_topics(settings)
    rows = read_lag(settings)
    n = settings.kafka.partitions
    assert {(r.agent, r.topic) for r in rows} == {(a.name, topics.inbox(a.name)) for a in settings.agents} | {
        (settings.moderator, topics.requests)
    }
    assert len(rows) == n * (len(settings.agents) + 1)
    assert all(r.group == topics.app_id(r.agent) and r.committed is None and r.pending == 0 for r in rows)
    assert pending_by_agent(rows) == {a.name: 0 for a in settings.agents}


def test_pending_leaves_out_markers_aborted_and_open_transactions(settings: Settings) -> None:
    topics = Topics(settings.namespace)
    inbox = topics.inbox(AGENT)
    ensure_agon_topics(settings)
    produce(settings, inbox, 0, 4)
    committed = consume_and_commit(settings, AGENT, inbox, 0, None)
    with LagReader(settings) as reader:
        caught_up = rows_of(reader.read([AGENT]))[(inbox, 0)]
        assert caught_up.committed == committed == 4
        assert caught_up.lag == 1 and caught_up.log_end == caught_up.stable_end == 5  # the commit marker
        assert caught_up.pending == 0 and not caught_up.pending_capped

        n = 6
        produce(settings, inbox, 0, 3, abort=True)
        produce(settings, inbox, 0, n)
        still_open = open_transaction(settings, inbox, 1, 5)
        try:
            rows = reader.read([AGENT])  # the same reader again: nothing of the last pass leaks
            waiting = rows_of(rows)
            assert waiting[(inbox, 0)].lag == 1 + (3 + 1) + (n + 1)
            assert waiting[(inbox, 0)].pending == n and not waiting[(inbox, 0)].pending_capped
            # an open transaction: past the high watermark's view, invisible to read_committed
            assert waiting[(inbox, 1)].log_end == 5 and waiting[(inbox, 1)].stable_end == 0
            assert waiting[(inbox, 1)].pending == 0
            assert pending_by_agent(rows) == {AGENT: n}

            capped = rows_of(reader.read([AGENT], limit=2))[(inbox, 0)]
            assert (capped.pending, capped.pending_capped) == (2, True)

            uncounted = reader.read([AGENT], count_pending=False)
            assert all(r.pending is None and not r.pending_capped for r in uncounted)
            # not counted: the lag where there is one, the whole log where nothing is committed
            assert pending_by_agent(uncounted) == {AGENT: waiting[(inbox, 0)].lag + 5}
        finally:
            still_open.abort_transaction(10)

        consume_and_commit(settings, AGENT, inbox, 0, None)
        assert rows_of(reader.read([AGENT]))[(inbox, 0)].pending == 0
        # the counting consumer only assigns: its group never exists on the cluster
        admin = AdminClient(settings.kafka.client_config())
        group = reader.group_id
        described = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
        offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
        assert described.state == ConsumerGroupState.DEAD and offsets.topic_partitions == []


def test_a_broker_that_does_not_answer_is_a_retriable_broker_error(
    agon_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGON_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(BrokerError, match="no answer from Kafka") as caught:
        read_lag(Settings(), timeout_s=1.0)
    assert caught.value.retriable and time.monotonic() - started < 5


def test_cli_json_rows_match_and_table_shows_them(settings: Settings, agon_env: dict[str, str]) -> None:
    topics = Topics(settings.namespace)
    inbox = topics.inbox(AGENT)
    ensure_agon_topics(settings)
    produce(settings, inbox, 2, 3)
    produce(settings, inbox, 2, 1, abort=True)
    consume_and_commit(settings, AGENT, inbox, 2, 1)
    agon = str(Path(sys.executable).parent / "agon")
    env = {**os.environ, **agon_env}

    proc = subprocess.run([agon, "lag", "--json", AGENT], capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 0, proc.stderr
    printed = [json.loads(line) for line in proc.stdout.splitlines()]
    assert printed == [asdict(r) for r in read_lag(settings, [AGENT])]
    p2 = next(r for r in printed if r["partition"] == 2)
    assert (p2["committed"], p2["log_end"], p2["lag"], p2["pending"]) == (1, 6, 5, 2)

    proc = subprocess.run([agon, "lag", AGENT], capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(
        line.split()[:7]
        == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "PENDING"]
        for line in lines
        if line.strip()
    )
    assert [topics.app_id(AGENT), inbox, "2", "1", "6", "5", "2", "-", "-", "-"] in [
        line.split() for line in lines
    ]
    assert f"TOTAL {AGENT}: LAG 5  PENDING 2  (4 partitions, 0 members)" in lines
    assert all(line == line.rstrip() for line in lines)

    proc = subprocess.run([agon, "lag", "nobody"], capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 1 and "unknown agent 'nobody'" in proc.stderr
