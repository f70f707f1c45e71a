"""The API's aiohttp application: the shell's middlewares, its documents, the NGSI-LD routes.

Built by :func:`build_app` from the node's configuration and a reader (the
federation adapter in production, an in-memory one in tests); the quotas' clock,
the key store and the usage counters can be handed in so tests drive them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib import resources

from aiohttp import web
from prometheus_client import CollectorRegistry

from services.api.keys import KeyStore, keys_path
from services.api.middlewares import ShellSettings, shell_middlewares
from services.api.ngsi.routes import add_ngsi_routes
from services.api.openapi import openapi_document
from services.api.quotas import Clock, Quotas, Rate
from services.api.reader import EntityReader
from services.api.subscriptions.routes import add_subscription_routes
from services.api.subscriptions.service import SubscriptionService, attach
from services.api.usage import Usage
from services.runtime.config import NodeConfig

ASSETS = {"docs.js": "text/javascript", "docs.css": "text/css"}
# The page's own script and style only: nothing loaded from elsewhere, nothing inline.
DOCS_POLICY = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"


@dataclass(frozen=True)
class Parts:
    """What the application is built from (tests pass their own)."""

    keys: KeyStore
    quotas: Quotas
    usage: Usage


PARTS = web.AppKey("parts", Parts)


def shell_settings(node: NodeConfig) -> ShellSettings:
    section = node.api
    proxies = frozenset(p.strip() for p in section.trusted_proxies.split(",") if p.strip())
    return ShellSettings(
        cache_ttl_s=int(section.cache_ttl_s),
        max_url_bytes=section.max_url_bytes,
        max_header_bytes=section.max_header_bytes,
        trusted_proxies=proxies,
        # The identity peers know this node by (services.policy.federation's rule).
        node_identity=node.federation.identity or node.node.id,
    )


def default_parts(
    node: NodeConfig, registry: CollectorRegistry | None = None, clock: Clock = time.monotonic
) -> Parts:
    section = node.api
    return Parts(
        keys=KeyStore(keys_path(node.state_dir), reload_s=section.keys_reload_s, clock=clock),
        quotas=Quotas(
            Rate(section.anonymous_rate, section.anonymous_burst),
            Rate(section.key_rate, section.key_burst),
            clock,
        ),
        usage=Usage(registry or CollectorRegistry()),
    )


def _asset(name: str) -> str:
    return resources.files("services.api").joinpath("assets", name).read_text(encoding="utf-8")


def add_documents(app: web.Application) -> None:
    """/openapi.json, the documentation page at /docs (and / leading there), its assets."""
    document = json.dumps(openapi_document(), ensure_ascii=False).encode("utf-8")
    page = _asset("docs.html")
    assets = {name: (_asset(name), kind) for name, kind in ASSETS.items()}

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    async def docs(request: web.Request) -> web.Response:
        response = web.Response(text=page, content_type="text/html")
        response.headers["Content-Security-Policy"] = DOCS_POLICY
        return response

    async def asset(request: web.Request) -> web.Response:
        found = assets.get(request.match_info["asset"])
        if found is None:
            raise web.HTTPNotFound()
        return web.Response(text=found[0], content_type=found[1])

    async def root(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/docs"})

    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/docs", docs)
    app.router.add_get("/docs/{asset}", asset)
    app.router.add_get("/", root)


def parser_limits(node: NodeConfig) -> dict[str, int]:
    """aiohttp's own ceilings (web.AppRunner keywords), well above the 414/431 bounds of
    the node's ``api:`` section, so that an oversized request meets the middleware's
    clear answer rather than the HTTP parser's bare 400."""
    section = node.api
    return {
        "max_line_size": max(65536, 4 * section.max_url_bytes),
        "max_field_size": max(65536, 4 * section.max_header_bytes),
    }


def build_app(
    config: NodeConfig,
    reader: EntityReader,
    parts: Parts | None = None,
    subscriptions: SubscriptionService | None = None,
) -> web.Application:
    """The application (not started): middlewares, documents, the subscriptions, then
    the NGSI-LD routes. ``subscriptions`` (with its store) is started and stopped with
    the application; without one, the subscription routes answer 503."""
    parts = parts or default_parts(config)
    middlewares = shell_middlewares(shell_settings(config), parts.keys, parts.quotas, parts.usage)
    app = web.Application(middlewares=middlewares)
    app[PARTS] = parts
    add_documents(app)
    attach(app, subscriptions or SubscriptionService(config.api.subscriptions, None, parts.keys))
    add_subscription_routes(app)  # before the NGSI-LD routes' catch-all
    add_ngsi_routes(app, reader, cache_ttl_s=config.api.cache_ttl_s)
    return app
