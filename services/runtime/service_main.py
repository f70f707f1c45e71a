"""Running a service process: the start-up every service's ``main`` shares.

Logs, configuration, city files, topics and schemas, metrics and health, signal
handling are written once, in :func:`run_service`; a service package provides
only what differs: its name, how its topics are reached and how to build it
(docs/style.md: no service skeleton copied five times). :func:`run_stage` is the
stages' case of it: their service is a :class:`StageRunner` loop.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.runtime import dlq
from services.runtime.cities import CityConfig, load_cities
from services.runtime.codec import Contracts
from services.runtime.collector import tune_garbage_collector
from services.runtime.commands import Option, cities_option, option
from services.runtime.config import NodeConfig, load_node_config
from services.runtime.logs import configure_logging
from services.runtime.metrics import HealthCheck, MetricsServer, ServiceMetrics
from services.runtime.processor import Stage, StageRunner
from services.runtime.provisioning import prepare_node
from services.runtime.topics import TopicSpec

log = logging.getLogger(__name__)

Cities = dict[str, CityConfig]
ContractsStep = Callable[[NodeConfig, Cities], Contracts]
StageFactory = Callable[[NodeConfig, Contracts, Cities, ServiceMetrics], Stage]
# The topics a process provisions and registers, given the node's configuration.
TopicsOf = Callable[[NodeConfig], list[TopicSpec]]


def provisioned(topics: TopicsOf) -> ContractsStep:
    """The topics ``topics`` names for this node, created or verified, then their schemas
    registered: the node's declared ones (handed by the caller, who knows the sharing and
    federation files) or prefixed copies (tests and side-by-side runs)."""

    def step(node: NodeConfig, cities: Cities) -> Contracts:
        return prepare_node(node, topics(node))[1]

    return step


@dataclass(frozen=True)
class ServiceStart:
    """What differs between services at start-up.

    ``metrics_port`` is the operator's ``--metrics-port``; without it a service with
    ``node_metrics_port`` serves /metrics on the node's port for its name, and one
    without serves none (the federation server, whose port is not the node's).
    """

    name: str
    cities_dir: Path
    contracts: ContractsStep
    metrics_port: int | None = None
    node_metrics_port: bool = True


@dataclass(frozen=True)
class StartUp:
    """What every service is built from, loaded once and in this order."""

    node: NodeConfig
    cities: Cities
    contracts: Contracts
    metrics: ServiceMetrics


@dataclass(frozen=True)
class Running:
    """A built service: ``run`` serves until ``stop`` is set and gives the exit code;
    ``close`` releases what building it opened, whatever happened; ``health`` answers
    the metrics port's /healthz when the service's progress is no loop's (default:
    :meth:`ServiceMetrics.health`)."""

    run: Callable[[threading.Event], int]
    close: Callable[[], None] = lambda: None
    post_routes: dict[str, Any] | None = None
    announce: str = "service starting"
    details: Mapping[str, Any] = field(default_factory=dict)
    endpoint_key: str = "metrics"
    health: HealthCheck | None = None


def stage_options(instance_help: str | None = None) -> tuple[Option, ...]:
    """The options of every ``citeplus service <stage>``."""
    return (
        cities_option(),
        option(
            "--instance",
            default="0",
            help=instance_help
            or "instance id, unique per process of this service (part of its transactional id)",
        ),
        option("--metrics-port", type=int, default=None, help="port of /metrics and /healthz"),
    )


def install_stop_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT end the loop after the open batch commits (or aborts)."""

    def handle(signum: int, _frame: object) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def run_service(start: ServiceStart, build: Callable[[StartUp], Running]) -> int:
    """Start ``start.name``, run what ``build`` makes until a stop signal, stop it;
    returns the process exit code."""
    configure_logging(start.name)
    node = load_node_config()
    cities = load_cities(start.cities_dir)
    contracts = start.contracts(node, cities)
    metrics = ServiceMetrics(start.name)
    running = build(StartUp(node, cities, contracts, metrics))
    tune_garbage_collector()
    try:
        server = _metrics_server(start, node, metrics, running)
        stop = threading.Event()
        install_stop_signals(stop)
        endpoint = {}
        if server is not None:
            endpoint = {running.endpoint_key: f"http://{node.metrics.host}:{server.port}"}
        log.info(running.announce, extra={**running.details, **endpoint})
        try:
            return running.run(stop)
        finally:
            if server is not None:
                server.stop()
    finally:
        running.close()


def _metrics_server(
    start: ServiceStart,
    node: NodeConfig,
    metrics: ServiceMetrics,
    running: Running,
) -> MetricsServer | None:
    port = start.metrics_port
    if port is None and start.node_metrics_port:
        port = node.metrics_port(start.name)
    if port is None:
        return None
    return MetricsServer(
        metrics, node.metrics.host, port, post_routes=running.post_routes, health=running.health
    ).start()


def run_stage(
    service: str,
    factory: StageFactory,
    args: argparse.Namespace,
    *,
    topics: TopicsOf,
    dead_letter_topic: str = dlq.DLQ_TOPIC,
) -> int:
    """Run the stage ``service`` until a stop signal; returns the process exit code.

    ``topics`` gives the topics to provision and register: the node's declared ones
    (``services.policy.topics.declared_topics``, handed by the stage's ``main``: the
    runtime knows no sharing or federation configuration) or prefixed copies of the
    stage's topics (tests and side-by-side runs); ``dead_letter_topic`` goes with them.
    """
    start = ServiceStart(
        service,
        Path(args.cities),
        provisioned(topics),
        metrics_port=args.metrics_port,
    )

    def build(up: StartUp) -> Running:
        stage = factory(up.node, up.contracts, up.cities, up.metrics)
        runner = StageRunner(
            stage,
            up.node,
            up.contracts,
            instance=args.instance,
            metrics=up.metrics,
            dead_letter_topic=dead_letter_topic,
        )
        return Running(run=lambda stop: _run_stage(runner, stop))

    return run_service(start, build)


def _run_stage(runner: StageRunner, stop: threading.Event) -> int:
    summary = runner.run(stop)
    log.info(
        "service stopped", extra={"records_in": summary.records_in, "batches": summary.batches}
    )
    return 0
