"""`agon broker up|down|status` on a broker of the test's own (own AGON_HOME, own free ports).

The session broker (19092) is never touched: every test here has its own home under
tmp_path and two ports the kernel handed out as free.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from agon.connectors.cli.main import main
from agon.procs import alive, port_taken
from agon.settings import Settings
from agon.streams.local.broker import LocalBroker


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now (all bound at once, then released)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture
def broker_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """AGON_* for a second broker: a home in tmp_path, two free ports; nothing else inherited."""
    for key in [k for k in os.environ if k.startswith("AGON_")]:
        monkeypatch.delenv(key)
    port, controller = free_ports(2)
    env = {
        "AGON_HOME": str(tmp_path / "home"),
        "AGON_BROKER_PORT": str(port),
        "AGON_BROKER_CONTROLLER_PORT": str(controller),
        "AGON_BROKER_START_TIMEOUT_S": "60",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def agon(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    """The single line a failed command writes to stderr (no traceback, no second line)."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("agon: ")
    return lines[0]


@pytest.fixture
def own_broker(broker_env: dict[str, str]) -> Iterator[LocalBroker]:
    """The test's broker; stopped at teardown whatever happened (it lives in tmp_path)."""
    broker = LocalBroker(Settings())
    try:
        yield broker
    finally:
        broker.down()


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_broker_lifecycle_through_the_cli(
    own_broker: LocalBroker, broker_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap = f"127.0.0.1:{broker_env['AGON_BROKER_PORT']}"

    code, out, _ = agon(capsys, "broker", "status")
    assert code != 0
    assert "not running" in out

    started = time.monotonic()
    code, out, err = agon(capsys, "broker", "up")
    first_up_s = time.monotonic() - started
    assert code == 0, err
    match = re.search(r"running \(pid (\d+)\) on (\S+)", out)
    assert match and match.group(2) == bootstrap, out
    pid = int(match.group(1))
    assert alive(pid)
    # a real broker answers there: create nothing, just ask for metadata
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    assert metadata.brokers and [b.port for b in metadata.brokers.values()] == [
        int(broker_env["AGON_BROKER_PORT"])
    ]
    assert "starting Kafka" in err  # progress goes to stderr, the result to stdout

    started = time.monotonic()
    code, out, err = agon(capsys, "broker", "up")
    assert code == 0
    assert time.monotonic() - started < 5, "a second `up` must not start anything"
    assert f"running (pid {pid})" in out
    assert err == ""

    code, out, _ = agon(capsys, "broker", "status")
    assert code == 0
    assert f"running (pid {pid}) on {bootstrap}" in out

    code, out, _ = agon(capsys, "broker", "down")
    assert code == 0
    assert "broker stopped" in out
    assert not alive(pid)
    assert not port_taken("127.0.0.1", int(broker_env["AGON_BROKER_PORT"]))

    code, out, _ = agon(capsys, "broker", "status")
    assert code != 0
    assert "not running" in out

    code, out, _ = agon(capsys, "broker", "down")
    assert code == 0
    assert "no broker started by agon was running" in out
    print(f"first `up` (fetch jars from ~/.m2, format, start) took {first_up_s:.1f} s")


@pytest.mark.parametrize("which", ["AGON_BROKER_PORT", "AGON_BROKER_CONTROLLER_PORT"])
def test_up_on_a_taken_port_fails_with_one_line(
    broker_env: dict[str, str], which: str, capsys: pytest.CaptureFixture[str]
) -> None:
    port = int(broker_env[which])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        code, _, err = agon(capsys, "broker", "up")
    assert code == 1
    line = error_line(err)
    assert str(port) in line and "taken" in line
    assert not (Path(broker_env["AGON_HOME"]) / "kafka" / "broker.pid").exists()


def test_up_without_java_fails_with_one_line(
    broker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGON_BROKER_JAVA", "/nonexistent/java")
    code, _, err = agon(capsys, "broker", "up")
    assert code == 1
    line = error_line(err)
    assert "Java" in line and "/nonexistent/java" in line


def test_up_without_maven_on_a_home_without_jars_fails_with_one_line(
    broker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGON_BROKER_MVN", "/nonexistent/mvn")
    code, _, err = agon(capsys, "broker", "up")
    assert code == 1
    assert "Traceback" not in err
    errors = [ln for ln in err.splitlines() if ln.startswith("agon: ")]
    assert len(errors) == 1, err
    assert "Maven" in errors[0]
    # what came before it is the progress line saying what was being attempted
    version = Settings().broker.kafka_version
    assert [ln for ln in err.strip().splitlines() if not ln.startswith("agon: ")] == [
        f"fetching Kafka {version} jars from Maven Central (once)…"
    ]
    libs = Path(broker_env["AGON_HOME"]) / "kafka"
    assert not any(libs.rglob("*.jar")), "no jars can have been fetched without Maven"
