"""Shared fixtures: one real Kafka broker per test session, a unique namespace per test.

The broker is, in order of preference: the one at AGON_KAFKA_BOOTSTRAP; a
testcontainers Kafka where a Docker engine answers; the local launcher
(deploy/local, Maven Central jars) on ports 19092/19093 under .agon-test/.

The schema registry, for the tests that want one, is the one at
AGON_SCHEMA_REGISTRY_URL, else Apicurio from the local launcher on 18081 under
.agon-test/. With AGON_TEST_WIRE_FORMAT=confluent every test runs with it: agon then
writes Confluent's wire format (`make test-registry`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import TEST_PORT

from agon.settings import REPO_ROOT, Settings


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    given = os.environ.get("AGON_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.3.1").with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    from agon.streams.local.broker import LocalBroker

    broker = LocalBroker(test_settings(REPO_ROOT / ".agon-test"))
    ours = not broker.status().reachable  # never stop a broker another session started
    status = broker.up(progress=lambda line: None)
    try:
        yield status.bootstrap
    finally:
        if ours:
            broker.down()


REGISTRY_PORT = 18081


@pytest.fixture(scope="session")
def schema_registry(kafka_bootstrap: str) -> Iterator[str]:
    """The URL of the session's Confluent-compatible schema registry."""
    given = os.environ.get("AGON_SCHEMA_REGISTRY_URL")
    if given:
        yield given
        return
    from agon.streams.local.registry import LocalRegistry

    registry = LocalRegistry(
        test_settings(
            REPO_ROOT / ".agon-test",
            AGON_KAFKA_BOOTSTRAP=kafka_bootstrap,
            AGON_REGISTRY_PORT=str(REGISTRY_PORT),
            AGON_REGISTRY_MANAGEMENT_PORT=str(REGISTRY_PORT + 1),
        )
    )
    ours = not registry.status().reachable  # never stop a registry another session started
    if ours:
        from agon.errors import RegistryError
        from agon.streams.local.registry import find_java

        try:
            find_java(registry.cfg.java)
        except RegistryError as exc:  # say which Java is missing; in the registry's own run, fail
            if os.environ.get("AGON_TEST_WIRE_FORMAT") == "confluent":
                raise
            pytest.skip(str(exc))
    status = registry.up(progress=lambda line: None)
    try:
        yield status.url
    finally:
        if ours:
            registry.down()


@pytest.fixture(scope="session", autouse=True)
def wire_format(request: pytest.FixtureRequest) -> Iterator[str]:
    """``single-object`` (the default), or ``confluent`` with AGON_TEST_WIRE_FORMAT=confluent:
    then AGON_SCHEMA_REGISTRY_URL names the session's registry for every test and worker."""
    wanted = os.environ.get("AGON_TEST_WIRE_FORMAT", "single-object")
    if wanted not in ("single-object", "confluent"):
        raise pytest.UsageError(f"AGON_TEST_WIRE_FORMAT={wanted!r}: single-object or confluent")
    if wanted == "single-object":
        yield wanted
        return
    url = request.getfixturevalue("schema_registry")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AGON_SCHEMA_REGISTRY_URL", url)
        yield wanted


def test_settings(home: Path, **env: str) -> Settings:
    """Settings for the test broker under ``home``, with AGON_* overrides given as keywords."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AGON_HOME", str(home))
        mp.setenv("AGON_BROKER_PORT", str(TEST_PORT))
        mp.setenv("AGON_BROKER_CONTROLLER_PORT", str(TEST_PORT + 1))
        for key, value in env.items():
            mp.setenv(key, value)
        return Settings()


test_settings.__test__ = False  # a helper, not a test


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def agon_env(
    kafka_bootstrap: str, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """AGON_* variables for this test (set in os.environ too, so workers inherit them)."""
    env = {
        "AGON_HOME": str(tmp_path / "home"),
        "AGON_NAMESPACE": namespace,
        "AGON_GATEWAY_ENABLED": "false",  # the gateway's own tests turn it on
        "AGON_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "AGON_KAFKA_PARTITIONS": "4",
        "AGON_BROKER_PORT": str(TEST_PORT),
        "AGON_BROKER_CONTROLLER_PORT": str(TEST_PORT + 1),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def settings(agon_env: dict[str, str]) -> Settings:
    return Settings()
