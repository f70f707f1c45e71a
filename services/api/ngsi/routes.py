"""The NGSI-LD routes of the common API (read only), on an aiohttp application.

Every answer is read through an :class:`~services.api.reader.EntityReader` on behalf
of the request's audience (``request["audience"]``, set by the API's key middleware;
anonymous when absent). An entity the audience may not see is answered exactly like
one that does not exist (404 ResourceNotFound): the answer never tells them apart.
Finished answers are cached briefly (:mod:`services.api.ngsi.cache`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from services.api.audience import ANONYMOUS, Audience
from services.api.ids import is_uri, parse_id
from services.api.merge import Merged
from services.api.ngsi import catalogue
from services.api.ngsi.cache import Cached, TtlCache
from services.api.ngsi.context import CONTEXT_PATH, context_document, negotiate
from services.api.ngsi.names import Names, load_names
from services.api.ngsi.params import (
    ONE_ENTITY_PARAMS,
    Page,
    Selection,
    entity_params,
    representation,
    single,
    unmatched_attrs,
)
from services.api.ngsi.problems import NgsiError, bad_data, not_found, shown
from services.api.ngsi.query import entity_query, temporal_query
from services.api.ngsi.represent import represent
from services.api.ngsi.respond import answer, check_answered
from services.api.ngsi.temporal import temporal_entity
from services.api.ngsi.temporal_params import ONE_TEMPORAL_PARAMS, temporal_params
from services.api.reader import EntityReader
from services.federation.protos import pb

log = logging.getLogger(__name__)
BASE = "/ngsi-ld/v1"
MEDIA = web.RequestKey("ngsi_media", str)
COMPLETE = web.RequestKey("ngsi_complete", bool)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_ngsi_routes(
    app: web.Application,
    reader: EntityReader,
    *,
    names: Names | None = None,
    cache_ttl_s: float = 5.0,
    catalogue_ttl_s: float = 60.0,
) -> None:
    """Register the NGSI-LD routes; ``cache_ttl_s`` bounds how stale an entity page may
    be, ``catalogue_ttl_s`` the types and attributes lists (0 disables either)."""
    routes = NgsiRoutes(reader, names or load_names(), cache_ttl_s, catalogue_ttl_s)
    for path, handler in (
        ("/entities", routes.entities),
        ("/entities/{entityId:.+}", routes.entity),
        ("/types", routes.types),
        ("/types/{entityType}", routes.one_type),
        ("/attributes", routes.attributes),
        ("/attributes/{attrId}", routes.one_attribute),
        ("/temporal/entities", routes.temporal_entities),
        ("/temporal/entities/{entityId:.+}", routes.temporal_entity),
    ):
        app.router.add_get(BASE + path, routes.wrap(handler))
    app.router.add_get(CONTEXT_PATH, routes.context)
    app.router.add_get(BASE + "/{tail:.*}", routes.wrap(routes.elsewhere))
    app.on_cleanup.append(routes.close)


def id_in_path(request: web.Request) -> str:
    """The entity id of the path as the client wrote it (``urn:ngsi-ld:...`` with its
    key's escapes), or decoded once when the client escaped the whole id
    (``urn%3Angsi-ld%3A...``): the path aiohttp decodes would lose the key's ``%2F``."""
    raw = request.raw_path.split("?", 1)[0].rsplit("/entities/", 1)[-1]
    return raw if raw.startswith("urn:") or not unquote(raw).startswith("urn:") else unquote(raw)


def audience_of(request: web.Request) -> Audience:
    found = request.get("audience")
    return found if isinstance(found, Audience) else ANONYMOUS


class NgsiRoutes:
    def __init__(self, reader: EntityReader, names: Names, ttl_s: float, catalogue_ttl_s: float):
        self.reader, self.names = reader, names
        # Reads block on the federation for up to a peer's deadline: their own threads,
        # so a slow peer never starves the loop's default executor.
        self.readers = ThreadPoolExecutor(max_workers=32, thread_name_prefix="ngsi-read")
        self.pages = TtlCache(ttl_s)
        self.scans = TtlCache(catalogue_ttl_s, max_entries=64)

    async def close(self, _app: web.Application) -> None:
        self.readers.shutdown(wait=False, cancel_futures=True)

    def wrap(self, handler: Handler) -> Handler:
        """Errors as ProblemDetails; complete 200 answers cached per audience and query."""

        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                media = negotiate(request.headers.get("Accept"))
                behalf = audience_of(request).on_behalf_of
                # the host too: the Link header and @context name this API's own URL;
                # the path as sent: two ids may decode to one path (see id_in_path)
                key = (request.host, request.raw_path, media, behalf)
                cached = self.pages.get(key)
                if isinstance(cached, Cached):
                    return web.Response(
                        status=cached.status, body=cached.body, headers=dict(cached.headers)
                    )
                request[MEDIA] = media
                response = await handler(request)
            except NgsiError as error:
                return error.response()
            except Exception:
                log.exception("NGSI-LD request failed: %s", request.path_qs[:200])
                return NgsiError("InternalError", "the request failed on this node").response()
            if (
                isinstance(response, web.Response)
                and response.status == 200
                and request.get(COMPLETE, True)
            ):
                self.pages.put(key, Cached(200, response.body, tuple(response.headers.items())))
            return response

        return handle

    async def elsewhere(self, request: web.Request) -> web.Response:
        raise not_found(
            f"no NGSI-LD endpoint {shown(request.path, 80)} here; this API offers "
            f"{BASE}/entities, /types, /attributes, /temporal/entities and /subscriptions "
            "(see /openapi.json)"
        )

    async def context(self, request: web.Request) -> web.Response:
        return web.json_response(context_document(), content_type="application/ld+json")

    async def _read(self, request: web.Request, method: str, query: Any) -> Merged:
        audience = audience_of(request)
        loop = asyncio.get_running_loop()
        read = getattr(self.reader, method)
        merged = await loop.run_in_executor(self.readers, read, query, audience)
        check_answered(merged)
        request[COMPLETE] = merged.complete
        return merged

    async def entities(self, request: web.Request) -> web.Response:
        params = entity_params(request.query, self.names)
        merged = Merged()
        if not params.selection.nothing:
            merged = await self._read(
                request, "entities", entity_query(params.selection, params.page)
            )
        attrs = params.selection.attrs
        body = [represent(e, self.names, params.format, attrs) for e in merged.items]
        return answer(request, request[MEDIA], body, merged, params.page)

    async def entity(self, request: web.Request) -> web.Response:
        values = single(request.query, ONE_ENTITY_PARAMS)
        _, fmt = representation(values)
        selection = self._one(request, values)
        merged = Merged()
        if not selection.nothing:
            merged = await self._read(request, "entities", entity_query(selection, Page(1)))
        if not merged.items:
            raise not_found(f"no entity {id_in_path(request)[:200]} (or not shared with you)")
        return answer(
            request,
            request[MEDIA],
            represent(merged.items[0], self.names, fmt, selection.attrs),
            merged,
        )

    def _one(self, request: web.Request, values: dict[str, str]) -> Selection:
        """The selection of one entity by id; an id that is a URI but not one of ours
        names nothing here (404), a non-URI is the client's mistake (400)."""
        raw = id_in_path(request)
        entity_id = parse_id(raw)
        if entity_id is None:
            if not is_uri(raw):
                raise bad_data(
                    f"{shown(raw)} is not a URI: ids are urn:ngsi-ld:<Type>:<city>:<key>"
                )
            raise not_found(f"no entity {raw[:200]}")
        wrong_type = "type" in values and values["type"] != entity_id.entity_type
        attrs = tuple(a.strip() for a in values.get("attrs", "").split(",") if a.strip())
        metrics = tuple(
            sorted({m for a in attrs for m in self.names.metrics(a, (entity_id.entity_type,))})
        )
        return Selection(
            types=(entity_id.entity_type,),
            cities=(entity_id.city,),
            ids=(entity_id,),
            attrs=attrs,
            metrics=metrics,
            nothing=wrong_type or unmatched_attrs(attrs, metrics),
        )

    async def temporal_entities(self, request: web.Request) -> web.Response:
        params = temporal_params(request.query, self.names)
        merged = Merged()
        if not params.selection.nothing:
            query = temporal_query(params, params.selection, params.page)
            merged = await self._read(request, "temporal", query)
        body = [
            temporal_entity(e, self.names, params.format, params.mode, params.methods)
            for e in merged.items
        ]
        return answer(request, request[MEDIA], body, merged, params.page)

    async def temporal_entity(self, request: web.Request) -> web.Response:
        params = temporal_params(request.query, self.names, ONE_TEMPORAL_PARAMS)
        selection = self._one(request, single(request.query, ONE_TEMPORAL_PARAMS))
        merged = Merged()
        if not selection.nothing:
            merged = await self._read(
                request, "temporal", temporal_query(params, selection, Page(1))
            )
        if not merged.items:
            raise not_found(f"no entity {id_in_path(request)[:200]} (or not shared with you)")
        body = temporal_entity(
            merged.items[0], self.names, params.format, params.mode, params.methods
        )
        return answer(request, request[MEDIA], body, merged)

    async def _scan(self, request: web.Request) -> tuple[dict[str, catalogue.TypeInfo], Merged]:
        key = audience_of(request).on_behalf_of
        found = self.scans.get(key)
        if found is None:
            query = pb.EntityQuery(limit=catalogue.SCAN_LIMIT)
            merged = await self._read(request, "entities", query)
            found = (catalogue.summarise(merged.items, self.names), merged)
            if merged.complete:
                self.scans.put(key, found)
        return found  # type: ignore[return-value]

    async def types(self, request: web.Request) -> web.Response:
        details = _details(request)
        types, merged = await self._scan(request)
        return answer(request, request[MEDIA], catalogue.type_list(types, details), merged)

    async def one_type(self, request: web.Request) -> web.Response:
        single(request.query, frozenset())
        name = request.match_info["entityType"]
        types, _ = await self._scan(request)
        if name not in types:
            raise not_found(f"no entity of type {shown(name)} is shared with you")
        counted = await self._read(
            request, "entities", pb.EntityQuery(entity_types=[name], limit=1, count=True)
        )
        body = catalogue.type_info(name, types[name], max(counted.total, types[name].count))
        return answer(request, request[MEDIA], body, counted)

    async def attributes(self, request: web.Request) -> web.Response:
        details = _details(request)
        types, merged = await self._scan(request)
        body = catalogue.attribute_list(catalogue.attributes_of(types), details)
        return answer(request, request[MEDIA], body, merged)

    async def one_attribute(self, request: web.Request) -> web.Response:
        single(request.query, frozenset())
        name = request.match_info["attrId"]
        types, merged = await self._scan(request)
        by_type = catalogue.attributes_of(types).get(name)
        if by_type is None:
            raise not_found(f"no attribute {shown(name)} among the entities shared with you")
        return answer(request, request[MEDIA], catalogue.attribute_info(name, by_type), merged)


def _details(request: web.Request) -> bool:
    values = single(request.query, frozenset({"details"}))
    raw = values.get("details", "false")
    if raw not in ("true", "false"):
        raise bad_data(f"details is true or false, got {shown(raw)}")
    return raw == "true"
