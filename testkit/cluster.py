"""A private 3-broker Kafka cluster for fault tests and benches, on free ports.

Usage (one cluster per test module; it is stopped at the end even on failure)::

    from testkit.cluster import LocalCluster

    @pytest.fixture(scope="module")
    def cluster(tmp_path_factory, node):
        with LocalCluster.running(tmp_path_factory.mktemp("cluster")) as running:
            yield running

    own = cluster.node_config(node)      # the node, pointed at the cluster (RF 3)
    cluster.kill(2)                      # SIGKILL broker 2 (a crash)
    cluster.restart(2)                   # start it again; returns once it is back in the cluster
    cluster.roll_restart()               # stop and start each broker in turn, cleanly
    cluster.wait_in_sync(["my.topic"])   # every partition's ISR back to 3 replicas
    cluster.stop()                       # all brokers (and the registry, if it started one)

A whole node on a cluster: ``LocalNode(state, brokers=3)`` (testkit/local_node.py)
starts its own with ``citeplus up``; ``node.cluster()`` returns the LocalCluster to
kill and restart its brokers. ``cluster.env()`` gives the variables that point a
``citeplus`` process at a cluster started here.

Brokers are numbered 1..3 (their KRaft node ids). The cluster keeps everything
under its own state directory and never touches ``CITEPLUS_STATE``'s broker,
registry or ports; ``with_registry=True`` also starts a schema registry of its
own (memory storage) whose URL ``node_config`` then uses, else the caller's
registry is kept (schemas do not live in Kafka with memory storage).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from confluent_kafka.admin import AdminClient

from services.infra import kafka_cluster
from services.runtime.config import NodeConfig


def free_port_range(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports, below the kernel's
    ephemeral range: a killed broker's port must still be free when it restarts,
    and a port of that range can meanwhile be handed to an outgoing connection."""
    from testkit.local_node import free_port_block

    return free_port_block(count)


@dataclass
class LocalCluster:
    """Three KRaft brokers (and optionally a registry) under ``state_dir``."""

    state_dir: Path
    with_registry: bool = False
    port: int = field(default_factory=lambda: free_port_range(2 * kafka_cluster.SIZE))
    registry_port: int | None = None
    bootstrap: str = ""
    registry_url: str | None = None

    @classmethod
    @contextmanager
    def running(cls, state_dir: Path, *, with_registry: bool = False) -> Iterator[LocalCluster]:
        """A started cluster, stopped when the block ends (even on failure)."""
        cluster = cls(state_dir, with_registry=with_registry)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()

    @contextmanager
    def _env(self) -> Iterator[None]:
        """The cluster's own state directory and ports while an infra call runs."""
        names = ("CITEPLUS_STATE", "CITEPLUS_KAFKA_PORT", "CITEPLUS_KAFKA_CONTROLLER_PORT")
        saved = {name: os.environ.get(name) for name in names}
        os.environ["CITEPLUS_STATE"] = str(self.state_dir)
        os.environ["CITEPLUS_KAFKA_PORT"] = str(self.port)
        os.environ["CITEPLUS_KAFKA_CONTROLLER_PORT"] = str(self.port + kafka_cluster.SIZE)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def start(self) -> str:
        """Start the three brokers (and the registry); returns the bootstrap list."""
        with self._env():
            self.bootstrap = kafka_cluster.start_cluster(self.port)
            if self.with_registry:
                from services.infra.registry_server import start_registry

                self.registry_port = free_port_range(1)
                self.registry_url = start_registry(port=self.registry_port)
        return self.bootstrap

    @classmethod
    def of_node(cls, state_dir: Path, port: int) -> LocalCluster:
        """The cluster a node started itself (``citeplus up`` with ``kafka.brokers: 3``)
        under ``state_dir`` from client port ``port``, to kill and restart its brokers."""
        ports = [(port + i, port + kafka_cluster.SIZE + i) for i in range(kafka_cluster.SIZE)]
        return cls(state_dir, port=port, bootstrap=kafka_cluster.bootstrap_of(ports))

    def env(self) -> dict[str, str]:
        """Variables that point a ``citeplus`` process (a service, a bench) at this cluster."""
        variables = {
            "CITEPLUS_KAFKA_BOOTSTRAP": self.bootstrap,
            "CITEPLUS_KAFKA_BROKERS": str(kafka_cluster.SIZE),
        }
        if self.registry_url:
            variables["CITEPLUS_REGISTRY_URL"] = self.registry_url
        return variables

    def node_config(self, node: NodeConfig) -> NodeConfig:
        """``node`` pointed at this cluster: its bootstrap list, 3 brokers, RF 3."""
        kafka = replace(
            node.kafka, bootstrap=self.bootstrap, brokers=kafka_cluster.SIZE, replication_factor=0
        )
        registry = replace(node.registry, url=self.registry_url or node.registry.url)
        return replace(node, kafka=kafka, registry=registry)

    def address(self, index: int) -> str:
        """Client address of broker ``index`` (1..3)."""
        return f"127.0.0.1:{self.port + index - 1}"

    def kill(self, index: int) -> int | None:
        """SIGKILL broker ``index``: a crash, no controlled shutdown. Returns its pid."""
        with self._env():
            return kafka_cluster.kill_member(index)

    def restart(self, index: int, timeout_s: float = 120.0) -> None:
        """Start broker ``index`` again (at least one other must run: it joins their
        quorum); returns once the cluster's metadata lists it as live."""
        with self._env():
            kafka_cluster.start_member(index)
        deadline = time.monotonic() + timeout_s
        while index not in self.live_brokers():
            if time.monotonic() > deadline:
                raise AssertionError(f"broker {index} not back in the cluster after {timeout_s} s")
            time.sleep(0.5)

    def roll_restart(self, topics: list[str] | None = None) -> None:
        """Stop and restart each broker in turn (SIGTERM: a controlled shutdown), waiting
        for ``topics`` to be fully in sync again before the next, as an operator would."""
        for index in range(1, kafka_cluster.SIZE + 1):
            with self._env():
                kafka_cluster.stop_member(index)
            self.restart(index)
            if topics:
                self.wait_in_sync(topics)

    def live_brokers(self) -> set[int]:
        """Node ids the cluster's metadata lists as live."""
        return kafka_cluster.live_brokers(self.bootstrap)

    def under_replicated(self, topics: list[str]) -> dict[str, list[int]]:
        """Partitions of ``topics`` whose ISR is smaller than their replicas."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        metadata = admin.list_topics(timeout=10).topics
        found: dict[str, list[int]] = {}
        for name in topics:
            for pid, part in metadata[name].partitions.items():
                if len(part.isrs) < len(part.replicas):
                    found.setdefault(name, []).append(pid)
        return found

    def wait_in_sync(self, topics: list[str], timeout_s: float = 120.0) -> None:
        """Return once every partition of ``topics`` has all its replicas in sync."""
        deadline = time.monotonic() + timeout_s
        while self.under_replicated(topics):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"partitions still under-replicated after {timeout_s:.0f} s: "
                    f"{self.under_replicated(topics)}"
                )
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop the registry (if started here) and every broker; safe to call twice."""
        with self._env():
            if self.registry_url:
                from services.infra.registry_server import stop_registry

                stop_registry()
                self.registry_url = None
            kafka_cluster.stop_cluster()
