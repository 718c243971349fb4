"""What every benchmark here shares: the machine it ran on, a broker of its own, progress lines,
its block in README.md, and what it reads of the broker."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from agon.procs import meminfo_kb

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
# the tests' helpers and the chaos harness's record reader serve the benchmarks too
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE.parent / "tests" / "chaos")]


def machine() -> dict[str, object]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = meminfo_kb("MemTotal") or 0
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[:1]
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "java": java[0] if java else None,
        "kernel": platform.release(),
    }


def versions(kafka: str | None) -> dict[str, str | None]:
    """The releases a run measured: agon, its Kafka clients, and the broker (``kafka``, when known)."""
    import confluent_kafka

    found: dict[str, str | None] = {}
    for dist in ("agon", "faust-streaming", "aiokafka", "confluent-kafka"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    found["librdkafka"] = confluent_kafka.libversion()[0]
    found["kafka"] = kafka
    return found


def log(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def replace_block(name: str, lines: list[str]) -> None:
    """Put ``lines`` between README.md's ``<!-- name:begin -->`` and ``<!-- name:end -->``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = "\n".join([begin, *lines, end])
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    README.write_text(text)


def own_broker(home: Path):  # -> LocalBroker
    """Start a broker of the benchmark's own under ``home``, on free ports (broker, controller)."""
    from helpers import free_port

    from agon.settings import Settings
    from agon.streams.local.broker import LocalBroker

    port = free_port(span=2)
    os.environ.update(
        {"AGON_HOME": str(home), "AGON_BROKER_PORT": str(port), "AGON_BROKER_CONTROLLER_PORT": str(port + 1)}
    )
    broker = LocalBroker(Settings())
    broker.up(progress=log)
    return broker


# -- the broker's configuration ---------------------------------------------------------------
def describe_config(admin: AdminClient, topic: str, names: Iterable[str]) -> dict[str, str]:
    [future] = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
    entries = future.result(timeout=30)
    return {name: entries[name].value for name in names}


def alter_config(admin: AdminClient, topic: str, values: dict[str, str], kind: str = "TOPIC") -> None:
    """Set ``values`` on ``topic`` (or, with ``kind="BROKER"``, on the broker of that id)."""
    resource = ConfigResource(
        getattr(ConfigResource.Type, kind),
        topic,
        incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in values.items()
        ],
    )
    [future] = admin.incremental_alter_configs([resource]).values()
    future.result(timeout=30)


# -- figures ------------------------------------------------------------------------------------
def percentiles(values: Iterable[float], digits: int = 1) -> dict[str, Any]:
    """n, p50, p99 and max of ``values`` (nearest rank), rounded; {"n": 0} when there are none."""
    s = sorted(values)
    if not s:
        return {"n": 0}

    def rank(q: float) -> float:
        return round(s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))], digits)

    return {"n": len(s), "p50": rank(0.5), "p99": rank(0.99), "max": round(s[-1], digits)}
