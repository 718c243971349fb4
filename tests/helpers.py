"""Helpers the tests share (import as ``from helpers import wait_for``)."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agon.schemas import Codec, Topics
from agon.settings import Settings
from agon.streams.local.fleet import Fleet

TEST_PORT = 19092  # the session broker's port when the local launcher runs it


def session_codec() -> Codec:
    """The codec agon's processes use in this test session: with AGON_TEST_WIRE_FORMAT=confluent,
    the session's registry (tests/conftest.py), else single-object encoding."""
    return Codec.default(os.environ.get("AGON_SCHEMA_REGISTRY_URL", ""))


def wait_for(check: Callable[[], object], timeout_s: float, what: str, every_s: float = 0.2) -> object:
    """Poll ``check`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


@contextlib.contextmanager
def running_fleet(
    bootstrap: str,
    home: Path,
    agents: list[str] | None = None,
    workers: int = 1,
    autoscale: bool = False,
    **overrides: str,
) -> Iterator[Settings]:
    """Start ``workers`` workers per agent (default: the roster) under a supervisor in a fresh
    namespace (``autoscale``: then sized by lag); stop them all afterwards."""
    env = {
        "AGON_HOME": str(home),
        "AGON_NAMESPACE": f"t{uuid.uuid4().hex[:10]}",
        "AGON_GATEWAY_ENABLED": "false",  # the gateway's own tests turn it on
        "AGON_KAFKA_BOOTSTRAP": bootstrap,
        "AGON_KAFKA_PARTITIONS": "4",
        "AGON_BROKER_PORT": str(TEST_PORT),
        "AGON_BROKER_CONTROLLER_PORT": str(TEST_PORT + 1),
        **overrides,
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        settings = Settings()
        fleet = Fleet(settings)
        try:
            fleet.up(agents, workers=workers, progress=lambda line: None, autoscale=autoscale)
            yield settings
        finally:
            fleet.down()
            logs = [fleet.files.supervisor_log] + [w.log for w in fleet.workers()]
            for log in logs:
                if log.exists() and os.environ.get("AGON_TEST_SHOW_LOGS"):
                    print(f"--- {log}\n{log.read_text()[-4000:]}")


@contextlib.contextmanager
def gateway_fleet(
    bootstrap: str, home: Path, keys: dict[str, str], **overrides: str
) -> Iterator[tuple[Settings, str]]:
    """A running fleet with the gateway on a free port, knowing ``keys`` (key -> tenant) by
    their hashes: (settings, the gateway's URL)."""
    import json

    from agon.connectors.gateway.keys import hash_key
    from agon.connectors.gateway.server import gateway_url

    with running_fleet(
        bootstrap,
        home,
        AGON_GATEWAY_ENABLED="true",
        AGON_GATEWAY_PORT="0",
        AGON_GATEWAY_API_KEYS=json.dumps({hash_key(k): t for k, t in keys.items()}),
        **overrides,
    ) as settings:
        url = gateway_url(settings)
        assert url, "the gateway announced its URL"
        yield settings, url


def free_port(span: int = 1) -> int:
    """A port ``p`` such that ``p .. p+span-1`` are all free on 127.0.0.1 right now."""
    import socket

    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + span > 65535:
            continue
        try:
            for port in range(base, base + span):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no {span} free consecutive ports")


@dataclass
class Letter:
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def reason(self) -> str:
        return self.headers.get("reason", "")


class DeadLetters:
    """What a namespace's dead-letter topic holds, read from its beginning (read_committed)."""

    def __init__(self, settings: Settings) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.letters: list[Letter] = []
        self._consumer = Consumer(
            settings.kafka.client_config(
                **{"group.id": f"dl-{uuid.uuid4().hex}", "isolation.level": "read_committed"}
            )
        )
        topic = Topics(settings.namespace).dead_letters
        self._consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])

    def read(self) -> list[Letter]:
        while (msg := self._consumer.poll(0.2)) is not None:
            if not msg.error():
                headers = {k: (v or b"").decode(errors="replace") for k, v in msg.headers() or []}
                self.letters.append(Letter(msg.key(), msg.value(), headers))
        return self.letters

    def wait(self, check: Callable[[list[Letter]], Any], timeout_s: float, what: str) -> Any:
        """What ``check`` returns of the letters so far, once that is truthy."""
        return wait_for(lambda: check(self.read()), timeout_s, what, every_s=0)

    def close(self) -> None:
        self._consumer.close()


def topic_exists(settings: Settings, topic: str) -> bool:
    from confluent_kafka.admin import AdminClient

    return topic in AdminClient(settings.kafka.client_config()).list_topics(timeout=10).topics


def restarts(settings: Settings) -> dict[str, int]:
    """Restarts per worker so far, as the supervisor counts them."""
    return {w.name: w.restarts for w in Fleet(settings).workers()}


def kafka_describe(bootstrap: str, group: str) -> dict[tuple[str, int], dict[str, str]]:
    """The rows Apache Kafka's ConsumerGroupCommand (kafka-consumer-groups) prints for ``group``,
    run from the local broker's jars (skips when the broker came from elsewhere)."""
    import subprocess

    from conftest import test_settings  # conftest imports this module: not at its top

    from agon.errors import BrokerError
    from agon.settings import REPO_ROOT
    from agon.streams.local.broker import LocalBroker

    broker = LocalBroker(test_settings(REPO_ROOT / ".agon-test"))
    if not broker.has_jars():
        pytest.skip(
            f"no Kafka jars under {broker.libs} (the broker came from elsewhere) to run kafka-consumer-groups"
        )
    try:
        java = broker.java()
    except BrokerError as exc:
        pytest.skip(f"kafka-consumer-groups needs Java: {exc}")
    proc = subprocess.run(
        [java, "-cp", str(broker.libs / "*"), "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"]
        + ["--bootstrap-server", bootstrap, "--describe", "--group", group],
        capture_output=True,
        text=True,
        timeout=40,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines() if line.strip()]
    header = next(cells for cells in lines if cells[:2] == ["GROUP", "TOPIC"])
    assert header == [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]
    found = {}
    for cells in lines:
        if cells[0] == group and len(cells) == len(header):
            row = dict(zip(header, cells, strict=True))
            found[(row["TOPIC"], int(row["PARTITION"]))] = row
    return found
