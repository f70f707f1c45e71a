"""Fetch, start and stop the Apicurio schema registry used in development and tests.

Apicurio Registry ships on Maven Central as a Quarkus application archive
(``deploy/registry/pom.xml`` pins it). Its Confluent-compatible API at
``/apis/ccompat/v7`` is what confluent-kafka's ``SchemaRegistryClient`` and
Avro serializers talk to, so the URL returned by :func:`start_registry` can be
given to them as it is.

Two storages: ``memory`` (Apicurio's default, an in-memory H2 database: fast
and empty at every start, right for tests) and ``kafkasql`` (every change is
written to a Kafka topic and replayed at start, so schemas survive restarts).
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

from services.infra import paths
from services.infra.artifacts import (
    cache_is_current,
    download_all,
    mark_current,
    read_lock,
    require_listed,
)
from services.infra.java import class_file_java_major, find_java
from services.infra.kafka_broker import broker_answers, broker_status
from services.infra.managed import ManagedServer
from services.infra.maven import pom_property
from services.infra.process import progress_to_stderr
from services.runtime.config import LOCAL_HOST, load_local_infra, registry_url
from services.runtime.errors import InfrastructureError

log = logging.getLogger(__name__)

REGISTRY_DEPLOY = paths.DEPLOY_DIR / "registry"
POM = REGISTRY_DEPLOY / "pom.xml"
LOCK = REGISTRY_DEPLOY / "artifacts.lock"
ARTIFACT = "apicurio-registry-app"

DEFAULT_PORT = 8081
HOST = LOCAL_HOST
STORAGES = ("memory", "kafkasql")
START_TIMEOUT_S = 120.0
STOP_GRACE_S = 30.0


def registry_version() -> str:
    """The pinned Apicurio version, from ``deploy/registry/pom.xml`` (its only home)."""
    return pom_property(POM, "apicurio.version")


def _app_root(version: str, archive_sha256: str) -> Path:
    """Where one verified archive is unpacked: a new list never overwrites a running registry."""
    return paths.cache_dir() / "registry" / f"{ARTIFACT}-{version}-{archive_sha256[:12]}"


def _find_runner(root: Path) -> Path | None:
    if not root.is_dir():
        return None
    return next(iter(sorted(root.rglob("quarkus-run.jar"))), None)


def ensure_registry_app() -> Path:
    """Directory holding Apicurio's ``quarkus-run.jar``, verified and unpacked on first use.

    The archive is checked against ``artifacts.lock`` and unpacked into a side
    directory that is renamed into place only when complete, so an interrupted
    first run is simply redone by the next one.
    """
    progress_to_stderr()
    version = registry_version()
    archive_entry = require_listed(read_lock(LOCK), f"{ARTIFACT}-{version}-all.tar.gz", LOCK)
    root = _app_root(version, archive_entry.sha256)
    runner = _find_runner(root)
    if runner is not None and cache_is_current(root, LOCK):
        return runner.parent
    archive = root.parent / archive_entry.file_name
    download_all([archive_entry], root.parent, f"Apicurio Registry {version}")
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    log.info("unpacking %s...", archive.name)
    try:
        with tarfile.open(archive) as bundle:
            bundle.extractall(partial, filter="data")
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise InfrastructureError(
            f"cannot unpack {archive} ({exc}); delete it so the next run fetches it again."
        ) from exc
    finally:
        # The archive is verified and unpacked (or bad): keeping 160 MB more is for nothing.
        archive.unlink(missing_ok=True)
    if _find_runner(partial) is None:
        shutil.rmtree(partial, ignore_errors=True)
        raise InfrastructureError(f"{archive.name} holds no quarkus-run.jar; check {LOCK}.")
    mark_current(partial, LOCK)
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    runner = _find_runner(root)
    assert runner is not None
    log.info("Apicurio Registry %s ready in %s", version, runner.parent)
    return runner.parent


# --- files under the state directory -------------------------------------------------


def registry_dir() -> Path:
    return paths.state_dir() / "registry"


def _marker() -> str:
    """A system property only this state directory's registry is started with."""
    return f"-Dciteplus.state={registry_dir()}"


# --- pure helpers ------------------------------------------------------------------


def resolve_port(port: int | None = None) -> int:
    """The argument, else ``$CITEPLUS_REGISTRY_PORT``, else 8081."""
    if port is not None:
        return port
    return load_local_infra().registry_port or DEFAULT_PORT


def ccompat_url(port: int) -> str:
    return registry_url(port)


def registry_properties(storage: str, port: int, bootstrap: str | None) -> dict[str, str]:
    """Quarkus/Apicurio settings for one run, passed as ``-D`` system properties."""
    props = {
        "quarkus.http.host": HOST,
        "quarkus.http.port": str(port),
        # The management interface (health, metrics) is built in and would take
        # port 9000 on all interfaces, clashing between two registries: a random
        # loopback port keeps it out of the way.
        "quarkus.management.host": HOST,
        "quarkus.management.port": "0",
        # One log line per HTTP request drowns the log in tests.
        "quarkus.http.access-log.enabled": "false",
        # Kafka clients (kafkasql) dump their whole configuration at INFO.
        'quarkus.log.category."org.apache.kafka".level': "WARN",
        # Upstream's console format has a typo in its date pattern.
        "quarkus.log.console.format": "%d{yyyy-MM-dd HH:mm:ss,SSS} %p [%c{3.}] (%t) %m%n",
        # Confluent semantics for ccompat ids: one id per distinct schema content,
        # the same in every subject (these are Apicurio 3's defaults, pinned here).
        "apicurio.ccompat.legacy-id-mode.enabled": "false",
        "apicurio.storage.snapshot.location": str(registry_dir() / "snapshots"),
    }
    if storage == "kafkasql":
        if not bootstrap:
            raise InfrastructureError("kafkasql storage needs the Kafka bootstrap address.")
        props["apicurio.storage.kind"] = "kafkasql"
        props["apicurio.kafkasql.bootstrap.servers"] = bootstrap
        # One journal partition: the registry replays it at every start and
        # derives schema ids from its order, which only one partition fixes.
        props["apicurio.kafkasql.topic.partitions"] = "1"
        props["apicurio.kafkasql.snapshots.topic.partitions"] = "1"
        # Replay polls the (tiny) snapshots topic until a poll comes back empty;
        # the 5 s default makes every start 10 s slower for nothing.
        props["apicurio.kafkasql.consumer.poll.timeout"] = "1000"
        # On a cluster (a bootstrap list), the journal is replicated like every topic:
        # three copies, so a broker down loses no schema and blocks no registration.
        brokers = len(bootstrap.split(","))
        if brokers >= 3:
            props["apicurio.kafkasql.topic.replication.factor"] = "3"
            props["apicurio.kafkasql.snapshots.topic.replication.factor"] = "3"
    elif storage != "memory":
        raise InfrastructureError(
            f"unknown registry storage {storage!r}; use one of: {', '.join(STORAGES)}."
        )
    return props


def registry_answers(url: str, timeout: float = 3.0) -> bool:
    """True when ``GET <url>/subjects`` answers 200, i.e. storage is ready too."""
    # urllib rather than httpx: this is polled twice a second while the
    # registry boots, and httpx logs every request at INFO.
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=timeout) as answer:
            return answer.status == 200
    except (OSError, ValueError):  # URLError, HTTPError, timeouts are OSErrors
        return False


# --- lifecycle ---------------------------------------------------------------------


REGISTRY = ManagedServer(
    directory=registry_dir,
    stem="registry",
    marker=_marker,
    answers=registry_answers,
    address_key="url",
    host=HOST,
    start_timeout_s=START_TIMEOUT_S,
    stop_grace_s=STOP_GRACE_S,
    log=log,
    name="schema registry",
    stale_name="registry",
    deaf_name="registry",
    preposition="at",
)


def start_registry(
    storage: str = "memory", port: int | None = None, bootstrap: str | None = None
) -> str:
    """Start the registry unless it already runs; return its ccompat base URL.

    With ``kafkasql`` and no ``bootstrap``, the broker of the same state
    directory is used (start it first). A running registry is left alone when
    its storage matches; a different storage is an error rather than a silent
    mismatch.
    """
    progress_to_stderr()
    if storage not in STORAGES:
        raise InfrastructureError(
            f"unknown registry storage {storage!r}; use one of: {', '.join(STORAGES)}."
        )
    with REGISTRY.lock():
        pid = REGISTRY.running_pid(clean_stale=True)
        if pid is not None:
            return _already_running(pid, storage, port)
        port = resolve_port(port)
        bootstrap = _kafkasql_bootstrap(bootstrap) if storage == "kafkasql" else None
        REGISTRY.refuse_busy_port(
            port, "the schema registry port", "a free port: CITEPLUS_REGISTRY_PORT=18081"
        )
        app = ensure_registry_app()
        jars = sorted((app / "app").glob(f"{ARTIFACT}-*.jar"))
        minimum = class_file_java_major(jars[0]) if jars else 21
        java = find_java(minimum, f"Apicurio Registry {registry_version()}")
        return _launch(java, app, storage, port, bootstrap)


def _kafkasql_bootstrap(bootstrap: str | None) -> str:
    if bootstrap is None:
        status = broker_status()
        if not status["running"]:
            raise InfrastructureError(
                "kafkasql storage keeps schemas in Kafka, but no Cité+ broker runs; start it "
                "first (citeplus infra up --storage kafkasql starts both) or pass bootstrap=."
            )
        bootstrap = status["bootstrap"]
    if not broker_answers(bootstrap):
        raise InfrastructureError(
            f"kafkasql storage needs Kafka at {bootstrap}, which does not answer; start the "
            "broker first (citeplus infra up --storage kafkasql)."
        )
    return bootstrap


def _already_running(pid: int, storage: str, port: int | None) -> str:
    run = REGISTRY.recorded_run()
    url = run.get("url") or ccompat_url(resolve_port())
    if run.get("storage", storage) != storage:
        raise InfrastructureError(
            f"the registry already runs (pid {pid}) with {run['storage']} storage, not "
            f"{storage}; stop it first (citeplus infra down) to switch."
        )
    if port is not None and run.get("port", port) != port:
        raise InfrastructureError(
            f"the registry of {registry_dir()} already runs (pid {pid}) at {url}, not on port "
            f"{port}; stop it first (citeplus infra down) or use another CITEPLUS_STATE."
        )
    return REGISTRY.adopt(pid, url)


def _launch(java: str, app: Path, storage: str, port: int, bootstrap: str | None) -> str:
    url = ccompat_url(port)
    props = registry_properties(storage, port, bootstrap)
    cmd = [
        java,
        "-Xms128m",
        "-Xmx512m",
        "-XX:+ExitOnOutOfMemoryError",
        _marker(),
        *(f"-D{key}={value}" for key, value in props.items()),
        "-jar",
        str(app / "quarkus-run.jar"),
    ]
    where = f"{storage} storage" + (f" in Kafka at {bootstrap}" if bootstrap else "")
    return REGISTRY.launch(
        cmd,
        url,
        {"port": port, "storage": storage, "bootstrap": bootstrap},
        starting=f"Apicurio Registry {registry_version()} at {url}, {where}",
    )


def stop_registry() -> None:
    """Stop this state directory's registry (SIGTERM, then SIGKILL after 30 s); no-op if stopped."""
    REGISTRY.stop()


def registry_status() -> dict[str, Any]:
    """What runs, where, with which storage, and whether it answers; changes nothing."""
    return REGISTRY.status("registry", registry_version(), recorded=("storage", "bootstrap"))
