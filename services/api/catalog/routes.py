"""``GET /catalog``: the DCAT-AP catalogue of what the caller's audience may see.

Read through every node's GetCatalog on behalf of the audience (a key's partner or
``public``), never from city files: each node lists only what it shares with that
audience. Cached per audience and base URL for the API's cache time; a node that
did not answer is named in ``Citeplus-Peers`` and the others' datasets stand.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from aiohttp import web

from services.api.audience import ANONYMOUS, PUBLIC_AUDIENCE, Audience
from services.api.catalog.build import Listed, build_catalog
from services.api.catalog.negotiate import LD_JSON, NotAcceptable, choose
from services.api.catalog.serialise import jsonld_bytes, turtle_bytes
from services.api.merge import ANSWERED, peers_header
from services.api.ngsi.cache import TtlCache
from services.api.ngsi.context import valid_host
from services.api.problem import problem
from services.api.reader import NodeCatalog

CATALOG_PATH = "/catalog"


@runtime_checkable
class CatalogReader(Protocol):
    def catalogs(self, audience: Audience) -> list[NodeCatalog]:
        """Every node's GetCatalog for ``audience``."""


@dataclass(frozen=True)
class Forms:
    """One audience's catalogue in both forms, and how the nodes fared."""

    jsonld: bytes
    turtle: bytes
    peers: str
    complete: bool


def catalog_forms(answers: list[NodeCatalog], base_url: str, partner: bool) -> Forms:
    """Both forms of the catalogue built from the nodes' answers (pure)."""
    listed = [
        Listed(a.status.node, a.address, dataset)
        for a in answers
        if a.catalog is not None
        for dataset in a.catalog.datasets
    ]
    answered = [a.status.node for a in answers if a.status.outcome == ANSWERED]
    document = build_catalog(listed, answered, base_url, partner=partner)
    return Forms(
        jsonld_bytes(document),
        turtle_bytes(document),
        peers_header(a.status for a in answers),
        len(answered) == len(answers),
    )


def base_url(request: web.Request, fallback: str) -> str:
    """The API's URL as the client reached it (a Host that is not a host: ``fallback``)."""
    if not valid_host(request.host or ""):
        return fallback
    return str(request.url.with_path("").with_query(None)).rstrip("/")


def add_catalog_route(app: web.Application, reader: Any, fallback: str, ttl_s: float) -> None:
    """``GET /catalog`` when the reader can list catalogues (the federation reader)."""
    if not isinstance(reader, CatalogReader):
        return
    cache = TtlCache(ttl_s, max_entries=256)

    async def catalog(request: web.Request) -> web.Response:
        try:
            media = choose(request.headers.get("Accept"), request.query.get("format"))
        except NotAcceptable as refused:
            kind = "NotAcceptable" if refused.status == 406 else "BadRequestData"
            return problem(refused.status, kind, "Not acceptable", refused.detail)
        audience: Audience = request.get("audience", ANONYMOUS)
        partner = audience.on_behalf_of != PUBLIC_AUDIENCE
        key = (audience.on_behalf_of, base_url(request, fallback))
        forms = cache.get(key)
        if not isinstance(forms, Forms):
            answers = await asyncio.to_thread(reader.catalogs, audience)
            if not any(a.catalog is not None for a in answers):
                peers = peers_header(a.status for a in answers)
                return problem(
                    503,
                    "InternalError",
                    "No node answered",
                    f"no node listed its catalogue ({peers}); try again shortly",
                    headers={"Retry-After": "5", "Citeplus-Peers": peers},
                )
            forms = await asyncio.to_thread(catalog_forms, answers, key[1], partner)
            if forms.complete:
                cache.put(key, forms)
        body = forms.jsonld if media == LD_JSON else forms.turtle
        response = web.Response(body=body, headers={"Citeplus-Peers": forms.peers})
        response.content_type = media
        response.charset = "utf-8"
        return response

    app.router.add_get(CATALOG_PATH, catalog)
