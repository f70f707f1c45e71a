"""Fetch, format, start and stop the single-node Kafka broker used in development and tests.

There is no Kafka distribution to download on these machines, only Maven
Central: the broker's jars are listed in ``deploy/kafka/artifacts.lock`` (resolved
from ``deploy/kafka/pom.xml``) and run on the Java runtime of the Python lock in
KRaft combined mode (broker and controller in one JVM).
Everything the broker writes lives under ``<state>/kafka``; the pid file there is
the only record of a running broker, so every command starts by checking it.
"""

from __future__ import annotations

import base64
import logging
import shutil
import socket
import string
import subprocess
import uuid
from pathlib import Path
from typing import Any

from services.infra import paths
from services.infra.artifacts import (
    adopt_if_identical,
    cache_is_current,
    download_all,
    mark_current,
    read_lock,
    require_listed,
)
from services.infra.java import find_java
from services.infra.managed import ManagedServer
from services.infra.maven import pom_property
from services.infra.process import progress_to_stderr
from services.runtime.config import LOCAL_HOST, load_local_infra
from services.runtime.errors import InfrastructureError

log = logging.getLogger(__name__)

KAFKA_DEPLOY = paths.DEPLOY_DIR / "kafka"
POM = KAFKA_DEPLOY / "pom.xml"
LOCK = KAFKA_DEPLOY / "artifacts.lock"
TEMPLATE = KAFKA_DEPLOY / "server.properties.template"
LOG4J_CONFIG = KAFKA_DEPLOY / "log4j2.properties"

DEFAULT_PORT = 9092
HOST = LOCAL_HOST
MIN_JAVA = 17  # Kafka 4.x brokers need Java 17
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 30.0
JVM_OPTIONS = (
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


def kafka_version() -> str:
    """The pinned Kafka version, from ``deploy/kafka/pom.xml`` (its only home)."""
    return pom_property(POM, "kafka.version")


def libs_dir() -> Path:
    return paths.cache_dir() / "kafka" / "libs"


def ensure_kafka_jars() -> Path:
    """Directory holding the broker's jars, downloaded and verified on first use.

    Jars are fetched into a side directory and swapped in whole, so an
    interrupted fetch never leaves a half-filled classpath, and a version bump
    (a new ``artifacts.lock``) replaces the old jars instead of mixing two versions.
    """
    progress_to_stderr()
    version = kafka_version()
    libs = libs_dir()
    artifacts = read_lock(LOCK)
    require_listed(artifacts, f"kafka_2.13-{version}.jar", LOCK)
    if cache_is_current(libs, LOCK) or adopt_if_identical(libs, artifacts, LOCK):
        return libs
    partial = libs.with_name("libs.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        download_all(artifacts, partial, f"Apache Kafka {version} jars")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    mark_current(partial, LOCK)
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    log.info("Kafka %s jars ready in %s", version, libs)
    return libs


# --- files under the state directory -------------------------------------------------


def broker_dir() -> Path:
    return paths.state_dir() / "kafka"


def _properties_file() -> Path:
    return broker_dir() / "server.properties"


def _data_dir() -> Path:
    return broker_dir() / "data"


# --- pure helpers ------------------------------------------------------------------


def resolve_ports(port: int | None = None) -> tuple[int, int]:
    """(client port, controller port): the argument, else ``$CITEPLUS_KAFKA_PORT``, else 9092.

    The controller listens on the next port (9093 by default) unless
    ``$CITEPLUS_KAFKA_CONTROLLER_PORT`` says otherwise.
    """
    local = load_local_infra()
    if port is None:
        port = local.kafka_port or DEFAULT_PORT
    controller = local.kafka_controller_port or port + 1
    if controller == port:
        raise InfrastructureError(
            f"the Kafka client and controller ports are both {port}; "
            "set CITEPLUS_KAFKA_CONTROLLER_PORT to another port."
        )
    return port, controller


def render_server_properties(
    template: str,
    port: int,
    controller_port: int,
    data_dir: Path,
    *,
    node_id: int = 1,
    voters: str | None = None,
    replication: int = 1,
) -> str:
    """A broker's server.properties: the template with ports, data directory, its
    node id, the quorum's voters (this node alone by default) and the replication of
    topics filled in. ``min.insync.replicas`` follows the replication: 2 of 3 (one
    broker may be down), 1 of 1."""
    try:
        return string.Template(template).substitute(
            port=port,
            controller_port=controller_port,
            data_dir=data_dir,
            node_id=node_id,
            voters=voters or f"{node_id}@{HOST}:{controller_port}",
            replication=replication,
            min_insync=min_insync_for(replication),
        )
    except (KeyError, ValueError) as exc:
        raise InfrastructureError(f"{TEMPLATE} has an unknown placeholder: {exc}") from exc


def min_insync_for(replication: int) -> int:
    """In-sync replicas a write needs: replication - 1 from 3 up (2 of 3: one broker
    may be down, and every acknowledged write is on two), else 1."""
    return replication - 1 if replication >= 3 else 1


def new_cluster_id() -> str:
    """A KRaft cluster id as Kafka writes them: 16 random bytes, base64url, no padding.

    Like Kafka's own ``Uuid.randomUuid`` it never starts with '-', which a
    command line would take for an option.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


def broker_answers(bootstrap: str, timeout: float = 3.0) -> bool:
    """True when a broker of ``bootstrap`` (host:port, or a comma-separated list)
    returns metadata naming at least one broker."""
    reachable = [a for a in bootstrap.split(",") if _address_connects(a.strip())]
    if not reachable:
        return False
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(
        {
            "bootstrap.servers": ",".join(reachable),
            "socket.timeout.ms": int(timeout * 1000),
            "log_level": 0,  # connection errors while it boots are expected, not news
        }
    )
    try:
        return bool(admin.list_topics(timeout=timeout).brokers)
    except KafkaException:
        return False


def _address_connects(address: str) -> bool:
    host, _, port = address.rpartition(":")
    return port.isdigit() and _connects(host, int(port))


def _connects(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


# --- lifecycle ---------------------------------------------------------------------


BROKER = ManagedServer(
    directory=broker_dir,
    stem="broker",
    # Our server.properties path: only our broker has it on its command line.
    marker=lambda: str(_properties_file()),
    answers=broker_answers,
    address_key="bootstrap",
    host=HOST,
    start_timeout_s=START_TIMEOUT_S,
    stop_grace_s=STOP_GRACE_S,
    log=log,
    name="Kafka broker",
    stale_name="Kafka",
    deaf_name="Kafka broker",
    preposition="on",
)


def java_command(
    java: str, libs: Path, main: str, *args: str, logs_dir: Path | None = None
) -> list[str]:
    """``java ... main args`` on the broker's classpath, logging under ``logs_dir``."""
    return [
        java,
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={logs_dir or broker_dir()}",
        "-cp",
        f"{libs}/*",  # expanded by the JVM itself
        main,
        *args,
    ]


def _format_storage(java: str, libs: Path) -> None:
    """Format the data directory once; its meta.properties marks it done."""
    format_storage(java, libs, broker_dir(), _properties_file(), _data_dir())


def format_storage(java: str, libs: Path, home: Path, properties: Path, data_dir: Path) -> None:
    """Format ``data_dir`` once (its meta.properties marks it done), with the cluster id
    kept in ``home``/cluster.id: every broker of one cluster shares it."""
    if (data_dir / "meta.properties").exists():
        return
    id_file = home / "cluster.id"
    cluster_id = id_file.read_text().strip() if id_file.exists() else ""
    if not cluster_id:
        cluster_id = new_cluster_id()
        id_file.write_text(cluster_id + "\n")
    log.info("formatting Kafka storage in %s (cluster id %s)", data_dir, cluster_id)
    cmd = java_command(
        java,
        libs,
        "kafka.tools.StorageTool",
        "format",
        "-t",
        cluster_id,
        "-c",
        str(properties),
        logs_dir=properties.parent,
    )
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise InfrastructureError(
            f"formatting Kafka storage in {data_dir} failed (exit {done.returncode}); "
            f"delete {home} to start from scratch.\n{(done.stdout + done.stderr).strip()}"
        )


def start_broker(port: int | None = None) -> str:
    """Start the broker unless it already runs; return its bootstrap address.

    Safe to call from every test and script: a running broker is left alone
    and its address returned.
    """
    progress_to_stderr()
    with BROKER.lock():
        pid = BROKER.running_pid(clean_stale=True)
        if pid is not None:
            return _already_running(pid, port)
        port, controller_port = resolve_ports(port)
        remedy = (
            "free ports: CITEPLUS_KAFKA_PORT=19092 "
            "(the controller then uses 19093, or CITEPLUS_KAFKA_CONTROLLER_PORT)"
        )
        BROKER.refuse_busy_port(port, "the Kafka client port", remedy)
        BROKER.refuse_busy_port(controller_port, "the Kafka controller port", remedy)
        java = find_java(MIN_JAVA, f"Kafka {kafka_version()}")
        libs = ensure_kafka_jars()
        return _launch(java, libs, port, controller_port)


def _already_running(pid: int, port: int | None) -> str:
    bootstrap = BROKER.recorded_run().get("bootstrap") or f"{HOST}:{resolve_ports()[0]}"
    if port is not None and not bootstrap.endswith(f":{port}"):
        raise InfrastructureError(
            f"the Cité+ broker of {broker_dir()} already runs (pid {pid}) on {bootstrap}, "
            f"not on port {port}; stop it first (citeplus infra down) or use another "
            "CITEPLUS_STATE directory."
        )
    return BROKER.adopt(pid, bootstrap)


def _launch(java: str, libs: Path, port: int, controller_port: int) -> str:
    bootstrap = f"{HOST}:{port}"
    broker_dir().mkdir(parents=True, exist_ok=True)
    _properties_file().write_text(
        render_server_properties(TEMPLATE.read_text(), port, controller_port, _data_dir())
    )
    _format_storage(java, libs)
    cmd = java_command(java, libs, "kafka.Kafka", str(_properties_file()))
    cmd[1:1] = JVM_OPTIONS
    return BROKER.launch(
        cmd,
        bootstrap,
        {"controller_port": controller_port},
        starting=f"Kafka {kafka_version()} on {bootstrap}",
    )


def stop_broker() -> None:
    """Stop this state directory's broker (SIGTERM, then SIGKILL after 30 s); no-op if stopped."""
    BROKER.stop()


def broker_status() -> dict[str, Any]:
    """What runs, where, and whether it answers; changes nothing (stale files stay)."""
    return BROKER.status("kafka", kafka_version())
