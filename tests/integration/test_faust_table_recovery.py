"""A faust table survives the loss of its RocksDB directory: it is rebuilt from the changelog.

The worker (faust_counter_app.py, built with agon.streams.app.make_app) runs as a real
subprocess against the real broker; the test produces keyed events with
confluent-kafka, stops the worker gracefully, deletes its data directory, starts it
again and checks the counts are back exactly, then that counting goes on from there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from helpers import wait_for

from agon.schemas.topics import Topics
from agon.settings import REPO_ROOT, Settings
from agon.streams.admin import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SCRIPT = Path(__file__).with_name("faust_counter_app.py")
READY_MARK = "[^Worker]: Ready"
REPORT = "COUNTS "
PARTITIONS = 3
# events per key in the first phase: distinct counts, so a swapped or lost key shows
FIRST = {"alpha": 3, "bravo": 5, "charlie": 1, "delta": 8, "echo": 2, "foxtrot": 4}
MORE = 2  # events per key after the restart
TABLE = "counts"  # as in faust_counter_app.py


def _report(line: str) -> dict[str, int]:
    """The table in a report line (faust logs print() output: '[...] [WARNING] COUNTS {...}')."""
    return json.loads(line.partition(REPORT)[2])


class WorkerProcess:
    """One faust worker subprocess; its output is collected line by line in a thread."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "worker", "-l", "info"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with self.log.open("a") as out:
            for line in self.proc.stdout:
                out.write(line)
                out.flush()
                with self._lock:
                    self.lines.append(line.rstrip("\n"))

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def wait_line(
        self, match: Callable[[str], bool], timeout_s: float, what: str, start: int = 0
    ) -> tuple[int, str]:
        """The first line at or after index ``start`` that ``match``es, as (index, line)."""
        deadline = time.monotonic() + timeout_s
        while True:
            lines = self.snapshot()
            for i in range(start, len(lines)):
                if match(lines[i]):
                    return i, lines[i]
            if self.proc.poll() is not None:
                pytest.fail(
                    f"the worker exited with code {self.proc.returncode} while waiting "
                    f"for {what}; last lines:\n" + "\n".join(lines[-25:])
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"timed out after {timeout_s:.0f} s waiting for {what}; last lines:\n"
                    + "\n".join(lines[-25:])
                )
            time.sleep(0.1)

    def counts_after(self, start: int, timeout_s: float = 30.0) -> tuple[int, dict[str, int]]:
        """The first table report printed at or after line ``start``."""
        i, line = self.wait_line(lambda ln: REPORT in ln, timeout_s, "a table report", start)
        return i, _report(line)

    def latest_counts(self) -> dict[str, int] | None:
        for line in reversed(self.snapshot()):
            if REPORT in line:
                return _report(line)
        return None

    def stop(self, timeout_s: float = 40.0) -> int:
        """SIGTERM, as a supervisor would; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the worker ignored SIGTERM for {timeout_s:.0f} s")
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def workers():
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()


def produce(bootstrap: str, topic: str, per_key: dict[str, int]) -> None:
    """Interleave the keys, as a live stream would; murmur2 like the Java client and faust."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "enable.idempotence": True}
    )
    for round_ in range(max(per_key.values())):
        for key, n in per_key.items():
            if round_ < n:
                producer.produce(topic, key=key.encode(), value=f"{key}-{round_}".encode())
    assert producer.flush(30) == 0, "records left unsent"


def all_committed(bootstrap: str, group: str, topic: str) -> bool:
    """True when the group's committed offsets reach the end of every partition of ``topic``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(PARTITIONS)
        }
    finally:
        consumer.close()
    return all(committed[p] == ends[p] for p in range(PARTITIONS))


def test_table_is_rebuilt_from_changelog_after_losing_rocksdb(
    agon_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    monkeypatch.setenv("AGON_KAFKA_PARTITIONS", str(PARTITIONS))
    settings = Settings()
    bootstrap = settings.kafka.bootstrap
    topic = f"{settings.namespace}.counter-events"
    group = Topics(settings.namespace).app_id("counter")
    datadir = settings.home_dir / "workers" / settings.namespace / "counter-0"
    ensure_topics(bootstrap, {topic: PARTITIONS})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start() -> WorkerProcess:
        worker = WorkerProcess(env, tmp_path / "worker.log")
        workers.append(worker)
        worker.wait_line(lambda ln: READY_MARK in ln, 60, "the worker's Ready line")
        return worker

    # -- first life: count, commit, stop gracefully ----------------------------------------
    worker = start()
    _, initial = worker.counts_after(0)
    assert initial == {}, "a fresh namespace must start with an empty table"
    produce(bootstrap, topic, FIRST)
    wait_for(lambda: worker.latest_counts() == FIRST, 30, f"counts {FIRST}")
    wait_for(lambda: all_committed(bootstrap, group, topic), 30, "offsets committed to the end")
    assert any(datadir.rglob(f"{TABLE}-*.db/rocksdict-config.json")), (
        f"no rocksdict database of table {TABLE!r} under {datadir}"
    )
    assert worker.stop() == 0

    # -- lose the local state --------------------------------------------------------------
    shutil.rmtree(datadir)
    assert not datadir.exists()

    # -- second life: the table comes back from the changelog, exactly ---------------------
    worker = start()
    _, recovered = worker.counts_after(0)
    assert recovered == FIRST, "the first report after recovery differs from before the restart"
    assert datadir.exists(), "the restarted worker did not rebuild its RocksDB directory"

    # counting continues from the recovered values; old events are not processed again
    produce(bootstrap, topic, dict.fromkeys(FIRST, MORE))
    expected = {key: n + MORE for key, n in FIRST.items()}
    wait_for(lambda: worker.latest_counts() == expected, 30, f"counts {expected}")
    wait_for(lambda: all_committed(bootstrap, group, topic), 30, "offsets committed to the end")
    _, final = worker.counts_after(len(worker.snapshot()))
    assert final == expected, "counts moved after every event was processed and committed"
    assert worker.stop() == 0
