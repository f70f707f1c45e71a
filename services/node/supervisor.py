"""Supervision of the service processes: start, watch, restart with back-off.

A crashed service is restarted after 1, 2, 4 ... 60 s (reset once it has run
for a minute), and every start, exit and restart is written to a state file
that `citeplus status` shows. A service that exits at once, repeatedly, keeps
its last lines of log in the state so that the operator sees why.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# Start order: the edge last, so that nothing is pushed before its readers run; the
# common API right after publish, whose federation server it reads through.
PIPELINE = ("publish", "api", "energy-analytics", "normalise", "anonymise", "ingest")
MAX_BACKOFF_S = 60.0
HEALTHY_AFTER_S = 60.0
WORKER_SEPARATOR = "#"


def worker_label(service: str, index: int) -> str:
    """The name a worker goes by in the state file, its log file and `citeplus status`:
    the service's own name for the first worker (one worker: nothing changes), then
    ``anonymise#1``, ``anonymise#2`` ..."""
    return service if index == 0 else f"{service}{WORKER_SEPARATOR}{index}"


def split_label(label: str) -> tuple[str, int]:
    """(service, worker index) of a label made by :func:`worker_label`."""
    service, _, index = label.partition(WORKER_SEPARATOR)
    return service, int(index or 0)


def worker_labels(services: list[str], workers: dict[str, int] | None = None) -> list[str]:
    """Every worker of ``services`` in start order, ``workers[service]`` of each (1 if absent)."""
    counts = workers or {}
    return [worker_label(name, index) for name in services for index in range(counts.get(name, 1))]


def worker_args(label: str, workers: dict[str, int], metrics_port: int | None) -> list[str]:
    """What makes a worker distinct from its siblings: its index in ``--instance`` (its
    transactional id and client.id: unique per worker, the same across its restarts,
    so a restarted worker fences its own zombie), its own metrics port; ingest workers
    share the HTTP port (SO_REUSEPORT) and divide the sources' rate limits.

    Every ingest worker, the first included, gets its own metrics port: the shared
    HTTP port's /metrics answers for whichever worker the kernel picks. A stage's
    first worker already has its own (node.yaml's port of the stage)."""
    service, index = split_label(label)
    count = workers.get(service, 1)
    if count <= 1 and index == 0:
        return []
    args = ["--instance", str(index)]
    if service == "ingest":
        args += ["--reuse-port", "--workers", str(count)]
    if metrics_port is not None and (index > 0 or service == "ingest"):
        args += ["--metrics-port", str(metrics_port)]
    return args


@dataclass
class ServiceState:
    name: str
    pid: int | None = None
    started_at: float | None = None
    restarts: int = 0
    last_exit: int | None = None
    last_exit_at: float | None = None
    next_start_at: float | None = None
    last_log_lines: list[str] = field(default_factory=list)


def tail(path: Path, lines: int = 12) -> list[str]:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 8192))
            return handle.read().decode("utf-8", "replace").splitlines()[-lines:]
    except OSError:
        return []


class Supervisor:
    def __init__(
        self,
        services: list[str],
        *,
        log_dir: Path,
        state_file: Path,
        env: dict[str, str] | None = None,
        extra_args: dict[str, list[str]] | None = None,
        hold_dir: Path | None = None,
        workers: dict[str, int] | None = None,
        metrics_port: Callable[[str, int], int] | None = None,
    ):
        """``services`` are service names; ``workers`` how many processes each runs
        (1 when absent), supervised one by one under their :func:`worker_label`;
        ``metrics_port(service, index)`` gives a worker's own /metrics port."""
        self.hold_dir = hold_dir
        self.workers = dict(workers or {})
        self.metrics_port = metrics_port
        services = worker_labels(services, self.workers)
        self.services = services
        self.log_dir = log_dir
        self.state_file = state_file
        self.env = {**os.environ, **(env or {})}
        self.extra_args = extra_args or {}
        self.state = {name: ServiceState(name) for name in services}
        self._processes: dict[str, subprocess.Popen] = {}
        self._backoff = dict.fromkeys(services, 1.0)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.state_file.parent.mkdir(parents=True, exist_ok=True)

    def command(self, name: str) -> list[str]:
        service, index = split_label(name)
        port = self.metrics_port(service, index) if self.metrics_port else None
        return [
            sys.executable,
            "-m",
            "services.cli",
            "service",
            service,
            *self.extra_args.get(service, []),
            *worker_args(name, self.workers, port),
        ]

    def held(self, name: str) -> bool:
        """An operator holds the service stopped (every worker of it)."""
        return self.hold_dir is not None and (self.hold_dir / split_label(name)[0]).exists()

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _start(self, name: str) -> None:
        handle = self.log_file(name).open("ab")
        process = subprocess.Popen(
            self.command(name),
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        handle.close()
        self._processes[name] = process
        state = self.state[name]
        state.pid, state.started_at, state.next_start_at = process.pid, time.time(), None
        log.info("service started", extra={"service": name, "pid": process.pid})

    def _check(self, name: str, now: float) -> None:
        state = self.state[name]
        process = self._processes.get(name)
        if process is not None:
            code = process.poll()
            if code is None:
                if state.started_at and now - state.started_at > HEALTHY_AFTER_S:
                    self._backoff[name] = 1.0
                return
            del self._processes[name]
            state.pid, state.last_exit, state.last_exit_at = None, code, now
            state.last_log_lines = tail(self.log_file(name))
            state.next_start_at = now + self._backoff[name]
            log.warning(
                "service exited; restarting",
                extra={"service": name, "code": code, "in_s": self._backoff[name]},
            )
            self._backoff[name] = min(MAX_BACKOFF_S, self._backoff[name] * 2)
            return
        if self.held(name):
            return  # an operator holds it stopped (citeplus replay)
        if state.next_start_at is None or now >= state.next_start_at:
            if state.started_at is not None:
                state.restarts += 1
            self._start(name)

    def write_state(self) -> None:
        payload = {
            "supervisor_pid": os.getpid(),
            "updated_at": time.time(),
            "services": [asdict(self.state[name]) for name in self.services],
            "workers": {name: count for name, count in self.workers.items() if count > 1},
        }
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(payload, indent=1))
        temporary.replace(self.state_file)

    def stop_service(self, name: str) -> None:
        process = self._processes.get(name)
        if process and process.poll() is None:
            process.send_signal(signal.SIGTERM)

    def run(self, stop: threading.Event) -> None:
        for name in self.services:
            self._start(name)
            time.sleep(0.5)  # stagger: each service provisions topics and schemas at start
        while not stop.wait(0.5):
            now = time.time()
            for name in self.services:
                if self.held(name):
                    self.stop_service(name)
                self._check(name, now)
            self.write_state()
        self.stop_all()
        self.write_state()

    def stop_all(self, grace_s: float = 30.0) -> None:
        """SIGTERM every service (the edge first), wait, then SIGKILL what remains."""
        for name in reversed(self.services):
            process = self._processes.get(name)
            if process and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for name, process in list(self._processes.items()):
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("service did not stop in time; killing", extra={"service": name})
                process.kill()
                process.wait(10)
            self.state[name].pid = None
        self._processes.clear()


def read_state(state_file: Path) -> dict:
    try:
        return json.loads(state_file.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
