"""Operator commands of a node: up, down, status, logs, replay, and the
supervisor process itself (`citeplus node supervise`)."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import threading
import time

from services.infra.kafka_broker import start_broker, stop_broker
from services.infra.kafka_cluster import start_cluster, stop_cluster
from services.infra.registry_server import start_registry, stop_registry
from services.node import control
from services.node.kafka_health import kafka_health, render_kafka_health
from services.node.status import render_status, sample_service
from services.node.supervisor import PIPELINE, Supervisor, read_state, tail
from services.node.workers_status import describe_workers, render_workers
from services.policy.federation import load_federation
from services.policy.topics import declared_topics
from services.privacy.keys import ensure_dev_keyrings
from services.runtime.cities import load_cities
from services.runtime.commands import Command, OneOf, cities_option, option
from services.runtime.config import SCALABLE, NodeConfig, load_node_config
from services.runtime.dev_secrets import ensure_dev_tokens
from services.runtime.errors import CiteplusError
from services.runtime.logs import configure_logging
from services.runtime.paths import CITIES_DIR
from services.runtime.provisioning import prepare_node
from services.runtime.service_main import install_stop_signals


def available_services() -> list[str]:
    """The pipeline services this build has (`citeplus service --help`)."""
    from services.cli import service_names  # lazy: the cli imports this module to register it

    names = set(service_names())
    return [name for name in PIPELINE if name in names]


def workers_of(node: NodeConfig, services: list[str], workers: int | None) -> dict[str, int]:
    """Workers per service: node.yaml's ``replicas``, or ``workers`` for each of the
    scalable stages (``--workers N``); publish and the api stay one."""
    return {
        name: (workers if workers is not None and name in SCALABLE else node.replicas.of(name))
        for name in services
    }


def bring_up(
    node: NodeConfig,
    storage: str,
    services: list[str],
    wait_s: float,
    workers: int | None = None,
) -> dict[str, bool]:
    """Infrastructure, secrets, topics and schemas, then the supervised services."""
    cities = load_cities(CITIES_DIR)
    ensure_dev_tokens(node.state_dir, cities)
    ensure_dev_keyrings(node.state_dir, cities)
    ensure_node_certificate(node)
    bootstrap = start_cluster() if node.kafka.brokers > 1 else start_broker()
    start_registry(storage=storage, bootstrap=bootstrap)
    prepare_node(node, declared_topics(node))
    control.start_supervisor(node, services, workers)
    return wait_healthy(node, services, wait_s, workers_of(node, services, workers))


def ensure_node_certificate(node: NodeConfig) -> None:
    """Development certificates for this node when it has none (what `citeplus certs`
    makes): publish's federation server and the api, which reads through it, need one.
    Existing certificates (a federation's real ones) are left as they are."""
    config = load_federation(node)
    if not config.enabled or not config.certificates.missing():
        return
    from services.federation.certs import ensure_dev_certificates

    ensure_dev_certificates(config.certs_dir, [config.identity])
    print(
        f"development federation certificate for {config.identity} in {config.certs_dir} "
        "(production nodes install the federation's own)",
        file=sys.stderr,
    )


def wait_healthy(
    node: NodeConfig, services: list[str], wait_s: float, workers: dict[str, int] | None = None
) -> dict[str, bool]:
    """Until each service's first worker says healthy, or ``wait_s`` passed; ``workers``
    per service tells where several ingest workers are read (each on its own port)."""
    deadline = time.monotonic() + wait_s
    healthy: dict[str, bool] = dict.fromkeys(services, False)
    while time.monotonic() < deadline and not all(healthy.values()):
        for name in services:
            if not healthy[name]:
                sample = sample_service(node, name, timeout=1.0, workers=workers)
                healthy[name] = bool(sample and sample.healthy)
        time.sleep(0.5)
    return healthy


def cmd_up(args: argparse.Namespace) -> int:
    node = load_node_config()
    services = available_services() if not args.services else args.services.split(",")
    if args.workers is not None and not 1 <= args.workers <= 16:
        raise CiteplusError(f"--workers {args.workers}: between 1 and 16")
    healthy = bring_up(node, args.storage, services, args.wait, args.workers)
    print(f"Cité+ node {node.node.id}: Kafka {node.kafka.bootstrap}, registry {node.registry.url}")
    counts = workers_of(node, services, args.workers)
    for name in services:
        verdict = "healthy" if healthy[name] else f"NOT HEALTHY (see: citeplus logs {name})"
        several = f" ({counts[name]} workers)" if counts[name] > 1 else ""
        print(f"  {name:18} {verdict}{several}")
    print(
        f"Ingest API: http://{node.ingest.host}:{node.ingest.port}/v1/cities/{{city}}/sources/{{source}}/records"
    )
    if "api" in services:
        api = f"http://{node.api.host}:{node.api.port}"
        print(f"Common API: {api}/ngsi-ld/v1/entities  (portal: {api}/  documentation: {api}/docs)")
    print("Watch it: citeplus status --watch   Stop it: citeplus down")
    return 0 if all(healthy.values()) else 1


def cmd_down(args: argparse.Namespace) -> int:
    node = load_node_config()
    if control.stop_supervisor(node):
        print("services stopped")
    if not args.keep_infra:
        stop_registry()
        stop_broker()
        stop_cluster()
        print("broker and registry stopped")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    node = load_node_config()
    stages = available_services()
    # Every worker the supervisor runs (anonymise, anonymise#1 ...), else the services;
    # how many each runs tells where ingest's are read (each on its own port when several).
    state = read_state(control.state_file(node))
    running = [s["name"] for s in state.get("services", [])]
    services = running or stages
    counts = state.get("workers", {})
    before = {name: sample_service(node, name, workers=counts) for name in services}
    while True:
        time.sleep(args.interval)
        now = {name: sample_service(node, name, workers=counts) for name in services}
        table = render_status(services, read_state(control.state_file(node)), now, before)
        table += "\n" + render_workers(describe_workers(node, stages))
        table += "\n" + render_kafka_health(kafka_health(node))
        if args.watch:
            sys.stdout.write("\033[2J\033[H")
            stamp = dt.datetime.now().strftime("%H:%M:%S")
            print(
                f"Cité+ node {node.node.id} at {stamp} (every {args.interval:g} s, Ctrl-C to quit)"
            )
        print(table, flush=True)
        if not args.watch:
            return 0 if control.supervisor_pid(node) else 3
        before = now


def cmd_logs(args: argparse.Namespace) -> int:
    node = load_node_config()
    path = control.log_dir(node) / f"{args.service}.log"
    if not path.exists():
        raise CiteplusError(f"no log for {args.service!r} at {path}; is the node up (citeplus up)?")
    for line in tail(path, args.lines):
        print(line)
    if args.follow:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            while True:
                chunk = handle.readline()
                if chunk:
                    sys.stdout.write(chunk.decode("utf-8", "replace"))
                    sys.stdout.flush()
                else:
                    time.sleep(0.3)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from services.node.replay import replay

    if args.service == "dead-letters":
        return cmd_replay_dead_letters(args)
    if args.from_time is None and args.from_offset is None:
        raise CiteplusError("replay of a stage needs --from-time or --from-offset")
    node = load_node_config()
    moved = replay(node, args.service, from_time=args.from_time, from_offset=args.from_offset)
    for line in moved:
        print(line)
    return 0


def cmd_replay_dead_letters(args: argparse.Namespace) -> int:
    from services.node.replay import replay_dead_letters

    if not args.city or not args.source:
        raise CiteplusError("replay dead-letters needs --city and --source")
    # Its read may wait (up to 20 s) for a transaction left open: the wait is logged,
    # and without a handler the operator would see nothing of it. The project's own
    # lines only: the registry client's say one per request (44 in a replay).
    configure_logging("replay", level="WARNING")
    logging.getLogger("services").setLevel(logging.INFO)
    node = load_node_config()
    _, contracts = prepare_node(node, declared_topics(node))
    done = replay_dead_letters(
        node,
        contracts,
        load_cities(args.cities),
        city=args.city,
        source=args.source,
        letter_ids=set(args.letter) if args.letter else None,
    )
    print(
        f"{done.letters} dead letters of {args.city}/{args.source} replayed: "
        f"{done.accepted:,} rows accepted, {done.rejected:,} rejected again "
        f"(new letters), {done.requeued} records back on the raw topic"
    )
    for problem in done.skipped:
        print(f"  skipped {problem}")
    return 0


def cmd_supervise(args: argparse.Namespace) -> int:
    configure_logging("supervisor")
    node = load_node_config()
    services = args.services.split(",")
    supervisor = Supervisor(
        services,
        log_dir=control.log_dir(node),
        state_file=control.state_file(node),
        hold_dir=control.hold_dir(node),
        workers=workers_of(node, services, args.workers),
        metrics_port=node.metrics_port,
    )
    stop = threading.Event()
    install_stop_signals(stop)
    supervisor.run(stop)
    return 0


UP = Command(
    "up",
    "start the node: broker, registry, topics, schemas and every service, supervised",
    cmd_up,
    description="Start the local Kafka broker and schema registry (fetched on first use), "
    "create or verify topics, register the Avro contracts, generate development secrets "
    "(tokens, pseudonymisation keys) under the state directory, and start the pipeline "
    "services as separate supervised processes (restarted with back-off if they crash).",
    options=(
        option(
            "--storage",
            choices=["kafkasql", "memory"],
            default="kafkasql",
            help="where the registry keeps schemas (default: kafkasql, survives restarts)",
        ),
        option("--services", help="comma-separated subset (default: all)"),
        option(
            "--workers",
            type=int,
            help="workers of each of ingest, anonymise, normalise and energy-analytics "
            "(default: node.yaml's replicas section): each is its own supervised process in "
            "the stage's consumer group; ingest's share the HTTP port. publish and the api "
            "stay one process (the embedded warehouse may be opened by one process only)",
        ),
        option("--wait", type=float, default=120, help="seconds to wait for health (default 120)"),
    ),
)

REPLAY = Command(
    "replay",
    "re-run a stage from a time or an offset (downstream stays exact)",
    cmd_replay,
    description="Hold the stage stopped, move its consumer group(s) back to the first "
    "offset at or after --from-time (ISO 8601) or to --from-offset on every partition, then "
    "let the supervisor restart it. Downstream is idempotent: normalise drops duplicate "
    "readings, energy-analytics replaces a meter's readings instead of adding them, and "
    "the ClickHouse sink skips what it already landed (it resumes after the highest "
    "offset the warehouse holds). Partners are not: replaying publish re-sends what it "
    "reads again to the public and partner topics. Needs the "
    "node's supervisor (`citeplus up`); elsewhere stop the stage's replicas first.",
    options=(
        option(
            "service",
            help="anonymise, normalise, energy-analytics or publish; or dead-letters: re-send "
            "the restricted raw dead letters (raw.dlq.v1) of --city/--source once its city "
            "file is fixed (ingest's are parsed again, anonymise's go back on the raw topic "
            "they came from; each once)",
        ),
        option("--city", help="dead-letters: city code"),
        option("--source", help="dead-letters: source id"),
        option("--letter", action="append", help="dead-letters: only this letter id (repeatable)"),
        cities_option("dead-letters: directory of city files"),
        OneOf(
            (
                option(
                    "--from-time",
                    type=dt.datetime.fromisoformat,
                    help="e.g. 2025-01-14T00:00:00+01:00",
                ),
                option(
                    "--from-offset", type=int, help="offset on every partition (0: the beginning)"
                ),
            )
        ),
    ),
)

COMMANDS = (
    UP,
    Command(
        "down",
        "stop the services, then the broker and registry",
        cmd_down,
        options=(option("--keep-infra", action="store_true", help="stop only the services"),),
    ),
    Command(
        "status",
        "health, records/s, consumer lag, dead letters and restarts per service",
        cmd_status,
        options=(
            option("--watch", "-w", action="store_true", help="refresh until Ctrl-C"),
            option("--interval", type=float, default=2.0, help="seconds between samples"),
        ),
    ),
    Command(
        "logs",
        "the log of one service (JSON lines)",
        cmd_logs,
        options=(
            option(
                "service",
                help="ingest, anonymise, normalise, energy-analytics, publish, supervisor",
            ),
            option("-n", "--lines", type=int, default=40),
            option("-f", "--follow", action="store_true"),
        ),
    ),
    REPLAY,
    Command(
        "node",
        "internal: the supervisor process (started by `up`)",
        actions=(
            Command(
                "supervise",
                "run the supervisor in the foreground",
                cmd_supervise,
                options=(
                    option("--services", default=",".join(PIPELINE)),
                    option("--workers", type=int, help="workers per scalable stage"),
                ),
            ),
        ),
    ),
)
