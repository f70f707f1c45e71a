"""Assembling the ingest service: configuration in, a running HTTP edge out."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from services.ingest import idempotency
from services.ingest.auth import SourceTokens
from services.ingest.connections import GUARD, GuardedSite, server_options
from services.ingest.core import IngestCore, IngestTopics
from services.ingest.http_api import BOUNDS, build_app
from services.ingest.idempotency_restore import open_store
from services.ingest.limits import HttpLimits
from services.ingest.pseudonyms import LetterPseudonyms
from services.ingest.rate_limit import SourceLimits
from services.runtime.cities import CityConfig, load_registry
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig
from services.runtime.errors import SchemaError
from services.runtime.group_commit import GroupCommitProducer
from services.runtime.metrics import ServiceMetrics

log = logging.getLogger(__name__)


def reference_attributes(cities: dict[str, CityConfig]) -> dict[str, dict[str, dict[str, str]]]:
    """Per source, the attributes its registry file gives each entity (zone, sector).

    Sources whose transport carries no zone (Linky frames) declare a registry
    of their meters; ingest joins it at the edge, before anything else sees
    the entity id, and carries it in the RawRecord's attributes.
    """
    out: dict[str, dict[str, dict[str, str]]] = {}
    for city in cities.values():
        for source in city.sources:
            if source.registry:
                out[f"{city.code}/{source.id}"] = {
                    entity: {"zone": entry.zone, "sector": entry.sector}
                    for entity, entry in load_registry(Path(source.registry)).items()
                }
    return out


def build_core(
    node: NodeConfig,
    contracts: Contracts,
    cities: dict[str, CityConfig],
    *,
    topics: IngestTopics | None = None,
    instance: str = "0",
    timeout_s: float | None = None,
    key_retention_s: float = idempotency.DEFAULT_RETENTION_S,
    key_memory_bytes: int = idempotency.DEFAULT_MAX_BYTES,
    follow_keys: bool = False,
    metrics: ServiceMetrics | None = None,
) -> IngestCore:
    """The core with its producer started and its idempotency keys restored.

    ``timeout_s``: how long a batch's commit may take before its answer is 503
    (default: the node's ``ingest.commit_timeout_s``); ``follow_keys``: keep following
    the keys other ingest workers commit; ``metrics``: the registry to count into (the
    process's, which its own metrics port serves; a new one if not given)."""
    sink = GroupCommitProducer(
        node,
        f"citeplus.{node.node.id}.ingest.{instance}",
        timeout_s=node.ingest.commit_timeout_s if timeout_s is None else timeout_s,
    ).start()
    metrics = metrics or ServiceMetrics("ingest")
    core = IngestCore(
        contracts,
        sink,
        topics=topics,
        metrics=metrics,
        attributes=reference_attributes(cities),
        pseudonyms=LetterPseudonyms.of_state_dir(
            node.state_dir, {code: c.timezone for code, c in cities.items()}
        ),
    )
    state_topic = idempotency.state_topic_beside(core.topics.raw)
    try:
        codec = contracts.codec(state_topic)
    except SchemaError:  # a node whose topics predate the state topic: keys refused (503)
        core.keys = idempotency.IdempotencyStore(state_topic, None, metrics=metrics)
    else:
        core.keys = open_store(
            node,
            state_topic,
            codec,
            retention_s=key_retention_s,
            max_bytes=key_memory_bytes,
            metrics=metrics,
            follow=follow_keys,
        )
    return core


def make_app(
    core: IngestCore,
    cities: dict[str, CityConfig],
    *,
    bounds: HttpLimits | None = None,
    max_body: int | None = None,
    workers: int = 1,
) -> web.Application:
    """The ingest app; ``max_body`` (if given) overrides ``bounds.max_body``; ``workers``:
    how many ingest workers divide the sources' rate limits."""
    bounds = bounds or HttpLimits()
    if max_body is not None:
        bounds = replace(bounds, max_body=max_body)
    tokens = SourceTokens(cities)
    if tokens.unconfigured:
        log.warning(
            "sources without a token cannot push",
            extra={"sources": tokens.unconfigured},
        )
    limits = SourceLimits(cities.values(), workers=workers)
    app = build_app(core, cities, tokens, bounds=bounds, limits=limits)

    async def close_sink(_: web.Application) -> None:
        core.sink.close()
        if core.keys is not None and core.keys.follower is not None:
            core.keys.follower.close()

    app.on_cleanup.append(close_sink)
    return app


async def start_app(
    app: web.Application, host: str, port: int, *, reuse_port: bool = False
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on a GuardedSite (header deadline, connection cap); (runner, port).
    ``reuse_port``: share the port with the node's other ingest workers."""
    runner = web.AppRunner(app, **server_options(app[BOUNDS]))
    await runner.setup()
    site = GuardedSite(runner, host, port, app[GUARD], reuse_port=reuse_port)
    await site.start()
    return runner, site.port


def serve_forever(
    app: web.Application,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    on_listening: Callable[[], None] | None = None,
) -> None:
    """Run until SIGTERM/SIGINT, then let requests in progress finish (their batches commit).
    ``on_listening`` is called once the port takes connections (the worker's own
    /healthz says "starting" until then)."""

    async def main() -> None:
        runner, _ = await start_app(app, host, port, reuse_port=reuse_port)
        if on_listening is not None:
            on_listening()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
