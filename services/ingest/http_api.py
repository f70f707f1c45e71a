"""The HTTP edge: city systems and gateways push batches here.

``POST /v1/cities/{city}/sources/{source}/records`` answers 200 with what was
accepted and rejected once Kafka has committed the batch, 503 when Kafka could
not (nothing of the batch was kept: retry), 401/403 for a wrong token, 404 for
an unknown city or source, 413 for an oversized body or an entity with more rows
than one message can carry (nothing kept: split the batch, do not retry it), 429
with Retry-After for a source above its declared ``rate_limit``.

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
from services.ingest.core import IngestCore
from services.ingest.rate_limit import SourceLimits
from services.runtime.cities import CityConfig
from services.runtime.errors import BrokerUnavailable, ConfigError, OversizedBatch

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 32 * 1024 * 1024

CORE = web.AppKey("core", IngestCore)
CITIES = web.AppKey("cities", dict)
TOKENS = web.AppKey("tokens", SourceTokens)
MAX_BODY = web.AppKey("max_body", int)
LIMITS = web.AppKey("limits", SourceLimits)


def _error(status: int, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def push_records(request: web.Request) -> web.Response:
    city_code = request.match_info["city"]
    source_id = request.match_info["source"]
    cities: dict[str, CityConfig] = request.app[CITIES]
    city = cities.get(city_code)
    if city is None:
        return _error(404, f"unknown city {city_code!r}", known=sorted(cities))
    try:
        source = city.source(source_id)
    except ConfigError:
        return _error(
            404,
            f"city {city_code!r} has no source {source_id!r}",
            known=[s.id for s in city.sources],
        )
    decision = request.app[TOKENS].check(city_code, source_id, request.headers.get("Authorization"))
    if decision.status != 200:
        headers = {"WWW-Authenticate": "Bearer"} if decision.status == 401 else None
        return web.json_response(
            {"error": decision.message}, status=decision.status, headers=headers
        )
    wait_s = request.app[LIMITS].wait_for(city_code, source_id)
    if wait_s > 0:
        limit = source.rate_limit
        return web.json_response(
            {
                "error": f"source {city_code}/{source_id} may push {limit.per_second:g} batches "
                f"per second (burst {limit.burst}, its city file's rate_limit); "
                f"retry after {wait_s:.1f} s",
                "retry_after_s": round(wait_s, 3),
            },
            status=429,
            headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
        )
    try:
        payload = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        return _error(
            413,
            f"body larger than {request.app[MAX_BODY]} bytes; split the batch",
            limit=request.app[MAX_BODY],
            detail=str(exc),
        )
    if not payload:
        return _error(400, "empty body: send the records in the source's format")
    key = request.headers.get(idempotency.HEADER)
    try:
        if key is not None:
            return _keyed(await idempotency.push_keyed(request.app[CORE], source, key, payload))
        result = await request.app[CORE].ingest(source, payload)
    except idempotency.KeyRefused as exc:
        return _error(exc.status, str(exc))
    except BrokerUnavailable as exc:
        return _error(503, str(exc), retry=True)
    except OversizedBatch as exc:
        return _error(
            413, str(exc), entity=exc.entity, rows=exc.rows, size=exc.size, limit=exc.limit
        )
    return web.json_response(result.answer(), status=result.status)


def _keyed(answer: idempotency.Answer) -> web.Response:
    headers = {idempotency.REPLAYED_HEADER: "true"} if answer.replayed else None
    return web.Response(
        text=answer.body, status=answer.status, content_type="application/json", headers=headers
    )


async def list_sources(request: web.Request) -> web.Response:
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


async def health(request: web.Request) -> web.Response:
    sink = request.app[CORE].sink
    return web.json_response(
        {"service": "ingest", "status": "ok", "commits": sink.commits, "failures": sink.failures}
    )


async def metrics(request: web.Request) -> web.Response:
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    body = request.app[CORE].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(
    core: IngestCore,
    cities: dict[str, CityConfig],
    tokens: SourceTokens,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    limits: SourceLimits | None = None,
) -> web.Application:
    app = web.Application(client_max_size=max_body)
    app[CORE] = core
    app[CITIES] = cities
    app[TOKENS] = tokens
    app[MAX_BODY] = max_body
    app[LIMITS] = limits if limits is not None else SourceLimits(cities.values())
    app.router.add_post("/v1/cities/{city}/sources/{source}/records", push_records)
    app.router.add_get("/v1/cities", list_sources)
    app.router.add_get("/healthz", health)
    app.router.add_get("/metrics", metrics)
    return app
