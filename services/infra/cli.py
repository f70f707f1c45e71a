"""``citeplus infra up|down|status|fetch|lock``: the local Kafka broker and schema registry.

Handlers return an exit code instead of raising, so the main CLI can
``sys.exit(args.handler(args))``; errors are printed as their message, which says
what to do, not as a stack trace.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from services.infra import kafka_cluster
from services.infra.kafka_broker import broker_status, ensure_kafka_jars, start_broker, stop_broker
from services.infra.locks import write_locks
from services.infra.registry_server import (
    STORAGES,
    ensure_registry_app,
    registry_status,
    start_registry,
    stop_registry,
)
from services.runtime.commands import Command, option
from services.runtime.config import load_local_infra, load_node_config
from services.runtime.errors import ConfigError, InfrastructureError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NOT_RUNNING = 3  # like `systemctl status`: not an error, but not up either


def _fail(exc: InfrastructureError) -> int:
    sys.stderr.write(f"citeplus infra: error: {exc}\n")
    return EXIT_FAILED


def brokers_wanted(flag: int | None) -> int:
    """--brokers, else CITEPLUS_KAFKA_BROKERS, else the node file's kafka.brokers, else 1."""
    if flag is not None:
        return flag
    local = load_local_infra().kafka_brokers
    if local is not None:
        return local
    try:
        return load_node_config().kafka.brokers
    except ConfigError:
        return 1  # the node file's own error is for the services to report


def cmd_up(args: argparse.Namespace) -> int:
    try:
        brokers = brokers_wanted(args.brokers)
        if brokers not in (1, kafka_cluster.SIZE):
            raise InfrastructureError(
                f"a local Kafka runs 1 broker or a cluster of {kafka_cluster.SIZE}, not {brokers}."
            )
        bootstrap = kafka_cluster.start_cluster() if brokers > 1 else start_broker()
        url = start_registry(storage=args.storage, bootstrap=bootstrap)
    except InfrastructureError as exc:
        return _fail(exc)
    print(f"kafka     {bootstrap}" + (f"  ({brokers} brokers)" if brokers > 1 else ""))
    print(f"registry  {url}  ({args.storage} storage)")
    return EXIT_OK


def cmd_fetch(args: argparse.Namespace) -> int:
    try:
        libs = ensure_kafka_jars()
        app = ensure_registry_app()
    except InfrastructureError as exc:
        return _fail(exc)
    print(f"kafka jars  {libs}")
    print(f"registry    {app}")
    return EXIT_OK


def cmd_lock(args: argparse.Namespace) -> int:
    try:
        for lock in write_locks():
            print(f"wrote {lock}")
    except InfrastructureError as exc:
        return _fail(exc)
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    # The registry first: with kafkasql storage it still talks to the broker.
    try:
        stop_registry()
        stop_broker()
        kafka_cluster.stop_cluster()
    except InfrastructureError as exc:
        return _fail(exc)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    try:
        kafka, registry = broker_status(), registry_status()
        cluster = kafka_cluster.cluster_status() if kafka_cluster.cluster_exists() else []
    except InfrastructureError as exc:
        return _fail(exc)
    if args.json:
        print(
            json.dumps({"kafka": kafka, "kafka_cluster": cluster, "registry": registry}, indent=2)
        )
    else:
        if kafka["running"] or not cluster:
            print(_describe(kafka, kafka["bootstrap"]))
        for member in cluster:
            print(_describe(member, member["bootstrap"]))
        print(_describe(registry, registry["url"], registry["storage"]))
    kafka_up = kafka["answering"] or (bool(cluster) and all(m["answering"] for m in cluster))
    return EXIT_OK if kafka_up and registry["answering"] else EXIT_NOT_RUNNING


def _describe(status: dict[str, Any], address: str | None, storage: str | None = None) -> str:
    name = f"{status['name']} {status['version']}"
    if not status["running"]:
        stale = f" (stale pid file: pid {status['stale_pid']})" if status["stale_pid"] else ""
        return f"{name:<16} stopped{stale}"
    health = "" if status["answering"] else ", NOT ANSWERING"
    extra = f", {storage} storage" if storage else ""
    return f"{name:<16} running  pid {status['pid']}  {address}{extra}{health}  log {status['log']}"


ACTIONS = (
    Command(
        "up",
        "start Kafka and the schema registry (no-op for what already runs)",
        cmd_up,
        description="Start the Kafka broker and the schema registry, fetching them on first "
        "use. Ports: CITEPLUS_KAFKA_PORT (9092), CITEPLUS_REGISTRY_PORT (8081). "
        "State (data, logs, pids): CITEPLUS_STATE (<repo>/var). With --brokers 3 (or "
        "CITEPLUS_KAFKA_BROKERS=3, or kafka.brokers: 3 in the node file), a local cluster of "
        "three KRaft brokers on consecutive ports (9092-9094, controllers 9095-9097): topics "
        "get 3 replicas and a write needs 2 in sync, so one broker may be down.",
        options=(
            option(
                "--brokers",
                type=int,
                choices=(1, 3),
                default=None,
                help="1 (default) or 3 brokers (a replicated cluster, state in "
                "<state>/kafka-cluster); default: CITEPLUS_KAFKA_BROKERS or kafka.brokers",
            ),
            option(
                "--storage",
                choices=STORAGES,
                default="memory",
                help="registry storage: memory (empty at each start, default) or kafkasql "
                "(schemas kept in a Kafka topic, survive restarts)",
            ),
        ),
    ),
    Command(
        "fetch",
        "download Kafka's jars and the registry from Maven Central (once; cached)",
        cmd_fetch,
        description="Download the files listed in deploy/kafka/artifacts.lock and "
        "deploy/registry/artifacts.lock from Maven Central (or CITEPLUS_MAVEN_REPOSITORY), "
        "check each one's SHA-256 and size, and cache them in CITEPLUS_CACHE "
        "(~/.cache/citeplus). A file that does not match is refused and not kept.",
    ),
    Command(
        "lock",
        "regenerate deploy/*/artifacts.lock from the poms (maintainers; needs Maven)",
        cmd_lock,
        description="Resolve deploy/kafka/pom.xml, deploy/registry/pom.xml and "
        "deploy/jdbc/pom.xml (the JDBC driver of the SQL door's tests) with Maven and "
        "write the exact files they need, with their SHA-256 and size, to artifacts.lock beside "
        "each pom. Run it after changing a version in a pom, review the diff and commit it: "
        "`infra fetch` downloads exactly these files and refuses any whose checksum differs.",
    ),
    Command("down", "stop the schema registry, then Kafka (one broker or the cluster)", cmd_down),
    Command(
        "status",
        "show what runs (exit 0 when both answer, 3 otherwise)",
        cmd_status,
        options=(option("--json", action="store_true", help="print the status as JSON"),),
    ),
)

# ``citeplus infra up|fetch|lock|down|status`` (``python -m services.infra`` mounts ACTIONS).
COMMANDS = (
    Command(
        "infra",
        "fetch, start and stop the local Kafka broker and schema registry",
        description="Fetch (first run only), start, stop and inspect the local Kafka broker "
        "and Apicurio schema registry that development and tests use.",
        actions=ACTIONS,
    ),
)
