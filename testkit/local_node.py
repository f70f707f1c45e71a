"""A whole node on loopback with its own state directory and ports, driven
through the `citeplus` command as an operator would: for the whole-node tests
and the pipeline benchmark, which must not disturb a node already running.

The node's daemons (supervisor, services, broker, registry) each start in a session
of their own, so that they outlive the terminal that started them. A test that is
stopped half-way (pytest's timeout, Ctrl-C, a failing ``up``) must not leave them
running: teardown kills, group by group, every process that carries this node's
state directory in its environment, whatever ``citeplus down`` managed to stop."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pyarrow as pa

from services.node.supervisor import read_state
from services.publish.sql_users import basic_authorization, local_credentials
from services.warehouse.query import from_ipc

if TYPE_CHECKING:
    from testkit.cluster import LocalCluster


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port_block(size: int) -> int:
    """A base port with ``size`` consecutive free ports above it, chosen below the
    kernel's ephemeral range: a listening port taken from that range can be handed
    to an outgoing connection (a Kafka client's) while its server is restarting."""
    low, _ = _ephemeral_range()
    top = max(2000, min(low, 32768)) - size
    chooser = random.Random()
    for _ in range(500):
        base = chooser.randrange(10000 if top > 12000 else 1025, top)
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + size):
                taken = socket.socket()
                sockets.append(taken)
                taken.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for taken in sockets:
                taken.close()
        return base
    raise RuntimeError("no block of free ports below the ephemeral range")


@dataclass
class LocalNode:
    state: Path
    base_port: int = 0  # 0: a free block (26 ports, more with workers)
    secrets: dict[str, str] = field(default_factory=dict)
    brokers: int = 1  # 3: `citeplus up` starts a local 3-broker cluster (testkit/cluster.py)
    workers: int = 1  # 2: `citeplus up --workers 2` (two of each scalable stage)

    def __post_init__(self) -> None:
        if not self.base_port:
            # Worker i's metrics port is its service's + 10 i: past the cluster's ports.
            self.base_port = free_port_block(26 if self.workers == 1 else 34 + 10 * self.workers)

    @property
    def metrics_base(self) -> int:
        return self.base_port + (10 if self.workers == 1 else 26)

    @property
    def env(self) -> dict[str, str]:
        b = self.base_port
        return {
            **os.environ,
            "CITEPLUS_STATE": str(self.state),
            "CITEPLUS_KAFKA_PORT": str(b),
            "CITEPLUS_KAFKA_CONTROLLER_PORT": str(b + 1),
            "CITEPLUS_REGISTRY_PORT": str(b + 2),
            "CITEPLUS_INGEST_PORT": str(b + 3),
            "CITEPLUS_SQL_PORT": str(b + 6),
            "CITEPLUS_API_PORT": str(b + 7),
            "CITEPLUS_FEDERATION_LISTEN": f"127.0.0.1:{b + 8}",
            "CITEPLUS_METRICS_BASE_PORT": str(self.metrics_base),
            **self._cluster_env(),
            **self.secrets,
        }

    def _cluster_env(self) -> dict[str, str]:
        """With 3 brokers: clients on base+20..22, controllers on base+23..25."""
        if self.brokers == 1:
            return {}
        b = self.base_port
        return {
            "CITEPLUS_KAFKA_BROKERS": str(self.brokers),
            "CITEPLUS_KAFKA_PORT": str(b + 20),
            "CITEPLUS_KAFKA_CONTROLLER_PORT": str(b + 23),
        }

    def cluster(self) -> LocalCluster:
        """This node's 3-broker cluster, to kill, restart or roll-restart its brokers."""
        from testkit.cluster import LocalCluster

        if self.brokers == 1:
            raise ValueError("this node runs one broker; use LocalNode(..., brokers=3)")
        return LocalCluster.of_node(self.state, self.base_port + 20)

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.base_port + 3}"

    @property
    def sql_url(self) -> str:
        """publish's ClickHouse HTTP interface."""
        return f"http://127.0.0.1:{self.base_port + 6}/"

    @property
    def api_url(self) -> str:
        """The common API (NGSI-LD) of this node."""
        return f"http://127.0.0.1:{self.base_port + 7}"

    @property
    def publish_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_base + 5}"

    def citeplus(
        self, *args: str, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "services.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def __enter__(self) -> LocalNode:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        """Start the node; if starting fails or is interrupted, stop what had started."""
        try:
            workers = ["--workers", str(self.workers)] if self.workers > 1 else []
            result = self.citeplus(
                "up", "--storage", "memory", "--wait", "180", *workers, check=False
            )
            if result.returncode != 0:
                raise RuntimeError(f"citeplus up failed:\n{result.stdout}\n{result.stderr[-3000:]}")
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Stop the node as an operator would, then kill whatever is left of it."""
        try:
            self.citeplus("down", check=False, timeout=180)
        finally:
            self.kill_leftovers()

    def processes(self) -> list[int]:
        """Process ids of everything this node started: they carry its state directory."""
        return node_processes(self.state)

    def kill_leftovers(self) -> list[int]:
        """SIGKILL every process group of this node that is still alive; the pids killed."""
        return kill_process_groups(self.processes())

    def sql(self, query: str) -> pa.Table:
        credentials = local_credentials(self.state)  # the operator's, made at first start
        headers = {"Authorization": basic_authorization(credentials)} if credentials else {}
        response = httpx.post(
            self.sql_url,
            params={"default_format": "ArrowStream"},
            content=query.encode(),
            headers=headers,
            timeout=120,
        )
        response.raise_for_status()
        return from_ipc(response.content)

    def service_pids(self) -> dict[str, int]:
        state = read_state(self.state / "node" / "status.json")
        return {s["name"]: s["pid"] for s in state.get("services", []) if s.get("pid")}

    def restarts(self) -> dict[str, int]:
        state = read_state(self.state / "node" / "status.json")
        return {s["name"]: s["restarts"] for s in state.get("services", [])}

    def kill_service(self, name: str) -> bool:
        pid = self.service_pids().get(name)
        if not pid:
            return False
        os.kill(pid, signal.SIGKILL)
        return True

    def broker_pid(self) -> int | None:
        try:
            return int((self.state / "kafka" / "broker.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def restart_broker_after_kill(self, down_s: float = 3.0) -> None:
        pid = self.broker_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
            time.sleep(down_s)
        self.citeplus("infra", "up", "--storage", "memory", timeout=180)


def node_processes(state: Path) -> list[int]:
    """Pids of the live processes whose environment names ``state`` as CITEPLUS_STATE."""
    marker = f"CITEPLUS_STATE={state}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environment = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, or not ours
            continue
        if marker in environment:
            found.append(int(entry.name))
    return found


def kill_process_groups(pids: list[int]) -> list[int]:
    """SIGKILL each pid's process group (a daemon's children die with it); a pid in our
    own group (a ``citeplus`` command still running) is killed alone, never our group."""
    ours = os.getpgrp()
    killed = []
    for pid in pids:
        try:
            group = os.getpgid(pid)
            if group == ours:
                os.kill(pid, signal.SIGKILL)
            else:
                os.killpg(group, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            continue
    return killed
