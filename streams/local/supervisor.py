"""The supervisor of one namespace's workers on this machine.

It keeps ``fleet.json`` true: ``{"workers": {"moderator": 2, ...}}`` asks for
workers ``moderator-0`` and ``moderator-1``. Every tick it re-reads that file
(so `agon up` or an autoscaler only rewrites it), starts missing workers,
restarts dead ones after an exponential back-off per slot, stops workers whose
index is no longer wanted, and records what runs in ``supervisor.json``.
Run it as ``python -m agon.streams.local.supervisor`` (what ``Fleet.up`` does).
"""

from __future__ import annotations

import faulthandler
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from agon import procs
from agon.deadline import wait_until
from agon.files import read_pid, write_atomically
from agon.settings import Settings
from agon.streams import metrics
from agon.streams.local.autoscaler import Autoscaler
from agon.streams.local.files import (
    READY_MARK,
    FleetFiles,
    describe_exit,
    is_worker,
    settings_fingerprint,
    stop_signal,
    worker_command,
)
from agon.streams.local.reports import ChangedFile, slot_states, targets
from agon.streams.local.slots import Backoff, Slot

__all__ = ["Backoff", "Supervisor", "main"]

START_MARK = "--- agon supervisor: starting "  # written into a worker's log before each start

log = logging.getLogger("agon.supervisor")

TARGETS_EVERY_S = 1.0  # how often the Prometheus targets file is brought up to date


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        *,
        tick_s: float = 0.1,
        stop_timeout_s: float = 20.0,
        backoff: Callable[[], Backoff] = Backoff,
        command: Callable[[str, int], list[str]] = worker_command,
    ) -> None:
        self.settings = settings
        self.files = FleetFiles(settings)
        self.roster = settings.supervised
        self.fingerprint = settings_fingerprint(settings)
        self.tick_s = tick_s
        self.stop_timeout_s = stop_timeout_s
        self.new_backoff = backoff
        self.command = command
        self.slots: dict[str, Slot] = {}
        self.desired: dict[str, int] = {}
        self.stopping = False
        self.started_at = time.time()
        self._ignored: set[str] = set()
        self._state = ChangedFile(self.files.state)
        self._targets = ChangedFile(self.files.targets)
        self.autoscaler: Autoscaler | None = None
        self._autoscale = False  # fleet.json's "autoscale", as last read
        self._targets_at = 0.0

    # the loop

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT; 0 also when another supervisor already runs."""
        self.files.run_dir.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.files.lock, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by workers
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another supervisor runs for %s; leaving it be", self.files.run_dir)
            return 0
        write_atomically(self.files.supervisor_pid, str(os.getpid()))
        metrics.announce(self.files.run_dir, metrics.serve(0))  # the autoscaler's metrics
        log.info("supervisor %d started for %s", os.getpid(), self.files.run_dir)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.adopt()
        try:
            while not self.stopping:
                try:
                    self.step()
                except OSError:  # a full disk or fd table must not end supervision
                    log.exception("supervisor step failed; trying again")
                time.sleep(self.tick_s)
        finally:
            if self.autoscaler is not None:
                self.autoscaler.stop()
            self.stop_all()
            self.write_state(stopped=True)
            self.write_targets()
            if read_pid(self.files.supervisor_pid) == os.getpid():
                self.files.supervisor_pid.unlink(missing_ok=True)
            log.info("supervisor %d stopped", os.getpid())
            os.close(lock)
        return 0

    def _on_signal(self, signum: int, frame: object) -> None:
        log.info("%s received: stopping every worker", signal.Signals(signum).name)
        self.stopping = True

    def step(self) -> None:
        now = time.monotonic()
        self.desired = self.read_desired()
        self.autoscale(now)
        self.reap(now)
        self.scale(now)
        self.scan_ready()
        self.write_state()
        if now - self._targets_at >= TARGETS_EVERY_S:
            self._targets_at = now
            self.write_targets()

    def autoscale(self, now: float) -> None:
        """With ``"autoscale": true`` in fleet.json, set the worker counts from inbox lag."""
        if not self._autoscale:
            if self.autoscaler is not None:
                log.info("autoscaling off: worker counts stay as fleet.json says")
                self.autoscaler.stop()
                self.autoscaler = None
            return
        if self.autoscaler is None:
            log.info("autoscaling on: %s", self.settings.autoscale.model_dump())
            self.autoscaler = Autoscaler(self.settings)
        busy = {
            s.agent
            for s in self.slots.values()
            if s.stopping_since is not None or s.pid is None or s.ready_at is None
        }
        busy |= {a for a, n in self.desired.items() if sum(s.agent == a for s in self.slots.values()) < n}
        decisions = self.autoscaler.decide(self.desired, now, busy)
        for decision in decisions:
            log.info("autoscale %s", decision.describe())
            self.desired[decision.agent] = decision.target
        if decisions:
            self.files.write_desired(self.desired, autoscale=True)
        for agent, n in self.desired.items():
            metrics.WORKERS.labels(agent).set(n)

    def read_desired(self) -> dict[str, int]:
        got, autoscale = self.files.read_fleet()
        if got is None:
            return self.desired  # missing or being replaced: keep what we had
        self._autoscale = autoscale
        unknown = set(got) - set(self.roster)
        for agent in unknown - self._ignored:
            log.warning("fleet.json names %r, which is not in this supervisor's roster; ignored", agent)
        self._ignored = unknown
        return {a: got[a] for a in self.roster if a in got}

    def wanted(self, slot: Slot) -> bool:
        return slot.index < self.desired.get(slot.agent, 0)

    # children

    def adopt(self) -> None:
        """Take over live workers that an earlier supervisor (or an older agon) started."""
        for path in self.files.worker_pid_files():
            agent, _, index = path.stem.rpartition("-")
            pid = read_pid(path)
            if not index.isdigit() or pid is None or not is_worker(pid, agent, int(index)):
                path.unlink(missing_ok=True)
                continue
            since = procs.started_at(pid) or time.time()
            slot = Slot(
                agent,
                int(index),
                self.new_backoff(),
                pid=pid,
                started_at=since,
                started_mono=time.monotonic() - (time.time() - since),
                runs=1,
            )
            slot.scanned = self._last_start_offset(self.files.log(agent, slot.index))
            self.slots[slot.name] = slot
            log.info("adopted %s (pid %d)", slot.name, pid)

    def _last_start_offset(self, path: Path) -> int:
        try:
            data = path.read_bytes()
        except OSError:
            return 0
        return max(0, data.rfind(START_MARK.encode()))

    def reap(self, now: float) -> None:
        for slot in list(self.slots.values()):
            if slot.pid is None:
                continue
            ended, code = slot.exit_code()
            if not ended:
                if now - slot.started_mono >= slot.backoff.reset_after_s:
                    slot.backoff.streak = 0  # it has proven itself: no longer "keeps dying"
                continue
            uptime = now - slot.started_mono
            self._forget_pid(slot)
            slot.last_exit = code
            if slot.stopping_since is not None or not self.wanted(slot):
                log.info("%s stopped (%s)", slot.name, describe_exit(code))
                del self.slots[slot.name]
                continue
            delay = slot.backoff.after_exit(uptime)
            self._retry(slot, now, delay)
            log.warning(
                "%s (pid %s) exited (%s) after %.1f s; restarting in %.1f s",
                slot.name,
                slot.last_pid,
                describe_exit(code),
                uptime,
                delay,
            )

    @staticmethod
    def _retry(slot: Slot, now: float, delay: float) -> None:
        slot.retry_at, slot.retry_at_wall = now + delay, time.time() + delay

    def _forget_pid(self, slot: Slot) -> None:
        pid_file = self.files.pid_file(slot.agent, slot.index)
        if read_pid(pid_file) == slot.pid:
            pid_file.unlink(missing_ok=True)
        slot.last_pid = slot.pid
        slot.proc, slot.pid, slot.ready_at = None, None, None

    def scale(self, now: float) -> None:
        for agent, n in self.desired.items():
            for index in range(n):
                slot = self.slots.get(f"{agent}-{index}")
                if slot is None:
                    slot = self.slots[f"{agent}-{index}"] = Slot(agent, index, self.new_backoff())
                if slot.pid is None and slot.stopping_since is None and now >= slot.retry_at:
                    self.spawn(slot, now)
        for slot in list(self.slots.values()):
            if slot.stopping_since is not None:  # reaped (and then started again if wanted) later
                if now - slot.stopping_since > self.stop_timeout_s:
                    stop_signal(slot.pid, signal.SIGKILL)
            elif self.wanted(slot):
                continue
            elif slot.pid is None:
                del self.slots[slot.name]
            else:
                log.info("%s (pid %d) no longer wanted: stopping it", slot.name, slot.pid)
                slot.stopping_since = now
                stop_signal(slot.pid)

    def spawn(self, slot: Slot, now: float) -> None:
        path = self.files.log(slot.agent, slot.index)
        path.parent.mkdir(parents=True, exist_ok=True)
        restart = f" (restart {slot.runs})" if slot.runs else ""
        try:
            with open(path, "ab") as out:
                out.write(f"{START_MARK}{slot.name}{restart} ---\n".encode())
                out.flush()
                slot.scanned = out.tell()
                proc = subprocess.Popen(
                    self.command(slot.agent, slot.index),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        except OSError as exc:
            delay = slot.backoff.after_exit(0.0)
            self._retry(slot, now, delay)
            log.error("cannot start %s: %s; trying again in %.1f s", slot.name, exc, delay)
            return
        slot.proc, slot.pid, slot.ready_at, slot.retry_at_wall = proc, proc.pid, None, None
        slot.started_at, slot.started_mono = time.time(), now
        slot.runs += 1
        write_atomically(self.files.pid_file(slot.agent, slot.index), str(proc.pid))
        log.info("started %s (pid %d)%s", slot.name, proc.pid, restart)

    def scan_ready(self) -> None:
        mark = READY_MARK.encode()
        for slot in self.slots.values():
            if slot.pid is None or slot.ready_at is not None:
                continue
            try:
                with open(self.files.log(slot.agent, slot.index), "rb") as f:
                    f.seek(slot.scanned)
                    data = f.read()
            except OSError:
                continue
            if mark in data:
                slot.ready_at = time.time()
                log.info("%s (pid %d) ready", slot.name, slot.pid)
            else:  # keep an overlap: the mark may be half written
                slot.scanned += max(0, len(data) - len(mark))

    def stop_all(self) -> None:
        running = [s for s in self.slots.values() if s.pid is not None]
        for slot in running:
            stop_signal(slot.pid)
        wait_until(lambda: all(s.exit_code()[0] for s in running), self.stop_timeout_s)
        for slot in running:
            ended, code = slot.exit_code()
            if not ended:
                log.warning(
                    "%s (pid %d) ignored SIGTERM for %.0f s: killing it",
                    slot.name,
                    slot.pid,
                    self.stop_timeout_s,
                )
                stop_signal(slot.pid, signal.SIGKILL)
                if slot.proc is not None:
                    code = slot.proc.wait()
            log.info("%s stopped (%s)", slot.name, describe_exit(code))
            slot.last_exit = code
            self._forget_pid(slot)

    # what others read

    def write_targets(self) -> None:
        self._targets.write(targets(self.slots.values(), self.settings, self.files))

    def write_state(self, stopped: bool = False) -> None:
        state = {
            "pid": os.getpid(),
            "started_at": self.started_at,
            "stopped": stopped,
            "settings": self.fingerprint,
            "roster": self.roster,
            "desired": self.desired,
            "autoscale": self.autoscaler is not None,
            "autoscaler": self.autoscaler.last if self.autoscaler is not None else None,
            "slots": slot_states(self.slots.values(), self.files, stopped),
        }
        self._state.write(json.dumps(state, indent=2) + "\n")


def main() -> int:
    from pydantic import ValidationError

    faulthandler.enable()  # a crash in a C library (librdkafka) leaves its stack in the log
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings()
    except ValidationError as exc:
        log.error("invalid settings: %s", exc)
        return 2
    return Supervisor(settings).run()


if __name__ == "__main__":
    sys.exit(main())
