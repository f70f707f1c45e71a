"""What every answer of the API goes through, outermost first:

1. CORS: browser apps of any origin may call it (no cookies are used, so ``*`` is
   safe); preflights are answered here, and the NGSI-LD headers are exposed.
2. Usage: every answer counted under its key (services/api/usage.py).
3. Errors: a route's HTTP error becomes ProblemDetails; an unexpected exception a 500
   InternalError that says where it is logged, never a stack trace.
4. Bounds: an over-long target (414) or oversized headers (431), before any work.
5. Keys: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; a key that is not
   valid is a 401, never a silent fall back to anonymous access.
6. Quotas: the caller's bucket (services/api/quotas.py); empty, a 429 with Retry-After.
7. Caching: a strong ETag of the body, If-None-Match -> 304, Cache-Control and gzip.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.web_exceptions import HTTPException

from services.api.audience import ANONYMOUS, Audience
from services.api.compressed import CompressedBodies
from services.api.keys import KeyStore
from services.api.problem import problem
from services.api.quotas import Quotas, Rate, retry_after
from services.api.usage import Usage

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]

AUDIENCE = "audience"  # the interface with the NGSI-LD routes: request["audience"]
KEY_RATE = web.RequestKey("key_rate", Rate)
EXPOSED = (
    "Link",
    "Location",
    "NGSILD-Results-Count",
    "NGSILD-Warning",
    "Citeplus-Peers",
    "ETag",
    "Retry-After",
    "Content-Encoding",
)
# Writes are subscriptions only (POST, PATCH, DELETE /ngsi-ld/v1/subscriptions).
ALLOWED_METHODS = "GET, HEAD, OPTIONS, POST, PATCH, DELETE"
ALLOWED_HEADERS = (
    "Authorization",
    "X-API-Key",
    "Accept",
    "Accept-Encoding",
    "Content-Type",
    "Link",
    "If-None-Match",
    "NGSILD-Tenant",
)
VARY = "Accept, Accept-Encoding, Authorization, X-API-Key"
GZIP_FROM_BYTES = 512


@dataclass(frozen=True)
class ShellSettings:
    """The service shell's own settings (from the node's ``api:`` section)."""

    cache_ttl_s: float = 10.0
    max_url_bytes: int = 4096
    max_header_bytes: int = 16384
    trusted_proxies: frozenset[str] = frozenset()
    node_identity: str = ""  # no key may act as the node itself (see key_check)


# -- 1. CORS ---------------------------------------------------------------------------


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Preflights answered here (no key needed: browsers send none on them)."""
    preflight = hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
    if request.method == hdrs.METH_OPTIONS and preflight:
        response: web.StreamResponse = web.Response(status=204)
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = ALLOWED_METHODS
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ", ".join(ALLOWED_HEADERS)
        response.headers[hdrs.ACCESS_CONTROL_MAX_AGE] = "86400"
    else:
        response = await handler(request)
    response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = "*"
    response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = ", ".join(EXPOSED)
    return response


# -- 2. usage --------------------------------------------------------------------------


def usage_counter(usage: Usage) -> Middleware:
    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        audience: Audience = request.get(AUDIENCE, ANONYMOUS)
        usage.answered(audience.key_id, response.status)
        return response

    return count


# -- 3. errors -------------------------------------------------------------------------


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_problem(request, exc)
    except Exception:
        incident = secrets.token_hex(6)
        log.exception(
            "unexpected error",
            extra={"incident": incident, "method": request.method, "path": request.path},
        )
        return problem(
            500,
            "InternalError",
            "Internal error",
            f"an unexpected error, logged by the node as incident {incident}; retry later "
            "and tell the node's operators this id if it persists",
        )


def _http_problem(request: web.Request, exc: HTTPException) -> web.Response:
    """aiohttp's own refusals (unknown route, wrong method...) as ProblemDetails."""
    headers = {k: v for k, v in exc.headers.items() if k in (hdrs.ALLOW, hdrs.RETRY_AFTER)}
    if exc.status == 404:
        return problem(
            404,
            "ResourceNotFound",
            "Not found",
            f"no resource at {request.path}; /openapi.json lists what this API serves",
            headers,
        )
    if exc.status == 405:
        return problem(
            405,
            "OperationNotSupported",
            "Method not allowed",
            f"{request.method} is not supported on {request.path} (allowed: "
            f"{exc.headers.get(hdrs.ALLOW, 'GET')}); only subscriptions are written, the "
            "rest of this API is read-only",
            headers,
        )
    kind = "InternalError" if exc.status >= 500 else "BadRequestData"
    return problem(exc.status, kind, exc.reason, exc.text or exc.reason, headers)


# -- 4. bounds -------------------------------------------------------------------------


def bounds(settings: ShellSettings) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if len(request.raw_path) > settings.max_url_bytes:
            return problem(
                414,
                "UriTooLong",
                "Request target too long",
                f"the request target is {len(request.raw_path)} bytes, more than the "
                f"{settings.max_url_bytes} this node accepts; narrow the query (fewer ids, "
                "a pattern, fewer attributes) or split it",
            )
        size = sum(len(name) + len(value) + 4 for name, value in request.raw_headers)
        if size > settings.max_header_bytes:
            return problem(
                431,
                "HeadersTooLarge",
                "Request headers too large",
                f"the request headers are {size} bytes, more than the "
                f"{settings.max_header_bytes} this node accepts; send fewer or shorter ones",
            )
        return await handler(request)

    return check


# -- 5. keys ---------------------------------------------------------------------------


class KeyRefused(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def presented_key(request: web.Request) -> str | None:
    """The key the request carries (Bearer or X-API-Key), None without one."""
    bearer = None
    authorization = request.headers.get(hdrs.AUTHORIZATION)
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise KeyRefused(
                401, "send the key as `Authorization: Bearer <key>` or `X-API-Key: <key>`"
            )
        bearer = token.strip()
    header = request.headers.get("X-API-Key")
    header = header.strip() if header is not None else None
    if bearer is not None and header is not None and bearer != header:
        raise KeyRefused(400, "two different keys (Authorization and X-API-Key); send one")
    return bearer or header


def key_check(keys: KeyStore, quotas: Quotas, usage: Usage, settings: ShellSettings) -> Middleware:
    """Sets the request's audience from its key; a refused key is charged to the anonymous
    quota of its address, so that guessing keys is no way around that limit."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            token = presented_key(request)
        except KeyRefused as refused:
            return _refuse_key(request, refused, quotas, usage, settings)
        if token is None:
            request[AUDIENCE] = ANONYMOUS
            return await handler(request)
        key = keys.authenticate(token)
        if key is None:
            refused = KeyRefused(
                401,
                "this key is not valid on this node (mistyped, revoked or issued by another "
                "node); ask the node's operators for a key, or call without one for open data",
            )
            return _refuse_key(request, refused, quotas, usage, settings)
        if key.partner is not None and key.partner == settings.node_identity:
            # On behalf of the node itself, the federation would serve what only the
            # node may see (its cities' personal entity-level data): never through a key.
            refused = KeyRefused(
                401,
                "this key is bound to this node's own identity, which no key may act as; "
                "ask the node's operators for a key bound to a partner, or to none",
            )
            return _refuse_key(request, refused, quotas, usage, settings)
        request[AUDIENCE] = Audience(key.key_id, key.application, key.partner)
        if key.rate:
            request[KEY_RATE] = Rate(key.rate, key.burst or max(1, round(key.rate * 2)))
        return await handler(request)

    return check


def _refuse_key(
    request: web.Request,
    refused: KeyRefused,
    quotas: Quotas,
    usage: Usage,
    settings: ShellSettings,
) -> web.Response:
    wait = quotas.for_address(client_address(request, settings.trusted_proxies))
    if wait > 0:
        return _quota_problem(None, quotas.anonymous, wait, usage)
    usage.refused(None, "bad_key")
    return _key_problem(refused.status, refused.detail)


def _key_problem(status: int, detail: str) -> web.Response:
    if status == 400:
        return problem(400, "BadRequestData", "Two keys", detail)
    headers = {hdrs.WWW_AUTHENTICATE: 'Bearer realm="citeplus", error="invalid_token"'}
    return problem(401, "InvalidKey", "Invalid API key", detail, headers)


# -- 6. quotas -------------------------------------------------------------------------


def client_address(request: web.Request, trusted_proxies: frozenset[str]) -> str:
    """The anonymous bucket a request falls in (see :func:`client_key`)."""
    forwarded = [
        part.strip()
        for line in request.headers.getall("X-Forwarded-For", [])
        for part in line.split(",")
    ]
    return client_key(request.remote, forwarded, trusted_proxies)


def client_key(peer: str | None, forwarded: list[str], trusted_proxies: frozenset[str]) -> str:
    """Who an anonymous caller is: the TCP ``peer``, or (from a trusted proxy only) the
    last ``forwarded`` address the proxies did not add; IPv6 by /64, what one
    subscriber holds, so that a client cannot pick a fresh address per request."""
    address = peer or "unknown"
    if is_trusted(address, trusted_proxies):
        for candidate in reversed(forwarded):
            if candidate and not is_trusted(candidate, trusted_proxies):
                address = candidate
                break
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def is_trusted(address: str, trusted_proxies: frozenset[str]) -> bool:
    """Is ``address`` one of the proxies, listed as addresses or ranges (10.0.0.0/24)?"""
    if address in trusted_proxies:
        return True
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(
        "/" in entry and parsed in ipaddress.ip_network(entry, strict=False)
        for entry in trusted_proxies
    )


def quota_check(quotas: Quotas, usage: Usage, settings: ShellSettings) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        audience: Audience = request.get(AUDIENCE, ANONYMOUS)
        if audience.key_id is None:
            wait = quotas.for_address(client_address(request, settings.trusted_proxies))
            limit = quotas.anonymous
        else:
            rate = request.get(KEY_RATE)
            wait = quotas.for_key(audience.key_id, rate)
            limit = rate or quotas.key_default
        if wait > 0:
            return _quota_problem(audience.key_id, limit, wait, usage)
        return await handler(request)

    return check


def _quota_problem(key_id: str | None, limit: Rate, wait: float, usage: Usage) -> web.Response:
    usage.refused(key_id, "quota")
    seconds = retry_after(wait)
    advice = "" if key_id else "; a key raises the limit"
    return problem(
        429,
        "TooManyRequests",
        "Too many requests",
        f"over {limit.per_second:g} requests/s (burst {limit.burst}); retry after "
        f"{seconds} s{advice}",
        {hdrs.RETRY_AFTER: str(seconds)},
    )


# -- 7. caching ------------------------------------------------------------------------


def body_tag(body: bytes) -> str:
    """A strong validator: the body's SHA-256 (128 bits shown, ample against collisions)."""
    return hashlib.sha256(body).hexdigest()[:32]


def _matches(if_none_match: str, tag: str) -> bool:
    for candidate in if_none_match.split(","):
        value = candidate.strip().removeprefix("W/").strip('"')
        if value == "*" or value.removesuffix("-gzip") == tag:
            return True
    return False


def caching(settings: ShellSettings, bodies: CompressedBodies | None = None) -> Middleware:
    compressed = bodies or CompressedBodies()

    @web.middleware
    async def cache(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if response.status >= 400:
            response.headers.setdefault(hdrs.CACHE_CONTROL, "no-store")
            return response
        if request.method not in (hdrs.METH_GET, hdrs.METH_HEAD) or response.status != 200:
            return response
        audience: Audience = request.get(AUDIENCE, ANONYMOUS)
        scope = "public" if audience.key_id is None else "private"
        max_age = f"{scope}, max-age={settings.cache_ttl_s:g}"
        response.headers.setdefault(hdrs.CACHE_CONTROL, max_age)
        response.headers[hdrs.VARY] = VARY
        body = response.body if isinstance(response, web.Response) else None
        if not isinstance(body, bytes):
            return response
        tag = body_tag(body)
        gzip = len(body) >= GZIP_FROM_BYTES and _accepts_gzip(request)
        etag = f'"{tag}-gzip"' if gzip else f'"{tag}"'
        if _matches(request.headers.get(hdrs.IF_NONE_MATCH, ""), tag):
            headers = {h: response.headers[h] for h in (hdrs.CACHE_CONTROL, hdrs.VARY)}
            return web.Response(status=304, headers={**headers, hdrs.ETAG: etag})
        response.headers[hdrs.ETAG] = etag
        if gzip:
            response.body = await compressed.get(tag, body)
            response.headers[hdrs.CONTENT_ENCODING] = "gzip"
        return response

    return cache


def _accepts_gzip(request: web.Request) -> bool:
    for part in request.headers.get(hdrs.ACCEPT_ENCODING, "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*") and params.replace(" ", "") != "q=0":
            return True
    return False


def shell_middlewares(
    settings: ShellSettings, keys: KeyStore, quotas: Quotas, usage: Usage
) -> list[Middleware]:
    """The service shell's middlewares, in the order of the module docstring."""
    return [
        cors,
        usage_counter(usage),
        errors,
        bounds(settings),
        key_check(keys, quotas, usage, settings),
        quota_check(quotas, usage, settings),
        caching(settings),
    ]
