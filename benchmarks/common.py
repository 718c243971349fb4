"""What every benchmark here shares: the machine it ran on, a broker of its own, progress lines,
and its block in README.md."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

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
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[:1]
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "java": java[0] if java else None,
        "kernel": platform.release(),
    }


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
