"""The HTTP edge: city systems and gateways push batches here.

``POST /v1/cities/{city}/sources/{source}/records`` answers 200 with what was
accepted and rejected once Kafka has committed the batch, 503 when Kafka could
not (nothing of the batch was kept: retry), 401 for no or an unknown token
(before anything else: it names no city or source), 403/404 for a token of
another source, 413 for an oversized body (inflated) or an entity with more rows
than one message can carry (nothing kept: split the batch, do not retry it), 415
for a Content-Encoding other than gzip/deflate or a Content-Type naming another
format than the source's (none, or a generic one such as
application/octet-stream, is accepted), 429 with Retry-After for a source
above its declared ``rate_limit`` or its requests in progress, 408 for a client
too slow. ``/openapi.json`` describes it all (services/ingest/openapi.py).

With an ``Idempotency-Key`` header (services.ingest.idempotency), a retry gets
the first answer again (same status and body, ``Idempotent-Replayed: true``) and
lands nothing; the same key with another body gets 422.
"""

from __future__ import annotations

import logging
import math

from aiohttp import web

from services.ingest import idempotency
from services.ingest.auth import SourceTokens
from services.ingest.body import (
    BodyRefused,
    BodyStats,
    ClientGone,
    MemoryBudget,
    read_body,
    release_body,
)
from services.ingest.connections import GUARD, ConnectionGuard, guard_middleware
from services.ingest.core import IngestCore
from services.ingest.formats.sniff import media_type_problem
from services.ingest.health import health_body
from services.ingest.limits import HttpLimits, excerpt
from services.ingest.openapi import openapi_document
from services.ingest.rate_limit import SourceLimits
from services.runtime.cities import CityConfig, SourceConfig
from services.runtime.errors import BrokerUnavailable, OversizedBatch

log = logging.getLogger(__name__)

CORE = web.AppKey("core", IngestCore)
CITIES = web.AppKey("cities", dict)
TOKENS = web.AppKey("tokens", SourceTokens)
LIMITS = web.AppKey("limits", SourceLimits)
BOUNDS = web.AppKey("bounds", HttpLimits)
BUDGET = web.AppKey("body_memory", MemoryBudget)
BODY_STATS = web.AppKey("body_stats", BodyStats)

# Retry-After of a 503 when Kafka did not take a batch (brokers down, or fewer
# replicas in sync than min.insync.replicas): about a leader election's time.
BROKER_RETRY_AFTER_S = 5


def _error(status: int, message: str, **extra: object) -> web.Response:
    headers = {"Retry-After": str(extra["retry_after"])} if "retry_after" in extra else None
    return web.json_response({"error": message, **extra}, status=status, headers=headers)


def _refused_by_auth(request: web.Request, city: str, source: str) -> web.Response | None:
    """The answer when the token may not push here (401/403/404, in that order)."""
    decision = request.app[TOKENS].check(city, source, request.headers.get("Authorization"))
    if decision.status == 200:
        return None
    headers = {"WWW-Authenticate": "Bearer"} if decision.status == 401 else None
    return web.json_response({"error": decision.message}, status=decision.status, headers=headers)


def _over_rate_limit(request: web.Request, source: SourceConfig) -> web.Response | None:
    wait_s = request.app[LIMITS].wait_for(source.city, source.id)
    if wait_s <= 0:
        return None
    limit = source.rate_limit
    assert limit is not None
    return web.json_response(
        {
            "error": f"source {source.city}/{source.id} may push {limit.per_second:g} batches "
            f"per second (burst {limit.burst}, its city file's rate_limit); "
            f"retry after {wait_s:.1f} s",
            "retry_after_s": round(wait_s, 3),
        },
        status=429,
        headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
    )


async def push_records(request: web.Request) -> web.Response:
    city_code = request.match_info["city"]
    source_id = request.match_info["source"]
    refused = _refused_by_auth(request, city_code, source_id)
    if refused is not None:
        return refused
    source = request.app[CITIES][city_code].source(source_id)
    wrong_type = media_type_problem(request.headers.get("Content-Type"), source.format)
    if wrong_type is not None:
        return _error(415, wrong_type)
    refused = _over_rate_limit(request, source)
    if refused is not None:
        return refused
    guard = request.app[GUARD]
    if not guard.enter_source((city_code, source_id)):
        return _error(
            429,
            f"this source already has {guard.limits.max_requests_per_source} requests in "
            "progress; wait for their answers",
            retry_after=1,
        )
    try:
        return await _read_and_ingest(request, source)
    finally:
        guard.leave_source((city_code, source_id))


async def _read_and_ingest(request: web.Request, source: SourceConfig) -> web.Response:
    budget = request.app[BUDGET]
    try:
        payload = await read_body(request, request.app[BOUNDS], budget, request.app[BODY_STATS])
    except BodyRefused as exc:
        response = _error(exc.status, str(exc), **exc.extra)
        if exc.status in (408, 413):  # the rest of the body is not worth reading
            response.force_close()
        return response
    except ClientGone as exc:
        log.info(
            "client went away before its body was read",
            extra={"city": source.city, "source": source.id, "detail": excerpt(exc)},
        )
        return _error(400, "connection lost")
    try:
        return await _ingest(request, source, payload)
    finally:
        release_body(request, budget)


async def _ingest(request: web.Request, source: SourceConfig, payload: bytes) -> web.Response:
    if not payload:
        return _error(400, "empty body: send the records in the source's format")
    key = request.headers.get(idempotency.HEADER)
    try:
        if key is not None:
            return _keyed(await idempotency.push_keyed(request.app[CORE], source, key, payload))
        result = await request.app[CORE].ingest(source, payload)
    except idempotency.KeyRefused as exc:
        if exc.status == 503:
            return _error(exc.status, str(exc), retry_after=2)
        return _error(exc.status, str(exc))
    except BrokerUnavailable as exc:
        # Nothing of the batch is visible: the same batch may be sent again, after a
        # pause long enough for a broker to come back or a leader to be elected.
        return _error(503, excerpt(exc, 500), retry=True, retry_after=BROKER_RETRY_AFTER_S)
    except OversizedBatch as exc:
        return _error(
            413,
            excerpt(exc, 1000),
            entity=excerpt(exc.entity),
            rows=exc.rows,
            size=exc.size,
            limit=exc.limit,
        )
    return web.json_response(result.answer(), status=result.status)


def _keyed(answer: idempotency.Answer) -> web.Response:
    headers = {idempotency.REPLAYED_HEADER: "true"} if answer.replayed else None
    return web.Response(
        text=answer.body, status=answer.status, content_type="application/json", headers=headers
    )


async def list_sources(request: web.Request) -> web.Response:
    """The source catalogue: to holders of a source token of this node, or to
    anyone when node.yaml says ``ingest.public_catalogue: true``."""
    authorization = request.headers.get("Authorization")
    if not request.app[BOUNDS].public_catalogue and not request.app[TOKENS].is_known(authorization):
        return web.json_response(
            {"error": "send a source's token as 'Authorization: Bearer <token>'"},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    cities: dict[str, CityConfig] = request.app[CITIES]
    return web.json_response(
        {
            code: {
                "name": city.name,
                "sources": [
                    {"id": s.id, "format": s.format, "dataset": s.dataset, "domain": s.domain}
                    for s in city.sources
                ],
            }
            for code, city in sorted(cities.items())
        }
    )


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


async def health(request: web.Request) -> web.Response:
    return web.json_response(health_body(request.app[CORE]))


async def metrics(request: web.Request) -> web.Response:
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    body = request.app[CORE].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(
    core: IngestCore,
    cities: dict[str, CityConfig],
    tokens: SourceTokens,
    *,
    bounds: HttpLimits | None = None,
    limits: SourceLimits | None = None,
) -> web.Application:
    bounds = bounds or HttpLimits()
    app = web.Application(client_max_size=bounds.max_body, middlewares=[guard_middleware])
    app[CORE] = core
    app[CITIES] = cities
    app[TOKENS] = tokens
    app[BOUNDS] = bounds
    app[GUARD] = ConnectionGuard(bounds)
    app[BUDGET] = MemoryBudget(bounds.body_memory)
    app[BODY_STATS] = BodyStats()
    app[LIMITS] = limits if limits is not None else SourceLimits(cities.values())
    app.router.add_post("/v1/cities/{city}/sources/{source}/records", push_records)
    app.router.add_get("/v1/cities", list_sources)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/healthz", health)
    app.router.add_get("/metrics", metrics)
    return app
