"""Starting and stopping the node's supervisor in the background."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.runtime.config import NodeConfig


def node_dir(node: NodeConfig) -> Path:
    return node.state_dir / "node"


def pid_file(node: NodeConfig) -> Path:
    return node_dir(node) / "supervisor.pid"


def state_file(node: NodeConfig) -> Path:
    return node_dir(node) / "status.json"


def log_dir(node: NodeConfig) -> Path:
    return node.state_dir / "logs"


def hold_dir(node: NodeConfig) -> Path:
    """A file here named after a service keeps the supervisor from restarting it."""
    return node_dir(node) / "hold"


def supervisor_pid(node: NodeConfig) -> int | None:
    try:
        pid = int(pid_file(node).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pid_file(node).unlink(missing_ok=True)
        return None
    except PermissionError:
        return pid
    return pid


def start_supervisor(node: NodeConfig, services: list[str], workers: int | None = None) -> int:
    """Start `citeplus node supervise` detached; a running one is left alone.
    ``workers``: that many workers of each scalable stage (else node.yaml's replicas)."""
    running = supervisor_pid(node)
    if running:
        return running
    node_dir(node).mkdir(parents=True, exist_ok=True)
    log_dir(node).mkdir(parents=True, exist_ok=True)
    with (log_dir(node) / "supervisor.log").open("ab") as handle:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli",
                "node",
                "supervise",
                "--services",
                ",".join(services),
                *(["--workers", str(workers)] if workers is not None else []),
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pid_file(node).write_text(str(process.pid))
    return process.pid


def stop_supervisor(node: NodeConfig, timeout_s: float = 60.0) -> bool:
    pid = supervisor_pid(node)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
    pid_file(node).unlink(missing_ok=True)
    return True
