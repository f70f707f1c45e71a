"""The whole-node harness leaves nothing running when a test is stopped half-way.

A node's daemons start in sessions of their own; a test stopped by pytest's timeout
while ``up`` waited once left service processes running. Here a daemon (with a child
that does not even carry the node's environment) is started the way ``citeplus up``
starts one, then ``up`` is interrupted as the timeout interrupts it: teardown must
kill the daemon's whole process group, and nothing of a neighbouring node."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testkit.local_node import LocalNode, node_processes

# A daemon that starts a child stripped of CITEPLUS_STATE, writes its pid, then waits.
DAEMON = """
import os, subprocess, sys, time
env = {k: v for k, v in os.environ.items() if k != "CITEPLUS_STATE"}
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env)
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(600)
"""


class Interrupted(BaseException):
    """What pytest's timeout raises in the test: not an Exception, so it is not caught."""


def start_daemon(state: Path) -> tuple[subprocess.Popen, Path]:
    marker = state / f"child-{time.monotonic_ns()}.pid"
    daemon = subprocess.Popen(
        [sys.executable, "-c", DAEMON, str(marker)],
        env={**os.environ, "CITEPLUS_STATE": str(state)},
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not (marker.exists() and marker.read_text()):
        assert time.monotonic() < deadline, "the daemon did not start its child"
        time.sleep(0.05)
    return daemon, marker


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def test_an_interrupted_up_kills_every_process_group_of_the_node(tmp_path: Path) -> None:
    mine, other = tmp_path / "node", tmp_path / "neighbour"
    mine.mkdir()
    other.mkdir()
    started: list[subprocess.Popen] = []

    class StoppedWhileStarting(LocalNode):
        def citeplus(self, *args: str, timeout: float = 600, check: bool = True):
            if args[0] == "up":  # the node's daemons start, then the timeout strikes
                started.append(start_daemon(self.state)[0])
                raise Interrupted()
            # `citeplus down` finds no state file of these daemons: it stops nothing.
            return subprocess.CompletedProcess(args, 0, "", "")

    neighbour, _ = start_daemon(other)
    try:
        with pytest.raises(Interrupted):
            StoppedWhileStarting(mine).up()
        [daemon] = started
        daemon.wait(timeout=60)  # killed (and reaped here, its parent)
        daemon_marker = next(mine.glob("child-*.pid"))
        child = int(daemon_marker.read_text())
        deadline = time.monotonic() + 60
        while alive(child) or node_processes(mine):
            assert time.monotonic() < deadline, "a process of the node outlived its teardown"
            time.sleep(0.05)
        assert neighbour.poll() is None and node_processes(other) == [neighbour.pid]
    finally:
        LocalNode(other).kill_leftovers()
        neighbour.wait(timeout=60)
