"""A real single-node Apache Kafka broker (KRaft), from Maven Central jars, no Docker.

``deploy/local/pom.xml`` names the jars; Maven resolves them once into
``$AGON_HOME/kafka/<version>/libs`` (and ~/.m2). Storage is formatted once, the
broker runs in the background with its pid, config and log under
``$AGON_HOME/kafka/``.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from agon.deadline import wait_until
from agon.errors import BrokerError
from agon.procs import port_taken
from agon.settings import REPO_ROOT, Settings
from agon.streams.local import daemon

__all__ = ["BrokerStatus", "LocalBroker", "answers_metadata"]

POM = REPO_ROOT / "deploy" / "local" / "pom.xml"

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=false
# a single node: internal topics cannot have more replicas than brokers
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# consumer groups start without the 3 s wait for more members
group.initial.rebalance.delay.ms=0
group.consumer.min.session.timeout.ms=1000
group.min.session.timeout.ms=1000
transaction.max.timeout.ms=900000
log.retention.hours=168
log.segment.bytes=67108864
"""

LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    reachable: bool
    pid: int | None
    bootstrap: str
    detail: str


class LocalBroker:
    """Fetch, format, start, stop and inspect the local broker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cfg = settings.broker
        self.root = settings.home_dir / "kafka"
        self.libs = self.root / self.cfg.kafka_version / "libs"
        self.data = self.root / "data"
        self.pid_file = self.root / "broker.pid"
        self.log_file = self.root / "broker.log"
        self.bootstrap = f"{self.cfg.host}:{self.cfg.port}"

    # -- prerequisites -------------------------------------------------------------
    def java(self) -> str:
        java = shutil.which(self.cfg.java)
        if java is None:
            raise BrokerError(
                f"Java not found ({self.cfg.java!r} is not on PATH): Kafka {self.cfg.kafka_version} "
                "needs Java 17+ (Debian: apt-get install openjdk-17-jre-headless)"
            )
        out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
        match = re.search(r'version "(\d+)', out)
        if match is None or int(match.group(1)) < 17:
            raise BrokerError(f"Kafka {self.cfg.kafka_version} needs Java 17+, found: {out.splitlines()[:1]}")
        return java

    def has_jars(self) -> bool:
        return (self.libs / f"kafka_2.13-{self.cfg.kafka_version}.jar").exists()

    def fetch_jars(self) -> Path:
        """Resolve the broker's jars from Maven Central once; later calls are free."""
        if self.has_jars():
            return self.libs
        if not POM.exists():
            raise BrokerError(
                f"the local broker is fetched with {POM}, which is not here: "
                "run it from a checkout of agon, or point AGON_KAFKA_BOOTSTRAP at a broker"
            )
        mvn = shutil.which(self.cfg.mvn)
        if mvn is None:
            raise BrokerError(
                "Maven not found (mvn is not on PATH): it fetches Kafka's jars from Maven Central "
                "(Debian: apt-get install maven)"
            )
        tmp = self.libs.with_name("libs.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-Dkafka.version={self.cfg.kafka_version}",
            f"-DoutputDirectory={tmp}",
            "-DincludeScope=runtime",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise BrokerError("Maven could not fetch Kafka's jars: " + " | ".join(tail))
        tmp.rename(self.libs)
        return self.libs

    # -- lifecycle -----------------------------------------------------------------
    def _java_cmd(self, main: str, *args: str) -> list[str]:
        return [
            self.java(),
            f"-Xmx{self.cfg.heap}",
            f"-Xms{self.cfg.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
            "-cp",
            str(self.libs / "*"),
            main,
            *args,
        ]

    def _write_config(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        props = self.root / "server.properties"
        props.write_text(
            SERVER_PROPERTIES.format(
                host=self.cfg.host,
                port=self.cfg.port,
                controller_port=self.cfg.controller_port,
                data=self.data,
            )
        )
        (self.root / "log4j2.properties").write_text(LOG4J2.format(log=self.log_file))
        return props

    def _format(self, props: Path) -> None:
        if (self.data / "meta.properties").exists():
            return
        cluster_id = "-"
        while cluster_id.startswith("-"):  # StorageTool takes a leading '-' for an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        proc = subprocess.run(
            self._java_cmd("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)),
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise BrokerError(
                "formatting KRaft storage failed: " + (proc.stdout + proc.stderr).strip()[-400:]
            )

    def up(self, progress=print) -> BrokerStatus:
        """Start the broker unless it runs; return once it answers metadata requests."""
        status = self.status()
        if status.reachable:
            return status
        if status.running:  # our process lives but does not answer yet: wait for it
            return self._wait_ready(status.pid)
        for port in (self.cfg.port, self.cfg.controller_port):
            if port_taken(self.cfg.host, port):
                raise BrokerError(
                    f"port {self.cfg.host}:{port} is taken by another process "
                    "that is not a Kafka broker; free it or set AGON_BROKER_PORT"
                )
        self.java()
        if not self.has_jars():
            progress(f"fetching Kafka {self.cfg.kafka_version} jars from Maven Central (once)…")
        self.fetch_jars()
        props = self._write_config()
        self._format(props)
        progress(f"starting Kafka {self.cfg.kafka_version} on {self.bootstrap} (log: {self.log_file})…")
        stdout = open(self.root / "broker.out", "ab")
        proc = subprocess.Popen(
            self._java_cmd("kafka.Kafka", str(props)),
            stdout=stdout,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid_file.write_text(str(proc.pid))
        return self._wait_ready(proc.pid, proc)

    def _wait_ready(self, pid: int | None, proc: subprocess.Popen | None = None) -> BrokerStatus:
        def answers() -> bool:
            if proc is not None and proc.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {proc.returncode} at start: {self._last_error()}"
                )
            return answers_metadata(self.bootstrap, 1.0)

        if wait_until(answers, self.cfg.start_timeout_s, every_s=0.3):
            return self.status()
        raise BrokerError(
            f"the broker did not answer on {self.bootstrap} within "
            f"{self.cfg.start_timeout_s:.0f} s; see {self.log_file}"
        )

    def _last_error(self) -> str:
        for name in ("broker.out", "broker.log"):
            path = self.root / name
            if path.exists():
                lines = [
                    ln
                    for ln in path.read_text(errors="replace").splitlines()
                    if "ERROR" in ln or "Exception" in ln
                ]
                if lines:
                    return lines[-1][:300]
        return f"see {self.log_file}"

    def down(self, timeout_s: float = 30.0) -> bool:
        """Stop our broker (SIGTERM, then SIGKILL after timeout). False if none ran."""
        return daemon.stop(self.pid_file, timeout_s)

    def status(self) -> BrokerStatus:
        pid = self._pid()
        reachable = answers_metadata(self.bootstrap, 1.5)
        detail = daemon.describe(pid, reachable, self.bootstrap, "broker")
        return BrokerStatus(bool(pid), reachable, pid, self.bootstrap, detail)

    def _pid(self) -> int | None:
        return daemon.live_pid(self.pid_file)


def answers_metadata(bootstrap: str, timeout_s: float) -> bool:
    """True when a Kafka broker at ``bootstrap`` answers a metadata request."""
    host, _, port = bootstrap.rpartition(":")
    if not port_taken(host or "127.0.0.1", int(port)):
        return False
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "logger": _SILENT})
    try:
        admin.list_topics(timeout=timeout_s)
        return True
    except Exception:  # KafkaException of any kind: it did not answer
        return False


class _Silent:
    def log(self, *args, **kwargs) -> None:
        pass

    def __getattr__(self, name):
        return self.log


_SILENT = _Silent()
