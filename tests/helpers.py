"""Helpers the tests share (import as ``from helpers import wait_for``)."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agon.settings import Settings
from agon.streams.local.fleet import Fleet

TEST_PORT = 19092  # the session broker's port when the local launcher runs it


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
    bootstrap: str, home: Path, agents: list[str] | None = None, workers: int = 1, **overrides: str
) -> Iterator[Settings]:
    """Start ``workers`` workers per agent (default: the roster) under a supervisor in a fresh
    namespace; stop them all afterwards."""
    env = {
        "AGON_HOME": str(home),
        "AGON_NAMESPACE": f"t{uuid.uuid4().hex[:10]}",
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
            fleet.up(agents, workers=workers, progress=lambda line: None)
            yield settings
        finally:
            fleet.down()
            logs = [fleet.files.supervisor_log] + [w.log for w in fleet.workers()]
            for log in logs:
                if log.exists() and os.environ.get("AGON_TEST_SHOW_LOGS"):
                    print(f"--- {log}\n{log.read_text()[-4000:]}")


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
