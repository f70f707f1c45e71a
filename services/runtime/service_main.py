"""Running a stage as a service process: what every stage's ``main`` shares.

Logs, configuration, topics and schemas, metrics and health, signal handling:
a stage package only provides how to build its Stage from the node and the
city files (docs/style.md: no service skeleton copied five times).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable

from services.runtime import dlq
from services.runtime.cities import CityConfig, load_cities
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig, load_node_config
from services.runtime.logs import configure_logging
from services.runtime.metrics import MetricsServer, ServiceMetrics
from services.runtime.paths import CITIES_DIR
from services.runtime.processor import Stage, StageRunner
from services.runtime.provisioning import connect_contracts, prepare_node, provision_topics
from services.runtime.topics import TopicSpec

log = logging.getLogger(__name__)

StageFactory = Callable[[NodeConfig, Contracts, dict[str, CityConfig], ServiceMetrics], Stage]


def add_stage_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cities", type=str, default=str(CITIES_DIR), help="directory of city files"
    )
    parser.add_argument(
        "--instance",
        default="0",
        help="instance id, unique per process of this service (part of its transactional id)",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=None, help="port of /metrics and /healthz"
    )


def install_stop_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT end the loop after the open batch commits (or aborts)."""

    def handle(signum: int, _frame: object) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def run_stage(
    service: str,
    factory: StageFactory,
    args: argparse.Namespace,
    *,
    specs: list[TopicSpec] | None = None,
    dead_letter_topic: str = dlq.DLQ_TOPIC,
) -> int:
    """Run ``service`` until a stop signal; returns the process exit code.

    ``specs`` replaces the declared topics (a stage run on prefixed copies of its
    topics, for tests and side-by-side runs); ``dead_letter_topic`` goes with them.
    """
    configure_logging(service)
    node = load_node_config()
    cities = load_cities(args.cities)
    if specs is None:
        _, contracts = prepare_node(node)
    else:
        provision_topics(node, specs)
        contracts = connect_contracts(node, specs)
    metrics = ServiceMetrics(service)
    stage = factory(node, contracts, cities, metrics)
    port = args.metrics_port if args.metrics_port is not None else node.metrics_port(service)
    server = MetricsServer(metrics, node.metrics.host, port).start()
    stop = threading.Event()
    install_stop_signals(stop)
    log.info("service starting", extra={"metrics": f"http://{node.metrics.host}:{server.port}"})
    runner = StageRunner(
        stage,
        node,
        contracts,
        instance=args.instance,
        metrics=metrics,
        dead_letter_topic=dead_letter_topic,
    )
    try:
        summary = runner.run(stop)
    finally:
        server.stop()
    log.info(
        "service stopped", extra={"records_in": summary.records_in, "batches": summary.batches}
    )
    return 0
