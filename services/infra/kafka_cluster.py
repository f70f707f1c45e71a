"""A local Kafka cluster of three KRaft brokers: the one-broker setup, times three.

Each broker is a JVM in combined mode (broker and controller), one voter of a
static three-voter quorum; they share a cluster id and nothing else. Broker i
(1, 2, 3) listens for clients on the base port + i - 1 (9092, 9093, 9094 by
default, or ``CITEPLUS_KAFKA_PORT``...) and for its controller on the controller
base + i - 1 (base + 3 unless ``CITEPLUS_KAFKA_CONTROLLER_PORT`` says otherwise),
keeps its data, log, pid and run files in ``<state>/kafka-cluster/broker-i`` and
is started, probed and stopped by the same managed-process code as the single
broker (services/infra/managed.py). Topics get 3 replicas, and a write needs 2
in sync (``min.insync.replicas``): one broker may be down without refusing or
losing acknowledged writes. The single broker (``<state>/kafka``) stays the default.
"""

from __future__ import annotations

import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from services.infra import paths
from services.infra.java import find_java
from services.infra.kafka_broker import (
    HOST,
    MIN_JAVA,
    STOP_GRACE_S,
    TEMPLATE,
    broker_answers,
    ensure_kafka_jars,
    format_storage,
    java_command,
    kafka_version,
    render_server_properties,
)
from services.infra.managed import ManagedServer
from services.infra.process import progress_to_stderr, wait_until
from services.runtime.config import load_local_infra
from services.runtime.errors import InfrastructureError

log = logging.getLogger(__name__)

SIZE = 3  # brokers of the local cluster (a three-voter quorum survives one loss)
# Three JVMs on a small machine, and a broker restarted after a crash first recovers
# its logs: a minute (the single broker's bound) is not always enough.
START_TIMEOUT_S = 180.0
DEFAULT_PORT = 9092
# Three JVMs share two cores with the node: a small heap each (the single broker has 1 GB).
JVM_OPTIONS = (
    "-Xms128m",
    "-Xmx384m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


def cluster_dir() -> Path:
    """``<state>/kafka-cluster``: the cluster id and one directory per broker."""
    return paths.state_dir() / "kafka-cluster"


def member_dir(index: int) -> Path:
    return cluster_dir() / f"broker-{index}"


def _properties_file(index: int) -> Path:
    return member_dir(index) / "server.properties"


def cluster_ports(port: int | None = None) -> list[tuple[int, int]]:
    """(client port, controller port) of brokers 1..3: consecutive client ports from
    the argument, ``$CITEPLUS_KAFKA_PORT`` or 9092; controller ports from
    ``$CITEPLUS_KAFKA_CONTROLLER_PORT``, else right after the client ports."""
    local = load_local_infra()
    base = port or local.kafka_port or DEFAULT_PORT
    controller = local.kafka_controller_port or base + SIZE
    clients = [base + i for i in range(SIZE)]
    controllers = [controller + i for i in range(SIZE)]
    if set(clients) & set(controllers):
        raise InfrastructureError(
            f"the cluster's client ports {clients} and controller ports {controllers} overlap; "
            f"set CITEPLUS_KAFKA_CONTROLLER_PORT to {base + SIZE} or another free range."
        )
    return list(zip(clients, controllers, strict=True))


def bootstrap_of(ports: list[tuple[int, int]]) -> str:
    """The client addresses of every broker, comma-separated, as clients want them."""
    return ",".join(f"{HOST}:{client}" for client, _ in ports)


def quorum_voters(ports: list[tuple[int, int]]) -> str:
    return ",".join(f"{i}@{HOST}:{controller}" for i, (_, controller) in enumerate(ports, 1))


@functools.cache
def member(index: int) -> ManagedServer:
    """The managed-process record of broker ``index`` (1..3)."""
    if not 1 <= index <= SIZE:
        raise InfrastructureError(f"the local cluster has brokers 1 to {SIZE}, not {index}.")
    return ManagedServer(
        directory=lambda: member_dir(index),
        stem="broker",
        # Our server.properties path: only this broker has it on its command line.
        marker=lambda: str(_properties_file(index)),
        answers=broker_answers,
        address_key="bootstrap",
        host=HOST,
        start_timeout_s=START_TIMEOUT_S,
        stop_grace_s=STOP_GRACE_S,
        log=log,
        name=f"Kafka broker {index}",
        stale_name=f"Kafka broker {index}",
        deaf_name=f"Kafka broker {index}",
        preposition="on",
    )


def _recorded_ports() -> list[tuple[int, int]] | None:
    """The ports a running (or crashed) cluster was started with, from its run files."""
    runs = [member(i).recorded_run() for i in range(1, SIZE + 1)]
    if not all(run.get("bootstrap") and run.get("controller_port") for run in runs):
        return None
    return [(int(run["bootstrap"].rpartition(":")[2]), run["controller_port"]) for run in runs]


def start_cluster(port: int | None = None) -> str:
    """Start the brokers that do not run yet and return the cluster's bootstrap list
    once all three answer and see each other.

    The brokers are spawned together and only then awaited: one broker alone
    elects no controller, so waiting for the first before starting the second
    would never end. Safe to call again: running brokers are left alone.
    """
    progress_to_stderr()
    ports = _recorded_ports() if port is None else None
    ports = ports or cluster_ports(port)
    bootstrap = bootstrap_of(ports)
    starting = []
    for index in range(1, SIZE + 1):
        with member(index).lock():
            if member(index).running_pid(clean_stale=True) is None:
                starting.append(index)
    if starting:
        java = find_java(MIN_JAVA, f"Kafka {kafka_version()}")
        libs = ensure_kafka_jars()
        procs = {i: _spawn(java, libs, i, ports) for i in starting}
        for index, proc in procs.items():
            member(index).await_ready(proc, f"{HOST}:{ports[index - 1][0]}")
    wait_for_brokers(bootstrap, SIZE)
    return bootstrap


def _spawn(java: str, libs: Path, index: int, ports: list[tuple[int, int]]) -> Any:
    server = member(index)
    client, controller = ports[index - 1]
    remedy = "free ports: CITEPLUS_KAFKA_PORT=19092 (or CITEPLUS_KAFKA_CONTROLLER_PORT)"
    server.refuse_busy_port(client, f"broker {index}'s client port", remedy)
    server.refuse_busy_port(controller, f"broker {index}'s controller port", remedy)
    home = member_dir(index)
    home.mkdir(parents=True, exist_ok=True)
    properties = _properties_file(index)
    properties.write_text(
        render_server_properties(
            TEMPLATE.read_text(),
            client,
            controller,
            home / "data",
            node_id=index,
            voters=quorum_voters(ports),
            replication=SIZE,
        )
    )
    # The id lives beside the brokers' directories: every broker formats with it.
    format_storage(java, libs, cluster_dir(), properties, home / "data")
    cmd = java_command(java, libs, "kafka.Kafka", str(properties), logs_dir=home)
    cmd[1:1] = JVM_OPTIONS
    address = f"{HOST}:{client}"
    return server.spawn(
        cmd,
        address,
        {"controller_port": controller, "node_id": index},
        starting=f"Kafka {kafka_version()} broker {index} of {SIZE} on {address}",
    )


def wait_for_brokers(bootstrap: str, count: int, timeout_s: float = START_TIMEOUT_S) -> None:
    """Return once the cluster's metadata names ``count`` live brokers (a restarted
    broker answers before the others have registered it again)."""
    if not wait_until(lambda: len(live_brokers(bootstrap)) >= count, timeout_s):
        raise InfrastructureError(
            f"the Kafka cluster at {bootstrap} shows {sorted(live_brokers(bootstrap))} as "
            f"live brokers, not {count}, after {timeout_s:.0f} s; see the logs under "
            f"{cluster_dir()}."
        )


def live_brokers(bootstrap: str, timeout: float = 3.0) -> set[int]:
    """Ids of the brokers the cluster's metadata names as live (empty when none answers)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        return set(admin.list_topics(timeout=timeout).brokers)
    except KafkaException:
        return set()


def start_member(index: int) -> str:
    """Start broker ``index`` again (after a stop or a kill), with the ports it had;
    the other two must run (it joins their quorum). Returns its address."""
    progress_to_stderr()
    ports = _recorded_ports() or cluster_ports()
    server = member(index)
    with server.lock():
        pid = server.running_pid(clean_stale=True)
        address = f"{HOST}:{ports[index - 1][0]}"
        if pid is not None:
            return server.adopt(pid, address)
        java = find_java(MIN_JAVA, f"Kafka {kafka_version()}")
        proc = _spawn(java, ensure_kafka_jars(), index, ports)
        return server.await_ready(proc, address)


def kill_member(index: int) -> int | None:
    """SIGKILL broker ``index`` (a crash: no clean shutdown); its pid, or None."""
    return member(index).kill()


def stop_member(index: int) -> None:
    """Stop broker ``index`` cleanly (SIGTERM; its partitions move first)."""
    member(index).stop()


def stop_cluster() -> None:
    """Stop every broker of the cluster at once; a no-op for stopped ones.

    At once, not one by one: the last broker of a quorum whose other voters are
    gone cannot finish its controlled shutdown and would wait out the grace period."""
    with ThreadPoolExecutor(max_workers=SIZE) as pool:
        for done in [pool.submit(member(i).stop) for i in range(1, SIZE + 1)]:
            done.result()


def cluster_exists() -> bool:
    """True when this state directory has (or had) a local cluster."""
    return cluster_dir().is_dir()


def cluster_status() -> list[dict[str, Any]]:
    """Each broker's status (as ``broker_status`` for the single one), plus its id."""
    statuses = []
    for index in range(1, SIZE + 1):
        status = member(index).status(f"kafka-{index}", kafka_version(), recorded=("node_id",))
        status["node_id"] = index
        statuses.append(status)
    return statuses
