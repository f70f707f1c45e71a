"""``citeplus service api``: the common API, started like every service (run_service).

It holds no topic and never opens the warehouse: it reads through the federation
API of its own node and of the peers, with the node's certificate, so it needs the
node's federation certificates (``citeplus certs`` in development, which ``citeplus
up`` runs when they are missing) and refuses to start without them, saying so.
SIGTERM stops accepting, lets requests in progress finish (a few seconds at most),
then exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import threading
from pathlib import Path

from aiohttp import web
from prometheus_client import Gauge

from services.api.app import build_app, default_parts, parser_limits
from services.api.keys import KeyStore
from services.api.keys_cli import API
from services.api.reader import FederationReader
from services.api.subscriptions.service import SubscriptionService
from services.api.subscriptions.store import StoreTopics, SubscriptionStore
from services.api.subscriptions.worker import install_delivery
from services.policy.federation import FederationConfig, load_federation
from services.runtime.codec import Contracts
from services.runtime.commands import Command, cities_option, option
from services.runtime.config import NodeConfig
from services.runtime.errors import CiteplusError
from services.runtime.http_log import server_logger
from services.runtime.metrics import ServiceMetrics
from services.runtime.service_main import (
    Running,
    ServiceStart,
    StartUp,
    provisioned,
    run_service,
)
from services.runtime.topics import TopicName, TopicSpec, resolve_topics

log = logging.getLogger(__name__)
SHUTDOWN_GRACE_S = 5.0


def subscription_topics(prefix: str = "") -> StoreTopics:
    """The two topics of the subscription store under ``prefix`` (empty on a node)."""
    topics = resolve_topics(prefix)
    return StoreTopics(
        topics.name(TopicName.API_SUBSCRIPTIONS), topics.name(TopicName.API_SUBSCRIPTION_STATE)
    )


def store_specs(prefix: str = "") -> list[TopicSpec]:
    """What the api provisions: the subscription store's topics, nothing it reads data from
    (data comes through the federation API)."""
    return resolve_topics(prefix).specs(
        TopicName.API_SUBSCRIPTIONS, TopicName.API_SUBSCRIPTION_STATE
    )


def subscription_service(up: StartUp, keys: KeyStore, prefix: str = "") -> SubscriptionService:
    """The subscriptions of this node: their store on Kafka (read back when the app
    starts), the node's rules from ``api.subscriptions``."""
    where = subscription_topics(prefix)
    store = SubscriptionStore(
        up.node,
        where,
        up.contracts.codec(where.definitions),
        up.contracts.codec(where.states),
    )
    held = Gauge(
        "citeplus_api_subscriptions",
        "NGSI-LD subscriptions kept by this node's api (api.subscriptions.v1)",
        registry=up.metrics.registry,
    )
    held.set_function(lambda: len(store))
    return SubscriptionService(up.node.api.subscriptions, store, keys)


def federation_for_api(node: NodeConfig) -> FederationConfig:
    """The node's federation settings, refused with the fix when the api cannot read."""
    config = load_federation(node)
    if not config.enabled:
        raise CiteplusError(
            "the api reads every city through the federation API, which is off on this node "
            "(federation.enabled: false); turn it on to serve the api"
        )
    missing = config.certificates.missing()
    if missing:
        raise CiteplusError(
            f"the api dials the federation API with this node's certificate, missing: "
            f"{', '.join(str(p) for p in missing)}; run `citeplus certs` (development) or "
            "install the federation's certificate"
        )
    return config


async def serve_until(
    app: web.Application, node: NodeConfig, metrics: ServiceMetrics, stop: threading.Event
) -> None:
    """Listen on api.host:api.port until ``stop``; ready (healthy) once listening."""
    section = node.api
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=SHUTDOWN_GRACE_S,
        logger=server_logger(),  # a malformed request: one INFO line, no traceback
        **parser_limits(node),
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, section.host, section.port)
        try:
            await site.start()
        except OSError as exc:
            raise CiteplusError(
                f"the api cannot listen on {section.host}:{section.port} ({exc.strerror}); "
                "stop what holds the port or set api.port (CITEPLUS_API_PORT)"
            ) from exc
        metrics.ready = True
        while not stop.is_set():
            metrics.mark_progress()
            await asyncio.sleep(0.2)
    finally:
        metrics.ready = False
        await runner.cleanup()


def _build(up: StartUp, prefix: str = "") -> Running:
    federation = federation_for_api(up.node)
    parts = default_parts(up.node, up.metrics.registry)
    parts.keys.keys()  # an unsafe keys file stops the start, naming the file and the fix
    subscriptions = subscription_service(up, parts.keys, prefix)
    reader = FederationReader(federation)
    install_delivery(subscriptions, reader, up.node)  # notifications, from the feeds
    app = build_app(up.node, reader, parts, subscriptions)
    section = up.node.api

    def run(stop: threading.Event) -> int:
        asyncio.run(serve_until(app, up.node, up.metrics, stop))
        log.info("service stopped")
        return 0

    return Running(
        run=run,
        close=reader.close,
        announce="api listening",
        details={
            "url": f"http://{section.host}:{section.port}/ngsi-ld/v1/entities",
            "docs": f"http://{section.host}:{section.port}/docs",
            "identity": federation.identity,
            "peers": [peer.code for peer in federation.peers],
        },
    )


def serve(args: argparse.Namespace) -> int:
    prefix = args.topic_prefix
    provision = provisioned(lambda _node: store_specs(prefix))

    def contracts(node: NodeConfig, cities: dict) -> Contracts:
        federation_for_api(node)  # a missing certificate is said before Kafka is asked
        return provision(node, cities)

    start = ServiceStart("api", Path(args.cities), contracts, metrics_port=args.metrics_port)
    return run_service(start, lambda up: _build(up, prefix))


SERVICE = Command(
    "api",
    "serve the common NGSI-LD API (every city, through the federation API; keys, quotas)",
    serve,
    options=(
        cities_option(),
        option("--metrics-port", type=int, default=None, help="port of /metrics and /healthz"),
        option(
            "--topic-prefix",
            default="",
            help="keep subscriptions on prefixed copies of their topics (tests, side-by-side runs)",
        ),
    ),
    description="The common API of every city of the federation: NGSI-LD entities, types, "
    "attributes and temporal values over HTTP/JSON at api.host:api.port (8010), its OpenAPI "
    "document at /openapi.json, a documentation page at /docs, a developer portal at "
    "/portal and the DCAT-AP catalogue national portals harvest at /catalog. It reads "
    "through the federation API with the node's certificate, so `citeplus certs` must "
    "have run. NGSI-LD subscriptions (/ngsi-ld/v1/subscriptions) are kept on the node's "
    "Kafka (api.subscriptions.v1, api.subscription-state.v1), read back at start; their "
    "rules are the node file's api.subscriptions section.",
)

COMMANDS: tuple[Command, ...] = (API,)
