"""PLACEHOLDER, replaced by the NGSI-LD part's routes.py at merge.

The shell calls :func:`add_ngsi_routes` once when it builds the application; this
placeholder adds no route, so the NGSI-LD paths answer 404 until the real module is
merged (the OpenAPI document describes them already)."""

from __future__ import annotations

from aiohttp import web

from services.api.reader import EntityReader


def add_ngsi_routes(
    app: web.Application, reader: EntityReader, *, cache_ttl_s: float = 5.0
) -> None:
    """Placeholder: the real function adds the /ngsi-ld/v1 routes reading through ``reader``,
    its answers cached at most ``cache_ttl_s``."""
    return None
