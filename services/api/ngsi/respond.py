"""Turning a body into the NGSI-LD answer: media type, Link or @context, headers."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from services.api.merge import Merged, peers_header
from services.api.ngsi.context import JSON, LD_JSON, context_url, link_header
from services.api.ngsi.params import Page
from services.api.ngsi.problems import NgsiError

PEERS_HEADER = "Citeplus-Peers"
COUNT_HEADER = "NGSILD-Results-Count"


def answer(
    request: web.Request,
    media: str,
    body: Any,
    merged: Merged | None = None,
    page: Page | None = None,
) -> web.Response:
    """200 with the body in ``media``; federation outcomes, the count and the links to
    the neighbouring pages as headers."""
    headers: dict[str, str] = {}
    links = [] if page is None else page_links(request, page, len(body))
    if media == LD_JSON:
        body = _with_context(body, context_url(request))
    else:
        links.insert(0, link_header(request))
    if links:
        headers["Link"] = ", ".join(links)
    count = page is not None and page.count
    if merged is not None:
        headers[PEERS_HEADER] = peers_header(merged.nodes)
        if count:
            headers[COUNT_HEADER] = str(merged.total)
    return web.Response(
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        headers=headers,
        content_type=media,
        charset="utf-8" if media == JSON else None,
    )


def page_links(request: web.Request, page: Page, returned: int) -> list[str]:
    """``rel="next"`` when the page is full (there may be more), ``rel="prev"`` after the
    first page: the same query with the offset moved (NGSI-LD pagination)."""
    links = []
    if page.limit and returned == page.limit:
        links.append(_moved(request, page.offset + page.limit, "next"))
    if page.offset:
        links.append(_moved(request, max(0, page.offset - max(page.limit, 1)), "prev"))
    return links


def _moved(request: web.Request, offset: int, rel: str) -> str:
    query = request.rel_url.query.copy()
    query["offset"] = str(offset)
    return f'<{request.rel_url.with_query(query)}>; rel="{rel}"; type="application/json"'


def _with_context(body: Any, url: str) -> Any:
    if isinstance(body, list):
        return [{"@context": url, **item} if isinstance(item, dict) else item for item in body]
    if isinstance(body, dict):
        return {"@context": url, **body}
    return body


def check_answered(merged: Merged) -> None:
    """No node answered: the caller's mistake (a node refused it as invalid) is a 400,
    the nodes' trouble a 503 naming each one's outcome."""
    if merged.answered or not merged.nodes:
        return
    invalid = [n for n in merged.nodes if n.status == "INVALID_ARGUMENT"]
    if invalid:
        raise NgsiError("BadRequestData", invalid[0].message or "the query was refused as invalid")
    raise NgsiError(
        "InternalError",
        "no node of the federation answered (" + peers_header(merged.nodes) + "); try again",
        status=503,
    )
