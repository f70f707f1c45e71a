"""Process entry points of ingest: the HTTP service and the file command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aiohttp import web

from services.ingest.core import IngestTopics
from services.ingest.files import ingest_paths, list_files
from services.ingest.health import worker_health
from services.ingest.idempotency import (
    DEFAULT_MAX_BYTES,
    DEFAULT_RETENTION_S,
    MIN_RETENTION_S,
    STATE_TOPIC,
)
from services.ingest.limits import DEFAULT_MAX_BODY, HttpLimits
from services.ingest.service import build_core, make_app, serve_forever
from services.policy.topics import declared_topics
from services.runtime.cities import load_cities
from services.runtime.commands import Command, cities_option, option
from services.runtime.config import load_node_config
from services.runtime.errors import CiteplusError, ConfigError
from services.runtime.metrics import ServiceMetrics
from services.runtime.provisioning import prepare_node
from services.runtime.service_main import (
    Running,
    ServiceStart,
    StartUp,
    TopicsOf,
    provisioned,
    run_service,
)
from services.runtime.topics import TopicName, load_topics, resolve_topics

SERVICE_OPTIONS = (
    option("--host", help="address to listen on (default: node.yaml ingest.host)"),
    option("--port", type=int, help="HTTP port (default: node.yaml ingest.port)"),
    option(
        "--max-body-mb",
        type=int,
        default=DEFAULT_MAX_BODY // (1024 * 1024),
        help="largest accepted batch in MiB, once decompressed; larger bodies get 413 "
        "(default: %(default)s). The other bounds (timeouts, connection caps, memory) are "
        "node.yaml's ingest section",
    ),
    cities_option(),
    option(
        "--instance",
        default="0",
        help="instance id, unique per ingest process (part of its transactional id)",
    ),
    option(
        "--reuse-port",
        action="store_true",
        help="share the port with the node's other ingest workers (SO_REUSEPORT: the kernel "
        "spreads connections over them); set by the supervisor when replicas.ingest > 1",
    ),
    option(
        "--workers",
        type=int,
        default=1,
        help="how many ingest workers share the port: each admits 1/N of every source's "
        "rate_limit, and follows the others' idempotency keys on ingest.state.v1 "
        "(default: %(default)s)",
    ),
    option(
        "--metrics-port",
        type=int,
        default=None,
        help="this worker's own /metrics and /healthz, besides the HTTP port's (which "
        "answer for whichever worker the kernel picks); set by the supervisor when "
        "replicas.ingest > 1 (default with --workers > 1: node.yaml's port of ingest's "
        "worker --instance)",
    ),
    option("--topic-prefix", default="", help=argparse.SUPPRESS),
    option(
        "--key-retention-hours",
        type=float,
        default=DEFAULT_RETENTION_S / 3600,
        help="how long the first answer of a push with an Idempotency-Key header is "
        "remembered: at least 24, at most the retention of ingest.state.v1 (48 h) "
        "(default: %(default)g)",
    ),
    option(
        "--key-memory-mb",
        type=int,
        default=DEFAULT_MAX_BYTES // (1024 * 1024),
        help="memory for remembered answers (~650 bytes per key); past it the oldest keys "
        "are forgotten early and counted in citeplus_idempotency_evicted (default: %(default)s)",
    ),
)


def _key_retention_s(hours: float) -> float:
    """``--key-retention-hours`` in seconds, between a day and the state topic's retention."""
    retention_s = hours * 3600
    state = load_topics().get(STATE_TOPIC)
    if retention_s < MIN_RETENTION_S or (state and retention_s * 1000 > state.retention_ms):
        raise ConfigError(
            f"--key-retention-hours {hours:g}: must be at least 24 and at "
            f"most the retention of {STATE_TOPIC} in deploy/topics.yaml "
            f"({state.retention_ms / 3_600_000 if state else 48:g} h)"
        )
    return retention_s


def _own_metrics_port(args: argparse.Namespace) -> int | None:
    """The port of this worker's own /metrics and /healthz: ``--metrics-port``, else
    with several workers node.yaml's port of the worker ``--instance`` names, else none
    (one worker: the HTTP port's /metrics is its own)."""
    if args.metrics_port is not None or args.workers <= 1:
        return args.metrics_port
    if not args.instance.isdigit():
        raise ConfigError(
            f"--workers {args.workers} --instance {args.instance}: a worker's own metrics "
            "port is node.yaml's for its index; give --metrics-port, or a number as --instance"
        )
    return load_node_config().metrics_port("ingest", int(args.instance))


def _topics(prefix: str) -> tuple[IngestTopics | None, TopicsOf]:
    """Ingest's topics and what to provision: the node's declared ones, or prefixed
    copies of ingest's own (tests run the real process beside others that way)."""
    if not prefix:
        return None, declared_topics
    registry = resolve_topics(prefix)
    topics = IngestTopics(
        raw=registry.name(TopicName.RAW_V2), dead_letters=registry.name(TopicName.DEAD_LETTERS)
    )
    specs = registry.specs(
        TopicName.RAW_V2, TopicName.DEAD_LETTERS, TopicName.RAW_DEAD_LETTERS, STATE_TOPIC
    )
    return topics, lambda _node: specs


def serve(args: argparse.Namespace) -> int:
    """Run the HTTP edge until SIGTERM/SIGINT; queued batches commit before exit.

    Ingest serves /metrics on its own HTTP port and its asyncio loop answers the
    stop signals itself (requests in progress finish first). Workers sharing that
    port (SO_REUSEPORT) each serve the same registry on a port of their own too: the
    shared one answers for whichever worker the kernel picks, so only the own port
    tells one worker's counters from another's."""
    retention_s = _key_retention_s(args.key_retention_hours)
    if not 1 <= args.workers <= 16:
        raise CiteplusError(f"--workers {args.workers}: between 1 and 16")
    topics, provision = _topics(args.topic_prefix)
    start = ServiceStart(
        "ingest",
        Path(args.cities),
        provisioned(provision),
        metrics_port=_own_metrics_port(args),
        node_metrics_port=False,
    )

    def build(up: StartUp) -> Running:
        core = build_core(
            up.node,
            up.contracts,
            up.cities,
            topics=topics,
            instance=args.instance,
            key_retention_s=retention_s,
            key_memory_bytes=args.key_memory_mb * 1024 * 1024,
            follow_keys=args.workers > 1 or args.reuse_port,
            metrics=up.metrics,
        )
        bounds = HttpLimits.of(up.node.ingest, max_body=args.max_body_mb * 1024 * 1024)
        app = make_app(core, up.cities, bounds=bounds, workers=args.workers)
        host, port = args.host or up.node.ingest.host, args.port or up.node.ingest.port
        return Running(
            run=lambda stop: _listen(app, host, port, args.reuse_port, up.metrics),
            announce="ingest starting",
            details={"instance": args.instance, "workers": args.workers},
            health=lambda: worker_health(core),
        )

    return run_service(start, build)


def _listen(
    app: web.Application, host: str, port: int, reuse_port: bool, metrics: ServiceMetrics
) -> int:
    print(f"ingest listening on http://{host}:{port}", file=sys.stderr, flush=True)

    def listening() -> None:
        metrics.ready = True

    serve_forever(app, host, port, reuse_port=reuse_port, on_listening=listening)
    return 0


def ingest_files(args: argparse.Namespace) -> int:
    cities = load_cities(args.cities)
    if args.city not in cities:
        raise CiteplusError(f"unknown city {args.city!r}; known: {', '.join(sorted(cities))}")
    source = cities[args.city].source(args.source)
    paths = [p for path in args.paths for p in list_files(path)]
    node = load_node_config()
    _, contracts = prepare_node(node, declared_topics(node))
    core = build_core(node, contracts, cities)
    try:
        summary = ingest_paths(
            core,
            source,
            paths,
            show_progress=not args.quiet,
            keys=None if args.no_keys else args.key_prefix,
        )
    finally:
        core.sink.close()
    print(
        f"{summary.files} files, {summary.payloads} batches: {summary.accepted:,} rows accepted "
        f"({summary.entities:,} entity records), {summary.rejected:,} rejected"
    )
    if summary.earlier:
        print(
            f"  {summary.earlier} of these batches had landed in an earlier run (same files, "
            "same idempotency keys): not sent again (--key-prefix to send them as new batches)"
        )
    for reason, count in sorted(summary.reasons.items(), key=lambda kv: -kv[1]):
        print(
            f"  rejected {count:>6} × {reason} (redacted letters on dlq.v1, "
            "the originals on the restricted raw.dlq.v1)"
        )
    return 0 if summary.accepted or not summary.rejected else 1


SERVICE = Command(
    "ingest",
    "the HTTP edge: city systems push batches, RawRecords go to raw.v2 (many per message)",
    serve,
    options=SERVICE_OPTIONS,
)

INGEST_FILES = Command(
    "ingest",
    "ingest files or directories of a city source (exports, replays)",
    ingest_files,
    description="Parse files in the source's declared format and commit them to the raw "
    "topic batch by batch, like HTTP pushes; rejected lines go to the dead-letter topic.",
    options=(
        option("paths", nargs="+", type=Path, metavar="FILE|DIR"),
        option("--city", required=True, help="city code (deploy/cities/<city>.yaml)"),
        option("--source", required=True, help="source id within the city"),
        cities_option(),
        option("--quiet", action="store_true", help="no progress bar"),
        option(
            "--key-prefix",
            default="file",
            help="prefix of the idempotency key each batch carries (derived from the source, "
            "the file's path, the batch's position and bytes): running the command again over "
            "the same files lands only what did not land before, for 24 h; another prefix "
            "sends them again as new batches (default: %(default)s)",
        ),
        option("--no-keys", action="store_true", help="send batches without idempotency keys"),
    ),
)

COMMANDS = (INGEST_FILES,)
