"""Where a chaos run happens: the agents it runs, its own free ports, exactly its AGON_*
variables, and Kafka's jars from an earlier launcher run."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

AGENTS = ("moderator", "team-a", "team-b")
DEBATERS = ("team-a", "team-b")
KAFKA_VERSION = "4.3.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def agon_environment(env: dict[str, str]) -> Iterator[None]:
    """Exactly ``env`` as the AGON_* variables, for Settings() and the processes we start."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("AGON_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("AGON_")]:
            del os.environ[key]
        os.environ.update(saved)


def link_jars(home: Path) -> None:
    """Reuse Kafka's jars from an earlier launcher run rather than fetch them again."""
    libs = home / "kafka" / KAFKA_VERSION / "libs"
    for base in (REPO / ".agon-test", REPO / ".agon", Path.home() / ".agon"):
        source = base / "kafka" / KAFKA_VERSION / "libs"
        if (source / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
            libs.parent.mkdir(parents=True, exist_ok=True)
            libs.symlink_to(source, target_is_directory=True)
            return
