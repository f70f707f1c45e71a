"""Writing the servers' artifact lists (``citeplus infra lock``), the one step that needs Maven."""

from __future__ import annotations

from pathlib import Path

from services.infra import kafka_broker, registry_server
from services.infra.artifacts import format_lock
from services.infra.maven import pom_property, resolve_artifacts
from services.runtime.paths import REPO_ROOT

# Not a server: the JDBC driver the SQL door's tests run, as analysts' tools do.
JDBC_DEPLOY = REPO_ROOT / "deploy" / "jdbc"


def _jdbc_version() -> str:
    return pom_property(JDBC_DEPLOY / "pom.xml", "clickhouse.jdbc.version")


def write_locks() -> list[Path]:
    """Resolve each pom and rewrite the ``artifacts.lock`` beside it."""
    servers = (
        (
            kafka_broker.KAFKA_DEPLOY,
            kafka_broker.LOCK,
            f"Apache Kafka {kafka_broker.kafka_version()}",
        ),
        (
            registry_server.REGISTRY_DEPLOY,
            registry_server.LOCK,
            f"Apicurio Registry {registry_server.registry_version()}",
        ),
    )
    servers += (
        (
            JDBC_DEPLOY,
            JDBC_DEPLOY / "artifacts.lock",
            f"ClickHouse JDBC driver {_jdbc_version()} (the SQL door's JDBC test)",
        ),
    )
    written = []
    for pom_dir, lock, what in servers:
        artifacts = resolve_artifacts(pom_dir, what)
        header = (
            f"{what}: every file `citeplus infra fetch` downloads from Maven Central, with its\n"
            "SHA-256 and size in bytes. Generated from pom.xml beside this file by\n"
            "`citeplus infra lock` (needs Maven); do not edit by hand."
        )
        lock.write_text(format_lock(artifacts, header), encoding="utf-8")
        written.append(lock)
    return written
