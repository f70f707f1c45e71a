"""The bookkeeping of a server that runs in the background for one state directory.

The Kafka broker and the schema registry differ in what they run and in how
they are asked whether they are ready, not in how they are kept: a pid file is
the only record of a server that outlives the command which started it, a run
file remembers where it answers, its log's tail is what explains a failed start,
and a lock keeps two commands from starting it twice. That part lives here once;
each server module passes in its own command line, probe and wording.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.infra.process import (
    is_alive,
    locked,
    port_in_use,
    progress_to_stderr,
    read_pid,
    remove_file,
    rotate_log,
    runs_with,
    stop_process,
    tail,
    wait_until,
    write_pid,
)
from services.runtime.errors import InfrastructureError


@dataclass(frozen=True)
class ManagedServer:
    """One kind of background server: where its files are, what it is called, how to probe it.

    Paths and markers are functions rather than values because the state
    directory is read at every call (tests switch it with an environment
    variable). The several names exist because each message keeps the wording
    it had before this class, which people and scripts may search for.
    """

    directory: Callable[[], Path]  # its own directory under the state directory
    stem: str  # names its files (broker.pid, .json, .log) and itself ("the Cité+ broker")
    marker: Callable[[], str]  # an argument only this directory's server runs with
    answers: Callable[[str], bool]  # is the server at this address ready for clients?
    address_key: str  # where the run file and the status keep the address ("bootstrap")
    host: str
    start_timeout_s: float
    stop_grace_s: float
    log: logging.Logger  # the server module's, so its lines keep their logger name
    # Wording: "Kafka broker" in progress lines and start and stop errors, "Kafka"
    # in the stale pid file warning, "Kafka broker" again (but "registry") in the
    # error about a server that runs and does not answer; "on" a host:port, "at" a URL.
    name: str
    stale_name: str
    deaf_name: str
    preposition: str

    @property
    def pid_file(self) -> Path:
        return self.directory() / f"{self.stem}.pid"

    @property
    def run_file(self) -> Path:
        return self.directory() / f"{self.stem}.json"

    @property
    def log_file(self) -> Path:
        return self.directory() / f"{self.stem}.log"

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Held while starting or stopping, so two commands never race on one server."""
        with locked(self.directory() / ".lock"):
            yield

    def running_pid(self, *, clean_stale: bool) -> int | None:
        """Pid of this state directory's server, if it runs.

        A pid file can outlive its server and the pid be recycled by another
        program; only a process started with our marker counts, so a stranger
        is never signalled. ``clean_stale`` removes such leftovers (under the lock).
        """
        pid = read_pid(self.pid_file)
        if pid is not None and runs_with(pid, self.marker()):
            return pid
        if clean_stale and self.pid_file.exists():
            what = f"pid {pid} is not running" if pid else "unreadable"
            self.log.warning(
                "removed stale %s pid file %s (%s)", self.stale_name, self.pid_file, what
            )
            self._forget()
        return None

    def recorded_run(self) -> dict[str, Any]:
        """What the last start wrote to the run file ({} when there is none)."""
        try:
            return json.loads(self.run_file.read_text())
        except (OSError, ValueError):
            return {}

    def refuse_busy_port(self, port: int, role: str, remedy: str) -> None:
        """Fail before launching when another program holds ``port``.

        The server would fail too, but only after seconds of JVM start-up and
        with an error buried in its log; this one names the port and the way out.
        """
        if port_in_use(port, self.host):
            raise InfrastructureError(
                f"port {port} on {self.host} ({role}) is already in use by another program, "
                f"not by the Cité+ {self.stem} of {self.directory()}. Stop that program, or "
                f"pick {remedy}."
            )

    def adopt(self, pid: int, address: str) -> str:
        """Return ``address`` of the server that already runs, once it answers.

        It may still be booting (another command started it a moment ago), hence
        the wait; one that dies or never answers is an error that shows its log.
        """
        if not wait_until(
            lambda: self.answers(address),
            self.start_timeout_s,
            give_up=lambda: not is_alive(pid),
        ):
            raise InfrastructureError(
                f"the {self.deaf_name} (pid {pid}) runs but does not answer {self.preposition} "
                f"{address}; restart it (citeplus infra down; citeplus infra up). Last lines of "
                f"{self.log_file}:\n{tail(self.log_file)}"
            )
        self.log.info(
            "%s already running (pid %d) %s %s", self.name, pid, self.preposition, address
        )
        return address

    def launch(
        self, cmd: Sequence[str], address: str, record: Mapping[str, Any], starting: str
    ) -> str:
        """Run ``cmd`` in the background and return ``address`` once it answers there.

        The pid and run files are written before the wait, so a command
        interrupted meanwhile still leaves a server the next one finds and can
        stop. A server that dies or stays deaf is stopped and forgotten, leaving
        only its log, whose tail the error carries. ``record`` is what the run
        file keeps besides pid and address; ``starting`` says what starts where.
        """
        proc = self.spawn(cmd, address, record, starting)
        return self.await_ready(proc, address)

    def spawn(
        self, cmd: Sequence[str], address: str, record: Mapping[str, Any], starting: str
    ) -> subprocess.Popen[bytes]:
        """Run ``cmd`` in the background, pid and run files written, without waiting.

        Servers that only answer together (the brokers of a KRaft quorum: one alone
        elects no controller) are all spawned first, then awaited one by one.
        """
        directory = self.directory()
        directory.mkdir(parents=True, exist_ok=True)
        log_file = self.log_file
        rotate_log(log_file)
        self.log.info("starting %s (log: %s)...", starting, log_file)
        with log_file.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=directory,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the terminal (and Ctrl-C) that started it
            )
        write_pid(self.pid_file, proc.pid)
        self.run_file.write_text(json.dumps({"pid": proc.pid, self.address_key: address, **record}))
        return proc

    def await_ready(self, proc: subprocess.Popen[bytes], address: str) -> str:
        """``address`` once the spawned server answers there; stopped, forgotten and
        reported with its log's tail if it dies or stays deaf."""
        started = time.monotonic()
        if wait_until(
            lambda: self.answers(address),
            self.start_timeout_s,
            give_up=lambda: proc.poll() is not None,
        ):
            self.log.info(
                "%s up %s %s (pid %d) after %.1f s",
                self.name,
                self.preposition,
                address,
                proc.pid,
                time.monotonic() - started,
            )
            return address
        code = proc.poll()
        if code is None:
            stop_process(proc.pid, grace=5.0)
            why = f"did not answer within {self.start_timeout_s:.0f} s"
        else:
            why = f"exited with code {code}"
        self._forget()
        raise InfrastructureError(
            f"the {self.name} {why} {self.preposition} {address}. "
            f"Last lines of {self.log_file}:\n{tail(self.log_file)}"
        )

    def kill(self) -> int | None:
        """SIGKILL the running server at once (fault tests: a crash, not a shutdown).

        Its pid and run files stay, as a crash leaves them; the next start finds
        them stale and cleans up. Returns the pid killed, or None."""
        with self.lock():
            pid = self.running_pid(clean_stale=False)
            if pid is None:
                return None
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not is_alive(pid), 10.0, interval=0.05)
            return pid

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the grace period; a no-op when it is not running."""
        progress_to_stderr()
        with self.lock():
            pid = self.running_pid(clean_stale=True)
            if pid is None:
                self.log.info("%s is not running", self.name)
                return
            self.log.info("stopping %s (pid %d)...", self.name, pid)
            clean = stop_process(pid, grace=self.stop_grace_s)
            self._forget()
            if clean:
                self.log.info("%s stopped", self.name)
            else:
                self.log.warning(
                    "%s did not stop within %.0f s and was killed", self.name, self.stop_grace_s
                )

    def status(self, kind: str, version: str, recorded: Sequence[str] = ()) -> dict[str, Any]:
        """What runs, where, and whether it answers; changes nothing (stale files stay).

        ``kind`` and ``version`` head the result; ``recorded`` names run file
        entries reported after the address. The key order is what
        ``citeplus infra status --json`` prints.
        """
        pid = read_pid(self.pid_file)
        running = pid is not None and runs_with(pid, self.marker())
        run = self.recorded_run() if running else {}
        address = run.get(self.address_key)
        return {
            "name": kind,
            "version": version,
            "running": running,
            "pid": pid if running else None,
            "stale_pid": pid if pid is not None and not running else None,
            self.address_key: address,
            **{key: run.get(key) for key in recorded},
            "answering": bool(address) and self.answers(address),
            "log": str(self.log_file),
            "state_dir": str(self.directory()),
        }

    def _forget(self) -> None:
        remove_file(self.pid_file)
        remove_file(self.run_file)
