"""A real schema registry on 127.0.0.1, no Docker: Apicurio Registry from Maven Central.

Maven fetches ``io.apicurio:apicurio-registry-app:<version>:tar.gz:all`` (a Quarkus
fast-jar, ~150 MiB) once into its cache; it is unpacked under
``$AGON_HOME/registry/<version>/`` and runs from there with its storage in Kafka
(``kafkasql``: a journal topic on agon's broker), so schemas and their ids survive a
restart. Its Confluent-compatible API is ``http://host:port/apis/ccompat/v7``
(:attr:`agon.settings.RegistrySettings.url`). Apicurio 3 needs Java 21+; the default Java
here may be older, so :func:`find_java` looks beyond PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from agon.deadline import wait_until
from agon.errors import RegistryError
from agon.procs import port_taken
from agon.settings import Settings
from agon.streams.local import daemon
from agon.streams.local.broker import answers_metadata

__all__ = ["LocalRegistry", "RegistryStatus", "find_java", "java_version"]

ARTIFACT = "io.apicurio:apicurio-registry-app:{version}:tar.gz:all"
MIN_JAVA = 21
_PROGRESS_EVERY_S = 3.0


def java_version(java: str) -> int | None:
    """The feature version of ``java`` (17, 21, 25), or None if it does not run."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)', out)
    return int(match.group(1)) if match else None


def find_java(configured: str = "", minimum: int = MIN_JAVA) -> str:
    """A Java of version ``minimum`` or newer: ``configured`` if given, else JAVA_HOME, PATH,
    then the JDKs under /usr/lib/jvm (newest first). :class:`RegistryError` names what was
    found when none will do."""
    if configured:
        candidates = [configured]
    else:
        candidates = []
        if os.environ.get("JAVA_HOME"):
            candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
        if shutil.which("java"):
            candidates.append(shutil.which("java") or "java")
        candidates += sorted((str(p) for p in Path("/usr/lib/jvm").glob("*/bin/java")), reverse=True)
    found = []
    best: tuple[int, str] | None = None
    for java in dict.fromkeys(candidates):
        version = java_version(java)
        found.append(f"{java} ({version or 'does not run'})")
        if version and version >= minimum and (best is None or version > best[0]):
            best = (version, java)
    if best is not None:
        return best[1]
    raise RegistryError(
        f"Apicurio Registry needs Java {minimum}+, and none was found: "
        + ("; ".join(found) or "no java at all")
        + f". Install one (Debian: apt-get install openjdk-{minimum}-jre-headless, or a Temurin JDK) "
        "or point AGON_REGISTRY_JAVA at its bin/java"
    )


@dataclass(frozen=True)
class RegistryStatus:
    running: bool
    reachable: bool
    pid: int | None
    url: str
    detail: str


class LocalRegistry:
    """Fetch, start, stop and inspect the local registry."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cfg = settings.registry
        self.root = settings.home_dir / "registry"
        self.app = self.root / self.cfg.version
        self.pid_file = self.root / "registry.pid"
        self.log_file = self.root / "registry.log"
        self.url = self.cfg.url

    # -- fetching ------------------------------------------------------------------
    def has_app(self) -> bool:
        return (self.app / "quarkus-run.jar").exists()

    def fetch(self, progress: Callable[[str], None] = print) -> Path:
        """Fetch the app from Maven Central once (Maven keeps it in its cache), unpack it."""
        if self.has_app():
            return self.app
        mvn = shutil.which(self.cfg.mvn)
        if mvn is None:
            raise RegistryError(
                "Maven not found (mvn is not on PATH): it fetches Apicurio Registry from Maven Central "
                "(Debian: apt-get install maven)"
            )
        artifact = ARTIFACT.format(version=self.cfg.version)
        tmp = self.root / f"{self.cfg.version}.download"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        cmd = [mvn, "-B", "-q", "dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={tmp}"]
        cache = (
            Path.home()
            / ".m2"
            / "repository"
            / "io"
            / "apicurio"
            / "apicurio-registry-app"
            / self.cfg.version
        )
        progress(f"fetching Apicurio Registry {self.cfg.version} from Maven Central (once, ~150 MiB)…")
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        while proc.poll() is None:
            try:
                proc.wait(timeout=_PROGRESS_EVERY_S)
            except subprocess.TimeoutExpired:
                size = sum(f.stat().st_size for f in cache.glob("*") if f.is_file()) if cache.exists() else 0
                progress(f"  {size / 2**20:.0f} MiB after {time.monotonic() - started:.0f} s…")
        output = proc.stdout.read() if proc.stdout else ""
        tarballs = list(tmp.glob("*.tar.gz"))
        if proc.returncode != 0 or not tarballs:
            tail = output.strip().splitlines()[-5:]
            raise RegistryError(f"Maven could not fetch {artifact}: " + " | ".join(tail))
        unpacked = self.root / f"{self.cfg.version}.partial"
        shutil.rmtree(unpacked, ignore_errors=True)
        with tarfile.open(tarballs[0]) as tar:
            tar.extractall(unpacked, filter="data")
        shutil.rmtree(tmp, ignore_errors=True)
        unpacked.rename(self.app)
        progress(f"  fetched in {time.monotonic() - started:.0f} s")
        return self.app

    # -- lifecycle -----------------------------------------------------------------
    def command(self, java: str) -> list[str]:
        journal = self.cfg.journal_topic
        props = {
            "quarkus.http.host": self.cfg.host,
            "quarkus.http.port": self.cfg.port,
            "quarkus.management.host": self.cfg.host,
            "quarkus.management.port": self.cfg.management_port,
            "quarkus.log.level": "INFO",
            "apicurio.storage.kind": "kafkasql",
            "apicurio.kafkasql.bootstrap.servers": self.settings.kafka.bootstrap,
            "apicurio.kafkasql.topic": journal,
            "apicurio.kafkasql.snapshots.topic": f"{journal}-snapshots",
        }
        return [
            java,
            f"-Xmx{self.cfg.heap}",
            "-XX:+UseSerialGC",  # one small heap: the parallel collectors' threads buy nothing here
            *(f"-D{k}={v}" for k, v in props.items()),
            "-jar",
            str(self.app / "quarkus-run.jar"),
        ]

    def up(self, progress: Callable[[str], None] = print) -> RegistryStatus:
        """Start the registry unless it runs; return once its API answers."""
        status = self.status()
        if status.reachable:
            return status
        if status.running:
            return self._wait_ready(status.pid)
        for port in (self.cfg.port, self.cfg.management_port):
            if port_taken(self.cfg.host, port):
                raise RegistryError(
                    f"port {self.cfg.host}:{port} is taken by another process that is not agon's "
                    "registry; free it or set AGON_REGISTRY_PORT / AGON_REGISTRY_MANAGEMENT_PORT"
                )
        java = find_java(self.cfg.java)
        bootstrap = self.settings.kafka.bootstrap
        if not answers_metadata(bootstrap, 5.0):
            raise RegistryError(
                f"the registry keeps its schemas in Kafka, and no broker answers at {bootstrap}: "
                "start one (agon broker up) or set AGON_KAFKA_BOOTSTRAP"
            )
        self.fetch(progress)
        progress(
            f"starting Apicurio Registry {self.cfg.version} on {self.url} "
            f"(storage: Kafka topic {self.cfg.journal_topic}; log: {self.log_file})…"
        )
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                self.command(java),
                cwd=self.app,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        return self._wait_ready(proc.pid, proc)

    def _wait_ready(self, pid: int | None, proc: subprocess.Popen | None = None) -> RegistryStatus:
        def answers() -> bool:
            if proc is not None and proc.poll() is not None:
                raise RegistryError(
                    f"the registry exited with code {proc.returncode} at start: {self._last_error()}"
                )
            return _answers(self.url, 1.0)

        if wait_until(answers, self.cfg.start_timeout_s, every_s=0.5):
            return self.status()
        raise RegistryError(
            f"the registry did not answer on {self.url} within {self.cfg.start_timeout_s:.0f} s; "
            f"see {self.log_file}"
        )

    def _last_error(self) -> str:
        if self.log_file.exists():
            lines = [ln for ln in self.log_file.read_text(errors="replace").splitlines() if "ERROR" in ln]
            if lines:
                return lines[-1][:300]
        return f"see {self.log_file}"

    def down(self, timeout_s: float = 30.0) -> bool:
        """Stop our registry (SIGTERM, then SIGKILL after timeout). False if none ran."""
        return daemon.stop(self.pid_file, timeout_s)

    def status(self) -> RegistryStatus:
        pid = self._pid()
        reachable = _answers(self.url, 1.5)
        detail = daemon.describe(pid, reachable, self.url, "registry")
        return RegistryStatus(bool(pid), reachable, pid, self.url, detail)

    def _pid(self) -> int | None:
        return daemon.live_pid(self.pid_file)


def _answers(url: str, timeout_s: float) -> bool:
    """True when a Confluent-compatible registry answers at ``url``."""
    try:
        return httpx.get(f"{url}/subjects", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False
