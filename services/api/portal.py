"""The developer portal: a page served by the API itself at ``/portal`` (``/`` leads there).

The page is plain HTML, CSS and one script, all served from ``services/api/assets/portal``
under a strict Content-Security-Policy (nothing inline, nothing from elsewhere), so it
works on a node without Internet access and loads nothing a third party could change.
The script draws the catalogue from ``/catalog`` (JSON-LD) and the live values from the
NGSI-LD routes, with the visitor's key if they give one. What only the server knows is
in ``/portal/node.json``: the node's public base URL (for the copyable examples), its
quotas and who issues keys.

The base URL is the one the client used: the scheme and ``Host`` of the request, or,
when the request came through one of ``api.trusted_proxies``, the proxy's
``X-Forwarded-Proto`` / ``X-Forwarded-Host``. A header that is not a plain host (or a
forwarded header from anyone else) is never echoed: the node's own ``api.host:port``
stands in, so a hostile Host cannot put a foreign URL into the examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

from services.api.middlewares import is_trusted
from services.api.ngsi.context import valid_host
from services.runtime.config import NodeConfig

PORTAL = "/portal"
ASSETS = {
    "portal.js": "text/javascript",
    "portal.css": "text/css",
}
# Its own script, style and the API on the same origin: nothing inline, nothing else.
PORTAL_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
KEYS_COMMAND = "citeplus api keys create --application <your app> [--partner <partner code>]"


@dataclass(frozen=True)
class Seen:
    """What of a request decides its base URL (a pure input, for tests)."""

    scheme: str
    host: str | None
    remote: str | None
    forwarded_proto: str | None = None
    forwarded_host: str | None = None


def base_url(seen: Seen, trusted_proxies: frozenset[str], fallback: str) -> str:
    """The URL clients reach this API at, as the examples must spell it (see module)."""
    if seen.remote and is_trusted(seen.remote, trusted_proxies):
        proto = _first(seen.forwarded_proto).lower() or seen.scheme
        host = _first(seen.forwarded_host) or seen.host
        if proto in ("http", "https") and valid_host(host or ""):
            return f"{proto}://{host}"
    if seen.scheme in ("http", "https") and valid_host(seen.host or ""):
        return f"{seen.scheme}://{seen.host}"
    return fallback


def _first(header: str | None) -> str:
    """The first value of a forwarded header (the client's side of a proxy chain)."""
    return (header or "").split(",")[0].strip()


def own_url(node: NodeConfig) -> str:
    """The configured listening address as a URL (a wildcard host is the loopback)."""
    host = node.api.host
    host = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{node.api.port}"


def node_info(node: NodeConfig, base: str) -> dict[str, Any]:
    """The node facts the page shows beside the catalogue (``/portal/node.json``)."""
    api = node.api
    quotas: dict[str, Any] = {
        "anonymous": {
            "perSecond": api.anonymous_rate,
            "burst": api.anonymous_burst,
            "per": "client address",
        },
        "key": {"perSecond": api.key_rate, "burst": api.key_burst, "per": "key"},
        "subscriptionsPerKey": api.subscriptions.per_key,
    }
    return {
        "baseUrl": base,
        "node": node.federation.identity or node.node.id,
        "quotas": quotas,
        "keys": {
            "issuedBy": "the operators of this node",
            "command": KEYS_COMMAND,
            "header": "Authorization: Bearer <key>",
        },
        "links": {
            "catalog": "/catalog",
            "docs": "/docs",
            "openapi": "/openapi.json",
            "context": "/ngsi-ld/v1/jsonldContexts/citeplus.jsonld",
        },
    }


def _asset(name: str) -> str:
    folder = resources.files("services.api").joinpath("assets", "portal")
    return folder.joinpath(name).read_text(encoding="utf-8")


def add_portal(app: web.Application, node: NodeConfig) -> None:
    """``/portal``, its assets, ``/portal/node.json`` and ``/`` leading to the portal."""
    page = _asset("portal.html")
    assets = {name: (_asset(name), kind) for name, kind in ASSETS.items()}
    trusted = frozenset(p.strip() for p in node.api.trusted_proxies.split(",") if p.strip())
    fallback = own_url(node)

    async def portal(request: web.Request) -> web.Response:
        response = web.Response(text=page, content_type="text/html")
        response.headers["Content-Security-Policy"] = PORTAL_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    async def asset(request: web.Request) -> web.Response:
        found = assets.get(request.match_info["asset"])
        if found is None:
            raise web.HTTPNotFound()  # a ProblemDetails 404 (the errors middleware)
        response = web.Response(text=found[0], content_type=found[1])
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    async def info(request: web.Request) -> web.Response:
        seen = Seen(
            request.scheme,
            request.host,
            request.remote,
            request.headers.get("X-Forwarded-Proto"),
            request.headers.get("X-Forwarded-Host"),
        )
        response = web.json_response(node_info(node, base_url(seen, trusted, fallback)))
        # The base URL follows the request's Host and forwarded headers, which a shared
        # cache does not key on: never stored, or one hostile header would be every
        # visitor's examples (the caching middleware keeps a Cache-Control set here).
        response.headers["Cache-Control"] = "no-store"
        return response

    async def root(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": PORTAL})

    app.router.add_get(PORTAL, portal)
    app.router.add_get(PORTAL + "/node.json", info)
    app.router.add_get(PORTAL + "/assets/{asset}", asset)
    app.router.add_get("/", root)
