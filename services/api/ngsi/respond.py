"""Turning a body into the NGSI-LD answer: media type, Link or @context, headers."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from services.api.merge import Merged, peers_header
from services.api.ngsi.context import JSON, LD_JSON, context_url, link_header
from services.api.ngsi.problems import NgsiError

PEERS_HEADER = "Citeplus-Peers"
COUNT_HEADER = "NGSILD-Results-Count"


def answer(
    request: web.Request,
    media: str,
    body: Any,
    merged: Merged | None = None,
    count: bool = False,
) -> web.Response:
    """200 with the body in ``media``; federation outcomes and the count as headers."""
    headers: dict[str, str] = {}
    if media == LD_JSON:
        body = _with_context(body, context_url(request))
    else:
        headers["Link"] = link_header(request)
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
