"""Moderator recovery after kill -9, and its idle CPU, with 0 and with 10,000 ended debates.

For each history size, in a namespace of its own on one broker:

1. A fleet (moderator, team-a, team-b) runs one real debate to its end on the offline model:
   the template. Its records in the moderator's two changelogs (``debates``: every state write,
   then the tombstone; ``ended``: the marker) are what one ended debate leaves behind.
2. The history: the template's changelog records copied once per debate, with a new id each, to
   the partition the moderator would have written (``partition_for`` of the id), in one
   transaction per debate (the moderator's own are smaller), so every changelog partition ends
   in a commit marker as it does in service. Non-transactional copies instead end recovery by
   another path in faust, after which a restarted moderator was seen never to read again:
   not agon's path, and not yet understood.
3. The broker compacts the changelogs, as it does on its own once a debate's records leave the
   active segment (five minutes) and its tombstone expires (ten): the benchmark lowers
   ``segment.ms`` and ``delete.retention.ms`` for a moment, waits until Kafka's own
   ``LogDirsCommand`` reports the sizes settled, and restores agon's settings. Before that, one
   kill measures the *burst* case: the history is still uncompacted, as it is for debates that
   ended in the last minutes.
4. Kills: SIGKILL the moderator, at once produce a 1-round request, and take the broker
   timestamp of its ``DebateStarted``: kill -> restart -> table restore -> first processed
   request. The supervisor restarts the worker; its local tables are discarded at start
   (exactly-once), so every restart restores the changelogs.
5. CPU: with no debate running, the moderator process's CPU time (``/proc/<pid>/stat``) over a
   window: what its timers (the deadline check among them) cost per second.

    python benchmarks/recovery.py                      # 0 and 10,000, results/recovery.json
    python benchmarks/recovery.py --history 2000 --kills 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from agon.connectors.transcript import follow, new_request, send_request
from agon.procs import cpu_seconds
from agon.schemas import Topics, partition_for
from agon.settings import Settings
from agon.streams.local.broker import LocalBroker
from agon.streams.local.fleet import Fleet
from agon.streams.local.supervisor import Backoff

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]  # run as a script: the benchmarks package beside it
from benchmarks.common import (  # noqa: E402
    alter_config,
    describe_config,
    log,
    machine,
    own_broker,
    replace_block,
)

# isort: split
# benchmarks.common put the tests' helpers and the chaos harness on sys.path
from helpers import wait_for  # noqa: E402
from records import read_all  # noqa: E402

RESULTS = HERE / "results" / "recovery.json"
MOTION = "AI's impact on the job market is positive"
TABLES = ("debates", "ended")
SETTLE_S = 45.0  # changelog sizes unchanged this long: compaction has finished


class Bench:
    def __init__(
        self, home: Path, bootstrap: str, history: int, partitions: int, settle_s: float = SETTLE_S
    ) -> None:
        self.history = history
        self.settle_s = settle_s
        self.env = {
            "AGON_HOME": str(home),
            "AGON_NAMESPACE": f"rb{history}-{uuid.uuid4().hex[:6]}",
            "AGON_GATEWAY_ENABLED": "false",  # not measured here
            "AGON_KAFKA_BOOTSTRAP": bootstrap,
            "AGON_KAFKA_PARTITIONS": str(partitions),
        }
        os.environ.update(self.env)  # the supervisor and its workers inherit it
        self.settings = Settings()
        self.topics = Topics(self.settings.namespace)
        self.fleet = Fleet(self.settings)
        app = self.topics.app_id(self.settings.moderator)
        self.changelogs = {t: f"{app}-{t}-changelog" for t in TABLES}

    # -- the history -------------------------------------------------------------------
    def template(self) -> tuple[str, dict[str, list[tuple[int, bytes, bytes | None]]]]:
        req = new_request(MOTION, rounds=8, requested_by="benchmarks/recovery.py")
        send_request(self.settings, req)
        events = list(follow(self.settings, req["debate_id"], wait_s=60, idle_timeout_s=60))
        ended = events[-1][1]
        log(f"template {req['debate_id']}: {ended['reason']} after {ended['rounds_completed']} rounds")
        key = json.dumps(req["debate_id"]).encode()
        records = {}
        for table, topic in self.changelogs.items():
            recs = read_all(self.settings.kafka.bootstrap, lambda name, t=topic: name == t)[topic]
            records[table] = [(r.partition, r.key, r.value) for r in recs if r.key == key]
        return req["debate_id"], records

    def producer(self) -> Producer:
        """A transactional producer: the moderator writes its changelogs in transactions, so
        each partition ends in a commit marker, as it does in service."""
        producer = Producer(
            self.settings.kafka.client_config(
                **{"linger.ms": 50, "transactional.id": f"benchmark-{uuid.uuid4().hex}"}
            )
        )
        producer.init_transactions(30)
        return producer

    def seed(self, template_id: str, records: dict[str, list[tuple[int, bytes, bytes | None]]]) -> int:
        """Copy the template's changelog records once per debate of the history, one
        transaction per debate."""
        producer = self.producer()
        sent, old = 0, template_id.encode()
        for i in range(self.history):
            debate_id = f"h{i:06d}-{uuid.uuid4().hex[:8]}"
            partition = partition_for(debate_id.encode(), self.settings.kafka.partitions)
            producer.begin_transaction()
            for table, recs in records.items():
                for _, key, value in recs:
                    new = value.replace(old, debate_id.encode()) if value is not None else None
                    if table == "ended" and new is not None:
                        marker = json.loads(new)
                        new = json.dumps({**marker, "at": int(time.time() * 1000)}).encode()
                    producer.produce(
                        self.changelogs[table],
                        key=key.replace(old, debate_id.encode()),
                        value=new,
                        partition=partition,
                    )
                    sent += 1
            producer.commit_transaction(60)
        return sent

    def compact(self, broker: LocalBroker) -> dict[str, int]:
        """Let the broker compact the changelogs now; wait until their sizes settle."""
        admin = AdminClient(self.settings.kafka.client_config())
        quick = {"segment.ms": "1000", "delete.retention.ms": "0", "min.cleanable.dirty.ratio": "0.01"}
        before = {t: describe_config(admin, topic, quick) for t, topic in self.changelogs.items()}
        for topic in self.changelogs.values():
            alter_config(admin, topic, quick)
        time.sleep(1.5)
        # a harmless record (a tombstone for a key that never existed) rolls each active segment
        producer = self.producer()
        for _ in range(2):  # a second roll lets the cleaner drop the tombstones it kept once
            producer.begin_transaction()
            for topic in self.changelogs.values():
                for p in range(self.settings.kafka.partitions):
                    producer.produce(topic, key=b'"benchmark-roll"', value=None, partition=p)
            producer.commit_transaction(30)
            time.sleep(1.5)
        sizes, stable_since = log_sizes(broker, self.changelogs.values()), time.monotonic()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and time.monotonic() - stable_since < self.settle_s:
            time.sleep(min(10.0, self.settle_s / 3))
            now = log_sizes(broker, self.changelogs.values())
            if now != sizes:
                sizes, stable_since = now, time.monotonic()
                log(f"compacting: {sizes}")
        for table, topic in self.changelogs.items():
            alter_config(admin, topic, before[table])
        return sizes

    # -- measurements --------------------------------------------------------------------
    def moderator_pid(self) -> int:
        def ready() -> int | None:
            w = self.fleet.worker(self.settings.moderator)
            return w.pid if w.pid and w.ready else None

        return wait_for(ready, 180, "the moderator to be ready", every_s=0.1)

    def kill_and_probe(self) -> float:
        pid = self.moderator_pid()
        # the supervisor restarts a worker that ran 15 s at once, sooner ones with a back-off
        started_at = self.fleet.worker(self.settings.moderator).started_at or 0
        time.sleep(max(0.0, started_at + Backoff.reset_after_s + 1 - time.time()))
        probe = new_request(MOTION, rounds=1, requested_by="benchmarks/recovery.py")
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        send_request(self.settings, probe)
        started = first_record(
            self.settings,
            self.topics.debate(probe["debate_id"]),
            wait_s=float(os.environ.get("PROBE_WAIT_S", 600)),
        )
        self.probes.append(probe["debate_id"])
        return round(started / 1000 - killed_at, 3)

    def idle_cpu(self, window_s: float) -> float:
        """CPU milliseconds per second of the moderator process with no debate running."""
        for debate_id in self.probes:  # every probe has ended: no deadline is pending
            list(follow(self.settings, debate_id, wait_s=60, idle_timeout_s=120))
        pid = self.moderator_pid()
        time.sleep(3)
        start, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(window_s)
        used, elapsed = cpu_seconds(pid) - start, time.monotonic() - t0
        return round(used * 1000 / elapsed, 2)

    probes: list[str]

    def run(self, broker: LocalBroker, kills: int, window_s: float) -> dict[str, Any]:
        self.probes = []
        log(f"history {self.history}: namespace {self.settings.namespace}")
        self.fleet.up(["moderator", "team-a", "team-b"], progress=lambda line: None)
        result: dict[str, Any] = {"ended_debates": self.history}
        try:
            template_id, records = self.template()
            result["records_per_debate"] = {t: len(r) for t, r in records.items()}
            if self.history:
                t0 = time.monotonic()
                result["records_seeded"] = self.seed(template_id, records)
                log(f"seeded {result['records_seeded']} records in {time.monotonic() - t0:.1f} s")
                result["changelog_bytes_uncompacted"] = log_sizes(broker, self.changelogs.values())
                result["burst_recovery_s"] = self.kill_and_probe()
                log(f"burst (uncompacted) recovery: {result['burst_recovery_s']} s")
                result["changelog_bytes"] = self.compact(broker)
            else:
                result["changelog_bytes"] = log_sizes(broker, self.changelogs.values())
            samples = []
            for i in range(kills):
                samples.append(self.kill_and_probe())
                log(f"kill {i + 1}/{kills}: recovered in {samples[-1]} s")
            result["recovery_s"] = {
                "p50": statistics.median(samples),
                "min": min(samples),
                "max": max(samples),
                "samples": samples,
            }
            result["idle_cpu_ms_per_s"] = self.idle_cpu(window_s)
            log(f"idle CPU: {result['idle_cpu_ms_per_s']} ms/s")
        finally:
            self.fleet.down()
        return result


# -- Kafka, from outside -------------------------------------------------------------------
def first_record(settings: Settings, topic: str, wait_s: float) -> int:
    """The broker timestamp (ms) of the first committed record on ``topic``."""
    consumer = Consumer(
        settings.kafka.client_config(
            **{"group.id": f"bench-{uuid.uuid4().hex}", "isolation.level": "read_committed"}
        )
    )
    try:
        wait_for(lambda: topic in consumer.list_topics(timeout=10).topics, wait_s, topic, every_s=0.05)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                return msg.timestamp()[1]
        raise RuntimeError(f"nothing on {topic} within {wait_s} s")
    finally:
        consumer.close()


def log_sizes(broker: LocalBroker, topics: Any) -> dict[str, int]:
    """Bytes on disk per topic, as Kafka's own LogDirsCommand reports them."""
    topics = list(topics)
    cmd = broker._java_cmd(
        "org.apache.kafka.tools.LogDirsCommand",
        "--bootstrap-server",
        broker.bootstrap,
        "--describe",
        "--topic-list",
        ",".join(topics),
    )
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    report = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    sizes = dict.fromkeys(topics, 0)
    for b in report["brokers"]:
        for d in b["logDirs"]:
            for p in d["partitions"]:
                sizes[p["partition"].rsplit("-", 1)[0]] += p["size"]
    return {t.rsplit("-", 2)[-2]: n for t, n in sizes.items()}


# -- the run -------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--history", type=int, default=10_000, help="ended debates in the larger history")
    p.add_argument("--kills", type=int, default=5, help="SIGKILLs per history size")
    p.add_argument("--cpu-window", type=float, default=30.0, help="seconds of idle CPU sampling")
    p.add_argument("--workdir", help="broker and worker state and logs (default: a temp dir)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--update-readme", action="store_true", help="rewrite the recovery section of README.md")
    args = p.parse_args(argv)

    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    home = Path(args.workdir or tempfile.mkdtemp(prefix="agon-recovery-"))
    broker = own_broker(home)
    try:
        measured = measure(broker, home, args.history, args.kills, args.cpu_window)
    finally:
        broker.down()
    result = {
        "benchmark": "moderator recovery after SIGKILL vs. ended debates",
        "started": started,
        "machine": machine(),
        **measured,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("recovery_ratio_p50", "idle_cpu_ratio")}))
    if args.update_readme:
        update_readme(result)
    return 0 if result["recovery_ratio_p50"] <= 1.5 else 1


def measure(
    broker: LocalBroker,
    home: Path,
    history: int,
    kills: int,
    cpu_window_s: float,
    settle_s: float = SETTLE_S,
    partitions: int = 4,
) -> dict[str, Any]:
    """Recovery and idle CPU with no history, then with ``history`` ended debates, each in a
    namespace of its own on ``broker``."""
    runs = [
        Bench(home, broker.bootstrap, h, partitions, settle_s).run(broker, kills, cpu_window_s)
        for h in (0, history)
    ]
    base, big = runs[0]["recovery_s"]["p50"], runs[1]["recovery_s"]["p50"]
    return {
        "config": {
            "kills": kills,
            "cpu_window_s": cpu_window_s,
            "partitions": partitions,
            "compaction_settle_s": settle_s,
        },
        "runs": runs,
        "recovery_ratio_p50": round(big / base, 3),
        "idle_cpu_ratio": round(runs[1]["idle_cpu_ms_per_s"] / max(runs[0]["idle_cpu_ms_per_s"], 0.01), 3),
    }


def update_readme(r: dict[str, Any]) -> None:
    m, (zero, big) = r["machine"], r["runs"]

    def row(run: dict[str, Any]) -> str:
        rec, size = run["recovery_s"], run["changelog_bytes"]
        return (
            f"| {run['ended_debates']:,} | {rec['p50']} | {rec['min']}–{rec['max']} | "
            f"{run.get('burst_recovery_s', '–')} | {size['debates']:,} / {size['ended']:,} | "
            f"{run['idle_cpu_ms_per_s']} |"
        )

    lines = [
        f"Latest run: {r['started']}, {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, "
        f"Python {m['python']}, {m['java']}; {r['config']['kills']} kills per history.",
        "",
        "| ended debates | recovery p50 (s) | min–max (s) | burst, uncompacted (s) "
        "| changelog bytes (debates / ended) | idle CPU (ms/s) |",
        "| --- | --- | --- | --- | --- | --- |",
        row(zero),
        row(big),
        "",
        f"Recovery ratio (p50, {big['ended_debates']:,} vs 0): **{r['recovery_ratio_p50']}** (target ≤ 1.5). "
        f"Idle CPU ratio: {r['idle_cpu_ratio']}. One ended 8-round debate writes "
        f"{big['records_per_debate']['debates']} records to `debates` and "
        f"{big['records_per_debate']['ended']} to `ended`; {big.get('records_seeded', 0):,} were seeded.",
    ]
    replace_block("recovery", lines)


if __name__ == "__main__":
    sys.exit(main())
