"""``GET /catalog``: the DCAT-AP catalogue of what the caller's audience may see.

Read through every node's GetCatalog on behalf of the audience (a key's partner or
``public``), never from city files: each node lists only what it shares with that
audience. Built once per audience and kept :data:`CATALOG_TTL_S` (datasets appear when
a city opens one, not every second), with a stand-in for the API's URL that each
answer replaces by the URL the client reached: a client varying its Host header gets
its own URLs in the answer, never a fresh build (rdflib's Turtle of a federation of
60 datasets takes about a second of CPU, bench/catalog.py). Turtle is made on the
first request that wants it. A node that did not answer is named in
``Citeplus-Peers``, the others' datasets stand, and that answer is not kept.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
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
CATALOG_TTL_S = 60.0
# The API's URL while a catalogue is built; each answer puts the client's in its place.
# Reserved (.invalid, RFC 2606): it can be nothing a node lists.
STAND_IN = "http://citeplus-api.invalid"


@runtime_checkable
class CatalogReader(Protocol):
    def catalogs(self, audience: Audience) -> list[NodeCatalog]:
        """Every node's GetCatalog for ``audience``."""


@dataclass
class Forms:
    """One audience's catalogue (URLs under :data:`STAND_IN`) and how the nodes fared;
    its Turtle once asked for."""

    document: dict[str, Any]
    jsonld: bytes
    peers: str
    complete: bool
    _turtle: bytes | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def turtle(self) -> bytes:
        with self._lock:
            if self._turtle is None:
                self._turtle = turtle_bytes(self.document)
            return self._turtle


def catalog_forms(answers: list[NodeCatalog], partner: bool) -> Forms:
    """The catalogue built from the nodes' answers (pure), under :data:`STAND_IN`."""
    listed = [
        Listed(a.status.node, a.address, dataset)
        for a in answers
        if a.catalog is not None
        for dataset in a.catalog.datasets
    ]
    answered = [a.status.node for a in answers if a.status.outcome == ANSWERED]
    document = build_catalog(listed, answered, STAND_IN, partner=partner)
    return Forms(
        document,
        jsonld_bytes(document),
        peers_header(a.status for a in answers),
        len(answered) == len(answers),
    )


def base_url(request: web.Request, fallback: str) -> str:
    """The API's URL as the client reached it (a Host that is not a host: ``fallback``)."""
    if not valid_host(request.host or ""):
        return fallback
    return str(request.url.with_path("").with_query(None)).rstrip("/")


def with_base(body: bytes, base: str) -> bytes:
    """The stand-in URL replaced by ``base`` (a checked host: nothing to escape)."""
    return body.replace(STAND_IN.encode(), base.encode())


def _no_node(answers: list[NodeCatalog]) -> web.Response:
    peers = peers_header(a.status for a in answers)
    return problem(
        503,
        "InternalError",
        "No node answered",
        f"no node listed its catalogue ({peers}); try again shortly",
        headers={"Retry-After": "5", "Citeplus-Peers": peers},
    )


def add_catalog_route(app: web.Application, reader: Any, fallback: str) -> None:
    """``GET /catalog`` when the reader can list catalogues (the federation reader)."""
    if not isinstance(reader, CatalogReader):
        return
    cache = TtlCache(CATALOG_TTL_S, max_entries=64)
    # One build at a time per audience (audiences are the keys' partners and the public:
    # few): requests arriving while it is built wait for it instead of building again.
    building: dict[str, asyncio.Lock] = {}

    async def forms_for(audience: Audience) -> Forms | web.Response:
        behalf = audience.on_behalf_of
        async with building.setdefault(behalf, asyncio.Lock()):
            forms = cache.get(behalf)
            if isinstance(forms, Forms):
                return forms
            answers = await asyncio.to_thread(reader.catalogs, audience)
            if not any(a.catalog is not None for a in answers):
                return _no_node(answers)
            forms = await asyncio.to_thread(catalog_forms, answers, behalf != PUBLIC_AUDIENCE)
            if forms.complete:
                cache.put(behalf, forms)
            return forms

    async def catalog(request: web.Request) -> web.Response:
        try:
            media = choose(request.headers.get("Accept"), request.query.get("format"))
        except NotAcceptable as refused:
            kind = "NotAcceptable" if refused.status == 406 else "BadRequestData"
            return problem(refused.status, kind, "Not acceptable", refused.detail)
        forms = await forms_for(request.get("audience", ANONYMOUS))
        if isinstance(forms, web.Response):
            return forms
        body = forms.jsonld if media == LD_JSON else await asyncio.to_thread(forms.turtle)
        response = web.Response(
            body=with_base(body, base_url(request, fallback)),
            headers={"Citeplus-Peers": forms.peers},
        )
        response.content_type = media
        response.charset = "utf-8"
        return response

    app.router.add_get(CATALOG_PATH, catalog)
